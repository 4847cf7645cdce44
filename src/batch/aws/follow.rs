//! Following a submitted batch to its end: the same progress view as the EC2 engine, AWS
//! Batch's states every few seconds, with the EC2 engine's patience when AWS Batch does not
//! answer; then each job's end from AWS Batch's word and the runner's record of its last
//! attempt.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::budget::Meter;
use super::state::{last_attempt, runnable_cause};
use super::RunError;
use crate::batch::jobs::BatchJob;
use crate::batch::pool::{Attempt, JobEnd, PoolStats, Span};
use crate::batch::view::{Counts, View};
use crate::cloud::{Cloud, CloudError};
use crate::engine::aws_batch::{
    sizes, AwsBatch, BatchError, JobOfBatch, JobState, JobStatus, Submitted,
};
use crate::patience::Patience;
use crate::report::{InstanceFate, Outcome, Phases, Report};
use crate::signals::Interrupts;

/// How often the client asks AWS Batch for its jobs' states (ListJobs, one call per state and
/// array): AWS Batch itself moves a job on in seconds to minutes.
const POLL: Duration = Duration::from_secs(5);

/// One submitted batch, as followed.
pub(super) struct Follow<'a> {
    pub name: &'a str,
    pub run_id: &'a str,
    pub queue: &'a str,
    pub jobs: &'a [BatchJob],
    pub run: &'a [usize],
    pub rows: &'a [(usize, crate::plan::Plan)],
    pub size: sizes::Size,
    /// How long AWS Batch may go on not answering before the client leaves (`--api-patience`).
    pub api_patience: Duration,
    /// `--max-cost` and the price it is kept at, while the client follows.
    pub budget: Option<(crate::cost::Budget, f64)>,
}

fn cloud_error(e: BatchError) -> CloudError {
    match e {
        BatchError::Cloud(c) => c,
        other => CloudError::local("AWS Batch", other.to_string()),
    }
}

impl Follow<'_> {
    /// Until every job ended (then their ends), or Ctrl-C (they go on: detached), or AWS Batch
    /// has not answered for the patience (exit 69, saying what goes on and how to stop it).
    pub async fn run(
        &self,
        engine: &AwsBatch,
        submitted: &Submitted,
        cloud: &Cloud,
        interrupts: &Interrupts,
        view: &View,
        mut ends: Vec<JobEnd>,
    ) -> Result<(Vec<JobEnd>, PoolStats, bool), RunError> {
        let (name, queue) = (self.name, self.queue);
        let patience = Patience::new(self.api_patience);
        let mut told_runnable = false;
        // A running job runs on at least until the next look: that much is committed.
        let mut meter = self.budget.map(|(b, rate)| Meter::new(b, rate, POLL));
        let states = loop {
            let asked = patience
                .call("AWS Batch ListJobs", async {
                    engine.states(submitted).await.map_err(cloud_error)
                })
                .await;
            let states = match asked {
                Ok(s) => s,
                // Throttling is an answer: slow down, never give up for it.
                Err(e) if e.is_throttling() => Vec::new(),
                // Refused (permissions, a queue gone): asking again will not help.
                Err(e) if !e.is_transient() => {
                    return Err(RunError::Lost(format!(
                        "batch {name}: AWS Batch refused to list its jobs: {e}; its {} job(s) go on in queue {queue} without this client. Follow them with `run-render status --batch {name}`, end them with `run-render stop --batch {name}`",
                        submitted.jobs.len()
                    )));
                }
                Err(e) => {
                    if patience.failures() == 1 {
                        view.note(&format!(
                            "run-render: batch {name}: {e} (asking again for up to {})",
                            humantime::format_duration(patience.limit())
                        ));
                    }
                    if patience.exhausted() {
                        return Err(RunError::Unanswered(format!(
                            "batch {name}: AWS Batch has not answered for {}: {}; its {} job(s) go on in queue {queue} without this client. Follow them with `run-render status --batch {name}`, end them with `run-render stop --batch {name}`",
                            humantime::format_duration(patience.limit()),
                            patience.last_error(),
                            submitted.jobs.len()
                        )));
                    }
                    Vec::new()
                }
            };
            let (counts, all_final, runnable_since) = tally(&states, self.run.len());
            view.update(&counts);
            if let Some(m) = meter.as_mut() {
                self.keep_budget(m, engine, &states, view, &mut ends).await;
            }
            if all_final {
                break states;
            }
            // AWS Batch's best-known trap: jobs that stay RUNNABLE. Say why, once.
            if let (Some(since), false) = (runnable_since, told_runnable) {
                let waited = SystemTime::now().duration_since(since).unwrap_or_default();
                if let Some(advice) = runnable_cause(engine, queue, self.size, waited).await {
                    view.note(&format!(
                        "run-render: batch {name}: jobs RUNNABLE for {}: {advice}",
                        crate::cmd::short_duration(waited),
                    ));
                    told_runnable = true;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = interrupts.reached(1) => {
                    for &j in self.run {
                        ends[j].not_run = Some(format!("left running on {queue} (the client detached)"));
                    }
                    view.note(&format!(
                        "run-render: batch {name}: detached; the jobs belong to AWS Batch and go on{}. Follow with `run-render status --batch {name}`; cancel with `run-render stop --batch {name}`",
                        if meter.is_some() { ", and nobody keeps the budget now" } else { "" }
                    ));
                    return Ok((ends, PoolStats::default(), true));
                }
            }
        };
        self.finish(states, cloud, &mut ends).await;
        let stats = PoolStats {
            budget_reached: meter.and_then(|m| m.reached().map(str::to_string)),
            ..PoolStats::default()
        };
        Ok((ends, stats, false))
    }

    /// Keep the budget at one look: once it is reached, cancel what has not started (those
    /// jobs end `not_run`, budget) and, with on-budget = "stop", end the running ones. A cancel
    /// that got no answer is asked for again at the next look; one refused is said.
    async fn keep_budget(
        &self,
        meter: &mut Meter,
        engine: &AwsBatch,
        states: &[JobOfBatch],
        view: &View,
        ends: &mut [JobEnd],
    ) {
        let name = self.name;
        let looks: Vec<(&str, Option<&JobStatus>)> = states
            .iter()
            .map(|s| (s.job_id.as_str(), s.status.as_ref()))
            .collect();
        let was_reached = meter.reached().is_some();
        let at = meter.look(&looks, SystemTime::now());
        let Some(why) = meter.reached().map(str::to_string) else {
            return;
        };
        let stop = self
            .budget
            .is_some_and(|(b, _)| b.on_budget == crate::cost::OnBudget::Stop);
        if !was_reached {
            view.note(&format!(
                "run-render: batch {name}: {why}; {}",
                if stop {
                    "cancelling the jobs not started and stopping the running ones (outputs saved)"
                } else {
                    "cancelling the jobs not started; the running ones finish"
                }
            ));
        }
        let reason = format!("run-render: {why}");
        for (job_id, batch_id) in &at.cancel {
            match engine.terminate(batch_id, &reason).await {
                Ok(()) => {
                    if let Some(j) = self.jobs.iter().position(|j| &j.job_id == job_id) {
                        ends[j].not_run = Some(format!("budget: {why}"));
                    }
                }
                Err(e) => {
                    let again = matches!(&e, BatchError::Cloud(c) if c.is_transient());
                    if again {
                        meter.retry_cancel(batch_id);
                    }
                    view.note(&format!(
                        "run-render: batch {name}: could not cancel {job_id} at the budget: {e}{}",
                        if again {
                            "; asking again"
                        } else {
                            "; it may still run: end it with `run-render stop --batch`"
                        }
                    ));
                }
            }
        }
        if at.end_running {
            if let Err(e) = engine.stop(self.queue, name, &reason).await {
                view.note(&format!(
                    "run-render: batch {name}: could not stop the running jobs at the budget: {e}; end them with `run-render stop --batch {name}`"
                ));
            }
        }
    }

    /// Each job's end: AWS Batch's word, and the runner's (its last attempt's result record,
    /// its MATLAB error).
    async fn finish(&self, states: Vec<JobOfBatch>, cloud: &Cloud, ends: &mut [JobEnd]) {
        let index: BTreeMap<&str, usize> = self
            .jobs
            .iter()
            .enumerate()
            .map(|(i, j)| (j.job_id.as_str(), i))
            .collect();
        let first_records: BTreeMap<&str, &rtb_model::JobRecords> = self
            .rows
            .iter()
            .filter_map(|(j, p)| p.work_records().map(|r| (self.jobs[*j].job_id.as_str(), r)))
            .collect();
        for s in states {
            let Some(&j) = index.get(s.job_id.as_str()) else {
                continue;
            };
            // The last attempt AWS Batch made of this run is the job's outcome.
            let last = match self.jobs[j].records_base() {
                Some(base) => last_attempt(cloud, &base, self.run_id).await,
                None => None,
            };
            let records = last
                .as_ref()
                .or(first_records.get(s.job_id.as_str()).copied());
            let result = match records {
                Some(r) => cloud.job_result(r).await.ok().flatten(),
                None => None,
            };
            let status = s.status.as_ref();
            let aws_code = status.and_then(|st| st.exit_code);
            let reason = status.and_then(|st| st.reason.clone().or(st.container_reason.clone()));
            let (outcome, code) = match (status.map(|st| st.state), &result) {
                (Some(JobState::Succeeded), _) => (Outcome::Succeeded, 0),
                // Ended by a stop (the budget's, `stop --batch`): the runner saved its outputs.
                (_, Some(r)) if r.outcome == rtb_model::Outcome::Interrupted => {
                    (Outcome::Interrupted, r.exit_code)
                }
                (_, Some(r)) => (Outcome::JobFailed, r.exit_code),
                (_, None) if reason.as_deref().is_some_and(|r| r.starts_with("Host EC2")) => {
                    (Outcome::InstanceLost, crate::report::exit::INSTANCE_LOST)
                }
                (_, None) => (
                    Outcome::RemoteFailed,
                    aws_code.unwrap_or(crate::report::exit::REMOTE),
                ),
            };
            let error = match outcome {
                Outcome::Succeeded => None,
                _ => result
                    .as_ref()
                    .and_then(|r| r.error.clone())
                    .or(reason.clone()),
            };
            let seconds = status
                .and_then(|st| {
                    Some(
                        st.stopped_at?
                            .duration_since(st.started_at?)
                            .ok()?
                            .as_secs_f64(),
                    )
                })
                .unwrap_or_default();
            ends[j].attempts.push(Attempt {
                outcome,
                exit_code: code,
                instance_id: None,
                spot: false,
                seconds,
                error: error.clone(),
                retried_because: None,
                ran: status.and_then(|st| st.started_at.zip(st.stopped_at)).map(
                    |(started, ended)| Span {
                        started,
                        ended,
                        boot_s: 0.0,
                    },
                ),
                // The runner's word on a notice and a restore (AWS Batch numbers the attempts).
                resume: {
                    let notice = result.as_ref().and_then(|r| r.notice.clone());
                    crate::batch::resume::Resumption {
                        interrupted_by: crate::batch::resume::interruption(
                            outcome,
                            notice.as_ref(),
                        ),
                        notice,
                        resume_asked: false,
                        resumed: result.as_ref().and_then(|r| r.resumed.clone()),
                    }
                },
            });
            ends[j].report = Some(Report {
                job_id: s.job_id.clone(),
                outcome,
                exit_code: code,
                instance_id: None,
                instance: InstanceFate::NotLaunched,
                ami: String::new(),
                instance_type: String::new(),
                region: cloud.region().map(str::to_string),
                output: self.jobs[j].plan.output.as_ref().map(|o| o.to_string()),
                records: records.map(|r| r.root().to_string()),
                phases: Phases {
                    total_s: seconds,
                    ..Phases::default()
                },
                log_lines: 0,
                result,
                error,
                kept: false,
            });
        }
    }
}

/// The view's counts, whether every job ended, and since when the oldest RUNNABLE job waits.
fn tally(states: &[JobOfBatch], total: usize) -> (Counts, bool, Option<SystemTime>) {
    let mut c = Counts {
        total,
        ..Counts::default()
    };
    let mut all_final = !states.is_empty();
    let mut runnable_since: Option<SystemTime> = None;
    for s in states {
        match s.status.as_ref().map(|st| st.state) {
            Some(JobState::Succeeded) => c.succeeded += 1,
            Some(JobState::Failed) => c.failed += 1,
            Some(JobState::Starting | JobState::Running) => {
                c.running += 1;
                all_final = false;
            }
            Some(st) => {
                c.queued += 1;
                all_final = false;
                if st == JobState::Runnable {
                    let since = s.status.as_ref().and_then(|st| st.created_at);
                    runnable_since = runnable_since.min(since).or(since);
                }
            }
            None => all_final = false,
        }
    }
    (c, all_final, runnable_since)
}
