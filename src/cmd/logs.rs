//! `logs JOB [--follow]`: the job's whole log from its S3 chunks, with the same line format
//! as `run`; with --follow, new lines as they come until the job ends. Ctrl-C stops
//! following and leaves the job alone.

use std::time::Duration;

use super::find;
use crate::cli::LogsArgs;
use crate::logs::Tail;
use crate::registry::Registry;
use crate::report::exit;
use crate::signals::Interrupts;
use crate::ui::Ui;

const POLL: Duration = Duration::from_millis(500);
/// How often, while following, the job's end (its result record, its instance) is looked for.
const END_EVERY: Duration = Duration::from_secs(2);

pub fn main(args: LogsArgs) -> i32 {
    super::block_on(run(args))
}

async fn run(args: LogsArgs) -> i32 {
    let output = match super::output_url(&args.output) {
        Ok(o) => o,
        Err(e) => return super::bad_input(&e, false),
    };
    let registry = Registry::open();
    let (job, output) = match (&args.job, output) {
        (Some(job), output) => {
            if let Err(e) = rtb_model::job_id::check(job) {
                return super::bad_input(&e, false);
            }
            (job.clone(), output)
        }
        (None, None) => return super::bad_input("give a job id, or --output", false),
        (None, Some(output)) => {
            // From anywhere: the jobs whose records are under that output.
            let cloud = super::connect(&args.aws, None).await;
            let (jobs, stopped_early) = match super::jobs_under(&cloud, &output).await {
                Ok(j) => j,
                Err(e) => return super::fail(&format!("--output {output}: {e}"), exit::REMOTE),
            };
            match jobs.len() {
                0 => return super::fail(&super::nothing_under(&output, stopped_early), 1),
                1 => jobs
                    .into_iter()
                    .next()
                    .map(|(j, o)| (j, Some(o)))
                    .unwrap_or_default(),
                n if args.follow => {
                    let names: Vec<&str> = jobs.iter().map(|(j, _)| j.as_str()).collect();
                    return super::bad_input(
                        &format!(
                            "--follow follows one job, and {n} have records under {output} ({}): name one, e.g. run-render logs {} --output {output} --follow",
                            names.join(", "),
                            names[0]
                        ),
                        false,
                    );
                }
                _ => {
                    // Each job's whole log, after a header naming it (as `tail` does files).
                    let mut code = 0;
                    for (job, under) in jobs {
                        super::emit(&format!("==> {job} <==\n"));
                        let c = show(&cloud, &registry, &job, Some(under), false).await;
                        code = code.max(c);
                    }
                    return code;
                }
            }
        }
    };
    let entry = registry.get(&job);
    let cloud = super::connect(&args.aws, entry.as_ref()).await;
    show(&cloud, &registry, &job, output, args.follow).await
}

/// One job's log: what is there, then (`follow`) new lines until the job ends.
async fn show(
    cloud: &crate::cloud::Cloud,
    registry: &Registry,
    job: &str,
    output: Option<rtb_model::S3Url>,
    follow: bool,
) -> i32 {
    let found = match find(cloud, registry, job, output.as_ref()).await {
        Ok(f) => f,
        Err(e) => return super::fail(&e.to_string(), exit::REMOTE),
    };
    let Some(mut records) = found.records.clone() else {
        return super::fail(
            &format!(
                "job {job}: no log to show: {}",
                if found.entry.as_ref().is_some_and(|e| e.shell) {
                    "a --shell job keeps no log in S3"
                } else {
                    "its records folder is unknown here; give the job's --output"
                }
            ),
            1,
        );
    };
    let interrupts = Interrupts::listen();
    let ui = Ui::plain();
    let mut tail = Tail::new(records.clone());
    // What is there already, every page of it.
    loop {
        match tail.poll(cloud, &ui).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return super::fail(&format!("cannot read the log: {e}"), exit::REMOTE),
        }
    }
    if !follow {
        if tail.chunks == 0 {
            ui.note(format!(
                "job {}: no log lines yet ({})",
                job,
                records.root()
            ));
        }
        return 0;
    }
    let batch_record = crate::batch::aws::BatchRecord::of_entry(registry, found.entry.as_ref());
    let mut end_check = tokio::time::interval(END_EVERY);
    let mut told_retry = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {
                if let Err(e) = tail.poll(cloud, &ui).await {
                    ui.note(format!("cannot read the log ({e}); retrying"));
                }
            }
            _ = end_check.tick() => {
                if let Ok(Some(r)) = cloud.job_result(&records).await {
                    // The record is written after the last chunk: read to the end.
                    while let Ok(n) = tail.poll(cloud, &ui).await {
                        if n == 0 { break; }
                    }
                    // On AWS Batch a failed attempt's record is not the end while AWS Batch
                    // tries again: follow the next attempt's folder once it appears.
                    if let Some(record) = batch_record.as_ref().filter(|_| r.exit_code != 0) {
                        let batch = crate::batch::aws::job_state(cloud, record, job).await;
                        let attempt = records.as_attempt();
                        let view = crate::batch::aws::retried_view(
                            Some(&r),
                            attempt.as_ref().map(|(_, _, n)| *n),
                            batch,
                        );
                        if let Some((_, detail)) = view {
                            if !told_retry {
                                ui.note(format!("job {job}: {}", detail.unwrap_or_default()));
                                told_retry = true;
                            }
                            if let Some((base, _, _)) = attempt {
                                if let Ok(newest) = cloud.newest_attempt(base).await {
                                    if newest != records {
                                        ui.note(format!(
                                            "job {job}: following its attempt in {}",
                                            newest.root()
                                        ));
                                        records = newest;
                                        tail = Tail::new(records.clone());
                                        told_retry = false;
                                    }
                                }
                            }
                            continue;
                        }
                    }
                    ui.note(format!(
                        "job {} ended: {} (exit code {})",
                        job,
                        serde_json::to_value(r.outcome).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
                        r.exit_code
                    ));
                    return 0;
                }
                // On AWS Batch: a job that AWS Batch says is over, with no result record
                // (killed before the runner could write it), ends the follow too.
                if let Some(record) = &batch_record {
                    if let Some((state, why)) = crate::batch::aws::job_state(cloud, record, job).await {
                        use crate::inventory::JobState;
                        if matches!(state, JobState::Succeeded | JobState::Failed) {
                            let _ = tail.poll(cloud, &ui).await;
                            if cloud.job_result(&records).await.ok().flatten().is_none() {
                                ui.note(format!(
                                    "job {}: AWS Batch ended it without a result record{}",
                                    job,
                                    why.map(|w| format!(" ({w})")).unwrap_or_default()
                                ));
                                return exit::REMOTE;
                            }
                        }
                    }
                }
                if let Some(i) = &found.instance {
                    if let Ok(Some(s)) = cloud.instance_state(&i.id).await {
                        if s.is_gone() {
                            let _ = tail.poll(cloud, &ui).await;
                            if cloud.job_result(&records).await.ok().flatten().is_none() {
                                ui.note(format!(
                                    "job {}: its instance {} ended ({}) without a result record: the job is lost",
                                    job, i.id, s.describe()
                                ));
                                return exit::INSTANCE_LOST;
                            }
                        }
                    }
                }
            }
            _ = interrupts.reached(1) => {
                ui.note(format!(
                    "stopped following; job {} goes on (run-render status {})",
                    job, job
                ));
                return exit::INTERRUPTED;
            }
        }
    }
}
