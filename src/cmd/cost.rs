//! `cost [--batch NAME] [--since 7d] [--by job|batch|owner]`: what jobs cost, from the cost
//! records this workstation wrote (or, with `--output`, those beside the jobs' results in S3),
//! as a table or one JSON document. Nothing is priced again: each figure is the one recorded,
//! with the price it came from.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::cli::CostReportArgs;
use crate::cost::record::usd_text;
use crate::cost::CostRecord;
use crate::registry::Registry;

/// One row: a job, a batch or an owner.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    pub key: String,
    pub jobs: usize,
    /// The known costs summed; null when no job of the row has a figure.
    pub cost_usd: Option<f64>,
    /// Jobs whose cost is unknown (no price could be had).
    pub unknown_jobs: usize,
    pub failed_attempts_usd: f64,
    pub instance_seconds: f64,
    /// Some figure is what a running instance had cost so far.
    pub so_far: bool,
    pub price_sources: Vec<String>,
}

pub fn main(args: CostReportArgs) -> i32 {
    super::block_on(run(args))
}

async fn run(args: CostReportArgs) -> i32 {
    let since = match humantime::parse_duration(args.since.trim()) {
        Ok(d) => d,
        Err(e) => {
            return super::bad_input(
                &format!(
                    "--since: '{}' is not a duration ({e}); e.g. 7d, 24h",
                    args.since
                ),
                args.json,
            )
        }
    };
    let output = match super::output_url(&args.output) {
        Ok(o) => o,
        Err(e) => return super::bad_input(&e, args.json),
    };
    let records = match &output {
        None => {
            let registry = Registry::open();
            // An AWS Batch batch no client followed to its end: its ended jobs' cost, now.
            if let Some(record) = args
                .batch
                .as_deref()
                .and_then(|b| crate::batch::aws::BatchRecord::load(&registry, b))
            {
                let first = record.jobs.first().and_then(|j| registry.get(j));
                let cloud = super::connect(&args.aws, first.as_ref()).await;
                crate::cost::aws_batch::settle(&cloud, &registry, &record).await;
            }
            registry.costs()
        }
        Some(o) => {
            let cloud = super::connect(&args.aws, None).await;
            match from_s3(&cloud, o).await {
                Ok(r) => r,
                Err(e) => {
                    return super::fail(&format!("--output {o}: {e}"), crate::report::exit::REMOTE)
                }
            }
        }
    };
    let now = SystemTime::now();
    let picked = pick(records, args.batch.as_deref(), since, now);
    let rows = group(&picked, &args.by);
    if args.json {
        let doc = serde_json::json!({
            "currency": crate::cost::CURRENCY,
            "since": humantime::format_rfc3339_seconds(now.checked_sub(since).unwrap_or(SystemTime::UNIX_EPOCH)).to_string(),
            "by": args.by,
            "batch": args.batch,
            "cost_usd": total(&rows),
            "jobs": picked.len(),
            "rows": rows,
        });
        super::emit(&format!(
            "{}\n",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        ));
    } else if rows.is_empty() {
        crate::ui::stderr_line(&format!(
            "run-render: no cost records{} in the last {} ({}); a job's cost is recorded when its client sees it end",
            args.batch.as_deref().map(|b| format!(" of batch {b}")).unwrap_or_default(),
            humantime::format_duration(since),
            match &output {
                Some(o) => format!("under {o}"),
                None => format!("this workstation's, in {}", Registry::open().dir().display()),
            }
        ));
    } else {
        super::emit(&table(&rows, &args.by));
    }
    0
}

/// The records of the jobs under an output in S3.
async fn from_s3(
    cloud: &crate::cloud::Cloud,
    output: &rtb_model::S3Url,
) -> Result<Vec<CostRecord>, crate::cloud::CloudError> {
    let (jobs, _) = super::jobs_under(cloud, output).await?;
    let mut out = Vec::new();
    for (job, under) in jobs {
        let base = rtb_model::JobRecords::under_output(&under, &job);
        let records = cloud.newest_attempt(base).await?;
        if let Some(r) = crate::cost::account::read(cloud, &records).await? {
            out.push(r);
        }
    }
    Ok(out)
}

/// The records of `batch` (if given) computed within `since` of `now`.
pub fn pick(
    records: Vec<CostRecord>,
    batch: Option<&str>,
    since: Duration,
    now: SystemTime,
) -> Vec<CostRecord> {
    let mut v: Vec<CostRecord> = records
        .into_iter()
        .filter(|r| batch.is_none_or(|b| r.batch.as_deref() == Some(b)))
        .filter(|r| {
            humantime::parse_rfc3339(&r.computed_at)
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_none_or(|age| age <= since)
        })
        .collect();
    v.sort_by(|a, b| a.job_id.cmp(&b.job_id));
    v
}

/// One row per key (`job`, `batch` or `owner`), in key order.
pub fn group(records: &[CostRecord], by: &str) -> Vec<Row> {
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for r in records {
        let key = match by {
            "batch" => r.batch.clone().unwrap_or_else(|| "(no batch)".into()),
            "owner" => r.owner.clone(),
            _ => r.job_id.clone(),
        };
        let row = rows.entry(key.clone()).or_insert_with(|| Row {
            key,
            jobs: 0,
            cost_usd: None,
            unknown_jobs: 0,
            failed_attempts_usd: 0.0,
            instance_seconds: 0.0,
            so_far: false,
            price_sources: Vec::new(),
        });
        row.jobs += 1;
        match r.cost_usd {
            Some(c) => row.cost_usd = Some(row.cost_usd.unwrap_or(0.0) + c),
            None => row.unknown_jobs += 1,
        }
        row.failed_attempts_usd += r.failed_usd.unwrap_or(0.0);
        row.instance_seconds += r.seconds;
        row.so_far |= r.so_far;
        if let Some(s) = &r.price_source {
            if !row.price_sources.contains(s) {
                row.price_sources.push(s.clone());
            }
        }
    }
    rows.into_values().collect()
}

fn total(rows: &[Row]) -> Option<f64> {
    let known: Vec<f64> = rows.iter().filter_map(|r| r.cost_usd).collect();
    (!known.is_empty()).then(|| known.iter().sum())
}

pub fn table(rows: &[Row], by: &str) -> String {
    let w = rows.iter().map(|r| r.key.len()).max().unwrap_or(3).max(5);
    let mut o = format!(
        "{:<w$}  {:>5} {:>12} {:>12} {:>10}  PRICES FROM\n",
        by.to_uppercase(),
        "JOBS",
        "COST",
        "FAILED",
        "INST-S"
    );
    for r in rows {
        o.push_str(&format!(
            "{:<w$}  {:>5} {:>12} {:>12} {:>10.0}  {}\n",
            r.key,
            r.jobs,
            format!(
                "{}{}",
                usd_text(r.cost_usd),
                if r.so_far { "+" } else { "" }
            ),
            usd_text(Some(r.failed_attempts_usd)),
            r.instance_seconds,
            if r.unknown_jobs > 0 {
                format!(
                    "{} ({} job(s) unknown: no price)",
                    r.price_sources.join(", "),
                    r.unknown_jobs
                )
            } else {
                r.price_sources.join(", ")
            }
        ));
    }
    let jobs: usize = rows.iter().map(|r| r.jobs).sum();
    o.push_str(&format!(
        "{:<w$}  {:>5} {:>12}\ncosts in USD, as recorded when each job ended (+: an instance still ran)\n",
        "TOTAL",
        jobs,
        usd_text(total(rows)),
    ));
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(job: &str, batch: Option<&str>, owner: &str, usd: Option<f64>, at: &str) -> CostRecord {
        CostRecord {
            schema: 1,
            job_id: job.into(),
            batch: batch.map(str::to_string),
            owner: owner.into(),
            currency: "USD".into(),
            cost_usd: usd,
            unknown: None,
            seconds: 100.0,
            attempts: Vec::new(),
            failed_attempts: 0,
            failed_usd: Some(0.01),
            on_demand_usd: usd,
            price_source: Some("--price".into()),
            prices: Vec::new(),
            instances: Vec::new(),
            computed_at: at.into(),
            so_far: false,
        }
    }

    #[test]
    fn records_are_picked_and_grouped() {
        let now = humantime::parse_rfc3339("2026-12-10T00:00:00Z").unwrap();
        let all = vec![
            rec("b-1", Some("b"), "ann", Some(0.5), "2026-12-09T00:00:00Z"),
            rec("b-2", Some("b"), "bob", Some(0.25), "2026-12-08T00:00:00Z"),
            rec("c-1", Some("c"), "ann", None, "2026-12-09T00:00:00Z"),
            rec("old", None, "ann", Some(9.0), "2026-11-01T00:00:00Z"),
        ];
        let week = Duration::from_secs(7 * 86_400);
        let picked = pick(all.clone(), None, week, now);
        assert_eq!(picked.len(), 3, "the old one is out of the window");
        let by_batch = group(&picked, "batch");
        assert_eq!(by_batch.len(), 2);
        assert_eq!(by_batch[0].key, "b");
        assert_eq!(by_batch[0].cost_usd, Some(0.75));
        assert_eq!(by_batch[1].cost_usd, None);
        assert_eq!(by_batch[1].unknown_jobs, 1);
        let by_owner = group(&picked, "owner");
        assert_eq!(
            by_owner
                .iter()
                .map(|r| (r.key.as_str(), r.jobs))
                .collect::<Vec<_>>(),
            [("ann", 2), ("bob", 1)]
        );
        assert_eq!(by_owner[0].cost_usd, Some(0.5));
        assert_eq!(pick(all, Some("c"), week, now).len(), 1);
        let text = table(&by_batch, "batch");
        assert!(text.contains("TOTAL") && text.contains("$0.7500"), "{text}");
        assert!(text.contains("1 job(s) unknown"), "{text}");
    }
}
