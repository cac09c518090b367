//! Commands that retry one step until it is done or their `--timeout` passes (`promote`,
//! `leave`, `prune`): the same loop, with the same log lines and the same word to systemd.

use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::error::{Failure, Kind};
use crate::notify;

/// What one try came to.
pub enum Try<T> {
    Done(T),
    /// Not now; `kind` is the failure's if this is still the answer at the deadline.
    Again {
        why: String,
        kind: Kind,
    },
}

impl<T> Try<T> {
    /// Not now, for a reason waiting may end (`Kind::Unavailable` at the deadline).
    pub fn again(why: impl Into<String>) -> Self {
        Try::Again {
            why: why.into(),
            kind: Kind::Unavailable,
        }
    }
}

/// Tries `attempt` until it is done, fails, or `timeout` passes. Between tries: `doing: why` in
/// the log and in `STATUS=`. At the deadline: `gave_up within TIMEOUT: why`.
pub async fn until_done<T>(
    timeout: Duration,
    mut backoff: Backoff,
    doing: &str,
    gave_up: &str,
    mut attempt: impl AsyncFnMut() -> Result<Try<T>, Failure>,
) -> Result<T, Failure> {
    let deadline = Instant::now() + timeout;
    loop {
        let (why, kind) = match attempt().await? {
            Try::Done(done) => return Ok(done),
            Try::Again { why, kind } => (why, kind),
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(Failure::new(
                kind,
                format!("{gave_up} within {timeout:?}: {why}"),
            ));
        }
        tracing::info!("{doing}: {why}");
        let pause = backoff.next_delay().min(deadline - now);
        notify::waiting(&format!("{doing}: {why}"), pause + Duration::from_secs(30));
        tokio::time::sleep(pause).await;
    }
}
