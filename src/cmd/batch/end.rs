//! The end of a batch on either engine (its summary and final page) and the live page
//! while it runs.

use std::convert::Infallible;
use std::time::{Instant, SystemTime};

use crate::batch::jobs::BatchJob;
use crate::batch::page::collect::{self, RunFacts};
use crate::batch::page::publish::{Published, Publisher};
use crate::batch::page::{store, Page, LIVE_EVERY};
use crate::batch::pool::{JobEnd, Snapshot};
use crate::batch::summary::Summary;
use crate::cloud::Cloud;
use crate::cost;

/// The batch's page: beside its logs, and next to its outputs in S3; `say` prints a problem.
pub(super) fn publisher<'a>(
    cloud: &'a Cloud,
    name: &str,
    jobs: &[BatchJob],
    log_dir: &std::path::Path,
    say: &'a (dyn Fn(&str) + Sync),
) -> Publisher<'a> {
    let outputs: Vec<rtb_model::S3Url> =
        jobs.iter().filter_map(|j| j.plan.output.clone()).collect();
    Publisher::new(
        cloud,
        log_dir.join(store::PAGE_NAME),
        store::s3_folder(name, &outputs),
        say,
    )
}

/// How a batch ended, for its summary and its page.
pub(super) struct Ending<'a> {
    pub(super) name: &'a str,
    pub(super) engine: &'a str,
    pub(super) jobs: &'a [BatchJob],
    pub(super) columns: &'a [String],
    pub(super) stats: &'a crate::batch::pool::PoolStats,
    pub(super) t0: Instant,
    pub(super) started: SystemTime,
    pub(super) interrupted: bool,
    pub(super) json: bool,
    pub(super) cost: Option<&'a cost::account::BatchCost>,
}

/// The end of a batch on either engine: jobs that were not run by this batch keep why
/// (`ends_before`), then the final page (beside the logs and in S3), the summary (table or
/// JSON) ending with the page's places, and the batch's exit code.
pub(super) async fn summarize(
    end: &Ending<'_>,
    ends: &mut [JobEnd],
    ends_before: Vec<Option<String>>,
    publisher: &Publisher<'_>,
) -> i32 {
    for (e, before) in ends.iter_mut().zip(ends_before) {
        if before.is_some() {
            e.not_run = before;
        }
    }
    let wall_s = end.t0.elapsed().as_secs_f64();
    let mut page = collect::from_run(&RunFacts {
        batch: end.name,
        engine: end.engine,
        jobs: end.jobs,
        columns: end.columns,
        snapshot: &Snapshot {
            ends: ends.to_vec(),
            ..Snapshot::default()
        },
        started: end.started,
        now: SystemTime::now(),
        wall_s: Some(wall_s),
    });
    if let Some(cost) = end.cost {
        // The summary's figures, on the page too.
        page.cost_usd = cost.total_usd;
        let ran: std::collections::HashMap<&str, bool> = end
            .jobs
            .iter()
            .zip(ends.iter())
            .map(|(job, e)| {
                let ran = e.attempts.iter().any(|a| a.instance_id.is_some());
                (job.job_id.as_str(), ran)
            })
            .collect();
        for card in &mut page.jobs {
            if let Some(&ran) = ran.get(card.job_id.as_str()) {
                card.cost_usd = cost.job_usd(&card.job_id, ran);
            }
        }
    }
    let published: Published = publisher.finish(page).await;
    let summary = Summary {
        name: end.name,
        jobs: end.jobs,
        ends,
        stats: end.stats,
        wall_s,
        interrupted: end.interrupted,
        cost: end.cost,
    };
    if end.json {
        let mut doc = summary.json();
        doc["report"] = published.json();
        crate::cmd::emit(&format!(
            "{}\n",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        ));
        for p in &published.problems {
            crate::ui::stderr_line(&format!("run-render: report: {p}"));
        }
    } else {
        let mut text = summary.table();
        for line in published.lines() {
            text.push_str(&line);
            text.push('\n');
        }
        crate::ui::stderr_line(&text);
    }
    summary.exit_code()
}

/// Run `work` while rewriting the live page every [`LIVE_EVERY`] (from the page `page()`
/// makes), and return what `work` returns. The live page never holds the work up: both go on
/// side by side, and the page stops with the work.
pub(super) async fn with_live_page<T, P, F>(
    work: impl std::future::Future<Output = T>,
    publisher: &Publisher<'_>,
    page: P,
) -> T
where
    P: Fn() -> F,
    F: std::future::Future<Output = Page>,
{
    let (work, live) = (
        std::pin::pin!(work),
        std::pin::pin!(live_pages(publisher, page)),
    );
    match futures::future::select(work, live).await {
        futures::future::Either::Left((out, _)) => out,
        futures::future::Either::Right((never, _)) => match never {},
    }
}

async fn live_pages<P, F>(publisher: &Publisher<'_>, page: P) -> Infallible
where
    P: Fn() -> F,
    F: std::future::Future<Output = Page>,
{
    loop {
        publisher.live(page().await).await;
        tokio::time::sleep(LIVE_EVERY).await;
    }
}
