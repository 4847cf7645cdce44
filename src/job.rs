//! One job's lifecycle: preflight -> launch -> running -> agent online -> run and stream ->
//! terminate. Once an instance exists, every way out (success, failure, timeout, Ctrl-C,
//! an AWS error) goes through the termination step at the end of [`run`].

use std::time::{Duration, Instant, SystemTime};

use tokio::time::{interval, sleep_until, MissedTickBehavior};

use crate::cloud::{Cloud, InvocationStatus, LaunchError};
use crate::instance::Instance;
use crate::launch::{self, LaunchFailure};
use crate::logs::Tail;
use crate::outcome::{self, Facts, Stopping};
use crate::patience::Patience;
use crate::plan::{Plan, Work};
use crate::report::{exit, InstanceFate, Outcome, Phases, Report};
use crate::signals::Interrupts;
use crate::ui::Ui;
use crate::{preflight, remote, script};

/// How long an instance may take to reach `running`.
const BOOT_LIMIT: Duration = Duration::from_secs(10 * 60);
/// How often the command's status is read: often at first, so a short job's end is seen at
/// once (this wait is most of the client's own overhead), then once a second.
const STATUS_FAST: Duration = Duration::from_millis(250);
const STATUS_SLOW: Duration = Duration::from_millis(1000);
const STATUS_FAST_FOR: Duration = Duration::from_secs(30);
/// How often new log chunks are looked for (chunks are written ~1 s apart).
const LOG_EVERY: Duration = Duration::from_millis(500);
/// How often the instance itself is checked while the job runs: an instance that vanishes
/// under the job (spot reclaim, the console, a crash) is seen within seconds.
const STATE_EVERY: Duration = Duration::from_secs(2);
/// How many times a wait that ended without the job's end (SSM's 48 h limit, an agent
/// restart) is taken up again.
const REATTACH_MAX: u32 = 5;
/// SSM's own output cap for GetCommandInvocation.
const SSM_OUTPUT_CAP: usize = 24_000;

/// Run the plan to the end and report.
pub async fn run(plan: &Plan, cloud: &Cloud, ui: &Ui, interrupts: &Interrupts) -> Report {
    let t0 = Instant::now();
    let mut r = new_report(plan, cloud);

    ui.phase("preflight: credentials, AMI, instance profile, buckets");
    let t = Instant::now();
    let checked = tokio::select! {
        c = preflight::check(plan, cloud) => c,
        _ = interrupts.reached(1) => {
            set(&mut r, Outcome::Interrupted, exit::INTERRUPTED, "interrupted before launch; nothing was launched");
            return finish(r, t0);
        }
    };
    r.phases.preflight_s = Some(t.elapsed().as_secs_f64());
    let checked = match checked {
        Ok(c) => c,
        Err(e) => {
            set(
                &mut r,
                Outcome::PreflightFailed,
                exit::PREFLIGHT,
                e.to_string(),
            );
            return finish(r, t0);
        }
    };
    ui.done("preflight passed");

    // The launch is not interrupted half-way: its answer (or the lookup by its token) is the
    // only sure way to learn the instance id. A signal during it is handled right after.
    let t = Instant::now();
    let user_data = script::user_data(plan);
    let types = &plan.launch.instance_types;
    let note = |m: String| ui.note(m);
    let mut launched = None;
    for (variant, instance_type) in types.iter().enumerate() {
        ui.phase(format!(
            "launching a {instance_type} from {}",
            plan.launch.ami
        ));
        let attempt = launch::launch(
            cloud,
            &plan.launch,
            variant,
            user_data.as_deref(),
            checked.root_device.as_deref(),
            &note,
        )
        .await;
        match attempt {
            Err(LaunchFailure::Refused(LaunchError::Capacity(e))) if variant + 1 < types.len() => {
                ui.note(format!(
                    "no capacity for {instance_type} ({}); trying {}",
                    e.message,
                    types[variant + 1]
                ));
            }
            other => {
                r.instance_type = instance_type.clone();
                launched = Some(other);
                break;
            }
        }
    }
    r.phases.launch_s = Some(t.elapsed().as_secs_f64());
    let instance = match launched {
        Some(Ok(l)) => {
            if l.found_by_token {
                ui.note(format!(
                    "found {} by its launch token: the launch had happened",
                    l.id
                ));
            }
            Instance::adopt(cloud, l.id)
        }
        Some(Err(e @ LaunchFailure::Unconfirmed { .. })) => {
            set(
                &mut r,
                Outcome::LaunchFailed,
                exit::UNCONFIRMED,
                e.to_string(),
            );
            r.instance = InstanceFate::Unconfirmed;
            return finish(r, t0);
        }
        Some(Err(e)) => {
            set(&mut r, Outcome::LaunchFailed, exit::LAUNCH, e.to_string());
            return finish(r, t0);
        }
        None => {
            set(
                &mut r,
                Outcome::LaunchFailed,
                exit::LAUNCH,
                "no instance type to launch",
            );
            return finish(r, t0);
        }
    };
    r.instance_id = Some(instance.id.clone());
    ui.done(format!("launched {}", instance.id));

    let leave = drive(plan, cloud, ui, interrupts, &instance, &mut r).await;
    end(plan, cloud, ui, interrupts, instance, leave, &mut r).await;
    finish(r, t0)
}

/// How the client leaves the instance once the job part is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leave {
    /// Terminate and confirm (or keep, with --keep).
    Normally,
    /// A second signal: request termination and exit at once.
    Now,
    /// AWS stopped answering: nothing more can be done from here. The job goes on, and the
    /// instance ends itself after it (or at its deadline).
    Unreachable,
}

/// The end of every path that launched something: the termination policy.
async fn end(
    plan: &Plan,
    cloud: &Cloud,
    ui: &Ui,
    interrupts: &Interrupts,
    instance: Instance,
    leave: Leave,
    r: &mut Report,
) {
    let id = instance.id.clone();
    match leave {
        Leave::Unreachable => {
            instance.abandon();
            r.instance = InstanceFate::Unconfirmed;
            r.exit_code = exit::UNCONFIRMED;
            push_error(r, left_running(plan, &id));
        }
        Leave::Now => {
            ui.note(format!("terminating {id} without waiting"));
            hurried_termination(instance, r).await;
        }
        Leave::Normally if plan.keep && r.outcome != Outcome::Interrupted => {
            instance.keep();
            r.instance = InstanceFate::Kept;
            ui.note(format!("keeping {id} running, as asked (--keep)"));
        }
        Leave::Normally => {
            ui.phase(format!("terminating {id}"));
            let t = Instant::now();
            let seen = interrupts.count();
            let confirmed = tokio::select! {
                done = instance.terminate() => Some(done),
                _ = interrupts.reached(seen + 1) => None,
            };
            match confirmed {
                Some(Ok(_)) => {
                    r.instance = InstanceFate::Terminated;
                    r.phases.terminate_s = Some(t.elapsed().as_secs_f64());
                    ui.done(format!("{id} terminated"));
                }
                Some(Err(e)) => {
                    r.instance = InstanceFate::Unconfirmed;
                    r.exit_code = exit::UNCONFIRMED;
                    push_error(r, e.to_string());
                }
                None => {
                    // Asked again while waiting: make sure the request is out, then go.
                    hurried_termination(Instance::adopt(cloud, id), r).await;
                }
            }
        }
    }
}

/// Request termination, look once, and leave: exit 69 unless EC2 has accepted it.
async fn hurried_termination(instance: Instance, r: &mut Report) {
    let id = instance.id.clone();
    let requested = instance.request_termination().await;
    instance.abandon();
    match requested {
        Ok(true) => {
            r.instance = InstanceFate::Terminated;
            push_error(r, format!("{id} is terminating (not waiting for it)"));
        }
        Ok(false) => {
            r.instance = InstanceFate::Unconfirmed;
            r.exit_code = exit::UNCONFIRMED;
            push_error(
                r,
                format!(
                    "termination of {id} requested; not waiting for it, so it is not confirmed"
                ),
            );
        }
        Err(e) => {
            r.instance = InstanceFate::Unconfirmed;
            r.exit_code = exit::UNCONFIRMED;
            push_error(r, format!("could not request termination of {id}: {e}"));
        }
    }
}

/// What happens to an instance the client can no longer reach.
fn left_running(plan: &Plan, id: &str) -> String {
    let deadline = match plan.deadline {
        Some(d) => format!(
            "at the latest at its deadline, {}",
            humantime::format_rfc3339_seconds(d)
        ),
        None => "at the latest at the AMI's maximum lifetime (no --timeout)".to_string(),
    };
    let after = if plan.keep {
        String::new()
    } else {
        format!(
            "it powers itself off within {} of the job's end, ",
            humantime::format_duration(script::AFTER_JOB)
        )
    };
    format!(
        "instance {id} may still be running the job: {after}{deadline}. Check it with \
         `aws ec2 describe-instances --instance-ids {id}`, end it with \
         `aws ec2 terminate-instances --instance-ids {id}`"
    )
}

/// Boot, agent, send, follow.
async fn drive(
    plan: &Plan,
    cloud: &Cloud,
    ui: &Ui,
    interrupts: &Interrupts,
    instance: &Instance,
    r: &mut Report,
) -> Leave {
    let id = instance.id.as_str();
    let mut patience = Patience::new(plan.api_patience);

    ui.phase(format!("waiting for {id} to be running"));
    let t = Instant::now();
    let booted = tokio::select! {
        b = instance.wait_running(BOOT_LIMIT, &mut patience) => b,
        _ = interrupts.reached(1) => {
            set(r, Outcome::Interrupted, exit::INTERRUPTED, "interrupted while the instance booted");
            return Leave::Normally;
        }
    };
    r.phases.boot_s = Some(t.elapsed().as_secs_f64());
    if let Err(e) = booted {
        set(r, Outcome::LaunchFailed, exit::LAUNCH, e.to_string());
        return Leave::Normally;
    }
    ui.done(format!("{id} is running"));

    ui.phase(format!("waiting for the SSM agent on {id}"));
    let t = Instant::now();
    let online = tokio::select! {
        o = remote::wait_for_agent(cloud, id, plan.agent_timeout, &mut patience) => o,
        _ = interrupts.reached(1) => {
            set(r, Outcome::Interrupted, exit::INTERRUPTED, "interrupted while waiting for the SSM agent");
            return Leave::Normally;
        }
    };
    r.phases.agent_s = Some(t.elapsed().as_secs_f64());
    if let Err(e) = online {
        let (outcome, code) = match e {
            remote::RemoteError::AgentNeverOnline { .. } => {
                (Outcome::AgentNeverOnline, exit::AGENT)
            }
            _ => (Outcome::RemoteFailed, exit::REMOTE),
        };
        set(r, outcome, code, e.to_string());
        return Leave::Normally;
    }
    ui.done("SSM agent online");

    let script = script::job_script(plan, cloud.region());
    let comment = format!("run-render job {}", plan.job_id);
    let command = tokio::select! {
        c = remote::send(cloud, id, &script, execution_limit(plan), &comment, &mut patience) => c,
        _ = interrupts.reached(1) => {
            set(r, Outcome::Interrupted, exit::INTERRUPTED, "interrupted before the job started");
            return Leave::Normally;
        }
    };
    let command = match command {
        Ok(c) => c,
        Err(e) => {
            set(r, Outcome::RemoteFailed, exit::REMOTE, e.to_string());
            return Leave::Normally;
        }
    };
    ui.phase(match &plan.work {
        Work::Container(c) => format!("running the job in {} on {id}", c.image),
        Work::Shell(_) => format!("running the shell command on {id}"),
    });
    let t = Instant::now();
    let leave = follow(plan, cloud, ui, interrupts, id, command, patience, r).await;
    r.phases.run_s = Some(t.elapsed().as_secs_f64());
    leave
}

/// SSM may run the script until the instance's own deadline; without one, its maximum.
fn execution_limit(plan: &Plan) -> Duration {
    plan.deadline
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
async fn follow(
    plan: &Plan,
    cloud: &Cloud,
    ui: &Ui,
    interrupts: &Interrupts,
    id: &str,
    mut command: String,
    mut patience: Patience,
    r: &mut Report,
) -> Leave {
    let container = matches!(plan.work, Work::Container(_));
    let records = match &plan.work {
        Work::Container(c) => c.records.clone(),
        Work::Shell(_) => None,
    };
    let mut tail = records.map(Tail::new);
    let mut log_trouble = false;
    let started = tokio::time::Instant::now();
    // Shell commands: the client enforces --timeout. Container jobs: the runner does (its
    // timeout starts after the input copy); the client steps in only at the instance's
    // own deadline.
    let limit = match plan.work {
        Work::Shell(_) => plan.timeout.map(|t| started + t),
        Work::Container(_) => plan
            .deadline
            .map(|d| started + d.duration_since(SystemTime::now()).unwrap_or_default()),
    };
    let mut stopping: Option<(Stopping, tokio::time::Instant)> = None;
    let mut reattached = 0;
    let (mut status_tick, mut log_tick, mut state_tick) = (
        interval(STATUS_FAST),
        interval(LOG_EVERY),
        interval(STATE_EVERY),
    );
    for t in [&mut status_tick, &mut log_tick, &mut state_tick] {
        t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    }
    let far = started + Duration::from_secs(10 * 365 * 24 * 3600);

    let ended: Ended = loop {
        tokio::select! {
            _ = log_tick.tick(), if tail.is_some() => {
                if let Some(t) = tail.as_mut() {
                    if let Err(e) = t.poll(cloud, ui).await {
                        if !log_trouble {
                            ui.note(format!("cannot read the live log yet ({e}); will keep trying"));
                            log_trouble = true;
                        }
                    }
                }
            }
            _ = status_tick.tick() => {
                if started.elapsed() > STATUS_FAST_FOR && status_tick.period() == STATUS_FAST {
                    status_tick = interval(STATUS_SLOW);
                    status_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
                }
                let inv = match cloud.invocation(&command, id).await {
                    Ok(inv) => { patience.ok(); inv }
                    Err(e) => {
                        if patience.first_failure() {
                            ui.note(format!("cannot read the command's status ({e}); retrying"));
                        }
                        if patience.failed(e) {
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
                    match cloud.instance_state(id).await {
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
                    let again = script::reattach_script(&plan.job_id, plan.deadline, plan.keep);
                    match remote::send(cloud, id, &again, execution_limit(plan),
                        &format!("run-render re-attach {}", plan.job_id), &mut patience).await {
                        Ok(c) => command = c,
                        Err(remote::RemoteError::NoAnswer { last, .. }) => break Ended::NoAnswer(last),
                        Err(e) => break Ended::Other(format!("cannot wait for the job again: {e}")),
                    }
                    continue;
                }
                break Ended::Command(inv);
            }
            _ = state_tick.tick() => {
                match cloud.instance_state(id).await {
                    Ok(Some(s)) if s.is_gone() => break Ended::Gone(s.describe()),
                    Ok(None) => break Ended::Gone("no longer known to EC2".into()),
                    Ok(Some(_)) => patience.ok(),
                    Err(e) => if patience.failed(e) {
                        break Ended::NoAnswer(patience.last_error());
                    }
                }
            }
            _ = interrupts.reached(1), if stopping.is_none() => {
                ui.note("stopping the job: saving its outputs, then terminating (press Ctrl-C again to terminate at once)");
                stopping = Some((Stopping::Interrupted, begin_stop(plan, cloud, ui, id, &command, &mut patience).await));
            }
            _ = sleep_until(limit.unwrap_or(far)), if limit.is_some() && stopping.is_none() => {
                ui.note(match plan.work {
                    Work::Shell(_) => format!("the command ran past its --timeout of {}; stopping it",
                        humantime::format_duration(plan.timeout.unwrap_or_default())),
                    Work::Container(_) => "the instance reached its deadline (--timeout + --deadline-margin) with the job still running; stopping it".to_string(),
                });
                stopping = Some((Stopping::TimedOut, begin_stop(plan, cloud, ui, id, &command, &mut patience).await));
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
        timeout: plan.timeout,
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

/// Start stopping the job; returns when to give up waiting for it.
async fn begin_stop(
    plan: &Plan,
    cloud: &Cloud,
    ui: &Ui,
    id: &str,
    command: &str,
    patience: &mut Patience,
) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    match &plan.work {
        Work::Container(_) => {
            // docker stop: the runner stops the interpreter and uploads what exists; the main
            // command then ends with the runner's exit code. It gets as long as the upload
            // needs, up to shortly before the instance's own deadline.
            let grace = script::stop_grace(plan.deadline, SystemTime::now());
            let sent = remote::send(
                cloud,
                id,
                &script::stop_script(&plan.job_id, grace),
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
        Work::Shell(_) => {
            // Some SSM implementations cannot cancel; terminating ends the command anyway.
            let _ = cloud.cancel(command, id).await;
            now + Duration::from_secs(5)
        }
    }
}

/// When there is no S3 log (no --output, or the container never started), show what SSM
/// kept of the script's output.
fn show_ssm_output(ui: &Ui, inv: &crate::cloud::Invocation) {
    for line in inv.stdout.lines().chain(inv.stderr.lines()) {
        ui.log_line(line);
    }
    if inv.stdout.len() >= SSM_OUTPUT_CAP {
        ui.note(
            "SSM keeps only the first 24,000 characters of output; use --output for the whole log",
        );
    }
}

fn new_report(plan: &Plan, cloud: &Cloud) -> Report {
    Report {
        job_id: plan.job_id.clone(),
        outcome: Outcome::RemoteFailed,
        exit_code: exit::REMOTE,
        instance_id: None,
        instance: InstanceFate::NotLaunched,
        ami: plan.launch.ami.clone(),
        instance_type: plan
            .launch
            .instance_types
            .first()
            .cloned()
            .unwrap_or_default(),
        region: cloud.region().map(str::to_string),
        output: plan.output.as_ref().map(|o| o.to_string()),
        records: match &plan.work {
            Work::Container(c) => c.records.as_ref().map(|r| r.root().to_string()),
            Work::Shell(_) => None,
        },
        phases: Phases::default(),
        log_lines: 0,
        result: None,
        error: None,
    }
}

fn set(r: &mut Report, outcome: Outcome, code: i32, error: impl Into<String>) {
    r.outcome = outcome;
    r.exit_code = code;
    push_error(r, error.into());
}

fn push_error(r: &mut Report, e: String) {
    r.error = Some(match r.error.take() {
        Some(prev) => format!("{prev}; {e}"),
        None => e,
    });
}

fn finish(mut r: Report, t0: Instant) -> Report {
    r.phases.total_s = t0.elapsed().as_secs_f64();
    r
}
