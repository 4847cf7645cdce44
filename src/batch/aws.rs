//! A batch on the AWS Batch engine: the same batch file, its jobs queued, placed and retried by
//! AWS Batch. The client registers (or reuses) the job definition, checks the queue, submits
//! every row, and follows the jobs with the same view and summary as the EC2 engine; it may
//! leave at any time (`--detach`, Ctrl-C): the jobs belong to AWS Batch.
//!
//! Each job still writes its log chunks and `result.json` under its own output (the runner's
//! LOG_BUCKET is in its row), so `logs`, `status`, `--resume` and the summary read them as
//! for the EC2 engine.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use rtb_model::{JobRecords, S3Url};
use serde::{Deserialize, Serialize};

use super::file::Settings;
use super::jobs::{BatchJob, Policy};
use super::pool::{Attempt, JobEnd, PoolStats};
use super::view::{Counts, View};
use crate::cloud::Cloud;
use crate::engine::aws_batch::{
    diagnose, sizes, AwsBatch, DefinitionSpec, JobState, SubmitJob, Submitted,
};
use crate::registry::Registry;
use crate::report::{InstanceFate, Outcome, Phases, Report};
use crate::signals::Interrupts;

/// How often the client asks AWS Batch for its jobs' states (ListJobs, one call per state and
/// array): AWS Batch itself moves a job on in seconds to minutes.
const POLL: Duration = Duration::from_secs(5);

/// What a submitted batch leaves on the workstation (next to the job registry), so `stop
/// --batch` and `status --batch` find its queue and jobs later.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchRecord {
    pub batch: String,
    pub engine: String,
    pub queue: String,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub submitted_at: String,
    pub jobs: Vec<String>,
    /// What was submitted (AWS Batch's ids, the arrays): `status` asks AWS Batch by them.
    pub submitted: Submitted,
    /// What each job asked for (the RUNNABLE diagnosis compares it with the instance types).
    pub vcpus: u32,
    pub memory_mib: u32,
}

impl BatchRecord {
    fn path(registry: &Registry, batch: &str) -> std::path::PathBuf {
        registry
            .dir()
            .parent()
            .unwrap_or(registry.dir())
            .join("batches")
            .join(format!("{batch}.json"))
    }

    /// The record of the AWS Batch submission a registry entry's job belongs to, if any.
    pub fn of_entry(
        registry: &Registry,
        entry: Option<&crate::registry::Entry>,
    ) -> Option<BatchRecord> {
        let e = entry.filter(|e| e.aws_batch_queue.is_some())?;
        BatchRecord::load(registry, e.batch.as_deref()?)
    }

    pub fn load(registry: &Registry, batch: &str) -> Option<BatchRecord> {
        let text = std::fs::read_to_string(BatchRecord::path(registry, batch)).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn save(&self, registry: &Registry) -> std::io::Result<()> {
        let path = BatchRecord::path(registry, &self.batch);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_vec_pretty(self).unwrap_or_default())
    }
}

/// The job definition every row shares, and each row's own settings. What AWS Batch runs must
/// be the same for every row (one definition): the image and the mounts.
pub fn definition_spec(
    jobs: &[BatchJob],
    run: &[usize],
    policy: &Policy,
    settings: &Settings,
) -> Result<DefinitionSpec, String> {
    let first = &jobs[run[0]];
    let container = |j: &BatchJob| match &j.plan.work {
        crate::plan::Work::Container(c) => Some(c.clone()),
        crate::plan::Work::Shell(_) => None,
    };
    let Some(c) = container(first) else {
        return Err("aws-batch runs container jobs only".into());
    };
    for &j in run {
        let other = container(&jobs[j]).ok_or("aws-batch runs container jobs only")?;
        if other.image != c.image || other.volumes != c.volumes {
            return Err(format!(
                "row {}: its image or volumes differ from row {}'s; AWS Batch runs one job definition per batch",
                jobs[j].row.number, first.row.number
            ));
        }
    }
    let matlab = rtb_model::contract::MATLAB_MOUNT_POINT;
    let volumes = c
        .volumes
        .iter()
        .filter(|(_, ctr, _)| ctr != matlab)
        .map(|(h, ctr, ro)| (h.into(), ctr.into(), *ro))
        .collect();
    let size = sizes::job_size(
        first.plan.launch.instance_types.first().map(String::as_str),
        settings.vcpus,
        settings.memory_mib,
    )
    .map_err(|e| e.to_string())?;
    Ok(DefinitionSpec {
        image: c.image.clone(),
        matlab_root: first.args.job.work.matlab_root.clone(),
        volumes,
        env: emulator_env(
            first.plan.endpoint_url.as_deref(),
            first.plan.region.as_deref(),
        ),
        retries: policy.retries,
        retry_on_job_error: policy.retry_on_job_error,
        timeout: first.plan.timeout,
        vcpus: size.vcpus,
        memory_mib: size.memory_mib,
    })
}

/// On AWS, a job's AWS access comes from its compute environment's instance role, and nothing
/// of the client's is passed on. With a custom endpoint (a local emulator, an S3-compatible
/// store) there is no such role: the jobs get the endpoint, the region and the client's own
/// static keys from its environment, as the EC2 engine's instances pass theirs to the
/// container.
fn emulator_env(endpoint: Option<&str>, region: Option<&str>) -> BTreeMap<String, String> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let Some(endpoint) = endpoint
        .map(str::to_string)
        .or_else(|| var("AWS_ENDPOINT_URL"))
    else {
        return BTreeMap::new();
    };
    let mut env = BTreeMap::from([
        ("AWS_ENDPOINT_URL".to_string(), endpoint),
        ("AWS_EC2_METADATA_DISABLED".to_string(), "true".to_string()),
    ]);
    if let Some(r) = region.map(str::to_string).or_else(|| var("AWS_REGION")) {
        env.insert("AWS_REGION".into(), r);
    }
    for k in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ] {
        if let Some(v) = var(k) {
            env.insert(k.into(), v);
        }
    }
    env
}

/// Why jobs of `size` have been RUNNABLE on `queue` for `waited`, once that is longer than
/// normal (a compute environment scaling from zero takes minutes): the diagnosis's advice.
async fn runnable_cause(
    engine: &AwsBatch,
    queue: &str,
    size: sizes::Size,
    waited: Duration,
) -> Option<String> {
    if waited <= diagnose::RUNNABLE_PATIENCE {
        return None;
    }
    let (q, _, envs) = engine.queue_facts(queue).await.ok()?;
    let facts = diagnose::RunnableFacts {
        runnable_for: waited,
        size,
        queue: q,
        environments: envs,
    };
    diagnose::runnable(&facts).map(|c| c.advice())
}

/// What AWS Batch says of a submitted job that has no result record yet: (state, why), for
/// `status`. A job RUNNABLE for long gets the likely cause (AWS Batch's best-known trap).
pub async fn job_state(
    cloud: &Cloud,
    record: &BatchRecord,
    job_id: &str,
) -> Option<(crate::inventory::JobState, Option<String>)> {
    use crate::inventory::JobState as S;
    let engine = AwsBatch::new(cloud.config(), &crate::plan::owner());
    let states = engine.states(&record.submitted).await.ok()?;
    let st = states.into_iter().find(|s| s.job_id == job_id)?.status?;
    let reason = st.reason.clone().or(st.container_reason.clone());
    Some(match st.state {
        JobState::Succeeded => (S::Succeeded, None),
        JobState::Failed => (
            S::Failed,
            reason.or(st.exit_code.map(|c| format!("exit code {c}"))),
        ),
        JobState::Starting | JobState::Running => (S::Running, None),
        JobState::Runnable => {
            let waited = st
                .created_at
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .unwrap_or_default();
            let mut why = format!(
                "RUNNABLE on {} for {}",
                record.queue,
                crate::cmd::short_duration(waited)
            );
            let size = sizes::Size {
                vcpus: record.vcpus,
                memory_mib: record.memory_mib,
            };
            if let Some(advice) = runnable_cause(&engine, &record.queue, size, waited).await {
                why = format!("{why}: {advice}");
            }
            (S::Starting, Some(why))
        }
        other => (
            S::Starting,
            Some(format!("{} on {}", other.as_aws(), record.queue)),
        ),
    })
}

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
    let spec = definition_spec(jobs, run, policy, settings)?;
    let engine = AwsBatch::new(cloud.config(), &crate::plan::owner());
    let size = sizes::Size {
        vcpus: spec.vcpus,
        memory_mib: spec.memory_mib,
    };
    let checked = engine
        .preflight(&queue, size)
        .await
        .map_err(|e| e.to_string())?;
    if !checked.problems.is_empty() {
        return Err(checked.problems.join("; "));
    }
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
        if definition.reused {
            "reused: nothing changed"
        } else {
            "registered"
        }
    ));
    // Each row's settings: its own records folder for this run (AWS Batch's retries of one
    // job share it; each run of the batch has its own).
    let rows: Vec<(usize, crate::plan::Plan)> = run
        .iter()
        .map(|&j| (j, jobs[j].plan_attempt(name, run_id, 1, false)))
        .collect();
    let submit: Vec<SubmitJob> = rows
        .iter()
        .map(|(j, plan)| SubmitJob {
            job_id: jobs[*j].job_id.clone(),
            name: jobs[*j].name.clone(),
            settings: match &plan.work {
                crate::plan::Work::Container(c) => c.env.iter().cloned().collect(),
                crate::plan::Work::Shell(_) => BTreeMap::new(),
            },
        })
        .collect();
    let manifest_at = {
        let first = jobs[run[0]].plan.output.as_ref().ok_or("no output")?;
        S3Url::new(first.bucket(), &format!("_rtb-batch/{run_id}/")).map_err(|e| e.to_string())?
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
        let result = match records.get(&s.job_id) {
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
            ran: status.and_then(|st| st.started_at.zip(st.stopped_at)),
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
            records: records.get(&s.job_id).map(|r| r.root().to_string()),
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
