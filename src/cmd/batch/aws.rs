//! A batch on AWS Batch: the submission and its follow loop (crate::batch::aws), with the
//! live page from the jobs' records, and the summary when the client stays to the end.

use std::time::{Instant, SystemTime};

use crate::batch::page::collect::{self, Known, RunFacts};
use crate::batch::pool::{JobEnd, Snapshot};
use crate::batch::view::View;
use crate::cost;

use super::end::{publisher, summarize, with_live_page, Ending};
use super::Run;

pub(super) async fn run(
    r: &Run<'_>,
    settings: &crate::batch::file::Settings,
    ends_before: Vec<Option<String>>,
) -> i32 {
    let Run {
        name,
        run_id,
        jobs,
        run_list,
        policy,
        columns,
        cloud,
        interrupts,
        registry,
        log_dir,
        json,
        detach,
        prices,
        budget,
    } = *r;
    let t0 = Instant::now();
    let started = SystemTime::now();
    let view = View::new(name, run_list.len());
    let say = |line: &str| view.note(line);
    let publisher = publisher(cloud, name, jobs, log_dir, &say);
    let ran = crate::batch::aws::run(
        name,
        run_id,
        jobs,
        run_list,
        policy,
        settings,
        cloud,
        interrupts,
        registry,
        &view,
        detach,
        budget,
        prices.user(),
    );
    // The live page from the jobs' records (AWS Batch runs them, not this client).
    let known: Vec<Known> = run_list
        .iter()
        .map(|&j| Known {
            job_id: jobs[j].job_id.clone(),
            output: jobs[j].plan.output.clone(),
            ..Known::default()
        })
        .collect();
    let base = collect::from_run(&RunFacts {
        batch: name,
        engine: "aws-batch",
        jobs,
        columns,
        snapshot: &Snapshot {
            ends: ends_before
                .iter()
                .map(|b| JobEnd {
                    not_run: b.clone(),
                    ..JobEnd::default()
                })
                .collect(),
            ..Snapshot::default()
        },
        started,
        now: started,
        wall_s: None,
    });
    let records = collect::Refresh::new(cloud, base, known);
    let live = || records.page();
    let ran = with_live_page(ran, &publisher, &live).await;
    view.finish();
    let crate::batch::aws::Followed {
        mut ends,
        stats,
        left,
        submitted,
    } = match ran {
        Ok(x) => x,
        Err(e @ crate::batch::aws::RunError::Spec(_)) => {
            let _ = publisher.finish(live().await).await;
            return crate::cmd::bad_input(&format!("batch {name}: {e}"), json);
        }
        Err(e) => {
            // The live page must not go on claiming to be live. Its lines name the batch.
            let _ = publisher.finish(live().await).await;
            return crate::cmd::fail(&e.to_string(), e.code());
        }
    };
    if left {
        // The jobs go on without this client: the page says where they stand now, and
        // `report` brings it up to date later.
        let published = publisher.finish(live().await).await;
        crate::ui::stderr_line(&format!(
            "run-render: batch {name}: submitted to AWS Batch queue {}; it needs no client. Follow with `run-render status --batch {name}`, cancel with `run-render stop --batch {name}`, see it with `run-render report --batch {name}`",
            policy.queue.as_deref().unwrap_or_default()
        ));
        for line in published.lines() {
            crate::ui::stderr_line(&format!("run-render: {line}"));
        }
        if json {
            crate::cmd::emit(&format!(
                "{}\n",
                serde_json::json!({"batch": name, "engine": "aws-batch", "queue": policy.queue, "detached": true, "jobs": run_list.iter().map(|&j| &jobs[j].job_id).collect::<Vec<_>>()})
            ));
        }
        return 0;
    }
    // Each attempt's time at its instance's price. Not a minute more for a figure: an exit
    // held by an API that stopped answering is worse than a cost shown as unknown.
    let engine = crate::engine::aws_batch::AwsBatch::new(cloud.config(), &crate::plan::owner());
    let places = cost::aws_batch::places(jobs, &ends);
    let costed = cost::aws_batch::of_aws_batch(
        cloud, &engine, prices, registry, run_id, &submitted, &places,
    );
    let cost = tokio::time::timeout(cost::account::COST_LIMIT * 2, costed)
        .await
        .unwrap_or_else(|_| {
            cost::account::BatchCost::unknown(
                "AWS did not answer in time for the cost (the jobs' attempts, their instances, prices)",
            )
        });
    return summarize(
        &Ending {
            name,
            engine: "aws-batch",
            jobs,
            columns,
            stats: &stats,
            t0,
            started,
            interrupted: false,
            json,
            cost: Some(&cost),
        },
        &mut ends,
        ends_before,
        &publisher,
    )
    .await;
}
