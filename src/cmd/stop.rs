//! `stop JOB`: stop it as the first Ctrl-C does (the runner saves its outputs), then terminate
//! its instance and confirm (a batch's instance only when nothing else needs it: see
//! `attach::leave_shared`). A second Ctrl-C terminates at once.

use crate::cli::StopArgs;
use crate::engine::ec2::instance::Instance;
use crate::lifecycle::follow::JobRef;
use crate::lifecycle::Leave;
use crate::patience;
use crate::report::{exit, InstanceFate, Outcome, Phases, Report};
use crate::signals::Interrupts;
use crate::ui::Ui;

pub fn main(args: StopArgs) -> i32 {
    match (&args.job, &args.batch) {
        (Some(job), _) => super::block_on(stop_one(job.clone(), args)),
        (None, Some(batch)) => super::block_on(stop_batch(batch.clone(), args)),
        (None, None) => super::bad_input("stop: give a job id, or --batch NAME", args.json),
    }
}

/// `stop --batch NAME`: every job of a batch. On AWS Batch, your jobs of that name on the queue
/// (one TerminateJob per array, confirmed; others' left alone); on the EC2 engine, stop each
/// running job as `stop JOB` does.
async fn stop_batch(batch: String, args: StopArgs) -> i32 {
    let registry = crate::registry::Registry::open();
    let record = crate::batch::aws::BatchRecord::load(&registry, &batch);
    let queue = args
        .queue
        .clone()
        .or_else(|| record.as_ref().map(|r| r.queue.clone()));
    if let Some(queue) = queue {
        let mut aws = args.aws.clone();
        if let Some(r) = &record {
            aws.region = aws.region.or(r.region.clone());
            aws.endpoint_url = aws.endpoint_url.or(r.endpoint_url.clone());
        }
        let cloud = super::connect(&aws, None).await;
        let engine = crate::engine::aws_batch::AwsBatch::new(cloud.config(), &crate::plan::owner());
        let stopped = match engine
            .stop(&queue, &batch, &format!("run-render stop --batch {batch}"))
            .await
        {
            Ok(s) => s,
            Err(e) => return super::fail(&format!("batch {batch}: {e}"), exit::REMOTE),
        };
        if args.json {
            super::emit(&format!(
                "{}\n",
                serde_json::to_string(&stopped).unwrap_or_default()
            ));
        }
        let others = match stopped.others.len() {
            0 => String::new(),
            n => format!(
                "; {n} running job(s) of that name on {queue} are another owner's: left alone"
            ),
        };
        if !stopped.still_live.is_empty() {
            return super::fail(
                &format!(
                    "batch {batch} on {queue}: {} still not ended after the wait: {}; check them in the AWS Batch console, or run `run-render stop --batch {batch}` again{others}",
                    stopped.still_live.len(),
                    stopped.still_live.join(", ")
                ),
                exit::UNCONFIRMED,
            );
        }
        let line = match (stopped.terminated.len(), stopped.children_ended.len()) {
            (0, _) => format!("batch {batch} on {queue}: nothing of yours is running"),
            (n, 0) => format!(
                "batch {batch} on {queue}: {n} job(s) ended (arrays with all their children), {} AWS Batch call(s)",
                stopped.calls
            ),
            (n, k) => format!(
                "batch {batch} on {queue}: {n} job(s) ended, {k} array children ended one by one, {} AWS Batch call(s)",
                stopped.calls
            ),
        };
        crate::ui::stderr_line(&format!("run-render: {line}{others}"));
        return 0;
    }
    stop_ec2_batch(&batch, &args).await
}

/// `stop --batch` on the EC2 engine. A client of the batch running on this machine is asked
/// to stop as Ctrl-C asks it (it stops its running jobs with their outputs saved, starts
/// nothing new, and ends its instances); then every job still running on the batch's
/// instances (a pool instance's from the pool's records, as its tags name no job) is stopped
/// the same way, and each instance is terminated once none of its jobs runs.
async fn stop_ec2_batch(batch: &str, args: &StopArgs) -> i32 {
    let registry = crate::registry::Registry::open();
    let interrupts = Interrupts::listen_from(1);
    let clients = crate::registry::live_clients(&registry.of_batch(batch));
    for pid in &clients {
        crate::ui::stderr_line(&format!(
            "run-render: batch {batch}: its client runs here (pid {pid}): asking it to stop, as Ctrl-C does (its jobs save their outputs)"
        ));
        crate::registry::interrupt(*pid);
    }
    if !clients.is_empty() && !wait_for_exit(&clients, &interrupts).await {
        crate::ui::stderr_line(&format!(
            "run-render: batch {batch}: asked again: its client terminates its instances now"
        ));
        return exit::INTERRUPTED;
    }
    let cloud = super::connect(&args.aws, None).await;
    let owner = crate::plan::owner();
    let live = match cloud
        .tagged_instances(&crate::cloud::Select {
            batch: Some(batch),
            owner: Some(&owner),
            ..Default::default()
        })
        .await
    {
        Ok(l) => l,
        Err(e) => return super::fail(&format!("batch {batch}: {e}"), exit::REMOTE),
    };
    let mut work = Vec::new();
    for i in live
        .into_iter()
        .filter(|i| !i.state.is_gone() && i.managed_by.is_none())
    {
        match jobs_on(&cloud, &registry, &i).await {
            Ok(found) => work.push((i, found)),
            Err(e) => return super::fail(&format!("batch {batch}: {}: {e}", i.id), exit::REMOTE),
        }
    }
    if work.is_empty() {
        crate::ui::stderr_line(&format!(
            "run-render: batch {batch}: no instance of yours tagged rtb:batch={batch} is running{}",
            if clients.is_empty() {
                " (an AWS Batch batch needs --queue)"
            } else {
                ""
            }
        ));
        return 0;
    }
    let codes = futures::future::join_all(
        work.iter()
            .map(|(i, found)| stop_instance(&cloud, &registry, &interrupts, i, found, args.json)),
    )
    .await;
    codes.into_iter().find(|c| *c != 0).unwrap_or(0)
}

/// Wait for these processes to exit; false when asked to stop waiting (a second Ctrl-C,
/// which is passed on to them).
async fn wait_for_exit(pids: &[u32], interrupts: &Interrupts) -> bool {
    loop {
        if pids.iter().all(|p| !crate::registry::pid_alive(*p)) {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
            _ = interrupts.reached(2) => {
                for p in pids {
                    crate::registry::interrupt(*p);
                }
                return false;
            }
        }
    }
}

/// The jobs running on one of the batch's instances, found as `stop JOB` finds a job.
async fn jobs_on(
    cloud: &crate::cloud::Cloud,
    registry: &crate::registry::Registry,
    i: &crate::cloud::TaggedInstance,
) -> Result<Vec<super::Found>, crate::cloud::CloudError> {
    if i.pool.is_none() {
        // A detached batch's instance runs the one job its tags name.
        return Ok(i
            .job_id
            .iter()
            .map(|j| super::Found {
                job_id: j.clone(),
                entry: registry.get(j),
                instance: Some(i.clone()),
                records: i
                    .records
                    .as_deref()
                    .and_then(|r| r.parse::<rtb_model::S3Url>().ok())
                    .map(rtb_model::JobRecords::at),
            })
            .collect());
    }
    let seen = crate::inventory::pool::fetch(cloud, i).await?;
    Ok(seen
        .current
        .into_iter()
        .map(|c| {
            let mut on = i.clone();
            on.deadline = c.deadline.or(on.deadline);
            super::Found {
                entry: registry.get(&c.job_id),
                job_id: c.job_id,
                instance: Some(on),
                records: c.records,
            }
        })
        .collect())
}

/// Stop every job on one instance (their outputs saved), then terminate it.
async fn stop_instance(
    cloud: &crate::cloud::Cloud,
    registry: &crate::registry::Registry,
    interrupts: &Interrupts,
    i: &crate::cloud::TaggedInstance,
    jobs: &[super::Found],
    json: bool,
) -> i32 {
    let ui = Ui::new(json);
    let mut reports = futures::future::join_all(
        jobs.iter()
            .map(|f| super::attach::take_over(cloud, registry, f, &ui, interrupts, false)),
    )
    .await;
    let pooled = reports.iter().all(|r| r.instance == InstanceFate::Pooled);
    let mut code = 0;
    if pooled {
        // None of its jobs runs any more: the instance goes.
        let ended = Instance::adopt(cloud, i.id.clone()).terminate().await;
        for r in &mut reports {
            match &ended {
                Ok(_) => r.instance = InstanceFate::Terminated,
                Err(e) => {
                    r.instance = InstanceFate::Unconfirmed;
                    r.exit_code = exit::UNCONFIRMED;
                    crate::lifecycle::push_error(r, e.to_string());
                }
            }
        }
        if jobs.is_empty() {
            match ended {
                Ok(_) => ui.note(format!(
                    "{}: no job of the batch runs on it; terminated",
                    i.id
                )),
                Err(e) => {
                    ui.note(e.to_string());
                    code = exit::UNCONFIRMED;
                }
            }
        }
    }
    for r in &reports {
        let c = super::attach::print(&ui, r, json);
        // Stopped, and its instance gone: what was asked.
        let done = matches!(r.instance, InstanceFate::Terminated)
            && (r.outcome == Outcome::Interrupted || c == exit::INTERRUPTED);
        if !done && c != 0 && code == 0 {
            code = c;
        }
    }
    code
}

async fn stop_one(job: String, args: StopArgs) -> i32 {
    {
        let ui = Ui::new(args.json);
        let (cloud, registry, found) =
            match super::attach::located(&job, &args.output, &args.aws).await {
                Ok(x) => x,
                Err(code) => return code,
            };
        // Already over (a --keep instance, or a detached job's last half-minute): nothing to
        // stop; end the instance.
        let result = match &found.records {
            Some(r) => cloud.job_result(r).await.ok().flatten(),
            None => None,
        };
        if let (Some(result), Some(tagged)) = (result, &found.instance) {
            ui.note(format!(
                "job {} has already ended (exit code {}); terminating {}",
                found.job_id, result.exit_code, tagged.id
            ));
            let job = JobRef {
                watch: None,
                job_id: found.job_id.clone(),
                container: true,
                records: found.records.clone(),
                deadline: found.deadline(),
                timeout: None,
                keep: false,
                api_patience: patience::DEFAULT,
                in_batch: false,
            };
            let mut r = Report {
                job_id: found.job_id.clone(),
                outcome: if result.exit_code == 0 {
                    Outcome::Succeeded
                } else {
                    Outcome::JobFailed
                },
                exit_code: result.exit_code,
                instance_id: Some(tagged.id.clone()),
                instance: InstanceFate::NotLaunched,
                ami: String::new(),
                instance_type: tagged.instance_type.clone(),
                region: cloud.region().map(str::to_string),
                output: None,
                records: found.records.as_ref().map(|r| r.root().to_string()),
                phases: Phases::default(),
                log_lines: 0,
                error: result.error.clone(),
                result: Some(result),
                kept: false,
            };
            let interrupts = Interrupts::listen();
            let instance = Instance::adopt(&cloud, tagged.id.clone());
            let patience = patience::Patience::new(patience::DEFAULT);
            if tagged.batch.is_some() {
                // A batch's instance: it may run another of the batch's jobs by now.
                super::attach::leave_shared(
                    &cloud,
                    &found,
                    &ui,
                    &interrupts,
                    instance,
                    Leave::Normally,
                    &patience,
                    &mut r,
                )
                .await;
            } else {
                crate::termination::end(
                    job.terms(),
                    &cloud,
                    &ui,
                    &interrupts,
                    instance,
                    Leave::Normally,
                    &patience,
                    &mut r,
                )
                .await;
            }
            // Stopping an ended job succeeded when its instance is gone (or is its batch's).
            if matches!(r.instance, InstanceFate::Terminated | InstanceFate::Pooled) {
                r.exit_code = 0;
            }
            return super::attach::print(&ui, &r, args.json);
        }
        let interrupts = Interrupts::listen_from(1);
        let report =
            super::attach::take_over(&cloud, &registry, &found, &ui, &interrupts, true).await;
        let code = super::attach::print(&ui, &report, args.json);
        // The stop did what it was asked: the job stopped, and its instance is gone (or left
        // to its batch's other jobs).
        match (report.outcome, report.instance) {
            (Outcome::Interrupted, InstanceFate::Terminated | InstanceFate::Pooled) => 0,
            _ if code == exit::INTERRUPTED => 0,
            _ => code,
        }
    }
}
