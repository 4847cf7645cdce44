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
    if let Err(e) = rtb_model::job_id::check(&args.job) {
        return super::bad_input(&e, false);
    }
    let registry = Registry::open();
    let entry = registry.get(&args.job);
    let cloud = super::connect(&args.aws, entry.as_ref()).await;
    let found = match find(&cloud, &registry, &args.job, output.as_ref()).await {
        Ok(f) => f,
        Err(e) => return super::fail(&e.to_string(), exit::REMOTE),
    };
    let Some(records) = found.records.clone() else {
        return super::fail(
            &format!(
                "job {}: no log to show: {}",
                args.job,
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
        match tail.poll(&cloud, &ui).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return super::fail(&format!("cannot read the log: {e}"), exit::REMOTE),
        }
    }
    if !args.follow {
        if tail.chunks == 0 {
            ui.note(format!(
                "job {}: no log lines yet ({})",
                args.job,
                records.root()
            ));
        }
        return 0;
    }
    let batch_record = crate::batch::aws::BatchRecord::of_entry(&registry, found.entry.as_ref());
    let mut end_check = tokio::time::interval(END_EVERY);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {
                if let Err(e) = tail.poll(&cloud, &ui).await {
                    ui.note(format!("cannot read the log ({e}); retrying"));
                }
            }
            _ = end_check.tick() => {
                if let Ok(Some(r)) = cloud.job_result(&records).await {
                    // The record is written after the last chunk: read to the end.
                    while let Ok(n) = tail.poll(&cloud, &ui).await {
                        if n == 0 { break; }
                    }
                    ui.note(format!(
                        "job {} ended: {} (exit code {})",
                        args.job,
                        serde_json::to_value(r.outcome).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
                        r.exit_code
                    ));
                    return 0;
                }
                // On AWS Batch: a job that AWS Batch says is over, with no result record
                // (killed before the runner could write it), ends the follow too.
                if let Some(record) = &batch_record {
                    if let Some((state, why)) = crate::batch::aws::job_state(&cloud, record, &args.job).await {
                        use crate::inventory::JobState;
                        if matches!(state, JobState::Succeeded | JobState::Failed) {
                            let _ = tail.poll(&cloud, &ui).await;
                            if cloud.job_result(&records).await.ok().flatten().is_none() {
                                ui.note(format!(
                                    "job {}: AWS Batch ended it without a result record{}",
                                    args.job,
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
                            let _ = tail.poll(&cloud, &ui).await;
                            if cloud.job_result(&records).await.ok().flatten().is_none() {
                                ui.note(format!(
                                    "job {}: its instance {} ended ({}) without a result record: the job is lost",
                                    args.job, i.id, s.describe()
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
                    args.job, args.job
                ));
                return exit::INTERRUPTED;
            }
        }
    }
}
