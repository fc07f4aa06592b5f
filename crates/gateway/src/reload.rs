//! Hot reload. The config being served lives in [`Live`] as one [`Serving`] (plan, metric
//! handles, version) behind an atomic pointer: each request takes the current one when it
//! starts and keeps it to the end, so requests in flight finish on the old plan while new ones
//! use the new. [`watch`] reloads on SIGHUP and when the config file's content changes
//! (checked every `server.config_poll`, then confirmed after a short debounce). The path is
//! re-opened each time, so the symlink swap Kubernetes uses for mounted ConfigMaps is seen.
//!
//! A reload loads and checks the whole file as `fanout check` does. An invalid config is
//! rejected with every error logged, and the old plan keeps serving. A valid one is swapped in
//! and what changed is logged. The `server` and `telemetry` sections are read at start only:
//! their changes are logged as needing a restart (listener addresses cannot move), and the new
//! plan keeps the running values.
//!
//! One config version goes through four values, each the input of the next, each with a
//! reason to exist: [`config::Loaded`] (the file read and checked: the tree as written, its
//! version, the validated settings; what `fanout check` stops at), [`Candidate`] (compiled
//! into a [`Plan`], not serving yet: the metric handles can only be made once the recorder is
//! installed, after `check` and `openapi` have returned), [`Serving`] (the plan with its
//! metric handles: what a request holds to its end) and [`Live`] (the one `Serving` now, swapped
//! whole by a reload).

use crate::config::{self, ConfigErrors, Version};
use crate::plan::Plan;
use crate::telemetry::metrics::{self, PlanMetrics};
use arc_swap::ArcSwap;
use serde_json::Value;
use state::Redis;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::signal::unix::Signal;
use tokio::time::MissedTickBehavior;

/// How long a changed file must stay the same before it is loaded (editors and `kubectl cp`
/// may write it in several steps).
const DEBOUNCE: Duration = Duration::from_millis(200);

/// A compiled config that is not serving yet.
#[derive(Debug)]
pub struct Candidate {
    /// The compiled plan.
    pub plan: Plan,
    /// The effective config tree.
    tree: Value,
    /// Its version.
    version: Version,
}

/// Loads, checks and compiles the config at `path` (blocking: reads the file).
pub fn compile(path: &Path, env: &HashMap<String, String>) -> Result<Candidate, ConfigErrors> {
    Candidate::new(config::load(path, env)?)
}

impl Candidate {
    /// Compiles a loaded config (what [`compile`] does after reading the file).
    pub fn new(loaded: config::Loaded) -> Result<Self, ConfigErrors> {
        let config::Loaded { tree, version, settings, redactions } = loaded;
        Ok(Candidate {
            plan: Plan::build(settings).map_err(|errors| redactions.apply(errors))?,
            tree,
            version,
        })
    }
}

/// Everything one config version serves with.
#[derive(Debug)]
pub struct Serving {
    /// The compiled plan.
    pub plan: Plan,
    /// Its metric handles.
    pub metrics: PlanMetrics,
    /// The config's version.
    pub version: Version,
    tree: Value,
}

impl Serving {
    fn new(candidate: Candidate) -> Self {
        let Candidate { plan, tree, version } = candidate;
        metrics::config_version(version);
        Self { metrics: PlanMetrics::new(&plan), plan, version, tree }
    }
}

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The new config is serving.
    Applied,
    /// The config is the one already serving.
    Unchanged,
    /// The config is invalid; the old one keeps serving.
    Rejected,
}

impl Outcome {
    /// `applied`, `unchanged` or `rejected`: the metric label and `/readyz` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Unchanged => "unchanged",
            Self::Rejected => "rejected",
        }
    }
}

/// The config being served, and where it comes from.
#[derive(Debug)]
pub struct Live {
    current: ArcSwap<Serving>,
    path: PathBuf,
    env: HashMap<String, String>,
    /// One reload at a time (SIGHUP and a file change may coincide).
    reloading: tokio::sync::Mutex<()>,
    /// The process's Redis (`state.redis`), which every plan's rate limiters share.
    redis: Option<Arc<Redis>>,
    last: Mutex<Option<Outcome>>,
}

impl Live {
    /// Starts serving `candidate`, loaded from `path` with `env`, its state shared in `redis`
    /// when given. Call after the metrics recorder is installed, so the plan's metric handles
    /// are real.
    pub fn new(
        mut candidate: Candidate,
        path: PathBuf,
        env: HashMap<String, String>,
        redis: Option<Arc<Redis>>,
    ) -> Self {
        if let Some(redis) = &redis {
            candidate.plan.share_state(redis);
        }
        Self {
            current: ArcSwap::from_pointee(Serving::new(candidate)),
            path,
            env,
            reloading: tokio::sync::Mutex::new(()),
            redis,
            last: Mutex::new(None),
        }
    }

    /// Whether the config serving now needs requests' peer addresses ([`Plan::needs_peer`]).
    pub fn needs_peer(&self) -> bool {
        self.current.load().plan.needs_peer
    }

    /// The config serving now; a request keeps it until it is answered.
    pub fn current(&self) -> Arc<Serving> {
        self.current.load_full()
    }

    /// What the last reload did (`None` before the first).
    pub fn last_outcome(&self) -> Option<Outcome> {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Loads the config file again and, if it is valid and different, serves it from now on.
    pub async fn reload(&self, trigger: &'static str) -> Outcome {
        let _one_at_a_time = self.reloading.lock().await;
        let (path, env) = (self.path.clone(), self.env.clone());
        let compiled = tokio::task::spawn_blocking(move || compile(&path, &env)).await;
        let outcome = match compiled {
            Ok(Ok(candidate)) => self.apply(candidate, trigger),
            Ok(Err(errors)) => {
                self.reject(&errors, trigger);
                Outcome::Rejected
            }
            Err(error) => {
                tracing::error!(%error, trigger, "config reload failed");
                Outcome::Rejected
            }
        };
        metrics::config_reload(outcome.as_str());
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(outcome);
        outcome
    }

    fn apply(&self, mut candidate: Candidate, trigger: &'static str) -> Outcome {
        let old = self.current();
        if candidate.version == old.version {
            tracing::info!(version = %old.version, trigger, "config reload: unchanged");
            return Outcome::Unchanged;
        }
        let changes = config::changes(&old.tree, &candidate.tree);
        for change in changes.iter().filter(|c| c.needs_restart) {
            let why = if change.key.ends_with("listen") {
                "listener addresses cannot change on reload"
            } else {
                "the server, telemetry and state sections are read at start only"
            };
            tracing::warn!(key = %change.key, "config reload: {} not applied: {why}; restart to apply", change.key);
        }
        let mut server = old.plan.server.clone();
        // Read on reload ([`config::SERVER_KEYS_ON_RELOAD`]): the endpoints' limits already use them.
        server.rate_limit = candidate.plan.server.rate_limit.take();
        server.trusted_proxies = std::mem::take(&mut candidate.plan.server.trusted_proxies);
        candidate.plan.server = server;
        candidate.plan.telemetry = old.plan.telemetry.clone();
        candidate.plan.state = old.plan.state.clone();
        if let Some(redis) = &self.redis {
            candidate.plan.share_state(redis);
        }
        let listed: Vec<String> = changes.iter().map(ToString::to_string).collect();
        let (from, to) = (old.version, candidate.version);
        self.current.store(Arc::new(Serving::new(candidate)));
        tracing::info!(%from, %to, trigger, changes = %listed.join("; "), "config reloaded");
        Outcome::Applied
    }

    fn reject(&self, errors: &ConfigErrors, trigger: &'static str) {
        let version = self.current().version;
        for error in &errors.0 {
            tracing::error!(key = %error.path, "config error: {error}");
        }
        tracing::error!(
            errors = errors.0.len(),
            %version,
            trigger,
            "config reload rejected: {} has {} error(s); still serving version {version}",
            self.path.display(),
            errors.0.len()
        );
    }
}

/// Reloads on every `hangup` signal and, with a `poll` interval, whenever the file's content
/// changes. Runs until dropped.
pub async fn watch(live: Arc<Live>, mut hangup: Signal, poll: Option<Duration>) {
    let mut ticker = tokio::time::interval(poll.unwrap_or(Duration::from_secs(3600)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut seen = fingerprint(&live.path).await;
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                seen = fingerprint(&live.path).await;
                live.reload("SIGHUP").await;
            }
            _ = ticker.tick(), if poll.is_some() => {
                let now = fingerprint(&live.path).await;
                if now == seen {
                    continue;
                }
                tokio::time::sleep(DEBOUNCE).await;
                if fingerprint(&live.path).await != now {
                    continue; // still being written: look again at the next tick
                }
                seen = now;
                match now {
                    Some(_) => {
                        live.reload("file change").await;
                    }
                    None => tracing::warn!(
                        path = %live.path.display(),
                        "config file is unreadable; still serving version {}",
                        live.current().version
                    ),
                }
            }
        }
    }
}

/// A hash of the file's bytes; `None` when it cannot be read.
async fn fingerprint(path: &Path) -> Option<u64> {
    let path = path.to_owned();
    let read = tokio::task::spawn_blocking(move || std::fs::read(path)).await;
    read.ok()?.ok().map(|bytes| config::fnv1a(&bytes))
}
