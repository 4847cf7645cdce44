//! `batch FILE`: every row of a batch file as a job, on a pool of instances (the EC2
//! engine), with retries, resume, one progress view and a summary. `--dry-run` expands and
//! checks every job and launches nothing; `--detach` starts them all on self-terminating
//! instances when they fit at once.

use std::convert::Infallible;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use crate::batch::earlier;
use crate::batch::jobs::{self, BatchJob, Engine, Policy};
use crate::batch::page::collect::{self, Known, RunFacts};
use crate::batch::page::publish::{Published, Publisher};
use crate::batch::page::{store, Page, LIVE_EVERY};
use crate::batch::pool::{JobEnd, Pool, Snapshot};
use crate::batch::records::PoolRecords;
use crate::batch::summary::Summary;
use crate::batch::view::View;
use crate::batch::BatchFile;
use crate::cli::BatchArgs;
use crate::cloud::Cloud;
use crate::cost::{
    self,
    before::Limits,
    prices::{Cache, Prices},
};
use crate::engine::ec2::instance::Instance;
use crate::lifecycle;
use crate::registry::Registry;
use crate::report::{exit, Outcome};
use crate::signals::Interrupts;
use crate::ui::Ui;

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
                    super::emit(&dry_run(&file, &policy, &jobs, json, &figures));
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

    // What an earlier run of this batch left: results, and instances still running.
    let ec2 = policy.engine == Engine::Ec2;
    let earlier = match earlier::earlier_run(&cloud, &registry, &name, &jobs, ec2).await {
        Ok(e) => e,
        Err(e) => return super::fail(&format!("batch {name}: {e}"), exit::PREFLIGHT),
    };
    // Its instances are ended below only when their run is over: a run alive in another
    // terminal, or perhaps elsewhere, keeps them, and this one does not start.
    if let Some(line) = earlier::refusal(&name, &earlier.instances) {
        return super::bad_input(&line, json);
    }
    if (!earlier.results.is_empty() || !earlier.instances.is_empty()) && !args.resume && !args.rerun
    {
        let mut named: Vec<&str> = earlier
            .results
            .iter()
            .map(|(j, _)| jobs[*j].job_id.as_str())
            .collect();
        let more = named.len().saturating_sub(5);
        named.truncate(5);
        let what = if earlier.results.is_empty() {
            format!(
                "{} instance(s) of an earlier run are still running",
                earlier.instances.len()
            )
        } else {
            format!(
                "{} of {} jobs already have results ({}{})",
                earlier.results.len(),
                jobs.len(),
                named.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            )
        };
        return super::bad_input(
            &format!("batch {name}: {what}; --resume runs only the jobs that have not succeeded, --rerun runs every job again"),
            json,
        );
    }
    if !earlier.instances.is_empty() {
        // Their client is gone; their jobs are run again here, so they must not write on.
        for (id, _) in &earlier.instances {
            crate::ui::stderr_line(&format!(
                "run-render: batch {name}: {id} of an earlier run is still running: terminating it (its job is run again)"
            ));
        }
        let ends = futures::future::join_all(
            earlier
                .instances
                .iter()
                .map(|(id, _)| Instance::adopt(&cloud, id.clone()).terminate()),
        )
        .await;
        if let Some(e) = ends.into_iter().find_map(Result::err) {
            return super::fail(&e.to_string(), exit::UNCONFIRMED);
        }
    }
    let mut ends_before: Vec<Option<String>> = vec![None; jobs.len()];
    let run_list: Vec<usize> = (0..jobs.len())
        .filter(|j| {
            let Some((_, done)) = earlier.results.iter().find(|(k, _)| k == j) else {
                return true;
            };
            if !args.resume || !done.succeeded {
                return true;
            }
            if !done.changed.is_empty() {
                // Same job id, another row (a row inserted above it, or edited).
                crate::ui::stderr_line(&format!(
                    "run-render: batch {name}: {} (row {}) succeeded in an earlier run, but its row has changed since ({}): running it again",
                    jobs[*j].job_id,
                    jobs[*j].row.number,
                    done.changed.join(", ")
                ));
                return true;
            }
            ends_before[*j] = Some("succeeded in an earlier run (--resume)".into());
            false
        })
        .collect();
    if run_list.is_empty() {
        crate::ui::stderr_line(&format!(
            "run-render: batch {name}: every job has succeeded already; nothing to run"
        ));
        return 0;
    }

    // This run's name for its attempts' records folders: r<UTC time>.
    let run_id = format!(
        "r{}",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
            .to_string()
            .replace(['-', ':'], "")
            .trim_end_matches('Z')
    );
    if policy.engine == Engine::AwsBatch {
        let t0 = Instant::now();
        let started = SystemTime::now();
        let view = View::new(&name, run_list.len());
        let say = |line: &str| view.note(line);
        let publisher = publisher(&cloud, &name, &jobs, &log_dir, &say);
        let ran = crate::batch::aws::run(
            &name,
            &run_id,
            &jobs,
            &run_list,
            &policy,
            &file.settings,
            &cloud,
            &interrupts,
            &registry,
            &view,
            args.run.detach,
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
            batch: &name,
            engine: "aws-batch",
            jobs: &jobs,
            columns: &columns,
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
        let records = collect::Refresh::new(&cloud, base, known);
        let live = || records.page();
        let ran = with_live_page(ran, &publisher, &live).await;
        view.finish();
        let (mut ends, stats, left) = match ran {
            Ok(x) => x,
            Err(e @ crate::batch::aws::RunError::Spec(_)) => {
                let _ = publisher.finish(live().await).await;
                return super::bad_input(&format!("batch {name}: {e}"), json);
            }
            Err(e) => {
                // The live page must not go on claiming to be live. Its lines name the batch.
                let _ = publisher.finish(live().await).await;
                return super::fail(&e.to_string(), e.code());
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
                super::emit(&format!(
                    "{}\n",
                    serde_json::json!({"batch": name, "engine": "aws-batch", "queue": policy.queue, "detached": true, "jobs": run_list.iter().map(|&j| &jobs[j].job_id).collect::<Vec<_>>()})
                ));
            }
            return 0;
        }
        // AWS Batch does not say which instance ran a job here (ECS container instance ->
        // EC2 instance is not looked up): the jobs' cost is not known to this client.
        let cost = cost::account::BatchCost::unknown(
            "AWS Batch: the instance each job ran on is not looked up, and the compute environment's idle minutes are the queue's, not a job's",
        );
        return summarize(
            &Ending {
                name: &name,
                engine: "aws-batch",
                jobs: &jobs,
                columns: &columns,
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
            detached(
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

/// The batch's page: beside its logs, and next to its outputs in S3; `say` prints a problem.
fn publisher<'a>(
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
struct Ending<'a> {
    name: &'a str,
    engine: &'a str,
    jobs: &'a [BatchJob],
    columns: &'a [String],
    stats: &'a crate::batch::pool::PoolStats,
    t0: Instant,
    started: SystemTime,
    interrupted: bool,
    json: bool,
    cost: Option<&'a cost::account::BatchCost>,
}

/// The end of a batch on either engine: jobs that were not run by this batch keep why
/// (`ends_before`), then the final page (beside the logs and in S3), the summary (table or
/// JSON) ending with the page's places, and the batch's exit code.
async fn summarize(
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
    let page = collect::from_run(&RunFacts {
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
        super::emit(&format!(
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
async fn with_live_page<T, P, F>(
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

/// `--detach`: every job as a detached `run`, all at once.
#[allow(clippy::too_many_arguments)]
async fn detached(
    name: &str,
    run_id: &str,
    jobs: &[BatchJob],
    run_list: &[usize],
    cloud: &Cloud,
    interrupts: &Interrupts,
    registry: &Registry,
    view: &View,
    log_dir: &std::path::Path,
    lifetime: Option<std::time::Duration>,
) -> (Vec<JobEnd>, crate::batch::pool::PoolStats) {
    let mut ends = vec![JobEnd::default(); jobs.len()];
    let reports = futures::future::join_all(run_list.iter().map(|&j| async move {
        let mut plan = jobs[j].plan_attempt(name, run_id, 1, false);
        plan.detach = true;
        if let Some(l) = lifetime {
            // Under a budget: the worst case of every instance together stays within it.
            cost::before::cap_lifetime(&mut plan, l, std::time::SystemTime::now());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_dir.join(format!("{}.log", jobs[j].job_id)))
            .ok();
        let ui = Ui::batch_job(view.multi(), &jobs[j].job_id, log);
        let r = lifecycle::run(&plan, cloud, &ui, interrupts, registry).await;
        ui.finish();
        (j, r)
    }))
    .await;
    let mut stats = crate::batch::pool::PoolStats::default();
    for (j, r) in reports {
        if r.instance_id.is_some() {
            stats.instances_launched += 1;
        }
        ends[j].attempts.push(crate::batch::pool::Attempt {
            outcome: r.outcome,
            exit_code: r.exit_code,
            instance_id: r.instance_id.clone(),
            spot: false,
            seconds: r.phases.total_s,
            error: r.error.clone(),
            retried_because: None,
            ran: crate::batch::pool::ran_until_now(r.phases.total_s),
            resume: Default::default(),
        });
        ends[j].report = Some(r);
    }
    stats.peak_instances = stats.instances_launched;
    (ends, stats)
}

fn dry_run(
    file: &BatchFile,
    policy: &Policy,
    jobs: &[BatchJob],
    json: bool,
    figures: &cost::before::Figures,
) -> String {
    let instances = Pool::size(policy, jobs.len());
    if json {
        let doc = serde_json::json!({
            "dry_run": true,
            "batch": {
                "name": file.name,
                "engine": match policy.engine { Engine::Ec2 => "ec2", Engine::AwsBatch => "aws-batch" },
                "parallel": policy.parallel,
                "per_instance": policy.per_instance,
                "retries": policy.retries,
                "retry_on_job_error": policy.retry_on_job_error,
                "spot": policy.spot,
                "instances": instances,
            },
            "cost": figures,
            "jobs": jobs.iter().map(|j| serde_json::json!({
                "job_id": j.job_id,
                "name": j.name,
                "row": j.row.number,
                "output": j.plan.output.as_ref().map(|o| o.to_string()),
                "command": j.setting("COMMAND"),
                "startup": j.setting("STARTUP"),
                "toolboxes": j.setting("TOOLBOXES"),
                "settings": j.settings(),
            })).collect::<Vec<_>>(),
        });
        return format!(
            "{}\n",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        );
    }
    let mut o = format!(
        "# run-render batch --dry-run: nothing is launched\n# batch {}: {} jobs, parallel {}, {} per instance, at most {} instance(s) of {} from {}, retries {}\n",
        file.name,
        jobs.len(),
        policy.parallel,
        policy.per_instance,
        instances,
        jobs[0].plan.launch.instance_types.join(" or "),
        jobs[0].plan.launch.ami,
        policy.retries,
    );
    o.push_str(&figures.lines());
    for j in jobs {
        o.push_str(&format!(
            "\n{}  (row {}, instance name {})\n  output:    {}\n",
            j.job_id,
            j.row.number,
            j.name,
            j.plan
                .output
                .as_ref()
                .map(|o| o.to_string())
                .unwrap_or_default()
        ));
        for (k, v) in j.settings() {
            o.push_str(&format!("  {k}={v}\n"));
        }
    }
    o
}
