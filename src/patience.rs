//! How long the client keeps trying while AWS does not answer. Each call is bounded by the
//! SDK's timeouts (cloud::CALL_LIMIT); this bounds a *run* of failed calls, so an API that
//! stalls, or credentials that expired mid-job, end the client in bounded time instead of a
//! retry loop that never ends.

use std::time::{Duration, Instant};

use crate::cloud::CloudError;

/// Consecutive failures tolerated while following a job: long enough for a regional blip or
/// a throttling burst, short enough that a user is not left staring at a dead client.
pub const DEFAULT: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
pub struct Patience {
    limit: Duration,
    failing_since: Option<Instant>,
    last: Option<CloudError>,
}

impl Patience {
    pub fn new(limit: Duration) -> Patience {
        Patience {
            limit,
            failing_since: None,
            last: None,
        }
    }

    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// A call worked: the run of failures is over.
    pub fn ok(&mut self) {
        self.failing_since = None;
        self.last = None;
    }

    /// A call failed. True once the failures have gone on for longer than the limit.
    pub fn failed(&mut self, e: CloudError) -> bool {
        let since = *self.failing_since.get_or_insert_with(Instant::now);
        self.last = Some(e);
        since.elapsed() >= self.limit
    }

    /// Whether this is the first failure of a run (worth one note to the user).
    pub fn first_failure(&self) -> bool {
        self.failing_since.is_none()
    }

    pub fn last_error(&self) -> String {
        self.last
            .as_ref()
            .map_or_else(|| "no answer".to_string(), |e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_failures_ends_at_the_limit_and_success_resets_it() {
        let e = || CloudError::local("X", "down");
        let mut p = Patience::new(Duration::from_millis(50));
        assert!(p.first_failure());
        assert!(!p.failed(e()));
        assert!(!p.first_failure());
        std::thread::sleep(Duration::from_millis(60));
        assert!(p.failed(e()));
        assert!(p.last_error().contains("down"));
        p.ok();
        assert!(!p.failed(e()), "a success starts the count again");
    }
}
