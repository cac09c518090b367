//! The configured provider and its fallbacks (`discovery.fallback`). One source is in use at a
//! time and every listing comes from it alone, so no decision mixes members from two sources.
//! When the source in use has failed (retryably: the API down, a timeout) for
//! `discovery.fallback_after`, the next one takes over for the rest of the run, with the reason
//! logged. Errors that waiting cannot fix (a rejected token, a broken command) fail the run as
//! they would without fallbacks.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use super::{AnyProvider, Discover, DiscoveryError, Listing};
use crate::decide::SourceUsed;

pub struct Sources {
    /// (the provider's name, the provider), the configured one first.
    sources: Vec<(&'static str, AnyProvider)>,
    fallback_after: Cell<Duration>,
    current: Cell<usize>,
    /// Since when the source in use has failed without a good listing in between.
    failing_since: Cell<Option<Instant>>,
    /// Why the source in use took over, when it is a fallback.
    why: RefCell<Option<String>>,
}

impl Sources {
    pub fn new(sources: Vec<(&'static str, AnyProvider)>, fallback_after: Duration) -> Self {
        assert!(
            !sources.is_empty(),
            "a configuration names one provider at least"
        );
        Sources {
            sources,
            fallback_after: Cell::new(fallback_after),
            current: Cell::new(0),
            failing_since: Cell::new(None),
            why: RefCell::new(None),
        }
    }

    /// `plan` looks once: a source that fails is passed over at once, to show what a run would
    /// fall back to.
    pub fn impatient(&self) {
        self.fallback_after.set(Duration::ZERO);
    }

    pub fn in_use(&self) -> SourceUsed {
        SourceUsed {
            name: self.sources[self.current.get()].0,
            fallback_because: self.why.borrow().clone(),
        }
    }

    /// A listing from the source in use, after falling back if it has failed long enough.
    pub async fn list(&self) -> Result<(Listing, SourceUsed), DiscoveryError> {
        loop {
            let i = self.current.get();
            let (name, provider) = &self.sources[i];
            match provider.list().await {
                Ok(listing) => {
                    self.failing_since.set(None);
                    return Ok((listing, self.in_use()));
                }
                Err(e) if !e.retryable || i + 1 == self.sources.len() => return Err(e),
                Err(e) => {
                    let since = self.failing_since.get().unwrap_or_else(Instant::now);
                    self.failing_since.set(Some(since));
                    if since.elapsed() < self.fallback_after.get() {
                        return Err(e);
                    }
                    let next = self.sources[i + 1].0;
                    let why = format!(
                        "{name} has failed for {}s (discovery.fallback_after is {:?}): {}",
                        since.elapsed().as_secs(),
                        self.fallback_after.get(),
                        e.message
                    );
                    tracing::warn!("discovery: falling back to {next}: {why}");
                    self.current.set(i + 1);
                    self.failing_since.set(None);
                    *self.why.borrow_mut() = Some(why);
                }
            }
        }
    }
}
