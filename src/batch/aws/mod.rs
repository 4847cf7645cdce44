//! A batch on the AWS Batch engine: the same batch file, its jobs queued, placed and retried by
//! AWS Batch. The client registers (or reuses) the job definition, checks the queue, submits
//! every row, and follows the jobs with the same view and summary as the EC2 engine; it may
//! leave at any time (`--detach`, Ctrl-C): the jobs belong to AWS Batch.
//!
//! Each job still writes its log chunks and `result.json` under its own output (the runner's
//! LOG_BUCKET is in its row), so `logs`, `status`, `--resume` and the summary read them as
//! for the EC2 engine.

mod record;
mod spec;
mod state;

pub use record::BatchRecord;
pub use spec::definition_spec;
use state::runnable_cause;
pub use state::{job_state, retried_view};

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use rtb_model::JobRecords;

use super::file::Settings;
use super::jobs::{BatchJob, Policy};
use super::pool::{Attempt, JobEnd, PoolStats};
use super::view::{Counts, View};
use crate::cloud::Cloud;
use crate::engine::aws_batch::{sizes, AwsBatch, DefinitionSpec, JobState, SubmitJob};
use crate::registry::Registry;
use crate::report::{InstanceFate, Outcome, Phases, Report};
use crate::signals::Interrupts;

/// How often the client asks AWS Batch for its jobs' states (ListJobs, one call per state and
/// array): AWS Batch itself moves a job on in seconds to minutes.
const POLL: Duration = Duration::from_secs(5);

/// Submit the batch and follow it to its end (or leave: `detach`, Ctrl-C).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    name: &str,
    run_id: &str,
    jobs: &[BatchJob],
    run: &[usize],
    policy: &Policy,
    settings: &Settings,
    cloud: &Cloud,
    interrupts: &Interrupts,
    registry: &Registry,
    view: &View,
    detach: bool,
) -> Result<(Vec<JobEnd>, PoolStats, bool), String> {
    let queue = policy
        .queue
        .clone()
        .ok_or("the aws-batch engine needs --queue")?;
    let var = |k: &str| std::env::var(k).ok();
    let spec = definition_spec(jobs, run, policy, settings, &var).map_err(|e| e.to_string())?;
    let engine = AwsBatch::new(cloud.config(), &crate::plan::owner());
    let size = sizes::Size {
        vcpus: spec.vcpus,
        memory_mib: spec.memory_mib,
    };
    let checked = engine
        .preflight(
            &queue,
            size,
            Some(jobs[run[0]].plan.launch.ami.as_str()).filter(|a| !a.is_empty()),
        )
        .await
        .map_err(|e| e.to_string())?;
    if !checked.problems.is_empty() {
        return Err(checked.problems.join("; "));
    }
    // The jobs act as the queue's job role (their S3 access, the manifest included).
    let spec = DefinitionSpec {
        job_role: checked.job_role.clone(),
        ..spec
    };
    let mut buckets: Vec<&str> = run
        .iter()
        .filter_map(|&j| jobs[j].plan.output.as_ref().map(|o| o.bucket()))
        .collect();
    buckets.sort();
    buckets.dedup();
    for b in &buckets {
        cloud
            .check_bucket(b)
            .await
            .map_err(|e| format!("output bucket {b}: {}", e.message))?;
    }
    let definition = engine
        .definition(&spec, name)
        .await
        .map_err(|e| e.to_string())?;
    view.note(&format!(
        "run-render: batch {name}: job definition {} ({}, {}), queue {queue}",
        definition.name,
        definition.arn,
        match (definition.reused, definition.replaced) {
            (true, _) => "reused: nothing changed".to_string(),
            (false, Some(what)) => format!(
                "registered as revision {}: the ACTIVE one of this name differed in {what}",
                definition.revision
            ),
            (false, None) => "registered".to_string(),
        }
    ));
    // Each row's settings. AWS Batch makes the attempts, so the runner names each attempt's
    // records folder itself, from the run and AWS Batch's attempt number: LOG_BUCKET is the
    // job's folder and RTB_RUN_ID this run (`<job>/<run>-a<N>/`, as the EC2 engine's).
    let rows: Vec<(usize, crate::plan::Plan)> = run
        .iter()
        .map(|&j| (j, jobs[j].plan_attempt(name, run_id, 1, false)))
        .collect();
    let submit: Vec<SubmitJob> = rows
        .iter()
        .map(|(j, plan)| SubmitJob {
            job_id: jobs[*j].job_id.clone(),
            name: jobs[*j].name.clone(),
            settings: attempt_settings(plan, jobs[*j].records_base().as_ref(), run_id),
        })
        .collect();
    let manifest_at = {
        let first = jobs[run[0]].plan.output.as_ref().ok_or("no output")?;
        crate::engine::aws_batch::plan::manifests_folder(first.bucket(), run_id)
            .map_err(|e| e.to_string())?
    };
    let t = Instant::now();
    let how = match settings.submit.as_deref() {
        Some("per-row") => crate::engine::aws_batch::SubmitPlan::PerRow,
        _ => crate::engine::aws_batch::plan::submit_plan(submit.len()),
    };
    let submitted = engine
        .submit_as(how, name, &submit, &queue, &definition, &manifest_at)
        .await
        .map_err(|e| e.to_string())?;
    view.note(&format!(
        "run-render: batch {name}: {} job(s) submitted to {queue} in {} call(s), {:.1}s{}",
        submitted.jobs.len(),
        submitted.calls,
        t.elapsed().as_secs_f64(),
        if submitted.arrays.is_empty() {
            String::new()
        } else {
            " (array job, rows in an S3 manifest)".into()
        }
    ));
    let record = BatchRecord {
        batch: name.to_string(),
        run_id: Some(run_id.to_string()),
        engine: "aws-batch".into(),
        queue: queue.clone(),
        region: cloud.region().map(str::to_string),
        endpoint_url: jobs[run[0]].plan.endpoint_url.clone(),
        submitted_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        jobs: submitted.jobs.iter().map(|j| j.job_id.clone()).collect(),
        submitted: submitted.clone(),
        vcpus: spec.vcpus,
        memory_mib: spec.memory_mib,
    };
    if let Err(e) = record.save(registry) {
        view.note(&format!(
            "run-render: could not record batch {name} locally: {e}"
        ));
    }
    for (_, plan) in &rows {
        let mut entry = crate::lifecycle::registry_entry(plan, cloud);
        entry.client_pid = None;
        entry.launch_tokens.clear();
        entry.aws_batch_queue = Some(queue.clone());
        let _ = registry.save(&entry);
    }
    let mut ends = vec![JobEnd::default(); jobs.len()];
    let stats = PoolStats::default();
    if detach {
        for &j in run {
            ends[j].not_run = Some(format!("submitted to {queue} (detached)"));
        }
        return Ok((ends, stats, true));
    }
    let records: BTreeMap<String, JobRecords> = rows
        .iter()
        .filter_map(|(j, p)| {
            p.work_records()
                .map(|r| (jobs[*j].job_id.clone(), r.clone()))
        })
        .collect();
    let mut told_runnable = false;
    loop {
        let states = engine.states(&submitted).await;
        let states = match states {
            Ok(s) => s,
            Err(e) => {
                view.note(&format!("run-render: batch {name}: {e} (asking again)"));
                Vec::new()
            }
        };
        let mut c = Counts {
            total: run.len(),
            ..Counts::default()
        };
        let mut all_final = !states.is_empty();
        let mut runnable_since: Option<SystemTime> = None;
        for s in &states {
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
        view.update(&c);
        if all_final {
            break;
        }
        // AWS Batch's best-known trap: jobs that stay RUNNABLE. Say why, once.
        if let Some(since) = runnable_since {
            let waited = SystemTime::now().duration_since(since).unwrap_or_default();
            if !told_runnable {
                if let Some(advice) = runnable_cause(&engine, &queue, size, waited).await {
                    view.note(&format!(
                        "run-render: batch {name}: jobs RUNNABLE for {}: {advice}",
                        crate::cmd::short_duration(waited),
                    ));
                    told_runnable = true;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = interrupts.reached(1) => {
                for &j in run {
                    ends[j].not_run = Some(format!("left running on {queue} (the client detached)"));
                }
                view.note(&format!(
                    "run-render: batch {name}: detached; the jobs belong to AWS Batch and go on. Follow with `run-render status --batch {name}`; cancel with `run-render stop --batch {name}`"
                ));
                return Ok((ends, stats, true));
            }
        }
    }
    // The end: AWS Batch's word, and the runner's (its result record, its MATLAB error).
    let states = engine.states(&submitted).await.map_err(|e| e.to_string())?;
    let index: BTreeMap<&str, usize> = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| (j.job_id.as_str(), i))
        .collect();
    for s in states {
        let Some(&j) = index.get(s.job_id.as_str()) else {
            continue;
        };
        // The last attempt AWS Batch made of this run is the job's outcome.
        let last = match jobs[j].records_base() {
            Some(base) => state::last_attempt(cloud, &base, run_id).await,
            None => None,
        };
        let result = match last.as_ref().or(records.get(&s.job_id)) {
            Some(r) => cloud.job_result(r).await.ok().flatten(),
            None => None,
        };
        let status = s.status.as_ref();
        let aws_code = status.and_then(|st| st.exit_code);
        let reason = status.and_then(|st| st.reason.clone().or(st.container_reason.clone()));
        let (outcome, code) = match (status.map(|st| st.state), &result) {
            (Some(JobState::Succeeded), _) => (Outcome::Succeeded, 0),
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
            output: jobs[j].plan.output.as_ref().map(|o| o.to_string()),
            records: last
                .as_ref()
                .or(records.get(&s.job_id))
                .map(|r| r.root().to_string()),
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
    Ok((ends, stats, false))
}

/// A row's runner settings on AWS Batch: the plan's, with the job's records folder as
/// LOG_BUCKET and this run as RTB_RUN_ID, so each attempt AWS Batch makes writes its own
/// folder under it.
fn attempt_settings(
    plan: &crate::plan::Plan,
    base: Option<&JobRecords>,
    run_id: &str,
) -> BTreeMap<String, String> {
    use rtb_model::contract::{LOG_BUCKET, RUN_ID};
    let mut settings: BTreeMap<String, String> = match &plan.work {
        crate::plan::Work::Container(c) => c.env.iter().cloned().collect(),
        crate::plan::Work::Shell(_) => BTreeMap::new(),
    };
    if let Some(base) = base {
        settings.insert(LOG_BUCKET.name.to_string(), base.root().to_string());
        settings.insert(RUN_ID.name.to_string(), run_id.to_string());
    }
    settings
}
