//! `status [JOB...]`: one line per job (or one JSON document), from the registry, the
//! instance's tags and the job's records in S3.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::{find, Found};
use crate::cli::StatusArgs;
use crate::cloud::Cloud;
use crate::inventory::{self, JobState, Seen};
use crate::registry::{self, Registry};

/// One job's line.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub job_id: String,
    pub state: JobState,
    /// Why, for a lost or failed job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub instance_id: Option<String>,
    pub instance_state: Option<String>,
    pub started_at: Option<String>,
    pub elapsed_s: Option<u64>,
    pub exit_code: Option<i32>,
    pub output: Option<String>,
    pub records: Option<String>,
    /// What the job cost in USD (all its attempts); null when no price could be had.
    pub cost_usd: Option<f64>,
    pub currency: &'static str,
    pub price_source: Option<String>,
    /// Its instance still runs: the figure is what has accrued so far.
    pub cost_so_far: bool,
    /// Why there is no figure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_note: Option<String>,
}

pub fn main(args: StatusArgs) -> i32 {
    super::block_on(run(args))
}

async fn run(args: StatusArgs) -> i32 {
    let output = match super::output_url(&args.output) {
        Ok(o) => o,
        Err(e) => return super::bad_input(&e, args.json),
    };
    let registry = Registry::open();
    if args.jobs.is_empty() && args.batch.is_none() {
        if let Some(output) = &output {
            // From anywhere: the jobs whose records are under that output.
            let cloud = super::connect(&args.aws, None).await;
            let (jobs, stopped_early) = match super::jobs_under(&cloud, output).await {
                Ok(j) => j,
                Err(e) => {
                    return super::fail(
                        &format!("--output {output}: {e}"),
                        crate::report::exit::REMOTE,
                    )
                }
            };
            if jobs.is_empty() {
                return super::fail(&super::nothing_under(output, stopped_early), 1);
            }
            if stopped_early {
                crate::ui::stderr_line(&format!(
                    "run-render: the search under {output} stopped early; some jobs may be missing (give a narrower prefix)"
                ));
            }
            let jobs: Vec<(String, Option<rtb_model::S3Url>)> =
                jobs.into_iter().map(|(id, o)| (id, Some(o))).collect();
            return show(&cloud, &registry, &jobs, args.json).await;
        }
    }
    let ids: Vec<String> = if let Some(batch) = &args.batch {
        match batch_jobs(&registry, &args.aws, batch).await {
            Ok(ids) if ids.is_empty() => {
                return super::fail(
                    &format!("batch {batch}: no job of it on this workstation's registry ({}), and no instance tagged rtb:batch={batch}", registry.dir().display()),
                    1,
                )
            }
            Ok(ids) => ids,
            Err(e) => return super::fail(&format!("batch {batch}: {e}"), crate::report::exit::REMOTE),
        }
    } else if args.jobs.is_empty() {
        registry
            .recent(SystemTime::now(), registry::RECENT)
            .into_iter()
            .map(|e| e.job_id)
            .collect()
    } else {
        args.jobs.clone()
    };
    for id in &ids {
        if let Err(e) = rtb_model::job_id::check(id) {
            return super::bad_input(&e, args.json);
        }
    }
    if ids.is_empty() {
        if args.json {
            super::emit("[]\n");
        } else {
            crate::ui::stderr_line(&format!(
                "run-render: no jobs started from this workstation in the last {} (registry: {}); a job started elsewhere is found with --output",
                humantime::format_duration(registry::RECENT),
                registry.dir().display()
            ));
        }
        return 0;
    }
    let first = registry.get(&ids[0]);
    let cloud = super::connect(&args.aws, first.as_ref()).await;
    // An AWS Batch batch no client followed to its end: its ended jobs' cost, recorded now.
    if let Some(record) = args
        .batch
        .as_deref()
        .and_then(|b| crate::batch::aws::BatchRecord::load(&registry, b))
    {
        crate::cost::aws_batch::settle(&cloud, &registry, &record).await;
    }
    let jobs: Vec<(String, Option<rtb_model::S3Url>)> =
        ids.into_iter().map(|id| (id, output.clone())).collect();
    show(&cloud, &registry, &jobs, args.json).await
}

/// One row per job (each with the output it was found under, if any), as a table or JSON;
/// exit 1 when a job was not found.
async fn show(
    cloud: &Cloud,
    registry: &Registry,
    jobs: &[(String, Option<rtb_model::S3Url>)],
    json: bool,
) -> i32 {
    let mut rows = Vec::new();
    let mut missing = 0;
    for (id, output) in jobs {
        match row(cloud, registry, id, output.as_ref()).await {
            Ok(Some(r)) => rows.push(r),
            Ok(None) => {
                missing += 1;
                crate::ui::stderr_line(&format!(
                    "run-render: job {id}: not found (no record on this workstation, no instance tagged rtb:job-id={id}, no result record; if it ran elsewhere, give its --output)"
                ));
            }
            Err(e) => return super::fail(&format!("job {id}: {e}"), crate::report::exit::REMOTE),
        }
    }
    if json {
        super::emit(&format!(
            "{}\n",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        ));
    } else {
        super::emit(&table(&rows));
    }
    i32::from(missing > 0)
}

/// A batch's jobs: from this workstation's registry, else from its instances (their tags, or
/// a pool instance's records).
async fn batch_jobs(
    registry: &Registry,
    aws: &crate::cli::AwsArgs,
    batch: &str,
) -> Result<Vec<String>, crate::cloud::CloudError> {
    let mut entries = registry.of_batch(batch);
    if !entries.is_empty() {
        entries.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        let mut ids: Vec<String> = Vec::new();
        for e in entries {
            if !ids.contains(&e.job_id) {
                ids.push(e.job_id);
            }
        }
        return Ok(ids);
    }
    let cloud = super::connect(aws, None).await;
    let found = cloud
        .tagged_instances(&crate::cloud::Select {
            batch: Some(batch),
            ..Default::default()
        })
        .await?;
    let mut ids: Vec<String> = Vec::new();
    for i in found {
        if i.pool.is_some() {
            // A pool instance's tags name no job: its record lists the jobs handed to it.
            ids.extend(crate::inventory::pool::fetch(&cloud, &i).await?.handed);
        } else {
            ids.extend(i.job_id);
        }
    }
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// Everything known of one job, as a row; None when nothing at all is known.
pub async fn row(
    cloud: &Cloud,
    registry: &Registry,
    job_id: &str,
    output: Option<&rtb_model::S3Url>,
) -> Result<Option<Row>, crate::cloud::CloudError> {
    let found = find(cloud, registry, job_id, output).await?;
    let (result, log_started) = match &found.records {
        Some(r) => {
            let result = cloud.job_result(r).await?;
            let started = result.is_some() || cloud.log_started(r).await?;
            (result, started)
        }
        None => (None, false),
    };
    if found.entry.is_none() && found.instance.is_none() && result.is_none() && !log_started {
        return Ok(None);
    }
    let mut row = make_row(&found, result.as_ref(), log_started, SystemTime::now());
    cost_of(cloud, registry, &found, &mut row).await;
    // A job on AWS Batch without a final result record: AWS Batch knows where it is (queued,
    // running, or retrying after an attempt that wrote its record).
    if result.as_ref().is_none_or(|r| r.exit_code != 0) {
        let record = crate::batch::aws::BatchRecord::of_entry(registry, found.entry.as_ref());
        if let Some(record) = record {
            let batch = crate::batch::aws::job_state(cloud, &record, job_id).await;
            let attempt = found
                .records
                .as_ref()
                .and_then(|r| r.as_attempt())
                .map(|(_, _, n)| n);
            if let Some((state, detail)) =
                crate::batch::aws::retried_view(result.as_ref(), attempt, batch)
            {
                row.state = state;
                row.detail = detail;
            }
        }
    }
    Ok(Some(row))
}

pub fn make_row(
    found: &Found,
    result: Option<&rtb_model::JobResult>,
    log_started: bool,
    now: SystemTime,
) -> Row {
    let (state, detail) = inventory::job_state(&Seen {
        entry: found.entry.as_ref(),
        instance: found.instance.as_ref(),
        result,
        log_started,
        container: found.container(),
    });
    let started = found
        .entry
        .as_ref()
        .and_then(|e| humantime::parse_rfc3339(&e.created_at).ok())
        .or_else(|| found.instance.as_ref().and_then(|i| i.launched));
    let finished = result
        .and_then(|r| humantime::parse_rfc3339(&r.finished_at).ok())
        .or_else(|| {
            found
                .entry
                .as_ref()
                .and_then(|e| e.ended.as_ref())
                .and_then(|e| humantime::parse_rfc3339(&e.at).ok())
        });
    let elapsed = started.and_then(|s| finished.unwrap_or(now).duration_since(s).ok());
    Row {
        job_id: found.job_id.clone(),
        state,
        detail: if state == JobState::Succeeded {
            None
        } else {
            detail
        },
        instance_id: found
            .instance
            .as_ref()
            .map(|i| i.id.clone())
            .or_else(|| found.entry.as_ref().and_then(|e| e.instance_id.clone())),
        instance_state: found
            .instance
            .as_ref()
            .map(|i| i.state.describe())
            .or_else(|| {
                found
                    .entry
                    .as_ref()
                    .and_then(|e| e.instance_id.as_ref())
                    .map(|_| "gone".into())
            }),
        started_at: started.map(super::rfc3339),
        elapsed_s: elapsed.map(|d| d.as_secs()),
        exit_code: result.map(|r| r.exit_code).or_else(|| {
            found
                .entry
                .as_ref()
                .and_then(|e| e.ended.as_ref())
                .map(|e| e.exit_code)
        }),
        output: found
            .entry
            .as_ref()
            .and_then(|e| e.output.clone())
            .or_else(|| found.records.as_ref().map(output_of)),
        records: found.records.as_ref().map(|r| r.root().to_string()),
        cost_usd: None,
        currency: crate::cost::CURRENCY,
        price_source: None,
        cost_so_far: false,
        cost_note: None,
    }
}

/// The job's cost: its record (this workstation's, else the one beside its result in S3),
/// else what its instance has accrued so far, from EC2's times and the price.
async fn cost_of(cloud: &Cloud, registry: &Registry, found: &Found, row: &mut Row) {
    use crate::cost::account;
    let mut rec = registry.cost(&found.job_id);
    if rec.is_none() {
        if let Some(r) = &found.records {
            rec = account::read(cloud, r).await.ok().flatten();
        }
    }
    if rec.is_none() {
        if let Some(i) = found.instance.as_ref().filter(|i| !i.state.is_gone()) {
            let prices = crate::cost::Prices::new(
                None,
                Some(cloud),
                Some(crate::cost::prices::Cache::open()),
            );
            let seen = [account::Seen {
                id: i.id.clone(),
                instance_type: i.instance_type.clone(),
                spot: false,
                launched: i.launched,
                ended: None,
            }];
            if let Ok(a) = account::account(cloud, &prices, &seen, &[], SystemTime::now()).await {
                let usd = a.bill.total_usd();
                row.cost_usd = usd;
                row.cost_so_far = true;
                row.price_source = (!a.sources().is_empty()).then(|| a.sources().join(", "));
                row.cost_note = a.unknown().map(str::to_string);
            }
            return;
        }
    }
    match rec {
        Some(r) => {
            row.cost_usd = r.cost_usd;
            row.price_source = r.price_source.clone();
            row.cost_so_far = r.so_far;
            row.cost_note = r.unknown.clone();
        }
        None => row.cost_note = Some("no cost record (the client that ran it wrote none)".into()),
    }
}

/// The output location a records folder lives under (`<output>/_rtb-job/<id>/`).
fn output_of(r: &rtb_model::JobRecords) -> String {
    let root = r.root().to_string();
    match root.find(&format!("/{}/", rtb_model::layout::RECORDS_DIR)) {
        Some(i) => root[..i].to_string(),
        None => root,
    }
}

pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<28} {:<11} {:<32} {:<20} {:>9} {:>4} {:>10}  {}\n",
        "JOB", "STATE", "INSTANCE", "STARTED", "ELAPSED", "EXIT", "COST", "OUTPUT"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<28} {:<11} {:<32} {:<20} {:>9} {:>4} {:>10}  {}\n",
            r.job_id,
            r.state.as_str(),
            match (&r.instance_id, &r.instance_state) {
                (Some(id), Some(s)) => format!("{id} {}", s.split(':').next().unwrap_or("")),
                (Some(id), None) => id.clone(),
                _ => "-".into(),
            },
            r.started_at.as_deref().unwrap_or("-"),
            r.elapsed_s
                .map(|s| super::short_duration(Duration::from_secs(s)))
                .unwrap_or_else(|| "-".into()),
            r.exit_code
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
            match (r.cost_usd, r.cost_so_far) {
                (Some(u), false) => crate::cost::record::usd_text(Some(u)),
                (Some(u), true) => format!("{}+", crate::cost::record::usd_text(Some(u))),
                (None, _) => "unknown".into(),
            },
            r.output.as_deref().unwrap_or("-"),
        ));
        if let Some(d) = &r.detail {
            out.push_str(&format!("    {}\n", crate::ui::printable(d)));
        }
    }
    let known: Vec<f64> = rows.iter().filter_map(|r| r.cost_usd).collect();
    if rows.len() > 1 && !known.is_empty() {
        out.push_str(&format!(
            "total {}{}{}\n",
            crate::cost::record::usd_text(Some(known.iter().sum())),
            if rows.iter().any(|r| r.cost_so_far) {
                " so far"
            } else {
                ""
            },
            if known.len() < rows.len() {
                format!(" ({} job(s) of unknown cost)", rows.len() - known.len())
            } else {
                String::new()
            }
        ));
    }
    let sources: std::collections::BTreeSet<&str> = rows
        .iter()
        .filter_map(|r| r.price_source.as_deref())
        .collect();
    if !sources.is_empty() {
        out.push_str(&format!(
            "costs in USD, prices from {}; a + is what a running instance has cost so far\n",
            sources.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    out
}
