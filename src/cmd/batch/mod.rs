//! `batch FILE`: every row of a batch file as a job, on a pool of instances (the EC2
//! engine), with retries, resume, one progress view and a summary. `--dry-run` expands and
//! checks every job and launches nothing; `--detach` starts them all on self-terminating
//! instances when they fit at once.

mod aws;
mod detach;
mod dry;
mod end;
mod prior;

use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use crate::batch::jobs::{self, BatchJob, Engine, Policy};
use crate::batch::page::collect::{self, RunFacts};
use crate::batch::pool::Pool;
use crate::batch::records::PoolRecords;
use crate::batch::view::View;
use crate::batch::BatchFile;
use crate::cli::BatchArgs;
use crate::cloud::Cloud;
use crate::cost::{
    self,
    before::Limits,
    prices::{Cache, Prices},
};
use crate::registry::Registry;
use crate::report::{exit, Outcome};
use crate::signals::Interrupts;

use end::{publisher, summarize, with_live_page, Ending};

/// What one run of a batch works with, on either engine.
#[derive(Clone, Copy)]
struct Run<'a> {
    name: &'a str,
    run_id: &'a str,
    jobs: &'a [BatchJob],
    run_list: &'a [usize],
    policy: &'a Policy,
    columns: &'a [String],
    cloud: &'a Cloud,
    interrupts: &'a Interrupts,
    registry: &'a Registry,
    log_dir: &'a std::path::Path,
    json: bool,
    detach: bool,
    /// The prices the jobs' cost is worked out at (`--price`, else AWS's, cached).
    prices: &'a Prices<'a>,
    /// `--max-cost` and the price it is kept at.
    budget: Option<(cost::Budget, f64)>,
}

pub fn main(args: BatchArgs) -> i32 {
    let json = args.run.json;
    let file = match BatchFile::load(&args.path) {
        Ok(f) => f,
        Err(e) => return super::bad_input(&e.to_string(), json),
    };
    let policy = match jobs::policy(
        &file,
        args.parallel,
        args.engine.as_deref(),
        args.queue.as_deref(),
    ) {
        Ok(p) => p,
        Err(e) => return super::bad_input(&e.to_string(), json),
    };
    let jobs = match jobs::jobs(&file, &args.run.given, policy.engine) {
        Ok(j) => j,
        Err(e) => return super::bad_input(&e.to_string(), json),
    };
    // A pool reuses instances: scratch folders on host volumes must be the jobs' own.
    if policy.engine == Engine::Ec2 && !args.run.detach {
        if let Err(e) = crate::batch::scratch::check(&file, &jobs, policy.per_instance) {
            return super::bad_input(&e.to_string(), json);
        }
    }
    let limits = match Limits::settle(
        &args.run.cost,
        args.on_budget.as_deref(),
        Some(&file.settings),
    ) {
        Ok(l) => l,
        Err(e) => return super::bad_input(&e, json),
    };
    if args.run.dry_run {
        let detach = args.run.detach;
        return super::block_on(async {
            match cost::batch::dry_run(&policy, &jobs, &limits, detach).await {
                Ok(figures) => {
                    super::emit(&dry::dry_run(&file, &policy, &jobs, json, &figures));
                    0
                }
                Err(e) => super::bad_input(&e, json),
            }
        });
    }
    if args.run.detach && policy.engine == Engine::Ec2 && policy.parallel < jobs.len() {
        return super::bad_input(
            &format!(
                "--detach starts every job at once, and {} jobs do not fit in parallel = {}: raise parallel, or leave the queue to AWS Batch (--engine aws-batch), which needs no client",
                jobs.len(),
                policy.parallel
            ),
            json,
        );
    }
    let log_dir = args
        .log_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("run-render-logs").join(&file.name));
    super::block_on(run(file, policy, jobs, args, log_dir, limits))
}

async fn run(
    file: BatchFile,
    policy: Policy,
    jobs: Vec<BatchJob>,
    args: BatchArgs,
    log_dir: PathBuf,
    limits: Limits,
) -> i32 {
    let json = args.run.json;
    let name = file.name.clone();
    let columns: Vec<String> = file.csv.as_ref().map(|c| c.1.clone()).unwrap_or_default();
    let cloud = super::connect_for(&jobs[0].plan).await;
    let interrupts = Interrupts::listen();
    let registry = Registry::open();
    let prices = Prices::new(limits.price, Some(&cloud), Some(Cache::open()));
    // A budget is settled before anything is launched or submitted: it needs a price, and
    // where no client watches the spend, deadlines that keep the worst case within it.
    let spend = match cost::batch::spend(&prices, &jobs, &limits).await {
        Ok(s) => s,
        Err(e) => return super::bad_input(&format!("batch {name}: {e}"), json),
    };
    let mut detached_lifetime = None;
    if let Some((s, rate)) = &spend {
        if args.run.detach || policy.engine == Engine::AwsBatch {
            match cost::batch::client_less(&policy, &jobs, *rate, s.budget.max_usd, args.run.detach)
            {
                Ok(l) => detached_lifetime = l,
                Err(e) => return super::bad_input(&format!("batch {name}: {e}"), json),
            }
            if let Some(l) = detached_lifetime {
                crate::ui::stderr_line(&format!(
                    "run-render: batch {name}: budget ${:.2} at ${rate:.4}/h: each instance powers itself off {} after launch, so the worst case stays within it",
                    s.budget.max_usd,
                    super::short_duration(l)
                ));
            }
        }
    }

    let ec2 = policy.engine == Engine::Ec2;
    let (run_list, ends_before) =
        match prior::jobs_to_run(&cloud, &registry, &name, &jobs, ec2, &args).await {
            Ok(x) => x,
            Err(code) => return code,
        };

    // This run's name for its attempts' records folders: r<UTC time>.
    let run_id = format!(
        "r{}",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
            .to_string()
            .replace(['-', ':'], "")
            .trim_end_matches('Z')
    );
    if policy.engine == Engine::AwsBatch {
        let r = Run {
            name: &name,
            run_id: &run_id,
            jobs: &jobs,
            run_list: &run_list,
            policy: &policy,
            columns: &columns,
            cloud: &cloud,
            interrupts: &interrupts,
            registry: &registry,
            log_dir: &log_dir,
            json,
            detach: args.run.detach,
            prices: &prices,
            budget: spend.as_ref().map(|(s, rate)| (s.budget, *rate)),
        };
        return aws::run(&r, &file.settings, ends_before).await;
    }
    let first = jobs[run_list[0]].plan_attempt(&name, &run_id, 1, false);
    let checked = match crate::preflight::check(&first, &cloud).await {
        Ok(c) => c,
        Err(e) => return super::fail(&format!("batch {name}: {e}"), exit::PREFLIGHT),
    };
    // The pool's records of who runs where; written first, so a client that may not write
    // them is refused before anything is launched.
    let records = PoolRecords::new(&cloud, &name, &run_id, &jobs[run_list[0]]);
    if !args.run.detach {
        let started = match &records {
            Some(r) => r.start().await.map_err(|e| e.to_string()),
            None => Err("its first job has no output to keep the batch's records in".into()),
        };
        if let Err(e) = started {
            return super::fail(&format!("batch {name}: {e}"), exit::PREFLIGHT);
        }
    }
    if let Err(e) = std::fs::create_dir_all(&log_dir) {
        return super::fail(
            &format!("--log-dir {}: cannot create it: {e}", log_dir.display()),
            exit::BAD_INPUT,
        );
    }
    crate::ui::stderr_line(&format!(
        "run-render: batch {name}: {} job(s) on at most {} instance(s) ({} at once per instance); logs in {}",
        run_list.len(),
        Pool::size(&policy, run_list.len()),
        policy.per_instance,
        log_dir.display()
    ));
    let t0 = Instant::now();
    let started = SystemTime::now();
    let view = View::new(&name, run_list.len());
    let say = |line: &str| view.note(line);
    let publisher = publisher(&cloud, &name, &jobs, &log_dir, &say);
    let (mut ends, stats) = match (args.run.detach, &records) {
        (false, Some(records)) => {
            let pool = Pool::new(
                &name,
                &run_id,
                &jobs,
                &run_list,
                &policy,
                &cloud,
                &interrupts,
                &registry,
                checked,
                &view,
                Some(log_dir.clone()),
                records,
            );
            let pool = match spend {
                Some((s, _)) => pool.with_budget(s),
                None => pool,
            };
            let snapshot = || {
                let mut snap = pool.snapshot();
                for (e, before) in snap.ends.iter_mut().zip(&ends_before) {
                    if before.is_some() {
                        e.not_run = before.clone();
                    }
                }
                let page = collect::from_run(&RunFacts {
                    batch: &name,
                    engine: "ec2",
                    jobs: &jobs,
                    columns: &columns,
                    snapshot: &snap,
                    started,
                    now: SystemTime::now(),
                    wall_s: None,
                });
                async move { page }
            };
            with_live_page(pool.run(), &publisher, snapshot).await
        }
        _ => {
            detach::detached(
                &name,
                &run_id,
                &jobs,
                &run_list,
                &cloud,
                &interrupts,
                &registry,
                &view,
                &log_dir,
                detached_lifetime,
            )
            .await
        }
    };
    view.finish();
    let outage = ends
        .iter()
        .flat_map(|e| &e.attempts)
        .any(|a| a.outcome == Outcome::Unknown);
    let cost = if outage {
        cost::account::BatchCost::unknown(
            "AWS stopped answering, so the instances' times could not be read; `run-render cost` shows the recorded figures",
        )
    } else if args.run.detach {
        cost::account::BatchCost::unknown(
            "the jobs run on by themselves (--detach): `run-render status --batch` and `run-render cost` show what they cost",
        )
    } else {
        let costed = cost::account::of_batch(
            &cloud,
            &prices,
            &registry,
            &name,
            &jobs,
            &ends,
            &stats.ended_at,
        );
        // Not a minute more for a figure: an exit held by an API that stopped answering is
        // worse than a cost shown later by `status` and `cost`.
        tokio::time::timeout(cost::account::COST_LIMIT * 2, costed)
            .await
            .unwrap_or_else(|_| {
                cost::account::BatchCost::unknown(
                    "AWS did not answer in time for the cost (instance times, prices)",
                )
            })
    };
    // A stop the budget asked for is not the user's Ctrl-C.
    let interrupted = interrupts.count() > 0 && stats.budget_reached.is_none();
    let code = summarize(
        &Ending {
            name: &name,
            engine: "ec2",
            jobs: &jobs,
            columns: &columns,
            stats: &stats,
            t0,
            started,
            interrupted,
            json,
            cost: Some(&cost),
        },
        &mut ends,
        ends_before,
        &publisher,
    )
    .await;
    if args.run.detach {
        let started = ends.iter().all(|e| {
            e.not_run.is_some()
                || e.report
                    .as_ref()
                    .is_some_and(|r| r.outcome == Outcome::Detached)
        });
        if started {
            crate::ui::stderr_line(&format!(
                "run-render: batch {name}: every job started and its instance ends itself after it; follow with: run-render status --batch {name}"
            ));
            return 0;
        }
    }
    code
}
