//! The EC2 engine for batches: a pool of at most ceil(parallel / per-instance) instances,
//! each launched as `run` launches one (tags, deadline, IMDSv2) plus the batch's tag. An
//! instance that finishes a job takes the next queued one, so a job costs no boot, once it
//! has passed the check a fresh instance would (`host.rs`: running, its deadline armed for
//! the jobs it runs, free disk); one that fails it is retired and the job goes to another.
//! An instance with nothing left to do is terminated at once, but never while a job of the
//! batch still runs there. A failed attempt goes back to the front of the queue when
//! `retry.rs` says so, on a fresh instance when the instance was the problem; `resume.rs`
//! tells a spot reclaim from another loss, and has a retry resume from the checkpoint.
//!
//! Signals: the first stops every running job as `run` does (outputs saved) and starts
//! nothing new; each instance is terminated once all its jobs have saved theirs. The second
//! terminates at once. Every instance ends before this returns.

mod ends;

pub use ends::{ran_until_now, Attempt, JobEnd, PoolStats, Running, Snapshot, Span};

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use super::host::{Ending, Host};
use super::jobs::{BatchJob, Policy};
use super::records::PoolRecords;
use super::resume::{self, Resumption};
use super::retry::{self, Attempted, Next, Rules};
use super::view::{Counts, View};
use crate::cloud::Cloud;
use crate::lifecycle;
use crate::preflight::Checked;
use crate::registry::Registry;
use crate::report::{InstanceFate, Outcome, Report};
use crate::signals::Interrupts;
use crate::ui::Ui;

struct State {
    queue: VecDeque<usize>,
    ends: Vec<JobEnd>,
    next_spot: Vec<bool>,
    running: usize,
    live: usize,
    stats: PoolStats,
    /// The attempts under way.
    now: BTreeMap<usize, Running>,
}

pub struct Pool<'a> {
    pub name: &'a str,
    /// This run of the batch (names each attempt's records folder).
    pub run: &'a str,
    pub jobs: &'a [BatchJob],
    pub policy: &'a Policy,
    pub cloud: &'a Cloud,
    pub interrupts: &'a Interrupts,
    pub registry: &'a Registry,
    pub checked: Checked,
    pub view: &'a View,
    pub log_dir: Option<PathBuf>,
    /// The budget, when the batch has one: asked before each start.
    pub spend: Option<crate::cost::budget::Spend>,
    /// Who runs where, in S3: a pool instance's tags cannot change after launch.
    pub records: &'a PoolRecords<'a>,
    /// Follows every running job at once (watch.rs).
    watch: super::watch::Watch,
    state: Mutex<State>,
}

impl<'a> Pool<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &'a str,
        run_id: &'a str,
        jobs: &'a [BatchJob],
        run: &[usize],
        policy: &'a Policy,
        cloud: &'a Cloud,
        interrupts: &'a Interrupts,
        registry: &'a Registry,
        checked: Checked,
        view: &'a View,
        log_dir: Option<PathBuf>,
        records: &'a PoolRecords<'a>,
    ) -> Pool<'a> {
        Pool {
            name,
            run: run_id,
            jobs,
            policy,
            cloud,
            interrupts,
            registry,
            checked,
            view,
            log_dir,
            spend: None,
            records,
            watch: super::watch::Watch::default(),
            state: Mutex::new(State {
                queue: run.iter().copied().collect(),
                ends: vec![JobEnd::default(); jobs.len()],
                next_spot: vec![policy.spot; jobs.len()],
                running: 0,
                live: 0,
                stats: PoolStats::default(),
                now: BTreeMap::new(),
            }),
        }
    }

    /// How many instances the pool may have at once.
    pub fn size(policy: &Policy, jobs: usize) -> usize {
        let per = policy.per_instance.max(1);
        policy.parallel.div_ceil(per).min(jobs.div_ceil(per)).max(1)
    }

    /// Under a budget: nothing starts that would pass it.
    pub fn with_budget(mut self, spend: crate::cost::budget::Spend) -> Self {
        self.spend = Some(spend);
        self
    }

    /// Run every queued job; every instance is ended when this returns.
    pub async fn run(&self) -> (Vec<JobEnd>, PoolStats) {
        let queued = self.lock().queue.len();
        let slots = Pool::size(self.policy, queued);
        self.update_view();
        let work = futures::future::join_all((0..slots).map(|_| self.instance_task()));
        tokio::select! {
            _ = work => {}
            _ = self.watch_budget() => {}
            _ = self.watch.run(self.cloud, self.name) => {}
        }
        let mut st = self.lock();
        // Jobs still queued when the batch stopped (or the budget was reached).
        let why = self
            .spend
            .as_ref()
            .and_then(|s| s.reached())
            .unwrap_or_else(|| "not started: the batch was stopped".into());
        let stopped: Vec<usize> = st.queue.drain(..).collect();
        for j in stopped {
            st.ends[j].not_run = Some(why.clone());
        }
        st.stats.budget_reached = self.spend.as_ref().and_then(|s| s.reached());
        (std::mem::take(&mut st.ends), std::mem::take(&mut st.stats))
    }

    /// With on-budget = "stop": once the budget is reached, running jobs are stopped as the
    /// first Ctrl-C stops them (outputs saved). Never ends by itself.
    async fn watch_budget(&self) {
        if let Some(spend) = &self.spend {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if spend.should_stop(std::time::SystemTime::now()) {
                    self.view
                        .note("run-render: the budget is reached: stopping the running jobs (outputs saved)");
                    self.interrupts.raise();
                    break;
                }
            }
        }
        std::future::pending::<()>().await
    }

    /// The jobs' ends so far, the attempts under way and the queue.
    pub fn snapshot(&self) -> Snapshot {
        let st = self.lock();
        Snapshot {
            ends: st.ends.clone(),
            running: st.now.clone(),
            queued: st.queue.iter().copied().collect(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next job to run on instance `on` (None: a new one, which asks for what the job
    /// needs), a spot one or not, unless the batch is stopping or the budget would be passed.
    fn take(&self, on: Option<&str>, on_spot: bool) -> Option<usize> {
        if self.interrupts.count() > 0 {
            return None;
        }
        if let Some(spend) = &self.spend {
            if self.lock().queue.is_empty() {
                return None;
            }
            if let Err(why) = spend.may_start(on, std::time::SystemTime::now()) {
                self.view
                    .note(&format!("run-render: {why}; nothing more starts"));
                return None;
            }
        }
        let mut st = self.lock();
        let at = pick(&st.queue, &st.next_spot, on_spot)?;
        let j = st.queue.remove(at)?;
        st.running += 1;
        drop(st);
        self.update_view();
        Some(j)
    }

    /// The plan, the view line and the number of job `j`'s next attempt, on `instance` when
    /// it has one.
    fn begin(&self, j: usize, instance: Option<&str>) -> (crate::plan::Plan, Ui, u32) {
        let (attempt, spot, earlier) = {
            let mut st = self.lock();
            let (attempt, spot) = (st.ends[j].attempts.len() as u32 + 1, st.next_spot[j]);
            let earlier = st.ends[j].attempts.clone();
            st.now.insert(
                j,
                Running {
                    attempt,
                    since: SystemTime::now(),
                    instance_id: instance.map(str::to_string),
                    boot_s: 0.0,
                },
            );
            (attempt, spot, earlier)
        };
        let job = &self.jobs[j];
        let plan = resume::prepare(
            job.plan_attempt(self.name, self.run, attempt, spot),
            &earlier,
        );
        let log = self.log_dir.as_ref().and_then(|d| {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(d.join(format!("{}.log", job.job_id)))
                .ok()?;
            Some(f)
        });
        let ui = Ui::batch_job(self.view.multi(), self.view.screen(), &job.job_id, log);
        if attempt > 1 {
            ui.note(format!(
                "attempt {attempt}{}",
                if spot { " (spot)" } else { "" }
            ));
        }
        (plan, ui, attempt)
    }

    /// Record an attempt's end, and queue the job again when it is worth another attempt.
    /// `market`: spot asked for, and whether it ran on a spot instance (EC2's word).
    fn finish(&self, j: usize, report: Report, ui: &Ui, market: Market) {
        // Trouble on an instance that is, or was asked as, spot falls back to on demand.
        let spot = market.requested || market.ran;
        let capacity = report.outcome == Outcome::LaunchFailed
            && report
                .error
                .as_deref()
                .is_some_and(|e| e.to_ascii_lowercase().contains("capacity"));
        let mut st = self.lock();
        st.running = st.running.saturating_sub(1);
        let ended = SystemTime::now();
        let (started, boot_s) = st
            .now
            .remove(&j)
            .map_or((ended, 0.0), |r| (r.since, r.boot_s));
        let ran = Span {
            started,
            ended,
            boot_s,
        };
        let attempts = st.ends[j].attempts.len() as u32 + 1;
        let resumption = Resumption::of(&report, market.notice, market.resume_asked);
        let reclaimed = resumption.reclaimed();
        let next = retry::decide(
            &Attempted {
                outcome: report.outcome,
                capacity,
                spot,
                reclaimed,
                attempts,
                reclaims: resume::reclaims(&st.ends[j].attempts) + u32::from(reclaimed),
                stopping: self.interrupts.count() > 0,
            },
            &Rules {
                retries: self.policy.retries,
                retry_on_job_error: self.policy.retry_on_job_error,
                spot_fallback: self.policy.spot_fallback,
                spot_retries: self.policy.spot_retries,
            },
        );
        let mut attempt = Attempt {
            outcome: report.outcome,
            exit_code: report.exit_code,
            instance_id: report.instance_id.clone(),
            spot: market.ran,
            seconds: report.phases.total_s,
            error: report.error.clone(),
            retried_because: None,
            ran: Some(ran),
            resume: resumption,
        };
        match next {
            Next::Retry { why, spot } => {
                ui.note(format!(
                    "attempt {attempts} ended {}: {why}; trying again{}",
                    outcome_word(report.outcome),
                    if spot {
                        ""
                    } else if market.requested || market.ran {
                        " on demand"
                    } else {
                        ""
                    }
                ));
                attempt.retried_because = Some(why.to_string());
                st.next_spot[j] = spot;
                st.queue.push_front(j);
            }
            Next::Final => {
                ui.note(format!(
                    "{} (exit {}){}",
                    outcome_word(report.outcome),
                    report.exit_code,
                    report
                        .error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ));
            }
        }
        if report.instance == InstanceFate::Unconfirmed {
            if let Some(id) = &report.instance_id {
                st.stats.unconfirmed.push(id.clone());
            }
        }
        st.ends[j].attempts.push(attempt);
        st.ends[j].report = Some(report);
        drop(st);
        ui.finish();
        self.update_view();
    }

    fn update_view(&self) {
        let st = self.lock();
        let mut c = Counts {
            total: self.jobs.len(),
            queued: st.queue.len(),
            running: st.running,
            instances: st.live,
            ..Counts::default()
        };
        for (j, e) in st.ends.iter().enumerate() {
            if st.queue.contains(&j) {
                continue;
            }
            match e.report.as_ref().map(|r| r.outcome) {
                Some(Outcome::Succeeded) => c.succeeded += 1,
                Some(_) => c.failed += 1,
                None => {}
            }
        }
        drop(st);
        self.view.update(&c);
    }

    /// One instance slot: launch an instance for the next job, run jobs on it while any are
    /// queued (per-instance of them at once), end it; again while jobs remain.
    async fn instance_task(&self) {
        loop {
            let Some(first) = self.take(None, false) else {
                return;
            };
            let (plan, ui, first_attempt) = self.begin(first, None);
            let spot = plan.launch.spot;
            let up = Instant::now();
            // Launched as the pool's: its tags name the run, never a job (they cannot change).
            let instance = match lifecycle::acquire(
                &plan.clone().for_pool(self.run, self.records.root()),
                self.checked.clone(),
                self.cloud,
                &ui,
                self.interrupts,
                self.registry,
            )
            .await
            {
                Ok(i) => i,
                Err(report) => {
                    let launched = report.instance_id.is_some();
                    if let (Some(spend), None) = (&self.spend, &report.instance_id) {
                        spend.launch_failed();
                    }
                    if let Some(id) = &report.instance_id {
                        // Launched, then lost before its job: its time counts all the same.
                        let now = std::time::SystemTime::now();
                        self.lock().stats.ended_at.insert(id.clone(), now);
                        if let Some(spend) = &self.spend {
                            spend.launched(id, now.checked_sub(up.elapsed()).unwrap_or(now), spot);
                            spend.ended(id, now);
                        }
                    }
                    self.finish(
                        first,
                        report,
                        &ui,
                        Market {
                            requested: spot,
                            ran: false,
                            notice: None,
                            resume_asked: resume::asked(&plan),
                        },
                    );
                    if launched {
                        self.account(up, false);
                        self.account(up, true);
                    }
                    // Not straight back at EC2 after a refusal.
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                        _ = self.interrupts.reached(1) => {}
                    }
                    continue;
                }
            };
            {
                let mut st = self.lock();
                st.live += 1;
                st.stats.peak_instances = st.stats.peak_instances.max(st.live);
                if let Some(r) = st.now.get_mut(&first) {
                    r.instance_id = Some(instance.id.clone());
                    r.boot_s = up.elapsed().as_secs_f64();
                }
            }
            self.account(up, false);
            let host = Host::new(instance, plan.api_patience);
            let id = host.id.clone();
            if let Some(spend) = &self.spend {
                let now = std::time::SystemTime::now();
                spend.launched(&id, now.checked_sub(up.elapsed()).unwrap_or(now), spot);
            }
            // Asked as spot, or spot after all: it takes no job that must run on demand.
            let on_spot = spot || self.records.instance(&id, spot).await.lock().await.spot;
            let first_job = Cell::new(Some((first, plan, ui, first_attempt)));
            let lanes =
                (0..self.policy.per_instance.max(1)).map(|_| self.lane(&host, &first_job, on_spot));
            futures::future::join_all(lanes).await;
            // No job of the batch runs there any more.
            if host.open() && host.ending() == Ending::Normally && self.interrupts.count() == 0 {
                self.view.note(&format!(
                    "run-render: {}: no queued job left, terminating",
                    host.id
                ));
            }
            if let Err(e) = host.end(self.cloud, self.interrupts).await {
                self.view.note(&format!("run-render: {e}"));
                self.lock().stats.unconfirmed.push(host.id.clone());
            }
            let now = std::time::SystemTime::now();
            {
                let mut st = self.lock();
                st.live -= 1;
                st.stats.ended_at.insert(id.clone(), now);
            }
            if let Some(spend) = &self.spend {
                spend.ended(&id, now);
            }
            self.account(up, true);
        }
    }

    /// One lane of an instance: its first job (the one it was launched for), then queued
    /// jobs while the instance takes them. An instance that has run a job is checked before
    /// each next one; one that fails the check is retired and the job goes back to the queue.
    async fn lane(&self, host: &Host, first: &Cell<Option<FirstJob>>, on_spot: bool) {
        loop {
            let (j, plan, ui, attempt) = match first.take() {
                Some(f) => f,
                None => {
                    if !host.open() {
                        return;
                    }
                    let Some(j) = self.take(Some(&host.id), on_spot) else {
                        return;
                    };
                    let (p, u, a) = self.begin(j, Some(&host.id));
                    (j, p, u, a)
                }
            };
            if host.used() {
                let checked = tokio::select! {
                    c = host.ready_for(&plan, self.cloud) => c,
                    _ = self.interrupts.reached(1) => Err("the batch is stopping".to_string()),
                };
                if let Err(why) = checked {
                    // (Stopping, it is retired with the rest: nothing to say.)
                    if host.retire(&why) && self.interrupts.count() == 0 {
                        self.retired(host, &why);
                    }
                    self.give_back(j, &ui, &host.id, &why);
                    return;
                }
            }
            let requested = plan.launch.spot;
            // Written down before the job is sent: whoever looks at the instance (another
            // workstation's status, list, cleanup) finds the job it runs.
            let ran = match self
                .records
                .assign(&host.id, &self.jobs[j], &plan, attempt)
                .await
            {
                Ok(a) => a.spot,
                Err(e) => {
                    let report = lifecycle::not_started(&plan, self.cloud, &host.id, e.to_string());
                    let market = Market {
                        requested,
                        ran: false,
                        notice: None,
                        resume_asked: resume::asked(&plan),
                    };
                    self.finish(j, report, &ui, market);
                    continue;
                }
            };
            let shared = host.start(j, &plan);
            if let Some(spend) = &self.spend {
                let now = std::time::SystemTime::now();
                spend.job_started(&self.jobs[j].job_id, attempt, &host.id, now);
            }
            let (report, back) = lifecycle::run_on(
                &plan,
                &host.id,
                shared,
                &self.watch,
                self.cloud,
                &ui,
                self.interrupts,
                self.registry,
            )
            .await;
            if let Some(why) = host.finish(j, &back) {
                self.retired(host, &why);
            }
            if let Some(spend) = &self.spend {
                let failed = report.outcome != Outcome::Succeeded;
                let now = std::time::SystemTime::now();
                spend.job_ended(&self.jobs[j].job_id, attempt, &host.id, now, failed);
            }
            let word = outcome_word(report.outcome);
            if let Err(e) = self
                .records
                .ended(&host.id, &self.jobs[j].job_id, attempt, word)
                .await
            {
                ui.note(e.to_string());
            }
            let market = Market {
                requested,
                ran,
                notice: resume::notice(self.cloud, &plan, &report).await,
                resume_asked: resume::asked(&plan),
            };
            self.finish(j, report, &ui, market);
        }
    }

    /// Say that an instance takes no new job, and why.
    fn retired(&self, host: &Host, why: &str) {
        self.view.note(&format!(
            "run-render: {}: {why}; it takes no new job and ends once its running jobs have",
            host.id
        ));
    }

    /// A job taken for an instance that could not take it: back to the front of the queue,
    /// no attempt spent.
    fn give_back(&self, j: usize, ui: &Ui, id: &str, why: &str) {
        ui.note(format!(
            "{id} cannot take it ({why}); it goes back to the queue"
        ));
        {
            let mut st = self.lock();
            st.running = st.running.saturating_sub(1);
            st.now.remove(&j);
            st.queue.push_front(j);
        }
        ui.finish();
        self.update_view();
    }

    /// Count an instance: launched (once), and its hours when it ended.
    fn account(&self, up: Instant, ended: bool) {
        let mut st = self.lock();
        if ended {
            st.stats.instance_hours += up.elapsed().as_secs_f64() / 3600.0;
        } else {
            st.stats.instances_launched += 1;
        }
    }
}

/// An instance's first job, taken when it was launched: (job, plan, view line, attempt).
type FirstJob = (usize, crate::plan::Plan, Ui, u32);

/// Spot asked for, spot run on (EC2's word), AWS's interruption notice if one came, and
/// whether the attempt was told to resume.
#[derive(Debug, Clone)]
struct Market {
    requested: bool,
    ran: bool,
    notice: Option<rtb_model::checkpoint::Interrupted>,
    resume_asked: bool,
}

/// The queue position of the next job an instance may take. On a spot instance, only a job
/// whose next attempt may run on spot: a job falling back to on demand after spot trouble
/// waits for an instance launched for it on demand.
fn pick(queue: &VecDeque<usize>, next_spot: &[bool], on_spot: bool) -> Option<usize> {
    queue
        .iter()
        .position(|&j| !on_spot || next_spot.get(j).copied().unwrap_or(false))
}

pub fn outcome_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Succeeded => "succeeded",
        Outcome::JobFailed => "failed",
        Outcome::TimedOut => "timed out",
        Outcome::Interrupted => "interrupted",
        Outcome::PreflightFailed => "preflight failed",
        Outcome::LaunchFailed => "launch failed",
        Outcome::AgentNeverOnline => "agent never online",
        Outcome::RemoteFailed => "could not start",
        Outcome::InstanceLost => "instance lost",
        Outcome::Unknown => "unknown (AWS stopped answering)",
        Outcome::Detached => "detached",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_falling_back_to_on_demand_is_never_taken_by_a_spot_instance() {
        /// (queue, next attempt may use spot, the instance is spot, the job taken)
        type Case<'a> = (&'a [usize], &'a [bool], bool, Option<usize>);
        let table: &[Case] = &[
            (&[0, 1], &[true, true], true, Some(0)),
            (&[0, 1], &[false, true], true, Some(1)),
            (&[0, 1], &[false, false], true, None),
            (&[0, 1], &[false, true], false, Some(0)),
            (&[1, 0], &[true, false], false, Some(1)),
            (&[], &[], false, None),
        ];
        for (queue, spot, on_spot, want) in table {
            let q: VecDeque<usize> = queue.iter().copied().collect();
            let got = pick(&q, spot, *on_spot).map(|at| q[at]);
            assert_eq!(got, *want, "{queue:?} {spot:?} on spot: {on_spot}");
        }
    }
}
