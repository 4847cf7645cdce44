//! A batch on the AWS Batch engine: the same batch file, its jobs queued, placed and retried by
//! AWS Batch. The client registers (or reuses) the job definition, checks the queue, submits
//! every row, and follows the jobs with the same view and summary as the EC2 engine; it may
//! leave at any time (`--detach`, Ctrl-C): the jobs belong to AWS Batch.
//!
//! Each job still writes its log chunks and `result.json` under its own output, one folder per
//! attempt AWS Batch makes (`<job>/<run>-a<N>/`), so `logs`, `status`, `--resume` and the
//! summary read them as for the EC2 engine.
//!
//! One submission at a time: while a batch's jobs of this owner are queued or running on the
//! queue (found from AWS Batch, not only from this workstation), another is refused, since it
//! would write into the same outputs. The submission is recorded before SubmitJob (intent),
//! and its jobs are tagged with their run, so one a crash or an error cut short is known.

mod budget;
mod follow;
mod record;
mod spec;
mod state;

pub use record::{BatchRecord, Submission};
pub use spec::{definition_spec, job_env, SpecError, TEST_JOB_CREDENTIALS};
pub use state::{job_state, retried_view};

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

use rtb_model::JobRecords;

use super::file::Settings;
use super::jobs::{BatchJob, Policy};
use super::pool::{JobEnd, PoolStats};
use super::view::View;
use crate::cloud::Cloud;
use crate::engine::aws_batch::{sizes, AwsBatch, DefinitionSpec, SubmitJob, SubmitPlan, TopJob};
use crate::registry::{Ended, Registry};
use crate::report::exit;
use crate::signals::Interrupts;

/// Why a batch could not be submitted or followed, with its exit code.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The batch file asks for what one job definition cannot be: nothing was called.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// Refused before submitting (the queue, the buckets, a submission still at work).
    #[error("{0}")]
    Refused(String),
    /// Submitting stopped partway: what was submitted runs; the line says what to do.
    #[error("{0}")]
    Incomplete(String),
    /// AWS Batch stopped answering for longer than the patience; the jobs go on.
    #[error("{0}")]
    Unanswered(String),
    /// AWS Batch refused to say where the jobs are (permissions, the queue gone); they go on.
    #[error("{0}")]
    Lost(String),
}

impl RunError {
    pub fn code(&self) -> i32 {
        match self {
            RunError::Spec(_) => exit::BAD_INPUT,
            RunError::Refused(_) => exit::PREFLIGHT,
            RunError::Incomplete(_) => exit::REMOTE,
            RunError::Unanswered(_) => exit::UNCONFIRMED,
            RunError::Lost(_) => exit::REMOTE,
        }
    }
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
    budget: Option<(crate::cost::Budget, f64)>,
    price: Option<f64>,
) -> Result<Followed, RunError> {
    let queue = policy
        .queue
        .clone()
        .ok_or_else(|| RunError::Refused("the aws-batch engine needs --queue".into()))?;
    let var = |k: &str| std::env::var(k).ok();
    let spec = definition_spec(jobs, run, policy, settings, &var)?;
    let engine = AwsBatch::new(cloud.config(), &crate::plan::owner());
    let refused = |e: &dyn std::fmt::Display| RunError::Refused(e.to_string());
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
        .map_err(|e| refused(&e))?;
    if !checked.problems.is_empty() {
        return Err(RunError::Refused(checked.problems.join("; ")));
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
            .map_err(|e| RunError::Refused(format!("output bucket {b}: {}", e.message)))?;
    }
    // One submission at a time (see the module's docs).
    let live = engine
        .live_jobs(&queue, name)
        .await
        .map_err(|e| refused(&e))?;
    if !live.is_empty() {
        return Err(RunError::Refused(still_at_work(name, &queue, &live)));
    }
    let definition = engine
        .definition(&spec, name)
        .await
        .map_err(|e| refused(&e))?;
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
    let manifests = {
        let first = jobs[run[0]]
            .plan
            .output
            .as_ref()
            .ok_or_else(|| RunError::Refused("the batch's jobs have no --output".into()))?;
        crate::engine::aws_batch::plan::manifests_folder(first.bucket(), run_id)
            .map_err(|e| refused(&e))?
    };
    let how = match settings.submit.as_deref() {
        Some("per-row") => SubmitPlan::PerRow,
        _ => crate::engine::aws_batch::plan::submit_plan(submit.len()),
    };
    // Intent first: the record names the run, the queue and the rows before any SubmitJob.
    let mut record = BatchRecord {
        batch: name.to_string(),
        run_id: Some(run_id.to_string()),
        state: Submission::Submitting,
        per_row: how == SubmitPlan::PerRow,
        engine: "aws-batch".into(),
        queue: queue.clone(),
        region: cloud.region().map(str::to_string),
        endpoint_url: jobs[run[0]].plan.endpoint_url.clone(),
        submitted_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        jobs: submit.iter().map(|j| j.job_id.clone()).collect(),
        submitted: Default::default(),
        vcpus: spec.vcpus,
        memory_mib: spec.memory_mib,
        price,
    };
    if let Err(e) = record.save(registry) {
        return Err(RunError::Refused(format!(
            "cannot record batch {name} before submitting it: {e}"
        )));
    }
    save_entries(&rows, cloud, registry, &queue, |_| true);
    let t = Instant::now();
    let submitted = engine
        .submit_as(how, name, run_id, &submit, &queue, &definition, &manifests)
        .await;
    let submitted = match submitted {
        Ok(s) => s,
        Err(partial) => {
            record.state = Submission::Incomplete;
            record.submitted = partial.submitted.clone();
            let _ = record.save(registry);
            let done: Vec<&str> = partial
                .submitted
                .jobs
                .iter()
                .map(|j| j.job_id.as_str())
                .collect();
            save_entries(&rows, cloud, registry, &queue, |id| done.contains(&id));
            return Err(RunError::Incomplete(incomplete(
                name,
                &queue,
                partial.submitted.jobs.len(),
                submit.len(),
                &partial.error,
            )));
        }
    };
    record.state = Submission::Submitted;
    record.submitted = submitted.clone();
    if let Err(e) = record.save(registry) {
        view.note(&format!(
            "run-render: could not record batch {name} locally: {e}"
        ));
    }
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
    let mut ends = vec![JobEnd::default(); jobs.len()];
    if detach {
        for &j in run {
            ends[j].not_run = Some(format!("submitted to {queue} (detached)"));
        }
        return Ok(Followed {
            ends,
            stats: PoolStats::default(),
            left: true,
            submitted,
        });
    }
    let followed = follow::Follow {
        name,
        run_id,
        queue: &queue,
        jobs,
        run,
        rows: &rows,
        size,
        api_patience: jobs[run[0]].plan.api_patience,
        budget,
    };
    let (ends, stats, left) = followed
        .run(&engine, &submitted, cloud, interrupts, view, ends)
        .await?;
    Ok(Followed {
        ends,
        stats,
        left,
        submitted,
    })
}

/// How a submitted batch was left: each job's end, whether the client left the jobs running
/// (`--detach`, Ctrl-C), and what was submitted (whose attempts its cost is worked out from).
pub struct Followed {
    pub ends: Vec<JobEnd>,
    pub stats: PoolStats,
    pub left: bool,
    pub submitted: crate::engine::aws_batch::Submitted,
}

/// Registry entries for the rows (each names its first attempt's records; AWS Batch makes
/// the later ones); a row `submitted` says was not submitted is marked as not run.
fn save_entries(
    rows: &[(usize, crate::plan::Plan)],
    cloud: &Cloud,
    registry: &Registry,
    queue: &str,
    submitted: impl Fn(&str) -> bool,
) {
    let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    for (_, plan) in rows {
        let mut entry = crate::lifecycle::registry_entry(plan, cloud);
        entry.client_pid = None;
        entry.launch_tokens.clear();
        entry.aws_batch_queue = Some(queue.to_string());
        if !submitted(&plan.job_id) {
            entry.ended = Some(Ended {
                outcome: "not_run".into(),
                exit_code: exit::REMOTE,
                at: now.clone(),
            });
        }
        let _ = registry.save(&entry);
    }
}

/// The refusal of a second submission while the first's jobs are at work.
fn still_at_work(name: &str, queue: &str, live: &[TopJob]) -> String {
    let mut runs: Vec<&str> = live.iter().filter_map(|j| j.run()).collect();
    runs.sort();
    runs.dedup();
    let what: Vec<String> = live
        .iter()
        .take(3)
        .map(|j| match j.children {
            Some((size, left)) => format!("{} ({left} of {size} rows not ended)", j.id),
            None => format!("{} ({})", j.id, j.state.as_aws()),
        })
        .collect();
    format!(
        "batch {name}: {} job(s) of yours from an earlier submission{} are still queued or running on {queue}: {}{}; submitting again would write into the same outputs. Follow them with `run-render status --batch {name}`, or end them with `run-render stop --batch {name}`, then submit again (--resume skips the rows that succeeded)",
        live.len(),
        match runs.as_slice() {
            [] => String::new(),
            runs => format!(" (run {})", runs.join(", ")),
        },
        what.join(", "),
        if live.len() > 3 { ", ..." } else { "" }
    )
}

/// What a submission cut short says.
fn incomplete(
    name: &str,
    queue: &str,
    done: usize,
    all: usize,
    error: &crate::engine::aws_batch::BatchError,
) -> String {
    let and_then = if done == 0 {
        "nothing was submitted; submit again once AWS Batch answers".to_string()
    } else {
        format!(
            "the {done} submitted run on {queue} without this client: follow them with `run-render status --batch {name}`, or end them with `run-render stop --batch {name}`; once they have ended, `run-render batch FILE --resume` submits the rest"
        )
    };
    format!("batch {name}: submitting stopped after {done} of {all} job(s): {error}; {and_then}")
}

/// A row's runner settings on AWS Batch: the plan's, with the job's records folder as
/// LOG_BUCKET and this run as RTB_RUN_ID, so each attempt AWS Batch makes writes its own
/// folder under it.
fn attempt_settings(
    plan: &crate::plan::Plan,
    base: Option<&JobRecords>,
    run_id: &str,
) -> BTreeMap<String, String> {
    use rtb_model::contract::{ATTEMPT, CHECKPOINT_EVERY, LOG_BUCKET, RESUME_FROM, RUN_ID};
    let mut settings: BTreeMap<String, String> = match &plan.work {
        crate::plan::Work::Container(c) => c.env.iter().cloned().collect(),
        crate::plan::Work::Shell(_) => BTreeMap::new(),
    };
    // AWS Batch numbers the attempts (AWS_BATCH_JOB_ATTEMPT): a number of ours would name
    // every retry's records folder after the first attempt.
    settings.remove(ATTEMPT.name);
    if let Some(base) = base {
        settings.insert(LOG_BUCKET.name.to_string(), base.root().to_string());
        settings.insert(RUN_ID.name.to_string(), run_id.to_string());
        // A retry that AWS Batch makes resumes from what the attempt before it checkpointed.
        if settings.contains_key(CHECKPOINT_EVERY.name) {
            settings.insert(RESUME_FROM.name.to_string(), "previous".to_string());
        }
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::jobs::{jobs, Engine};

    /// AWS Batch numbers the attempts itself, and a retry it makes resumes from the attempt
    /// before when the job checkpoints.
    #[test]
    fn a_rows_settings_leave_the_attempt_to_aws_batch() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("jobs.csv"), "n\n1\n").unwrap();
        let f = d.path().join("b.toml");
        std::fs::write(
            &f,
            "[batch]\ncsv = \"jobs.csv\"\n[job]\ncommand = \"r\"\noutput = \"s3://lab-bucket/${n}\"\ncheckpoint-every = \"15m\"\n",
        )
        .unwrap();
        let js = jobs(
            &crate::batch::BatchFile::load(&f).unwrap(),
            &[],
            Engine::AwsBatch,
        )
        .unwrap();
        let plan = js[0].plan_attempt("b", "r1", 1, false);
        let s = attempt_settings(&plan, js[0].records_base().as_ref(), "r1");
        assert!(!s.contains_key("RTB_ATTEMPT"), "{s:?}");
        assert_eq!(s.get("RTB_RUN_ID").map(String::as_str), Some("r1"));
        assert_eq!(
            s.get("RTB_RESUME_FROM").map(String::as_str),
            Some("previous")
        );
        assert_eq!(
            s.get("LOG_BUCKET").map(String::as_str),
            Some("s3://lab-bucket/1/_rtb-job/b-1/")
        );
    }
}
