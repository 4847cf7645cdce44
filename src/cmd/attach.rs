//! `attach JOB`: follow a job another client started (`run --detach`, or a client that died)
//! as `run` would: its log, its end, Ctrl-C stops it with its outputs saved, and its instance
//! is terminated at the end. With `--detach` it only follows (as `logs --follow`).
//! `stop` is the same with the first Ctrl-C given at once.

use std::io::Write;
use std::time::{Instant, SystemTime};

use super::{find, Found};
use crate::cli::AttachArgs;
use crate::cloud::Cloud;
use crate::engine::ec2::instance::Instance;
use crate::engine::ec2::{remote, script};
use crate::lifecycle::follow::{self, JobRef};
use crate::lifecycle::Leave;
use crate::patience::{self, Patience};
use crate::registry::{Ended, Registry};
use crate::report::{exit, InstanceFate, Outcome, Phases, Report};
use crate::signals::Interrupts;
use crate::ui::Ui;

pub fn main(args: AttachArgs) -> i32 {
    if args.detach {
        return super::logs::main(crate::cli::LogsArgs {
            job: Some(args.job),
            follow: true,
            output: args.output,
            aws: args.aws,
        });
    }
    super::block_on(async move {
        let ui = Ui::new(args.json);
        let interrupts = Interrupts::listen();
        let report = match located(&args.job, &args.output, &args.aws).await {
            Ok((cloud, registry, found)) => {
                take_over(&cloud, &registry, &found, &ui, &interrupts).await
            }
            Err(code) => return code,
        };
        print(&ui, &report, args.json)
    })
}

/// Connect and find the job, or the exit code of why not.
pub async fn located(
    job_id: &str,
    output: &Option<String>,
    aws: &crate::cli::AwsArgs,
) -> Result<(Cloud, Registry, Found), i32> {
    let output = super::output_url(output).map_err(|e| super::bad_input(&e, false))?;
    rtb_model::job_id::check(job_id).map_err(|e| super::bad_input(&e, false))?;
    let registry = Registry::open();
    let entry = registry.get(job_id);
    let cloud = super::connect(aws, entry.as_ref()).await;
    let found = find(&cloud, &registry, job_id, output.as_ref())
        .await
        .map_err(|e| super::fail(&e.to_string(), exit::REMOTE))?;
    if found.instance.is_none() {
        return Err(super::fail(
            &format!(
                "job {job_id}: no instance of it is running (see `run-render status {job_id}`{})",
                if found.entry.is_none() && output.is_none() {
                    "; if it ran elsewhere, give its --output"
                } else {
                    ""
                }
            ),
            1,
        ));
    }
    Ok((cloud, registry, found))
}

/// Follow the job on its instance to its end, then terminate the instance (the termination
/// policy, as for `run`).
pub async fn take_over(
    cloud: &Cloud,
    registry: &Registry,
    found: &Found,
    ui: &Ui,
    interrupts: &Interrupts,
) -> Report {
    let t0 = Instant::now();
    let Some(tagged) = found.instance.clone() else {
        return report_of(found, Outcome::RemoteFailed, exit::REMOTE);
    };
    let job = JobRef {
        job_id: found.job_id.clone(),
        container: found.container(),
        records: found.records.clone(),
        deadline: found.deadline(),
        timeout: None,
        keep: false,
        api_patience: patience::DEFAULT,
        in_batch: false,
    };
    let mut r = report_of(found, Outcome::RemoteFailed, exit::REMOTE);
    r.instance_id = Some(tagged.id.clone());
    r.instance_type = tagged.instance_type.clone();
    let instance = Instance::adopt(cloud, tagged.id.clone());
    let patience = Patience::new(patience::DEFAULT);
    let leave = if tagged.state.is_gone() {
        crate::lifecycle::set(
            &mut r,
            Outcome::InstanceLost,
            exit::INSTANCE_LOST,
            format!("its instance {} {}", tagged.id, tagged.state.describe()),
        );
        Leave::Normally
    } else if !job.container {
        // A detached shell command keeps no log and no container to wait on.
        if interrupts.count() > 0 {
            crate::lifecycle::set(
                &mut r,
                Outcome::Interrupted,
                exit::INTERRUPTED,
                "stopped; a --shell job has no outputs to save",
            );
            Leave::Normally
        } else {
            crate::lifecycle::set(
                &mut r,
                Outcome::RemoteFailed,
                exit::REMOTE,
                "a --shell job cannot be followed once detached (it keeps no log); see `run-render status`, or `stop` it",
            );
            instance.abandon();
            r.instance = InstanceFate::Detached;
            return r;
        }
    } else {
        ui.phase(format!("following job {} on {}", job.job_id, tagged.id));
        let sent = remote::send(
            cloud,
            &tagged.id,
            &script::reattach_script(&job.job_id, false),
            follow::execution_limit(job.deadline),
            &format!("run-render attach {}", job.job_id),
            &patience,
        )
        .await;
        match sent {
            Ok(command) => {
                let t = Instant::now();
                let leave = follow::follow(
                    &job, cloud, ui, interrupts, &tagged.id, command, &patience, &mut r,
                )
                .await;
                r.phases.run_s = Some(t.elapsed().as_secs_f64());
                leave
            }
            Err(e) => {
                crate::lifecycle::set(&mut r, Outcome::RemoteFailed, exit::REMOTE, e.to_string());
                Leave::Normally
            }
        }
    };
    crate::termination::end(
        job.terms(),
        cloud,
        ui,
        interrupts,
        instance,
        leave,
        &patience,
        &mut r,
    )
    .await;
    let outcome = serde_json::to_value(r.outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let _ = registry.update(&found.job_id, |e| {
        e.ended = Some(Ended {
            outcome,
            exit_code: r.exit_code,
            at: super::rfc3339(SystemTime::now()),
        })
    });
    r.phases.total_s = t0.elapsed().as_secs_f64();
    r
}

fn report_of(found: &Found, outcome: Outcome, code: i32) -> Report {
    let e = found.entry.as_ref();
    Report {
        job_id: found.job_id.clone(),
        outcome,
        exit_code: code,
        instance_id: found.instance.as_ref().map(|i| i.id.clone()),
        instance: InstanceFate::NotLaunched,
        ami: String::new(),
        instance_type: String::new(),
        region: e.and_then(|e| e.region.clone()),
        output: e.and_then(|e| e.output.clone()),
        records: found.records.as_ref().map(|r| r.root().to_string()),
        phases: Phases::default(),
        log_lines: 0,
        result: None,
        error: None,
        kept: false,
    }
}

pub fn print(ui: &Ui, report: &Report, json: bool) -> i32 {
    ui.finish();
    if json {
        let _ = writeln!(std::io::stdout(), "{}", report.to_json());
    } else {
        let _ = write!(std::io::stderr(), "{report}");
    }
    report.exit_code
}
