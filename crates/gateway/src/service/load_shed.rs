//! [`LoadShed`]: at most `server.max_in_flight` requests are served at once; one more is
//! answered `503` with `Retry-After: 1` at once, before it costs anything else.

use crate::handle::{Handle, Handled, Scope};
use crate::problem::Problem;
use http::Request;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Sheds load beyond `max_in_flight`, then hands the request to `inner`.
#[derive(Clone)]
pub struct LoadShed<H> {
    /// One permit per request in flight.
    in_flight: Arc<Semaphore>,
    inner: H,
}

impl<H> LoadShed<H> {
    /// At most `max_in_flight` requests through to `inner` at once.
    pub fn new(max_in_flight: usize, inner: H) -> Self {
        Self { in_flight: Arc::new(Semaphore::new(max_in_flight)), inner }
    }
}

impl<H: Handle> Handle for LoadShed<H> {
    async fn handle<B: Send>(&self, request: Request<B>, scope: &Scope<'_>) -> Handled {
        // Held until the answer is made.
        let Ok(_permit) = self.in_flight.try_acquire() else {
            return Handled::unrouted(Problem::Overloaded.response());
        };
        self.inner.handle(request, scope).await
    }
}
