//! One job's lifecycle: preflight -> launch -> running -> agent online -> run and stream ->
//! terminate. Once an instance exists, every way out (success, failure, timeout, Ctrl-C,
//! an AWS error) goes through the termination step at the end of [`run`].

use std::time::{Duration, Instant, SystemTime};

use tokio::time::{interval, sleep_until, MissedTickBehavior};

use crate::cloud::{Cloud, Invocation, InvocationStatus, LaunchError};
use crate::instance::Instance;
use crate::logs::Tail;
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
/// How often the instance itself is checked while the job runs (deadline, spot, console).
const STATE_EVERY: Duration = Duration::from_secs(15);
/// The runner's exit code for settings it refused (`rtb-job --help`).
const RUNNER_BAD_SETTINGS: i32 = 2;
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

    // The launch call is not interrupted half-way: its answer is the only sure way to learn
    // the instance id. A signal during it is handled right after.
    let t = Instant::now();
    let user_data = script::user_data(plan, SystemTime::now());
    let types = &plan.launch.instance_types;
    let mut launched = None;
    for (variant, instance_type) in types.iter().enumerate() {
        ui.phase(format!(
            "launching a {instance_type} from {}",
            plan.launch.ami
        ));
        let attempt = cloud
            .run_instance(
                &plan.launch,
                variant,
                user_data.as_deref(),
                checked.root_device.as_deref(),
            )
            .await;
        match attempt {
            Err(LaunchError::Capacity(e)) if variant + 1 < types.len() => {
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
        Some(Ok(id)) => Instance::adopt(cloud, id),
        Some(Err(e)) => {
            if let LaunchError::Other(c) = &e {
                if c.code.is_none() {
                    // No answer from EC2: the launch may have happened. Find it by tag.
                    end_lost_launch(cloud, &plan.job_id, ui).await;
                }
            }
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

    let hard_stop = drive(plan, cloud, ui, interrupts, &instance, &mut r).await;

    // The end of every path that launched something.
    if hard_stop {
        let requested = instance.request_termination().await;
        r.instance = InstanceFate::Unconfirmed;
        let note = match requested {
            Ok(()) => format!(
                "termination of {} requested; not waiting for it",
                instance.id
            ),
            Err(e) => format!("could not request termination of {}: {e}", instance.id),
        };
        instance.abandon();
        push_error(&mut r, note);
    } else if plan.keep && r.outcome != Outcome::Interrupted {
        let id = instance.keep();
        r.instance = InstanceFate::Kept;
        ui.note(format!("keeping {id} running, as asked (--keep)"));
    } else {
        ui.phase(format!("terminating {}", instance.id));
        let t = Instant::now();
        let id = instance.id.clone();
        let seen = interrupts.count();
        tokio::select! {
            done = instance.terminate() => match done {
                Ok(_) => {
                    r.instance = InstanceFate::Terminated;
                    r.phases.terminate_s = Some(t.elapsed().as_secs_f64());
                    ui.done(format!("{id} terminated"));
                }
                Err(e) => {
                    r.instance = InstanceFate::Unconfirmed;
                    r.exit_code = exit::TERMINATE_UNCONFIRMED;
                    push_error(&mut r, e.to_string());
                }
            },
            _ = interrupts.reached(seen + 1) => {
                // Asked again while waiting: the request is out; stop waiting.
                let _ = cloud.terminate(&id).await;
                r.instance = InstanceFate::Unconfirmed;
                push_error(&mut r, format!("termination of {id} requested; not waiting for it"));
            }
        }
    }
    finish(r, t0)
}

/// Boot, agent, send, follow. Returns true when a second signal asks to leave at once.
async fn drive(
    plan: &Plan,
    cloud: &Cloud,
    ui: &Ui,
    interrupts: &Interrupts,
    instance: &Instance,
    r: &mut Report,
) -> bool {
    let id = instance.id.as_str();

    ui.phase(format!("waiting for {id} to be running"));
    let t = Instant::now();
    let booted = tokio::select! {
        b = instance.wait_running(BOOT_LIMIT) => b,
        _ = interrupts.reached(1) => {
            set(r, Outcome::Interrupted, exit::INTERRUPTED, "interrupted while the instance booted");
            return false;
        }
    };
    r.phases.boot_s = Some(t.elapsed().as_secs_f64());
    if let Err(e) = booted {
        set(r, Outcome::LaunchFailed, exit::LAUNCH, e.to_string());
        return false;
    }
    ui.done(format!("{id} is running"));

    ui.phase(format!("waiting for the SSM agent on {id}"));
    let t = Instant::now();
    let online = tokio::select! {
        o = remote::wait_for_agent(cloud, id, plan.agent_timeout) => o,
        _ = interrupts.reached(1) => {
            set(r, Outcome::Interrupted, exit::INTERRUPTED, "interrupted while waiting for the SSM agent");
            return false;
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
        return false;
    }
    ui.done("SSM agent online");

    let script = script::job_script(plan, cloud.region(), SystemTime::now());
    // SSM may run the script until the instance's own deadline; without one, its maximum.
    let execution = plan
        .deadline
        .and_then(|d| d.duration_since(SystemTime::now()).ok())
        .unwrap_or(Duration::from_secs(crate::cloud::MAX_EXECUTION_SECS));
    let comment = format!("run-render job {}", plan.job_id);
    let command = tokio::select! {
        c = remote::send(cloud, id, &script, execution, &comment) => c,
        _ = interrupts.reached(1) => {
            set(r, Outcome::Interrupted, exit::INTERRUPTED, "interrupted before the job started");
            return false;
        }
    };
    let command = match command {
        Ok(c) => c,
        Err(e) => {
            set(r, Outcome::RemoteFailed, exit::REMOTE, e.to_string());
            return false;
        }
    };
    ui.phase(match &plan.work {
        Work::Container(c) => format!("running the job in {} on {id}", c.image),
        Work::Shell(_) => format!("running the shell command on {id}"),
    });
    let t = Instant::now();
    let hard = follow(plan, cloud, ui, interrupts, id, command, r).await;
    r.phases.run_s = Some(t.elapsed().as_secs_f64());
    hard
}

/// Why the client itself is ending the job early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopping {
    Interrupted,
    TimedOut,
}

/// Stream the log and wait for the command to end, stopping it on a signal or timeout.
async fn follow(
    plan: &Plan,
    cloud: &Cloud,
    ui: &Ui,
    interrupts: &Interrupts,
    id: &str,
    mut command: String,
    r: &mut Report,
) -> bool {
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
    let (mut status_tick, mut log_tick, mut state_tick) = (
        interval(STATUS_FAST),
        interval(LOG_EVERY),
        interval(STATE_EVERY),
    );
    for t in [&mut status_tick, &mut log_tick, &mut state_tick] {
        t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    }
    let far = started + Duration::from_secs(10 * 365 * 24 * 3600);

    let ended: Result<Invocation, String> = loop {
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
                match cloud.invocation(&command, id).await {
                    Ok(Some(inv)) if inv.status == InvocationStatus::TimedOut
                        && stopping.is_none() && matches!(plan.work, Work::Container(_)) => {
                        // SSM's execution limit (48 h at most) ended the wait, not the job:
                        // the container runs detached, so wait for it again.
                        ui.note("SSM's execution limit ended the wait; re-attaching to the running job");
                        match remote::send(cloud, id, &script::reattach_script(&plan.job_id),
                            Duration::from_secs(crate::cloud::MAX_EXECUTION_SECS),
                            &format!("run-render re-attach {}", plan.job_id)).await {
                            Ok(c) => command = c,
                            Err(e) => break Err(format!("cannot re-attach to the job: {e}")),
                        }
                    }
                    Ok(Some(inv)) if inv.status.is_done() => break Ok(inv),
                    Ok(_) => {}
                    Err(e) => ui.note(format!("cannot read the command's status ({e}); retrying")),
                }
            }
            _ = state_tick.tick() => {
                if let Ok(Some(s)) = cloud.instance_state(id).await {
                    if s.is_gone() {
                        break Err(format!(
                            "instance {id} ended during the job ({}{})",
                            s.name,
                            s.reason.map(|r| format!(": {r}")).unwrap_or_default()
                        ));
                    }
                }
            }
            _ = interrupts.reached(1), if stopping.is_none() => {
                ui.note("stopping the job: saving its outputs, then terminating (press Ctrl-C again to terminate at once)");
                stopping = Some((Stopping::Interrupted, begin_stop(plan, cloud, id, &command).await));
            }
            _ = sleep_until(limit.unwrap_or(far)), if limit.is_some() && stopping.is_none() => {
                ui.note(match plan.work {
                    Work::Shell(_) => format!("the command ran past its --timeout of {}; stopping it",
                        humantime::format_duration(plan.timeout.unwrap_or_default())),
                    // The runner enforces --timeout; this is the instance's own deadline.
                    Work::Container(_) => "the instance reached its deadline (--timeout + --deadline-margin) with the job still running; stopping it".to_string(),
                });
                stopping = Some((Stopping::TimedOut, begin_stop(plan, cloud, id, &command).await));
            }
            _ = interrupts.reached(2), if stopping.map(|s| s.0) == Some(Stopping::Interrupted) => {
                set(r, Outcome::Interrupted, exit::INTERRUPTED, "interrupted twice");
                return true;
            }
            _ = sleep_until(stopping.map(|s| s.1).unwrap_or(far)), if stopping.is_some() => {
                break Err("the job did not stop in time; terminating the instance".into());
            }
        }
    };

    // The rest of the log: the runner wrote its last chunk before the container ended.
    if let Some(t) = tail.as_mut() {
        let _ = t.poll(cloud, ui).await;
        r.log_lines = t.lines;
        r.result = t.result(cloud).await.ok().flatten();
    }

    let inv = match ended {
        Ok(inv) => inv,
        Err(why) => {
            let (outcome, code) = match stopping {
                Some((Stopping::Interrupted, _)) => (Outcome::Interrupted, exit::INTERRUPTED),
                Some((Stopping::TimedOut, _)) => (Outcome::TimedOut, exit::TIMED_OUT),
                None => (Outcome::RemoteFailed, exit::REMOTE),
            };
            set(r, outcome, code, why);
            return false;
        }
    };
    if tail.as_ref().is_none_or(|t| t.lines == 0) {
        show_ssm_output(ui, &inv);
    }
    classify(plan, &inv, stopping.map(|s| s.0), r);
    false
}

/// Start stopping the job; returns when to give up waiting for it.
async fn begin_stop(plan: &Plan, cloud: &Cloud, id: &str, command: &str) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    match &plan.work {
        Work::Container(_) => {
            // docker stop: the runner stops the interpreter and uploads what exists; the main
            // command then ends with the runner's exit code.
            let _ = cloud
                .send_script(
                    id,
                    &script::stop_script(&plan.job_id),
                    120,
                    "run-render stop",
                )
                .await;
            now + Duration::from_secs(u64::from(script::STOP_GRACE_SECS) + 30)
        }
        Work::Shell(_) => {
            // Some SSM implementations cannot cancel; terminating ends the command anyway.
            let _ = cloud.cancel(command, id).await;
            now + Duration::from_secs(5)
        }
    }
}

fn classify(plan: &Plan, inv: &Invocation, stopping: Option<Stopping>, r: &mut Report) {
    let code = inv.response_code;
    let container = matches!(plan.work, Work::Container(_));
    match (stopping, inv.status) {
        (Some(Stopping::Interrupted), _) => set(
            r,
            Outcome::Interrupted,
            exit::INTERRUPTED,
            "interrupted; the job was stopped and its outputs saved",
        ),
        (Some(Stopping::TimedOut), _) => set(
            r,
            Outcome::TimedOut,
            exit::TIMED_OUT,
            "the job ran past its --timeout and was stopped",
        ),
        (None, InvocationStatus::Success) => {
            r.outcome = Outcome::Succeeded;
            r.exit_code = 0;
        }
        (None, InvocationStatus::Failed) if container && code == script::CONTAINER_START_FAILED => {
            let why = inv
                .stderr
                .lines()
                .last()
                .unwrap_or("no message")
                .to_string();
            set(r, Outcome::RemoteFailed, exit::REMOTE, why);
        }
        (None, InvocationStatus::Failed) if container && code == RUNNER_BAD_SETTINGS => {
            // Not the client's "bad input": the runner, on the instance, refused a setting
            // (often a bucket the instance role cannot reach). Its reason is in the log above.
            set(
                r,
                Outcome::RemoteFailed,
                exit::REMOTE,
                "the runner refused its settings on the instance (its reason is in the log above; often a bucket the instance role cannot reach)",
            )
        }
        (None, InvocationStatus::Failed) if container && code == exit::TIMED_OUT => set(
            r,
            Outcome::TimedOut,
            exit::TIMED_OUT,
            format!(
                "the command ran past its --timeout of {}",
                humantime::format_duration(plan.timeout.unwrap_or_default())
            ),
        ),
        (None, InvocationStatus::Failed) if code > 0 => set(
            r,
            Outcome::JobFailed,
            code,
            r.result
                .as_ref()
                .and_then(|res| res.error.clone())
                .unwrap_or_else(|| format!("the job exited with code {code}")),
        ),
        (None, status) => set(
            r,
            Outcome::RemoteFailed,
            exit::REMOTE,
            format!("the remote command ended {status:?} (code {code})"),
        ),
    }
}

/// When there is no S3 log (no --output, or the container never started), show what SSM
/// kept of the script's output.
fn show_ssm_output(ui: &Ui, inv: &Invocation) {
    for line in inv.stdout.lines().chain(inv.stderr.lines()) {
        ui.log_line(line);
    }
    if inv.stdout.len() >= SSM_OUTPUT_CAP {
        ui.note(
            "SSM keeps only the first 24,000 characters of output; use --output for the whole log",
        );
    }
}

/// After a launch whose answer never came: end any instance that carries this job's tag.
async fn end_lost_launch(cloud: &Cloud, job_id: &str, ui: &Ui) {
    // EC2 may take a moment to list a new instance.
    tokio::time::sleep(Duration::from_secs(2)).await;
    match cloud.instances_of_job(job_id).await {
        Ok(ids) => {
            for id in ids {
                ui.note(format!("found {id} from the unanswered launch; terminating it"));
                if let Err(e) = Instance::adopt(cloud, id).terminate().await {
                    ui.note(e.to_string());
                }
            }
        }
        Err(e) => ui.note(format!(
            "could not check for an instance from the unanswered launch ({e}); look for tag rtb:job-id={job_id}"
        )),
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
