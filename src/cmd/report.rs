//! `report --batch NAME`: the batch's page, written again and up to date, from what is known
//! of the batch: the page it left (its model `report.json`, beside the page or in S3 next to
//! the outputs), this workstation's registry, the jobs under `--output`, and each job's records
//! in S3 (results, thumbnails, log tails). Either engine; from any workstation with `--output`.

use std::path::Path;
use std::time::SystemTime;

use crate::batch::page::collect::{self, Fetched, Known};
use crate::batch::page::{html, store};
use crate::cli::ReportArgs;
use crate::registry::Registry;
use crate::report::exit;

pub fn main(args: ReportArgs) -> i32 {
    super::block_on(run(args))
}

/// A batch name as the batch file makes them: letters, digits, `-`, `_`, `.` (it names a
/// folder here and in S3).
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 48
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "--batch '{name}': not a batch name (1 to 48 letters, digits, -, _ or .)"
        ))
    }
}

async fn run(args: ReportArgs) -> i32 {
    let batch = args.batch.clone();
    if let Err(e) = check_name(&batch) {
        return super::bad_input(&e, false);
    }
    let output = match super::output_url(&args.output) {
        Ok(o) => o,
        Err(e) => return super::bad_input(&e, false),
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| store::default_path(&batch));
    let registry = Registry::open();
    let entries = registry.of_batch(&batch);
    let cloud = super::connect(&args.aws, entries.first()).await;

    // The page the batch left: beside this page, beside the default one, else in S3.
    let mut base =
        store::read_model(&out).or_else(|| store::read_model(&store::default_path(&batch)));
    if base.is_none() {
        if let Some(o) = &output {
            let folder = o.join(&format!("{}/{batch}/", store::BATCH_DIR));
            match store::download_model(&cloud, &folder).await {
                Ok(m) => base = m,
                Err(e) => {
                    return super::fail(&format!("--output {o}: {e}"), exit::REMOTE);
                }
            }
        }
    }
    let base = base.filter(|b| b.batch == batch);

    let mut known: Vec<Known> = entries
        .iter()
        .map(|e| Known {
            job_id: e.job_id.clone(),
            output: e.output.as_deref().and_then(|o| o.parse().ok()),
            instance_id: e.instance_id.clone(),
            ended: e.ended.as_ref().map(|x| (x.outcome.clone(), x.exit_code)),
        })
        .collect();
    if let Some(o) = &output {
        let (found, stopped_early) = match super::jobs_under(&cloud, o).await {
            Ok(f) => f,
            Err(e) => return super::fail(&format!("--output {o}: {e}"), exit::REMOTE),
        };
        if stopped_early {
            crate::ui::stderr_line(&format!(
                "run-render: the search under {o} stopped early; some jobs may be missing (give a narrower prefix)"
            ));
        }
        // With the batch's own list (its page, or the registry), only its jobs: an output
        // folder may hold other batches' too.
        let listed: Vec<String> = base
            .iter()
            .flat_map(|b| b.jobs.iter().map(|c| c.job_id.clone()))
            .chain(known.iter().map(|k| k.job_id.clone()))
            .collect();
        for (id, job_output) in found {
            if listed.is_empty() || listed.contains(&id) {
                match known.iter_mut().find(|k| k.job_id == id) {
                    Some(k) => k.output = k.output.take().or(Some(job_output)),
                    None => known.push(Known {
                        job_id: id,
                        output: Some(job_output),
                        ..Known::default()
                    }),
                }
            }
        }
    }
    if known.is_empty() && base.is_none() {
        return super::fail(
            &format!(
                "batch {batch}: nothing known of it here (no page at {}, no job of it in the registry {}){}",
                store::model_path(&out).display(),
                registry.dir().display(),
                match &output {
                    Some(o) => format!(", and no job records under {o}"),
                    None => "; from another workstation, give --output S3_URL (the folder its outputs share)".into(),
                }
            ),
            1,
        );
    }
    let engine = base.as_ref().map(|b| b.engine.clone()).unwrap_or_else(|| {
        if entries.iter().any(|e| e.aws_batch_queue.is_some()) {
            "aws-batch".into()
        } else {
            "ec2".into()
        }
    });
    let mut page = match collect::from_records(
        &cloud,
        &batch,
        &engine,
        base,
        known,
        SystemTime::now(),
    )
    .await
    {
        Ok(p) => p,
        Err(e) => return super::fail(&format!("batch {batch}: {e}"), exit::REMOTE),
    };
    // An AWS Batch batch no client followed to its end: its ended jobs' cost, recorded now;
    // then every job's recorded cost the page does not have yet.
    if let Some(record) = crate::batch::aws::BatchRecord::load(&registry, &batch) {
        crate::cost::aws_batch::settle(&cloud, &registry, &record).await;
    }
    recorded_costs(&cloud, &registry, &mut page).await;
    for note in Fetched::default().fill(&cloud, &mut page).await {
        crate::ui::stderr_line(&format!("run-render: report: {note}"));
    }
    if let Err(e) = store::write_local(&out, &html::render(&page), &page) {
        return super::fail(
            &format!("cannot write {}: {e}", out.display()),
            exit::BAD_INPUT,
        );
    }
    let c = page.counts();
    crate::ui::stderr_line(&format!(
        "run-render: batch {batch}: {} jobs, {} succeeded, {} failed{}{}",
        c.total,
        c.succeeded,
        c.failed,
        if c.running + c.queued > 0 {
            format!(", {} not ended yet", c.running + c.queued)
        } else {
            String::new()
        },
        if c.flagged > 0 {
            format!(", {} without a usable image", c.flagged)
        } else {
            String::new()
        }
    ));
    super::emit(&format!("{}\n", out.display()));
    if args.open {
        open(&out);
    }
    0
}

/// The recorded cost of each job the page has none for: this workstation's record of it in
/// this batch, else the one beside its newest attempt's result in S3.
async fn recorded_costs(
    cloud: &crate::cloud::Cloud,
    registry: &Registry,
    page: &mut crate::batch::page::Page,
) {
    let batch = page.batch.clone();
    for card in page.jobs.iter_mut().filter(|c| c.cost_usd.is_none()) {
        let mut rec = registry
            .cost(&card.job_id)
            .filter(|r| r.batch.as_deref() == Some(batch.as_str()));
        if rec.is_none() {
            if let Some(at) = card
                .records
                .as_deref()
                .and_then(|r| r.parse::<rtb_model::S3Url>().ok())
            {
                let at = rtb_model::JobRecords::at(at);
                rec = crate::cost::account::read(cloud, &at).await.ok().flatten();
            }
        }
        card.cost_usd = rec.and_then(|r| r.cost_usd);
    }
}

/// Open the page in the desktop's browser; a machine without one just has the file.
fn open(page: &Path) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let spawned = std::process::Command::new(opener)
        .arg(page)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Err(e) = spawned {
        crate::ui::stderr_line(&format!(
            "run-render: --open: cannot start {opener} ({e}); open {} yourself",
            page.display()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_names() {
        for ok in ["vwcc2", "demo-1", "a.b_c"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "../x", "a b", &"x".repeat(49)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
