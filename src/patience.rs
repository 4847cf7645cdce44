//! How long the client keeps trying while AWS does not answer: one budget over a run of
//! consecutive failed calls, whatever the client is doing (following the job, stopping it,
//! terminating the instance). Each call is bounded by the SDK's timeouts (cloud::CALL_LIMIT);
//! the budget bounds the run, counted from the start of its first failed call, so an API that
//! stalls, or credentials that expired mid-job, end the client in about one patience instead
//! of one per phase.
//!
//! Throttling is an answer ("slow down"), not an outage: it ends a run of failures and never
//! starts one, so a batch under sustained throttling finishes late, not failed. So does any
//! other error the service answers with: the caller decides what it means.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cloud::CloudError;

/// Consecutive failures tolerated while following a job: long enough for a regional blip,
/// short enough that a user is not left staring at a dead client.
pub const DEFAULT: Duration = Duration::from_secs(5 * 60);

/// The budget, shared by every phase of one job (clones share it).
#[derive(Debug, Clone)]
pub struct Patience {
    limit: Duration,
    run: Arc<Mutex<Run>>,
}

#[derive(Debug, Default)]
struct Run {
    /// When the first call of the current run of failures started.
    failing_since: Option<Instant>,
    failures: u32,
    last: Option<CloudError>,
}

/// What one failed call means for the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// AWS answered (success, throttling, or a refusal the caller handles).
    Answered,
    /// No usable answer (no connection, a timeout, a fault on the service's side).
    Failed,
}

fn seen(e: &CloudError) -> Seen {
    if e.is_transient() && !e.is_throttling() {
        Seen::Failed
    } else {
        Seen::Answered
    }
}

impl Patience {
    pub fn new(limit: Duration) -> Patience {
        Patience {
            limit,
            run: Arc::default(),
        }
    }

    pub fn limit(&self) -> Duration {
        self.limit
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Run> {
        self.run.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What is left of the budget while a run of failures goes on (None: no failure now).
    fn remaining(&self, now: Instant) -> Option<Duration> {
        let since = self.lock().failing_since?;
        Some(
            self.limit
                .saturating_sub(now.saturating_duration_since(since)),
        )
    }

    /// One AWS call under the budget: its outcome is recorded from the moment it started, and
    /// while failures go on it may not outlast what is left of the budget (once the budget is
    /// spent, no call is made at all: every phase fails fast). The result is the call's own.
    pub async fn call<T>(
        &self,
        op: &'static str,
        f: impl Future<Output = Result<T, CloudError>>,
    ) -> Result<T, CloudError> {
        let started = Instant::now();
        let result = match self.remaining(started) {
            Some(left) if left.is_zero() => Err(self.spent(op)),
            Some(left) => tokio::time::timeout(left, f)
                .await
                .unwrap_or_else(|_| Err(self.spent(op))),
            None => f.await,
        };
        match &result {
            Ok(_) => self.ok(),
            Err(e) => self.record(started, e),
        }
        result
    }

    /// Wait for something that is not a counted call (e.g. a log read), but no longer than
    /// what is left of the budget while AWS is failing. None when it was cut short.
    pub async fn bounded<T>(&self, f: impl Future<Output = T>) -> Option<T> {
        match self.remaining(Instant::now()) {
            Some(left) => tokio::time::timeout(left, f).await.ok(),
            None => Some(f.await),
        }
    }

    fn spent(&self, op: &'static str) -> CloudError {
        let mut e = CloudError::no_answer(
            op,
            format!(
                "not tried: AWS has not answered for {}",
                humantime::format_duration(self.limit)
            ),
        );
        if let Some(last) = &self.lock().last {
            e.message = format!("{} (last: {last})", e.message);
        }
        e
    }

    /// A call worked, or AWS answered: the run of failures is over.
    pub fn ok(&self) {
        *self.lock() = Run::default();
    }

    fn record(&self, started: Instant, e: &CloudError) {
        match seen(e) {
            Seen::Answered => self.ok(),
            Seen::Failed => {
                let mut run = self.lock();
                let since = run.failing_since.get_or_insert(started);
                *since = (*since).min(started);
                run.failures += 1;
                if !e.message.starts_with("not tried: ") {
                    run.last = Some(e.clone());
                }
            }
        }
    }

    /// Whether the failures have gone on for the whole budget: time to give up.
    pub fn exhausted(&self) -> bool {
        self.remaining(Instant::now())
            .is_some_and(|left| left.is_zero())
    }

    /// Failed calls in the current run (1 after the first: worth one note to the user).
    pub fn failures(&self) -> u32 {
        self.lock().failures
    }

    pub fn last_error(&self) -> String {
        self.lock()
            .last
            .as_ref()
            .map_or_else(|| "no answer".to_string(), |e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::Failure;

    fn err(code: &str, failure: Failure) -> CloudError {
        CloudError {
            op: "X",
            code: (!code.is_empty()).then(|| code.to_string()),
            message: "down".into(),
            failure,
        }
    }

    fn no_answer() -> CloudError {
        err("", Failure::NoAnswer)
    }

    #[tokio::test]
    async fn the_run_counts_from_the_start_of_its_first_failed_call() {
        let p = Patience::new(Duration::from_millis(300));
        // A call that hangs 200 ms and fails: the run began when it was made, not when it
        // came back.
        let r: Result<(), _> = p
            .call("X", async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                Err(no_answer())
            })
            .await;
        assert!(r.is_err());
        assert_eq!(p.failures(), 1);
        assert!(!p.exhausted());
        // The next hanging call is cut at what is left (about 100 ms), not its own 500 ms.
        let t = Instant::now();
        let r: Result<(), _> = p
            .call("X", async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                Ok(())
            })
            .await;
        assert!(r.is_err(), "cut short");
        assert!(
            t.elapsed() < Duration::from_millis(250),
            "{:?}",
            t.elapsed()
        );
        assert!(p.exhausted());
        assert!(p.last_error().contains("down"), "{}", p.last_error());
        // Spent: no call is made at all.
        let made = std::sync::atomic::AtomicBool::new(false);
        let r: Result<(), _> = p
            .call("X", async {
                made.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            })
            .await;
        assert!(r.is_err() && !made.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test]
    async fn clones_share_one_budget_and_an_answer_resets_it() {
        let p = Patience::new(Duration::from_millis(100));
        let q = p.clone();
        let _: Result<(), _> = p.call("X", async { Err(no_answer()) }).await;
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(q.exhausted(), "the stop path sees the follow path's run");
        let p = Patience::new(Duration::from_millis(100));
        let _: Result<(), _> = p.call("X", async { Err(no_answer()) }).await;
        let _: Result<(), _> = p.call("X", async { Ok(()) }).await;
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(!p.exhausted(), "a success starts the count again");
    }

    #[test]
    fn what_counts_as_a_failure() {
        // (code, failure, counted): only a missing answer or the service's own fault counts;
        // throttling and refusals are answers.
        let table = [
            ("", Failure::NoAnswer, true),
            ("InternalError", Failure::Refused { status: 500 }, true),
            ("Unavailable", Failure::Refused { status: 503 }, true),
            (
                "RequestLimitExceeded",
                Failure::Refused { status: 503 },
                false,
            ),
            (
                "ThrottlingException",
                Failure::Refused { status: 400 },
                false,
            ),
            ("SlowDown", Failure::Refused { status: 503 }, false),
            ("AccessDenied", Failure::Refused { status: 403 }, false),
            (
                "InvalidParameterValue",
                Failure::Refused { status: 400 },
                false,
            ),
        ];
        for (code, failure, counted) in table {
            assert_eq!(seen(&err(code, failure)) == Seen::Failed, counted, "{code}");
        }
    }

    #[tokio::test]
    async fn throttling_never_runs_the_budget_out() {
        let p = Patience::new(Duration::from_millis(50));
        let _: Result<(), _> = p.call("X", async { Err(no_answer()) }).await;
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _: Result<(), _> = p
                .call("X", async {
                    Err(err(
                        "RequestLimitExceeded",
                        Failure::Refused { status: 503 },
                    ))
                })
                .await;
        }
        assert!(!p.exhausted());
        assert_eq!(p.failures(), 0);
    }
}
