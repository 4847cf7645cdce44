//! Following a job that runs on an instance: its log from S3, its command's status from SSM,
//! the instance's state from EC2, until the job ends; a stop on a signal or at the deadline.
//! Used by `run` and by `attach` (which follows a job another client started).

use std::time::{Duration, SystemTime};

use rtb_model::JobRecords;
use tokio::time::{interval, sleep_until, MissedTickBehavior};

use super::{push_error, set, Leave};
use crate::batch::watch::Seen;
use crate::cloud::rate::{Family, Need};
use crate::cloud::{Cloud, InvocationStatus};
use crate::engine::ec2::{remote, script};
use crate::logs::Tail;
use crate::outcome::{self, Facts, Stopping};
use crate::patience::Patience;
use crate::plan::{Plan, Work};
use crate::report::{exit, Outcome, Report};
use crate::signals::Interrupts;
use crate::ui::Ui;

/// How often the command's status is read: often at first, so a short job's end is seen at
/// once (this wait is most of the client's own overhead), then once a second.
const STATUS_FAST: Duration = Duration::from_millis(250);
const STATUS_SLOW: Duration = Duration::from_millis(1000);
const STATUS_FAST_FOR: Duration = Duration::from_secs(30);
/// How often the next log chunk is looked for (the runner writes one at most every 250 ms for
/// a single run, 1 s for a detached one; a look is one GET): a line is on the screen about
/// 0.2-0.4 s after the job printed it (bench/client.sh).
const LOG_EVERY: Duration = Duration::from_millis(200);
/// How often the instance itself is checked while the job runs: an instance that vanishes
/// under the job (spot reclaim, the console, a crash) is seen within seconds.
const STATE_EVERY: Duration = Duration::from_secs(2);
/// A batch follows many jobs at once: each reads its status, log and instance less often (the
/// client's CPU and the API's request rate grow with the jobs followed), and its end is seen
/// within half a second.
const BATCH_STATUS: Duration = Duration::from_millis(500);
const BATCH_LOG_EVERY: Duration = Duration::from_millis(1000);
const BATCH_STATE_EVERY: Duration = Duration::from_secs(4);
/// A job its pool's watch follows (batch/watch.rs) asks AWS nothing for its status or its
/// instance until the watch has seen it end: it reads the watch (no call) 10 times a second,
/// so its lane takes the next job as soon as the watch knows, and its log
/// (written to its log file; only its last line is on the screen) every second while that
/// line is in view on the terminal, else every few seconds, all of it at the end.
const WATCHED_READ: Duration = Duration::from_millis(100);
const WATCHED_LOG_ON_SCREEN: Duration = Duration::from_secs(1);
const WATCHED_LOG_EVERY: Duration = Duration::from_secs(5);
/// How long a watched job that recorded its end waits for SSM's list to show its command
/// ended before it asks SSM itself.
const RECORDED_WAIT: Duration = Duration::from_secs(15);
/// How many times a wait that ended without the job's end (SSM's 48 h limit, an agent
/// restart) is taken up again.
const REATTACH_MAX: u32 = 5;
/// SSM's own output cap for GetCommandInvocation.
const SSM_OUTPUT_CAP: usize = 24_000;

/// What following a job needs to know of it: from its plan (`run`), or from the registry,
/// its tags and S3 (`attach`, `stop`).
#[derive(Debug, Clone)]
pub struct JobRef {
    pub job_id: String,
    /// A container job (the runner's records and codes), not a raw shell command.
    pub container: bool,
    pub records: Option<JobRecords>,
    pub deadline: Option<SystemTime>,
    /// A shell job's --timeout, which the client enforces.
    pub timeout: Option<Duration>,
    pub keep: bool,
    pub api_patience: Duration,
    /// One of a batch's jobs (followed at the batch's pace).
    pub in_batch: bool,
    /// The pool's watch, which follows all of its jobs at once (batch/watch.rs).
    pub watch: Option<crate::batch::watch::Watch>,
}

impl JobRef {
    pub fn of(plan: &Plan) -> JobRef {
        let records = match &plan.work {
            Work::Container(c) => c.records.clone(),
            Work::Shell(_) => None,
        };
        JobRef {
            job_id: plan.job_id.clone(),
            container: matches!(plan.work, Work::Container(_)),
            records,
            deadline: plan.deadline,
            timeout: plan.timeout,
            keep: plan.keep,
            api_patience: plan.api_patience,
            in_batch: plan.batch.is_some(),
            watch: None,
        }
    }
}

impl JobRef {
    /// What the termination policy needs of the job.
    pub fn terms(&self) -> crate::termination::Terms {
        crate::termination::Terms {
            keep: self.keep,
            deadline: self.deadline,
        }
    }
}

/// SSM may run the script until the instance's own deadline; without one, its maximum.
pub fn execution_limit(deadline: Option<SystemTime>) -> Duration {
    deadline
        .and_then(|d| d.duration_since(SystemTime::now()).ok())
        .unwrap_or(Duration::from_secs(crate::cloud::MAX_EXECUTION_SECS))
}

/// Why the follow loop ended.
enum Ended {
    /// The command ended with this status and exit code.
    Command(crate::cloud::Invocation),
    /// The instance went away under the job.
    Gone(String),
    /// AWS stopped answering for longer than our patience.
    NoAnswer(String),
    /// A second signal during a stop.
    Hurry,
    /// Waiting could not go on (the stop took too long, a re-attach failed).
    Other(String),
}

/// Stream the log and wait for the command to end, stopping it on a signal or timeout.
#[allow(clippy::too_many_arguments)]
pub async fn follow(
    job: &JobRef,
    cloud: &Cloud,
    ui: &Ui,
    interrupts: &Interrupts,
    id: &str,
    mut command: String,
    patience: &Patience,
    r: &mut Report,
) -> Leave {
    let container = job.container;
    let records = job.records.clone();
    let mut tail = records.map(Tail::new);
    let mut log_trouble = false;
    let started = tokio::time::Instant::now();
    // Shell commands: the client enforces --timeout. Container jobs: the runner does (its
    // timeout starts after the input copy); the client steps in only at the instance's
    // own deadline.
    let limit = if container {
        job.deadline
            .map(|d| started + d.duration_since(SystemTime::now()).unwrap_or_default())
    } else {
        job.timeout.map(|t| started + t)
    };
    let mut stopping: Option<(Stopping, tokio::time::Instant)> = None;
    let mut reattached = 0;
    let watched = job
        .watch
        .as_ref()
        .map(|w| w.follow(&job.job_id, id, &command, job.records.clone()));
    let mut recorded_at = None;
    let (mut status_tick, mut log_tick, mut state_tick) = if watched.is_some() {
        (
            interval(WATCHED_READ),
            interval(WATCHED_LOG_ON_SCREEN),
            interval(BATCH_STATE_EVERY),
        )
    } else if job.in_batch {
        (
            interval(BATCH_STATUS),
            interval(BATCH_LOG_EVERY),
            interval(BATCH_STATE_EVERY),
        )
    } else {
        (
            interval(STATUS_FAST),
            interval(LOG_EVERY),
            interval(STATE_EVERY),
        )
    };
    for t in [&mut status_tick, &mut log_tick, &mut state_tick] {
        t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    }
    let far = started + Duration::from_secs(10 * 365 * 24 * 3600);
    let mut log_read_at: Option<tokio::time::Instant> = None;

    let ended: Ended = loop {
        tokio::select! {
            _ = log_tick.tick(), if tail.is_some() => {
                // A watched job off the screen: its log only every few seconds.
                if watched.is_some()
                    && !ui.on_screen()
                    && log_read_at.is_some_and(|at| at.elapsed() < WATCHED_LOG_EVERY)
                {
                    continue;
                }
                log_read_at = Some(tokio::time::Instant::now());
                if let Some(t) = tail.as_mut() {
                    // A log read does not count toward the patience, but while AWS fails it may
                    // not hold up the calls that do.
                    if let Some(Err(e)) = patience.bounded(t.poll(cloud, ui)).await {
                        if !log_trouble {
                            ui.note(format!("cannot read the live log yet ({e}); will keep trying"));
                            log_trouble = true;
                        }
                    }
                }
            }
            _ = status_tick.tick() => {
                // (A watched job's reads cost no call: they stay fast.)
                if watched.is_none() && started.elapsed() > STATUS_FAST_FOR && status_tick.period() == STATUS_FAST {
                    status_tick = interval(STATUS_SLOW);
                    status_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
                }
                // Watched: no call until the watch has seen the job end, and none at all when
                // the runner recorded its end and SSM lists its command as ended.
                match watched.as_ref().map(|w| w.seen()) {
                    Some(Seen::Running) => continue,
                    Some(Seen::Gone(state)) => break Ended::Gone(state),
                    Some(Seen::Recorded(Some(status))) if status.is_done() => {
                        if let Some(inv) = recorded_end(tail.as_ref(), cloud, status).await {
                            break Ended::Command(inv);
                        }
                    }
                    Some(Seen::Recorded(_)) => {
                        // Not listed as ended yet: ask SSM itself only if that takes long.
                        let since = *recorded_at.get_or_insert_with(tokio::time::Instant::now);
                        if since.elapsed() < RECORDED_WAIT {
                            continue;
                        }
                    }
                    Some(Seen::Ended(_)) | None => {}
                }
                // When the client's budget of SSM calls runs low (rate.rs), skip this look
                // rather than wait for a token and hold up the log.
                if !cloud.budget().ready(Family::SsmRead, Need::Poll) {
                    continue;
                }
                let inv = match patience.call("SSM GetCommandInvocation", cloud.invocation(&command, id)).await {
                    Ok(inv) => inv,
                    Err(e) => {
                        if patience.failures() == 1 {
                            ui.note(format!("cannot read the command's status ({e}); retrying"));
                        }
                        if patience.exhausted() {
                            break Ended::NoAnswer(patience.last_error());
                        }
                        continue;
                    }
                };
                let Some(inv) = inv.filter(|i| i.status.is_done()) else { continue };
                // The wait ended without success: was it the job's end? The instance may have
                // gone (the command then reads Failed), or the wait itself was cut short (SSM's
                // 48 h limit, an agent restart: no exit code) while the container runs on.
                if inv.status != InvocationStatus::Success {
                    match patience.call("EC2 DescribeInstances", cloud.instance_state(id)).await {
                        Ok(Some(s)) if s.is_gone() => break Ended::Gone(s.describe()),
                        Ok(None) => break Ended::Gone("no longer known to EC2".into()),
                        _ => {}
                    }
                }
                let cut_short = inv.status == InvocationStatus::TimedOut
                    || (inv.response_code < 0 && inv.status != InvocationStatus::Success);
                if container && cut_short && stopping.is_none() && reattached < REATTACH_MAX {
                    ui.note(format!(
                        "the wait for the job ended without its exit code (SSM status {:?}); waiting for the job again",
                        inv.status
                    ));
                    reattached += 1;
                    let again = script::reattach_script(&job.job_id, job.in_batch);
                    match remote::send(cloud, id, &again, execution_limit(job.deadline),
                        &format!("run-render re-attach {}", job.job_id), patience).await {
                        Ok(c) => {
                            if let Some(w) = &watched {
                                w.command(&c);
                            }
                            command = c
                        }
                        Err(remote::RemoteError::NoAnswer { last, .. }) => break Ended::NoAnswer(last),
                        Err(e) => break Ended::Other(format!("cannot wait for the job again: {e}")),
                    }
                    continue;
                }
                break Ended::Command(inv);
            }
            _ = state_tick.tick(), if watched.is_none() => {
                match patience.call("EC2 DescribeInstances", cloud.instance_state(id)).await {
                    Ok(Some(s)) if s.is_gone() => break Ended::Gone(s.describe()),
                    Ok(None) => break Ended::Gone("no longer known to EC2".into()),
                    Ok(Some(_)) => {}
                    Err(_) => if patience.exhausted() {
                        break Ended::NoAnswer(patience.last_error());
                    }
                }
            }
            _ = interrupts.reached(1), if stopping.is_none() => {
                ui.note("stopping the job: saving its outputs, then terminating (press Ctrl-C again to terminate at once)");
                let until = begin_stop(job, cloud, ui, id, &command, patience).await;
                if patience.exhausted() {
                    break Ended::NoAnswer(patience.last_error());
                }
                stopping = Some((Stopping::Interrupted, until));
            }
            _ = sleep_until(limit.unwrap_or(far)), if limit.is_some() && stopping.is_none() => {
                ui.note(if container {
                    "the instance reached its deadline (--timeout + --deadline-margin) with the job still running; stopping it".to_string()
                } else {
                    format!("the command ran past its --timeout of {}; stopping it",
                        humantime::format_duration(job.timeout.unwrap_or_default()))
                });
                let until = begin_stop(job, cloud, ui, id, &command, patience).await;
                if patience.exhausted() {
                    break Ended::NoAnswer(patience.last_error());
                }
                stopping = Some((Stopping::TimedOut, until));
            }
            _ = interrupts.reached(2), if stopping.map(|s| s.0) == Some(Stopping::Interrupted) => {
                break Ended::Hurry;
            }
            _ = sleep_until(stopping.map(|s| s.1).unwrap_or(far)), if stopping.is_some() => {
                break Ended::Other("the job did not stop in time; terminating the instance".into());
            }
        }
    };

    // The rest of the log (the runner wrote its last chunk before its record), and the
    // record itself: the proof of how the job ended and that its outputs were saved.
    if !matches!(ended, Ended::Hurry | Ended::NoAnswer(_)) {
        if let Some(t) = tail.as_mut() {
            let _ = t.poll(cloud, ui).await;
            r.result = t.result(cloud).await.ok().flatten();
        }
    }
    if let Some(t) = &tail {
        r.log_lines = t.lines;
    }

    let stopping = stopping.map(|s| s.0);
    let mut facts = Facts {
        container,
        stopping,
        result: r.result.as_ref(),
        timeout: job.timeout,
        ..Facts::default()
    };
    let script_error;
    match ended {
        Ended::Hurry => {
            set(
                r,
                Outcome::Interrupted,
                exit::INTERRUPTED,
                "interrupted twice",
            );
            return Leave::Now;
        }
        Ended::NoAnswer(last) => {
            set(
                r,
                Outcome::Unknown,
                exit::UNCONFIRMED,
                format!(
                    "gave up following the job: AWS has not answered for {} ({last})",
                    humantime::format_duration(patience.limit())
                ),
            );
            return Leave::Unreachable;
        }
        Ended::Other(why) if stopping.is_none() => {
            set(r, Outcome::RemoteFailed, exit::REMOTE, why);
            return Leave::Normally;
        }
        Ended::Other(_) => {}
        Ended::Gone(state) => facts.instance_gone = Some(state),
        Ended::Command(inv) => {
            if tail.as_ref().is_none_or(|t| t.lines == 0) {
                show_ssm_output(ui, &inv);
            }
            script_error = inv.stderr.lines().last().map(str::to_string);
            facts.script_error = script_error.as_deref();
            facts.ended = Some((inv.status, inv.response_code));
        }
    }
    let (outcome, code, why) = outcome::classify(&facts);
    r.outcome = outcome;
    r.exit_code = code;
    if let Some(why) = why {
        push_error(r, why);
    }
    Leave::Normally
}

/// A watched job's end from its result record and the status SSM listed for its command: its
/// exit code is the runner's (the job script exits with the container's code).
async fn recorded_end(
    tail: Option<&Tail>,
    cloud: &Cloud,
    status: InvocationStatus,
) -> Option<crate::cloud::Invocation> {
    let result = tail?.result(cloud).await.ok().flatten()?;
    Some(crate::cloud::Invocation {
        status,
        response_code: result.exit_code,
        stdout: String::new(),
        stderr: String::new(),
    })
}

/// Start stopping the job; returns when to give up waiting for it.
pub async fn begin_stop(
    job: &JobRef,
    cloud: &Cloud,
    ui: &Ui,
    id: &str,
    command: &str,
    patience: &Patience,
) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    match job.container {
        true => {
            // docker stop: the runner stops the interpreter and uploads what exists; the main
            // command then ends with the runner's exit code. It gets as long as the upload
            // needs, up to shortly before the instance's own deadline.
            let grace = script::stop_grace(job.deadline, SystemTime::now());
            let sent = remote::send(
                cloud,
                id,
                &script::stop_script(&job.job_id, grace),
                Duration::from_secs(120),
                "run-render stop",
                patience,
            )
            .await;
            match sent {
                Ok(_) => now + grace + Duration::from_secs(30),
                Err(e) => {
                    ui.note(format!(
                        "could not send the stop command ({e}): the job's outputs are NOT being saved"
                    ));
                    now
                }
            }
        }
        false => {
            // Some SSM implementations cannot cancel; terminating ends the command anyway.
            let _ = patience
                .call("SSM CancelCommand", cloud.cancel(command, id))
                .await;
            now + Duration::from_secs(5)
        }
    }
}

/// When there is no S3 log (no --output, or the container never started), show what SSM
/// kept of the script's output.
pub fn show_ssm_output(ui: &Ui, inv: &crate::cloud::Invocation) {
    for line in inv.stdout.lines().chain(inv.stderr.lines()) {
        ui.log_line(line);
    }
    if inv.stdout.len() >= SSM_OUTPUT_CAP {
        ui.note(
            "SSM keeps only the first 24,000 characters of output; use --output for the whole log",
        );
    }
}
