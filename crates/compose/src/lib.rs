//! Pure, I/O-free composition logic shared by the gateway: URL templates that place route
//! parameters safely into backend URLs, assembly of the grouped JSON response from raw call
//! bodies, and the `Server-Timing` header. Nothing here touches a socket or a clock, so every
//! rule is tested directly.

pub mod body;
pub mod template;
pub mod timing;

pub use body::{BodyBuilder, ErrorEntry, json_key};
pub use template::{ParamError, Position, Template, TemplateError, push_query_pair};
pub use timing::server_timing;
