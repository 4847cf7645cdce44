//! One job's life, as a state machine over the EC2 engine:
//!
//! ```text
//! Preflight ─► Launch ─► Boot ─► Agent ─► Start ─► Follow ──► End
//!     │           │        │       │        │  └─► Detached ─┘ (the instance ends itself)
//!     └───────────┴──► Done (nothing launched)     every failure after Launch ──► End
//! ```
//!
//! Each phase is one method that returns the next step; a signal in any phase leads to the
//! same end. Once an instance exists, every way out goes through [`End`](Step::End), whose
//! policy is `termination.rs`.
//!
//! A batch uses the same machine in two halves: [`acquire`] (Launch → Agent, then the
//! instance is handed over ready) and [`run_on`] (Start → Follow on a ready instance the
//! batch's jobs share). A job on a shared instance never ends it: what its end tells of
//! the instance ([`Handback`]) goes back to the pool, which ends it once no job runs there.

pub mod follow;

use std::time::{Instant, SystemTime};

use crate::cloud::{Cloud, InvocationStatus, LaunchError};
use crate::engine::ec2::instance::Instance;
use crate::engine::ec2::launch::{self, LaunchFailure};
use crate::engine::ec2::{remote, script};
use crate::patience::Patience;
use crate::plan::{Plan, Work};
use crate::preflight::{self, Checked};
use crate::registry::{Entry, Registry};
use crate::report::{exit, InstanceFate, Outcome, Phases, Report};
use crate::signals::Interrupts;
use crate::termination::{self, Handback};
use crate::ui::Ui;
use follow::JobRef;

pub use termination::Leave;

/// How long an instance may take to reach `running`.
const BOOT_LIMIT: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// Where the job is.
enum Step {
    Preflight,
    Launch(Checked),
    Boot,
    Agent,
    Start,
    /// The job script was sent: follow it (the command's id).
    Follow(String),
    /// Detached: wait until the job has started, then leave.
    Started(String),
    End(Leave),
    /// The instance is ready for jobs (acquire only).
    Ready,
    Done,
}

/// Which part of the machine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// One job, launch to termination.
    Single,
    /// A batch's instance: launch, boot, agent, then hand it over.
    Acquire,
    /// A batch's job on a ready instance its jobs share (how its script shares it).
    Pooled(script::Shared),
}

/// One job being run.
struct Job<'a> {
    plan: &'a Plan,
    job: JobRef,
    cloud: &'a Cloud,
    ui: &'a Ui,
    interrupts: &'a Interrupts,
    registry: &'a Registry,
    patience: Patience,
    instance: Option<Instance>,
    mode: Mode,
    /// What the job's end tells of a shared instance (Pooled).
    handback: Handback,
    r: Report,
}

/// Run the plan to the end and report.
pub async fn run(
    plan: &Plan,
    cloud: &Cloud,
    ui: &Ui,
    interrupts: &Interrupts,
    registry: &Registry,
) -> Report {
    let (r, _, _) = drive(
        plan,
        cloud,
        ui,
        interrupts,
        registry,
        None,
        None,
        Mode::Single,
        Step::Preflight,
    )
    .await;
    r
}

/// A batch's instance, launched for `plan` (the first job it will run) after the batch's
/// preflight, and ready for jobs; or the report of why not (nothing is left running).
pub async fn acquire(
    plan: &Plan,
    checked: Checked,
    cloud: &Cloud,
    ui: &Ui,
    interrupts: &Interrupts,
    registry: &Registry,
) -> Result<Instance, Report> {
    match drive(
        plan,
        cloud,
        ui,
        interrupts,
        registry,
        None,
        None,
        Mode::Acquire,
        Step::Launch(checked),
    )
    .await
    {
        (_, Some(instance), _) => Ok(instance),
        (r, None, _) => Err(r),
    }
}

/// One batch job on a ready instance its jobs share (`shared`: how), followed by the pool's
/// `watch`. The instance is never ended here, whatever the job's end: that end's
/// [`Handback`] tells the pool what it says of the instance.
#[allow(clippy::too_many_arguments)]
pub async fn run_on(
    plan: &Plan,
    id: &str,
    shared: script::Shared,
    watch: &crate::batch::watch::Watch,
    cloud: &Cloud,
    ui: &Ui,
    interrupts: &Interrupts,
    registry: &Registry,
) -> (Report, Handback) {
    // The instance's tags are its launch's for life (the client policy allows CreateTags
    // only inside RunInstances): the pool's records in S3 say which job it runs now.
    let id = id.to_string();
    let mut entry = registry_entry(plan, cloud);
    entry.instance_id = Some(id.clone());
    if let Err(e) = registry.save(&entry) {
        ui.note(e.to_string());
    }
    let (r, instance, back) = drive(
        plan,
        cloud,
        ui,
        interrupts,
        registry,
        Some(Instance::adopt(cloud, id)),
        Some(watch),
        Mode::Pooled(shared),
        Step::Start,
    )
    .await;
    // The pool holds the handle that ends it.
    if let Some(i) = instance {
        i.abandon();
    }
    (r, back)
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    plan: &Plan,
    cloud: &Cloud,
    ui: &Ui,
    interrupts: &Interrupts,
    registry: &Registry,
    instance: Option<Instance>,
    watch: Option<&crate::batch::watch::Watch>,
    mode: Mode,
    first: Step,
) -> (Report, Option<Instance>, Handback) {
    let t0 = Instant::now();
    let mut job = Job {
        plan,
        job: JobRef {
            watch: watch.cloned(),
            ..JobRef::of(plan)
        },
        cloud,
        ui,
        interrupts,
        registry,
        patience: Patience::new(plan.api_patience),
        r: new_report(plan, cloud),
        mode,
        handback: Handback::Reusable,
        instance,
    };
    if let Some(i) = &job.instance {
        job.r.instance_id = Some(i.id.clone());
        job.r.instance = InstanceFate::Pooled;
    }
    let mut step = first;
    loop {
        step = match step {
            Step::Preflight => job.preflight().await,
            Step::Launch(checked) => job.launch(checked).await,
            Step::Boot => job.boot().await,
            Step::Agent => job.agent().await,
            Step::Start => job.start().await,
            Step::Follow(command) => job.follow(command).await,
            Step::Started(command) => job.started(command).await,
            Step::End(leave) => job.end(leave).await,
            Step::Ready | Step::Done => break,
        };
    }
    if job.mode != Mode::Acquire {
        job.record_end();
    }
    let mut r = job.r;
    r.phases.total_s = t0.elapsed().as_secs_f64();
    (r, job.instance, job.handback)
}

impl Job<'_> {
    async fn preflight(&mut self) -> Step {
        self.ui
            .phase("preflight: credentials, AMI, instance profile, buckets");
        let t = Instant::now();
        let checked = tokio::select! {
            c = preflight::check(self.plan, self.cloud) => c,
            _ = self.interrupts.reached(1) => {
                set(&mut self.r, Outcome::Interrupted, exit::INTERRUPTED, "interrupted before launch; nothing was launched");
                return Step::Done;
            }
        };
        self.r.phases.preflight_s = Some(t.elapsed().as_secs_f64());
        match checked {
            Ok(c) => {
                self.ui.done("preflight passed");
                Step::Launch(c)
            }
            Err(e) => {
                set(
                    &mut self.r,
                    Outcome::PreflightFailed,
                    exit::PREFLIGHT,
                    e.to_string(),
                );
                Step::Done
            }
        }
    }

    /// The launch is not interrupted half-way: its answer (or the lookup by its token) is the
    /// only sure way to learn the instance id. A signal during it is handled right after.
    async fn launch(&mut self, checked: Checked) -> Step {
        let plan = self.plan;
        // Written before RunInstances: a client that dies during the launch leaves the token
        // behind, and `status` / `cleanup` find the instance by it.
        if let Err(e) = self.registry.save(&registry_entry(plan, self.cloud)) {
            self.ui.note(e.to_string());
        }
        let t = Instant::now();
        let user_data = script::user_data(plan);
        let types = &plan.launch.instance_types;
        let ui = self.ui;
        let note = |m: String| ui.note(m);
        let mut launched = None;
        for (variant, instance_type) in types.iter().enumerate() {
            self.ui.phase(format!(
                "launching a {instance_type} from {}",
                plan.launch.ami
            ));
            let attempt = launch::launch(
                self.cloud,
                &plan.launch,
                variant,
                user_data.as_deref(),
                checked.root_device.as_deref(),
                &note,
            )
            .await;
            match attempt {
                Err(LaunchFailure::Refused(LaunchError::Capacity(e)))
                    if variant + 1 < types.len() =>
                {
                    self.ui.note(format!(
                        "no capacity for {instance_type} ({}); trying {}",
                        e.message,
                        types[variant + 1]
                    ));
                }
                other => {
                    self.r.instance_type = instance_type.clone();
                    launched = Some(other);
                    break;
                }
            }
        }
        self.r.phases.launch_s = Some(t.elapsed().as_secs_f64());
        let r = &mut self.r;
        match launched {
            Some(Ok(l)) => {
                if l.found_by_token {
                    self.ui.note(format!(
                        "found {} by its launch token: the launch had happened",
                        l.id
                    ));
                }
                let _ = self
                    .registry
                    .update(&plan.job_id, |e| e.instance_id = Some(l.id.clone()));
                r.instance_id = Some(l.id.clone());
                self.ui.done(format!("launched {}", l.id));
                self.instance = Some(Instance::adopt(self.cloud, l.id));
                Step::Boot
            }
            Some(Err(e @ LaunchFailure::Unconfirmed { .. })) => {
                set(r, Outcome::LaunchFailed, exit::UNCONFIRMED, e.to_string());
                r.instance = InstanceFate::Unconfirmed;
                Step::Done
            }
            Some(Err(e)) => {
                set(r, Outcome::LaunchFailed, exit::LAUNCH, e.to_string());
                Step::Done
            }
            None => {
                set(
                    r,
                    Outcome::LaunchFailed,
                    exit::LAUNCH,
                    "no instance type to launch",
                );
                Step::Done
            }
        }
    }

    fn id(&self) -> String {
        self.instance
            .as_ref()
            .map(|i| i.id.clone())
            .unwrap_or_default()
    }

    async fn boot(&mut self) -> Step {
        let id = self.id();
        let Some(instance) = self.instance.as_ref() else {
            return Step::Done;
        };
        self.ui.phase(format!("waiting for {id} to be running"));
        let t = Instant::now();
        let booted = tokio::select! {
            b = instance.wait_running(BOOT_LIMIT, &self.patience) => b,
            _ = self.interrupts.reached(1) => return self.interrupted("interrupted while the instance booted"),
        };
        self.r.phases.boot_s = Some(t.elapsed().as_secs_f64());
        match booted {
            Ok(()) => {
                self.ui.done(format!("{id} is running"));
                Step::Agent
            }
            Err(e) => {
                set(
                    &mut self.r,
                    Outcome::LaunchFailed,
                    exit::LAUNCH,
                    e.to_string(),
                );
                Step::End(Leave::Normally)
            }
        }
    }

    async fn agent(&mut self) -> Step {
        let id = self.id();
        self.ui.phase(format!("waiting for the SSM agent on {id}"));
        let t = Instant::now();
        let online = tokio::select! {
            o = remote::wait_for_agent(self.cloud, &id, self.plan.agent_timeout, &self.patience) => o,
            _ = self.interrupts.reached(1) => return self.interrupted("interrupted while waiting for the SSM agent"),
        };
        self.r.phases.agent_s = Some(t.elapsed().as_secs_f64());
        match online {
            Ok(_) => {
                self.ui.done("SSM agent online");
                if self.mode == Mode::Acquire {
                    Step::Ready
                } else {
                    Step::Start
                }
            }
            Err(e) => {
                let (outcome, code) = match e {
                    remote::RemoteError::AgentNeverOnline { .. } => {
                        (Outcome::AgentNeverOnline, exit::AGENT)
                    }
                    _ => (Outcome::RemoteFailed, exit::REMOTE),
                };
                set(&mut self.r, outcome, code, e.to_string());
                Step::End(Leave::Normally)
            }
        }
    }

    async fn start(&mut self) -> Step {
        let id = self.id();
        let plan = self.plan;
        let script = match self.mode {
            Mode::Pooled(shared) => script::shared_job_script(plan, self.cloud.region(), shared),
            _ => script::job_script(plan, self.cloud.region()),
        };
        let comment = format!("run-render job {}", plan.job_id);
        let limit = follow::execution_limit(plan.deadline);
        let sent = tokio::select! {
            c = remote::send(self.cloud, &id, &script, limit, &comment, &self.patience) => c,
            _ = self.interrupts.reached(1) => return self.interrupted("interrupted before the job started"),
        };
        match sent {
            Ok(command) => {
                self.ui.phase(match &plan.work {
                    Work::Container(c) => format!("running the job in {} on {id}", c.image),
                    Work::Shell(_) => format!("running the shell command on {id}"),
                });
                if plan.detach {
                    Step::Started(command)
                } else {
                    Step::Follow(command)
                }
            }
            Err(e) => {
                set(
                    &mut self.r,
                    Outcome::RemoteFailed,
                    exit::REMOTE,
                    e.to_string(),
                );
                Step::End(Leave::Normally)
            }
        }
    }

    async fn follow(&mut self, command: String) -> Step {
        let id = self.id();
        let t = Instant::now();
        let leave = follow::follow(
            &self.job,
            self.cloud,
            self.ui,
            self.interrupts,
            &id,
            command,
            &self.patience,
            &mut self.r,
        )
        .await;
        self.r.phases.run_s = Some(t.elapsed().as_secs_f64());
        Step::End(leave)
    }

    /// `--detach`: the job script ends once the container is running (or the shell command
    /// is on its way); then the client leaves the instance to the job.
    async fn started(&mut self, command: String) -> Step {
        let id = self.id();
        let ended = tokio::select! {
            e = remote::wait_command(self.cloud, &id, &command, &self.patience) => e,
            _ = self.interrupts.reached(1) => return self.interrupted("interrupted while the job started"),
        };
        match ended {
            Ok(inv) if inv.status == InvocationStatus::Success => {
                let r = &mut self.r;
                r.outcome = Outcome::Detached;
                r.exit_code = 0;
                self.ui
                    .done(format!("job {} started on {id}", self.plan.job_id));
                Step::End(Leave::Detached)
            }
            Ok(inv) => {
                follow::show_ssm_output(self.ui, &inv);
                let why = inv
                    .stderr
                    .lines()
                    .last()
                    .unwrap_or("the job could not be started")
                    .to_string();
                set(&mut self.r, Outcome::RemoteFailed, exit::REMOTE, why);
                Step::End(Leave::Normally)
            }
            Err(e) => {
                let leave = match e {
                    remote::RemoteError::NoAnswer { .. } => Leave::Unreachable,
                    _ => Leave::Normally,
                };
                set(
                    &mut self.r,
                    Outcome::RemoteFailed,
                    exit::REMOTE,
                    e.to_string(),
                );
                Step::End(leave)
            }
        }
    }

    async fn end(&mut self, leave: Leave) -> Step {
        if let Mode::Pooled(_) = self.mode {
            // Other jobs of the batch may run there: the pool ends it when none does.
            self.handback = termination::handback(leave, self.r.outcome);
            self.r.instance = InstanceFate::Pooled;
            return Step::Done;
        }
        if let Some(instance) = self.instance.take() {
            termination::end(
                self.job.terms(),
                self.cloud,
                self.ui,
                self.interrupts,
                instance,
                leave,
                &self.patience,
                &mut self.r,
            )
            .await;
        }
        Step::Done
    }

    fn interrupted(&mut self, why: &str) -> Step {
        set(&mut self.r, Outcome::Interrupted, exit::INTERRUPTED, why);
        Step::End(Leave::Normally)
    }

    /// The job's end, in the registry: `status` then knows it without asking AWS.
    fn record_end(&self) {
        let r = &self.r;
        if r.outcome == Outcome::Detached
            || r.instance_id.is_none() && r.outcome != Outcome::LaunchFailed
        {
            return;
        }
        let outcome = serde_json::to_value(r.outcome)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let _ = self.registry.update(&self.plan.job_id, |e| {
            e.ended = Some(crate::registry::Ended {
                outcome,
                exit_code: r.exit_code,
                at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            })
        });
    }
}

/// The report of a batch job that was not sent to its (ready) instance `instance_id`:
/// nothing ran, and the instance is the pool's to hand on.
pub fn not_started(plan: &Plan, cloud: &Cloud, instance_id: &str, why: String) -> Report {
    let mut r = new_report(plan, cloud);
    r.instance_id = Some(instance_id.to_string());
    r.instance = InstanceFate::Pooled;
    set(&mut r, Outcome::RemoteFailed, exit::REMOTE, why);
    r
}

/// The registry's entry for a job about to be launched.
pub(crate) fn registry_entry(plan: &Plan, cloud: &Cloud) -> Entry {
    let records = match &plan.work {
        Work::Container(c) => c.records.as_ref().map(|r| r.root().to_string()),
        Work::Shell(_) => None,
    };
    Entry {
        job_id: plan.job_id.clone(),
        created_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        launch_tokens: (0..plan.launch.instance_types.len())
            .map(|v| plan.launch.token(v))
            .collect(),
        region: cloud.region().map(str::to_string),
        profile: plan.profile.clone(),
        endpoint_url: plan.endpoint_url.clone(),
        records,
        output: plan.output.as_ref().map(|o| o.to_string()),
        shell: matches!(plan.work, Work::Shell(_)),
        instance_id: None,
        deadline: plan
            .deadline
            .map(|d| humantime::format_rfc3339_seconds(d).to_string()),
        keep: plan.keep,
        detached: plan.detach,
        batch: plan.batch.clone(),
        client_pid: Some(std::process::id()),
        client_host: crate::registry::host_name(),
        ended: None,
        aws_batch_queue: None,
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
        kept: plan.keep,
    }
}

pub(crate) fn set(r: &mut Report, outcome: Outcome, code: i32, error: impl Into<String>) {
    r.outcome = outcome;
    r.exit_code = code;
    r.push_error(error);
}

pub(crate) fn push_error(r: &mut Report, e: String) {
    r.push_error(e);
}
