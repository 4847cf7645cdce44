//! The budget while the client follows a batch on AWS Batch (`--max-cost`). AWS Batch starts
//! the jobs, not this client, so the budget acts on what AWS Batch reports: what the jobs'
//! attempts have accrued (each attempt's time so far, at the price), plus what the running
//! ones are committed to before the client looks again. At the budget, what is not yet
//! running is cancelled (those jobs end `not_run`, budget), and with on-budget = "stop" the
//! running ones are ended too (AWS Batch stops their containers as `docker stop` does: the
//! runner saves the outputs). Pure: the follow loop feeds it each look at the jobs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use crate::cost::{Budget, OnBudget};
use crate::engine::aws_batch::{JobState, JobStatus};

/// What to do once the budget is reached, at one look.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AtBudget {
    /// (row job id, AWS Batch id) of jobs not yet running: cancel them.
    pub cancel: Vec<(String, String)>,
    /// With "stop", the first time: end the running jobs too.
    pub end_running: bool,
}

/// The spend so far and whether the budget was reached.
#[derive(Debug, Clone)]
pub struct Meter {
    budget: Budget,
    usd_per_hour: f64,
    /// How long a running job runs on at least before the client can act again.
    committed: Duration,
    /// Seconds of each attempt seen, by (AWS Batch id, its start).
    attempts: BTreeMap<(String, SystemTime), f64>,
    reached: Option<String>,
    cancelled: BTreeSet<String>,
}

impl Meter {
    pub fn new(budget: Budget, usd_per_hour: f64, committed: Duration) -> Meter {
        Meter {
            budget,
            usd_per_hour,
            committed,
            attempts: BTreeMap::new(),
            reached: None,
            cancelled: BTreeSet::new(),
        }
    }

    /// What has accrued: every attempt seen, at the price.
    pub fn accrued_usd(&self) -> f64 {
        self.attempts.values().sum::<f64>() * self.usd_per_hour / 3600.0
    }

    /// A cancel that did not get through for now (no answer, throttled): ask again at the next
    /// look.
    pub fn retry_cancel(&mut self, batch_job_id: &str) {
        self.cancelled.remove(batch_job_id);
    }

    /// Why the budget was reached, once it was.
    pub fn reached(&self) -> Option<&str> {
        self.reached.as_deref()
    }

    /// One look at the jobs (row job id, what AWS Batch says of it) at `now`: what to do.
    pub fn look(&mut self, jobs: &[(&str, Option<&JobStatus>)], now: SystemTime) -> AtBudget {
        let mut running = 0usize;
        for (_, st) in jobs {
            let Some(st) = st else { continue };
            let Some(started) = st.started_at else {
                continue;
            };
            let end = match st.state {
                JobState::Starting | JobState::Running => {
                    running += 1;
                    now
                }
                JobState::Succeeded | JobState::Failed => st.stopped_at.unwrap_or(now),
                // Waiting for a retry: its earlier attempt counts once it has an end; the
                // wait is not a job's time.
                _ => match st.stopped_at {
                    Some(t) => t,
                    None => continue,
                },
            };
            let secs = end
                .duration_since(started)
                .unwrap_or_default()
                .as_secs_f64();
            self.attempts
                .insert((st.batch_job_id.clone(), started), secs);
        }
        let committed = running as f64 * self.committed.as_secs_f64() * self.usd_per_hour / 3600.0;
        let spend = self.accrued_usd() + committed;
        let first = self.reached.is_none() && spend >= self.budget.max_usd;
        if first {
            self.reached = Some(format!(
                "the budget of ${:.2} was reached: ${spend:.4} accrued and committed at ${:.4}/h",
                self.budget.max_usd, self.usd_per_hour
            ));
        }
        if self.reached.is_none() {
            return AtBudget::default();
        }
        // Once reached, whatever is not running yet is cancelled, a retry AWS Batch queues
        // later included.
        let cancel: Vec<(String, String)> = jobs
            .iter()
            .filter_map(|(id, st)| {
                let st = (*st)?;
                let waiting = matches!(
                    st.state,
                    JobState::Submitted | JobState::Pending | JobState::Runnable
                );
                (waiting && !self.cancelled.contains(&st.batch_job_id))
                    .then(|| (id.to_string(), st.batch_job_id.clone()))
            })
            .collect();
        self.cancelled.extend(cancel.iter().map(|(_, b)| b.clone()));
        AtBudget {
            cancel,
            end_running: first && self.budget.on_budget == OnBudget::Stop && running > 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }

    fn st(id: &str, state: JobState, started: Option<u64>, stopped: Option<u64>) -> JobStatus {
        JobStatus {
            batch_job_id: id.into(),
            name: String::new(),
            state,
            reason: None,
            exit_code: None,
            container_reason: None,
            created_at: None,
            started_at: started.map(t),
            stopped_at: stopped.map(t),
        }
    }

    #[test]
    fn at_the_budget_what_waits_is_cancelled_and_stop_ends_what_runs() {
        use JobState::*;
        // $36/h: a cent a second; budget $1 = 100 s; a running job is committed to 5 s more.
        let budget = |on_budget| Budget {
            max_usd: 1.0,
            on_budget,
        };
        let five = Duration::from_secs(5);
        for on_budget in [OnBudget::Finish, OnBudget::Stop] {
            let mut m = Meter::new(budget(on_budget), 36.0, five);
            // 40 s done + 30 s running (+5 committed): $0.75, under.
            let a = st("b-a", Succeeded, Some(0), Some(40));
            let b = st("b-b", Running, Some(10), None);
            let c = st("b-c", Runnable, None, None);
            let look = m.look(&[("a", Some(&a)), ("b", Some(&b)), ("c", Some(&c))], t(40));
            assert_eq!(look, AtBudget::default(), "{on_budget:?}");
            assert!((m.accrued_usd() - 0.7).abs() < 1e-9);
            assert!(m.reached().is_none());
            // 60 s later: b has run 90 s: $1.30 with a's 40 s: reached.
            let look = m.look(&[("a", Some(&a)), ("b", Some(&b)), ("c", Some(&c))], t(100));
            assert_eq!(look.cancel, [("c".to_string(), "b-c".to_string())]);
            assert_eq!(look.end_running, on_budget == OnBudget::Stop);
            assert!(m.reached().is_some_and(|r| r.contains("$1.00")), "{m:?}");
            // Next look: nothing twice; a retry queued later is cancelled too.
            let c2 = st("b-c", Runnable, None, None);
            let d = st("b-d", Runnable, None, None);
            let look = m.look(&[("c", Some(&c2)), ("d", Some(&d))], t(105));
            assert_eq!(look.cancel, [("d".to_string(), "b-d".to_string())]);
            assert!(!look.end_running);
            // A cancel that did not get through is asked for again.
            m.retry_cancel("b-d");
            let look = m.look(&[("c", Some(&c2)), ("d", Some(&d))], t(110));
            assert_eq!(look.cancel, [("d".to_string(), "b-d".to_string())]);
        }
        // The committed seconds count: 94 s done, one running 1 s + 5 committed: reached.
        let mut m = Meter::new(budget(OnBudget::Finish), 36.0, five);
        let a = st("b-a", Failed, Some(0), Some(94));
        let b = st("b-b", Starting, Some(100), None);
        m.look(&[("a", Some(&a)), ("b", Some(&b))], t(101));
        assert!(m.reached().is_some());
        // Two attempts of one job (a retry starts later): both count.
        let mut m = Meter::new(budget(OnBudget::Finish), 3600.0, five);
        let first = st("b-a", Runnable, Some(0), Some(10));
        m.look(&[("a", Some(&first))], t(20));
        let second = st("b-a", Succeeded, Some(30), Some(35));
        m.look(&[("a", Some(&second))], t(40));
        assert!((m.accrued_usd() - 15.0).abs() < 1e-9);
        // A job waiting for its retry with an earlier start and no end yet accrues nothing.
        let mut m = Meter::new(budget(OnBudget::Finish), 3600.0, five);
        let waiting = st("b-a", Runnable, Some(0), None);
        m.look(&[("a", Some(&waiting))], t(500));
        assert_eq!(m.accrued_usd(), 0.0);
    }
}
