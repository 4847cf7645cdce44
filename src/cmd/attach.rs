//! `attach JOB`: follow a job another client started (`run --detach`, or a client that died)
//! as `run` would: its log, its end, Ctrl-C stops it with its outputs saved, and its instance
//! is terminated at the end. With `--detach` it only follows (as `logs --follow`).
//! `stop` is the same with the first Ctrl-C given at once.
//!
//! A batch's instance is shared by its jobs: after the job, it is terminated only when no
//! other job runs there and the batch's client (which ends it itself) is gone.

use std::io::Write;
use std::time::{Instant, SystemTime};

use super::{find, Found};
use crate::cli::AttachArgs;
use crate::cloud::Cloud;
use crate::engine::ec2::instance::Instance;
use crate::engine::ec2::script::probe;
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
                take_over(&cloud, &registry, &found, &ui, &interrupts, true).await
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
/// policy, as for `run`). With `end_instance` false (`stop --batch`: other jobs of the batch
/// may still be saving their outputs there) a job that ended normally leaves the instance to
/// the caller.
pub async fn take_over(
    cloud: &Cloud,
    registry: &Registry,
    found: &Found,
    ui: &Ui,
    interrupts: &Interrupts,
    end_instance: bool,
) -> Report {
    let t0 = Instant::now();
    let Some(tagged) = found.instance.clone() else {
        return report_of(found, Outcome::RemoteFailed, exit::REMOTE);
    };
    // On a batch's shared instance the deadline tag is its first job's: the job's own is in
    // the registry (and the instance's own deadline holds without it).
    // (A pool instance found from another workstation carries the job's own, from the pool's
    // record: see `find`.)
    let deadline = match &tagged.batch {
        Some(_) => found
            .entry
            .as_ref()
            .and_then(|e| e.deadline.as_deref())
            .and_then(|d| humantime::parse_rfc3339(d).ok())
            .or_else(|| tagged.pool.is_some().then(|| found.deadline()).flatten()),
        None => found.deadline(),
    };
    let job = JobRef {
        watch: None,
        job_id: found.job_id.clone(),
        container: found.container(),
        records: found.records.clone(),
        deadline,
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
    match (end_instance, &tagged.batch, leave) {
        // `stop --batch` ends the instance itself once none of its jobs runs.
        (false, _, Leave::Normally) => {
            instance.abandon();
            r.instance = InstanceFate::Pooled;
        }
        (_, Some(_), Leave::Normally | Leave::Now) => {
            leave_shared(
                cloud, found, ui, interrupts, instance, leave, &patience, &mut r,
            )
            .await
        }
        _ => {
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
            .await
        }
    }
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

/// After a job on a batch's shared instance: terminate the instance only when nothing else
/// needs it. Its batch's client, alive on this machine, runs the next job there or ends it;
/// another job of the batch may still run there (its outputs not saved yet). Otherwise, as
/// for any job. A second signal does not wait: the instance is left as it is. `patience` is
/// the job's budget.
#[allow(clippy::too_many_arguments)]
pub async fn leave_shared(
    cloud: &Cloud,
    found: &Found,
    ui: &Ui,
    interrupts: &Interrupts,
    instance: Instance,
    leave: Leave,
    patience: &Patience,
    r: &mut Report,
) {
    let id = instance.id.clone();
    let batch = found
        .instance
        .as_ref()
        .and_then(|i| i.batch.clone())
        .unwrap_or_default();
    let mut stays = |why: String| {
        r.instance = InstanceFate::Pooled;
        ui.note(format!("{id} stays with batch {batch}: {why}"));
    };
    if leave == Leave::Now {
        instance.abandon();
        return stays("not waiting to see which jobs still run there".into());
    }
    if let Some(pid) = found
        .entry
        .as_ref()
        .filter(|e| crate::registry::client_alive(e))
        .and_then(|e| e.client_pid)
    {
        instance.abandon();
        return stays(format!(
            "its client runs on (pid {pid}) and ends it after its last job"
        ));
    }
    let others = async {
        let command = remote::send(
            cloud,
            &id,
            &probe::script(probe::Arm::Look),
            std::time::Duration::from_secs(120),
            "run-render: which jobs run here",
            patience,
        )
        .await?;
        let inv = remote::wait_command(cloud, &id, &command, patience).await?;
        Ok::<_, remote::RemoteError>(
            probe::parse(&inv.stdout)
                .jobs
                .into_iter()
                .filter(|j| *j != found.job_id)
                .collect::<Vec<_>>(),
        )
    }
    .await;
    match others {
        Ok(others) if others.is_empty() => {
            let terms = crate::termination::Terms {
                keep: false,
                deadline: None,
            };
            crate::termination::end(terms, cloud, ui, interrupts, instance, leave, patience, r)
                .await
        }
        Ok(others) => {
            instance.abandon();
            stays(format!(
                "{} other job(s) run there ({}); it ends itself after the last",
                others.len(),
                others.join(", ")
            ))
        }
        Err(e) => {
            instance.abandon();
            stays(format!(
                "could not ask it which jobs run there ({e}); it ends itself after its last job, or at its deadline"
            ))
        }
    }
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
