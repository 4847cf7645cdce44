//! What a job cost on AWS Batch: each attempt's run time as AWS Batch reports it
//! (DescribeJobs' `startedAt` to `stoppedAt`) at the hourly price of the EC2 instance it ran
//! on, failed attempts apart. The instance is the attempt's ECS container instance's (ECS
//! DescribeContainerInstances), else the one the runner recorded in its result (IMDS); with
//! `--price` the rate is known without it. The compute environment's start-up and idle
//! minutes are the queue's, shared by whoever uses it: no job is charged for them.
//!
//! Fetch ([`of_aws_batch`]), then decide ([`records`], pure and table-tested), then write the
//! records where `status` and `cost` read them, as the EC2 engine's.

use std::collections::BTreeMap;
use std::time::SystemTime;

use rtb_model::JobRecords;

use super::account::{price_of, write, BatchCost};
use super::prices::{Market, Price, Priced, Prices, Query};
use super::record::{AttemptCost, CostRecord, CURRENCY, SCHEMA};
use crate::batch::jobs::BatchJob;
use crate::batch::pool::JobEnd;
use crate::cloud::Cloud;
use crate::engine::aws_batch::{AwsBatch, JobState, Submitted};
use crate::registry::Registry;

/// What the figures count and leave out, for the summary and the docs.
pub const BASIS: &str = "on AWS Batch a job's cost is its attempts' run time (startedAt to stoppedAt) at its instance's price; the compute environment's start-up and idle minutes are the queue's, not a job's";

/// One attempt, fetched: its times, how it ended, and the instance it ran on when known.
#[derive(Debug, Clone, PartialEq)]
pub struct Ran {
    pub job_id: String,
    pub attempt: u32,
    pub started: SystemTime,
    pub stopped: SystemTime,
    pub failed: bool,
    pub instance_id: Option<String>,
    /// Spot, as EC2 says of the instance.
    pub spot: bool,
    /// Its price (and, for a spot instance, the on-demand rate of the same type).
    pub price: Priced,
    pub on_demand_rate: Option<f64>,
}

fn rfc3339_ms(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Every job's record: one per job with attempts (in `runs`' order), and one of no cost for
/// each job of `never_ran` (AWS Batch started no attempt of it).
pub fn records(
    runs: &[Ran],
    never_ran: &[String],
    batch: Option<&str>,
    owner: &str,
    now: SystemTime,
) -> Vec<CostRecord> {
    let mut order: Vec<&str> = Vec::new();
    for r in runs {
        if !order.contains(&r.job_id.as_str()) {
            order.push(&r.job_id);
        }
    }
    let add = |a: Option<f64>, b: Option<f64>| Some(a? + b?);
    let mut out: Vec<CostRecord> = order
        .into_iter()
        .map(|job| {
            let mine: Vec<&Ran> = runs.iter().filter(|r| r.job_id == job).collect();
            let mut attempts = Vec::new();
            let (mut usd, mut failed_usd, mut on_demand) = (Some(0.0), Some(0.0), Some(0.0));
            let (mut seconds, mut failed_attempts) = (0.0, 0u32);
            let mut used: Vec<Price> = Vec::new();
            let mut unknown = None;
            for r in &mine {
                let secs = r
                    .stopped
                    .duration_since(r.started)
                    .unwrap_or_default()
                    .as_secs_f64();
                let rate = match &r.price {
                    Priced::Known(p) => {
                        if !used.contains(p) {
                            used.push(p.clone());
                        }
                        Some(p.usd_per_hour)
                    }
                    Priced::Unknown(why) => {
                        unknown.get_or_insert_with(|| why.clone());
                        None
                    }
                };
                let a_usd = rate.map(|r| secs * r / 3600.0);
                seconds += secs;
                usd = add(usd, a_usd);
                on_demand = add(
                    on_demand,
                    if r.spot {
                        r.on_demand_rate.map(|o| secs * o / 3600.0)
                    } else {
                        a_usd
                    },
                );
                if r.failed {
                    failed_attempts += 1;
                    failed_usd = add(failed_usd, a_usd);
                }
                attempts.push(AttemptCost {
                    attempt: r.attempt,
                    instance_id: r.instance_id.clone().unwrap_or_default(),
                    seconds: secs,
                    usd: a_usd,
                    failed: r.failed,
                    spot: r.spot,
                    started_at: Some(rfc3339_ms(r.started)),
                    stopped_at: Some(rfc3339_ms(r.stopped)),
                });
            }
            let mut sources: Vec<&str> = used.iter().map(|p| p.source.words()).collect();
            sources.dedup();
            CostRecord {
                schema: SCHEMA,
                job_id: job.to_string(),
                batch: batch.map(str::to_string),
                owner: owner.to_string(),
                currency: CURRENCY.into(),
                cost_usd: usd,
                unknown: if usd.is_none() { unknown } else { None },
                seconds,
                attempts,
                failed_attempts,
                failed_usd,
                on_demand_usd: on_demand,
                price_source: (!sources.is_empty()).then(|| sources.join(", ")),
                prices: used,
                instances: Vec::new(),
                computed_at: super::prices::rfc3339(now),
                so_far: false,
            }
        })
        .collect();
    for job in never_ran {
        out.push(CostRecord {
            schema: SCHEMA,
            job_id: job.clone(),
            batch: batch.map(str::to_string),
            owner: owner.to_string(),
            currency: CURRENCY.into(),
            cost_usd: Some(0.0),
            unknown: None,
            seconds: 0.0,
            attempts: Vec::new(),
            failed_attempts: 0,
            failed_usd: Some(0.0),
            on_demand_usd: Some(0.0),
            price_source: None,
            prices: Vec::new(),
            instances: Vec::new(),
            computed_at: super::prices::rfc3339(now),
            so_far: false,
        });
    }
    out
}

/// The batch's figures from its jobs' records.
pub fn total(records: &[CostRecord], note: Option<String>) -> BatchCost {
    let sum = |f: &dyn Fn(&CostRecord) -> Option<f64>| {
        records.iter().try_fold(0.0, |t, r| Some(t + f(r)?))
    };
    let mut sources: Vec<String> = records
        .iter()
        .flat_map(|r| r.prices.iter().map(|p| p.source.words().to_string()))
        .collect();
    sources.sort();
    sources.dedup();
    let total_usd = sum(&|r| r.cost_usd);
    BatchCost {
        jobs: records
            .iter()
            .map(|r| (r.job_id.clone(), r.clone()))
            .collect(),
        total_usd,
        failed_usd: sum(&|r| r.failed_usd),
        spot_savings_usd: sum(&|r| Some(r.on_demand_usd? - r.cost_usd?)),
        billed_s: records.iter().map(|r| r.seconds).sum::<f64>().round() as u64,
        sources,
        note: if total_usd.is_none() {
            records.iter().find_map(|r| r.unknown.clone()).or(note)
        } else {
            note
        },
        basis: Some(BASIS.to_string()),
    }
}

/// Why an attempt has no price: the instance is not known, or EC2 no longer lists it. (The
/// summary adds what to do: `--price`.)
fn no_price(attempt: u32, instance: Option<&str>, lookup: Option<&str>) -> String {
    match instance {
        Some(id) => format!(
            "EC2 does not list instance {id} (attempt {attempt}'s), so its type and price are not known"
        ),
        None => format!(
            "AWS Batch did not say which instance attempt {attempt} ran on{}, and its runner recorded none",
            lookup.map(|l| format!(" ({l})")).unwrap_or_default()
        ),
    }
}

/// Where a job's records are, for its cost: its folder (`<output>/_rtb-job/<job>/`), and what
/// the follow loop already read (its newest attempt's folder, the instance its runner
/// recorded).
#[derive(Debug, Clone, Default)]
pub struct Place {
    pub base: Option<JobRecords>,
    pub newest: Option<JobRecords>,
    pub runner_instance: Option<String>,
}

/// The places of a followed batch's jobs, from their ends.
pub fn places(jobs: &[BatchJob], ends: &[JobEnd]) -> BTreeMap<String, Place> {
    jobs.iter()
        .zip(ends)
        .map(|(j, e)| {
            let report = e.report.as_ref();
            let place = Place {
                base: j.records_base(),
                newest: report
                    .and_then(|r| r.records.as_deref())
                    .and_then(|r| r.parse::<rtb_model::S3Url>().ok())
                    .map(JobRecords::at),
                runner_instance: report
                    .and_then(|r| r.result.as_ref())
                    .and_then(|r| r.instance_id.clone()),
            };
            (j.job_id.clone(), place)
        })
        .collect()
}

/// What the ended jobs of `submitted` cost on AWS Batch (a job not ended yet is left out):
/// their attempts from AWS Batch, each attempt's instance (ECS, else the runner's record) and
/// its type and market from EC2, its price; each job's record written beside its newest
/// attempt's result and into the registry.
#[allow(clippy::too_many_arguments)]
pub async fn of_aws_batch(
    cloud: &Cloud,
    engine: &AwsBatch,
    prices: &Prices<'_>,
    registry: &Registry,
    run_id: &str,
    submitted: &Submitted,
    places: &BTreeMap<String, Place>,
) -> BatchCost {
    let ids: Vec<String> = submitted
        .jobs
        .iter()
        .map(|j| j.batch_job_id.clone())
        .collect();
    let found = match engine.attempts(&ids).await {
        Ok(f) => f,
        Err(e) => return BatchCost::unknown(format!("the jobs' attempts could not be read: {e}")),
    };
    // Which EC2 instance each attempt's container instance is.
    let arns: Vec<String> = found
        .iter()
        .flat_map(|j| {
            j.attempts
                .iter()
                .filter_map(|a| a.container_instance.clone())
        })
        .collect();
    let mut lookup_error = None;
    let mut hosts = BTreeMap::new();
    if !arns.is_empty() {
        let clusters = if arns
            .iter()
            .any(|a| crate::engine::aws_batch::attempts::cluster_of(a).is_none())
        {
            engine.clusters(&submitted.queue).await.unwrap_or_default()
        } else {
            Vec::new()
        };
        match engine.container_hosts(&arns, &clusters).await {
            Ok(h) => hosts = h,
            Err(e) => lookup_error = Some(e.to_string()),
        }
    }
    let mut pending = Vec::new();
    let mut never_ran = Vec::new();
    let mut newest: BTreeMap<String, JobRecords> = BTreeMap::new();
    for s in &submitted.jobs {
        let Some(j) = found.iter().find(|f| f.batch_job_id == s.batch_job_id) else {
            continue;
        };
        if !j.state.is_some_and(JobState::is_final) {
            continue;
        }
        if j.attempts.is_empty() {
            // Its record (no cost) stays in the registry: it has no attempt folder in S3.
            never_ran.push(s.job_id.clone());
            continue;
        }
        let place = places.get(&s.job_id).cloned().unwrap_or_default();
        // The folder its record goes in: the newest attempt's (`<run>-a<N>/`).
        if let Some(at) = place.newest.clone().or_else(|| {
            let n = u32::try_from(j.attempts.len()).ok()?;
            Some(place.base.as_ref()?.attempt(run_id, n))
        }) {
            newest.insert(s.job_id.clone(), at);
        }
        let last = j.attempts.len();
        for a in &j.attempts {
            let (Some(started), Some(stopped)) = (a.started_at, a.stopped_at) else {
                continue;
            };
            let mut instance = a
                .container_instance
                .as_ref()
                .and_then(|c| hosts.get(c))
                .cloned();
            if instance.is_none() {
                instance = runner_instance(cloud, &place, run_id, a.number, last).await;
            }
            pending.push((
                s.job_id.clone(),
                a.number,
                started,
                stopped,
                !(a.number as usize == last && j.state == Some(JobState::Succeeded)),
                instance,
            ));
        }
    }
    let instance_ids: Vec<String> = {
        let mut v: Vec<String> = pending.iter().filter_map(|p| p.5.clone()).collect();
        v.sort();
        v.dedup();
        v
    };
    let facts = match cloud.billed_instances(&instance_ids).await {
        Ok(f) => f,
        Err(e) => {
            lookup_error.get_or_insert(e.to_string());
            Vec::new()
        }
    };
    let mut runs = Vec::new();
    for (job_id, attempt, started, stopped, failed, instance) in pending {
        let fact = instance
            .as_ref()
            .and_then(|id| facts.iter().find(|f| &f.id == id));
        let (price, on_demand_rate, spot) = match fact {
            Some(f) => {
                let price =
                    price_of(prices, &f.instance_type, f.zone.clone(), f.spot, started).await;
                let on_demand = if f.spot && prices.user().is_none() {
                    price_of(prices, &f.instance_type, None, false, started).await
                } else {
                    price.clone()
                };
                (price, on_demand.known().map(|p| p.usd_per_hour), f.spot)
            }
            // --price: the rate of whatever it ran on.
            None if prices.user().is_some() => {
                let price = prices
                    .price(&Query {
                        instance_type: String::new(),
                        region: prices.region().unwrap_or_default().to_string(),
                        zone: None,
                        market: Market::OnDemand,
                        at: started,
                    })
                    .await;
                let rate = price.known().map(|p| p.usd_per_hour);
                (price, rate, false)
            }
            None => (
                Priced::Unknown(no_price(
                    attempt,
                    instance.as_deref(),
                    lookup_error.as_deref(),
                )),
                None,
                false,
            ),
        };
        runs.push(Ran {
            job_id,
            attempt,
            started,
            stopped,
            failed,
            instance_id: instance,
            spot,
            price,
            on_demand_rate,
        });
    }
    let records = records(
        &runs,
        &never_ran,
        Some(&submitted.batch),
        &crate::plan::owner(),
        SystemTime::now(),
    );
    let mut out = total(&records, None);
    let to_write: Vec<(CostRecord, Option<JobRecords>)> = records
        .into_iter()
        .map(|rec| {
            let at = newest.get(&rec.job_id).cloned();
            (rec, at)
        })
        .collect();
    if let Err(e) = write(cloud, registry, &to_write).await {
        out.note.get_or_insert(e);
    }
    out
}

/// A batch submitted to AWS Batch that no client followed to its end (`--detach`, Ctrl-C):
/// the cost of its ended jobs that have no record of this submission yet, worked out and
/// recorded now, at the price it was submitted with (else AWS's). None when none was due.
pub async fn settle(
    cloud: &Cloud,
    registry: &Registry,
    record: &crate::batch::aws::BatchRecord,
) -> Option<BatchCost> {
    let run_id = record.run_id.as_deref()?;
    let since = humantime::parse_rfc3339(&record.submitted_at).ok()?;
    let due: Vec<_> = record
        .submitted
        .jobs
        .iter()
        .filter(|j| {
            registry.cost(&j.job_id).is_none_or(|c| {
                humantime::parse_rfc3339(&c.computed_at).map_or(true, |t| t < since)
            })
        })
        .cloned()
        .collect();
    if due.is_empty() {
        return None;
    }
    let places: BTreeMap<String, Place> = due
        .iter()
        .map(|j| {
            let base = registry
                .get(&j.job_id)
                .and_then(|e| e.output)
                .and_then(|o| o.parse::<rtb_model::S3Url>().ok())
                .map(|o| JobRecords::under_output(&o, &j.job_id));
            (
                j.job_id.clone(),
                Place {
                    base,
                    ..Place::default()
                },
            )
        })
        .collect();
    let submitted = Submitted {
        jobs: due,
        ..record.submitted.clone()
    };
    let engine = AwsBatch::new(cloud.config(), &crate::plan::owner());
    let prices = Prices::new(
        record.price,
        Some(cloud),
        Some(super::prices::Cache::open()),
    );
    let costed = of_aws_batch(
        cloud, &engine, &prices, registry, run_id, &submitted, &places,
    );
    tokio::time::timeout(super::account::COST_LIMIT, costed)
        .await
        .ok()
}

/// The instance the runner of attempt `n` recorded (its result's `instance_id`, from IMDS):
/// the last attempt's may be in hand, an earlier one's is read from its folder.
async fn runner_instance(
    cloud: &Cloud,
    place: &Place,
    run_id: &str,
    n: u32,
    last: usize,
) -> Option<String> {
    if n as usize == last {
        if let Some(id) = &place.runner_instance {
            return Some(id.clone());
        }
    }
    let at = place.base.as_ref()?.attempt(run_id, n);
    cloud.job_result(&at).await.ok().flatten()?.instance_id
}

#[cfg(test)]
mod tests {
    use super::super::prices::Origin;
    use super::*;
    use std::time::Duration;

    fn t(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_000 + ms)
    }

    fn price(usd: f64, market: Market, source: Origin) -> Priced {
        Priced::Known(Price {
            usd_per_hour: usd,
            market,
            instance_type: "m5.large".into(),
            place: "us-east-1".into(),
            source,
            fetched_at: "2026-12-01T00:00:00Z".into(),
            cached: false,
        })
    }

    fn ran(job: &str, n: u32, from: u64, to: u64, failed: bool, p: Priced) -> Ran {
        Ran {
            job_id: job.into(),
            attempt: n,
            started: t(from),
            stopped: t(to),
            failed,
            instance_id: Some("i-1".into()),
            spot: false,
            on_demand_rate: p.known().map(|p| p.usd_per_hour),
            price: p,
        }
    }

    #[test]
    fn a_jobs_cost_is_its_attempts_time_at_their_prices() {
        // $3.6/h is $0.001 a second.
        let od = || price(3.6, Market::OnDemand, Origin::PriceList);
        let mut spot = ran(
            "c",
            1,
            0,
            100_000,
            false,
            price(1.8, Market::Spot, Origin::SpotHistory),
        );
        spot.spot = true;
        spot.on_demand_rate = Some(3.6);
        let runs = vec![
            ran("a", 1, 0, 30_500, true, od()),
            ran("a", 2, 40_000, 100_000, false, od()),
            ran(
                "b",
                1,
                0,
                10_000,
                false,
                Priced::Unknown("no instance".into()),
            ),
            spot,
        ];
        let recs = records(&runs, &["d".to_string()], Some("bt"), "me", t(200_000));
        let by = |id: &str| recs.iter().find(|r| r.job_id == id).unwrap();
        // (job, cost, failed attempts, failed cost, seconds)
        type Row = (&'static str, Option<f64>, u32, Option<f64>, f64);
        let table: &[Row] = &[
            ("a", Some(0.0905), 1, Some(0.0305), 90.5),
            ("b", None, 0, Some(0.0), 10.0),
            ("c", Some(0.05), 0, Some(0.0), 100.0),
            ("d", Some(0.0), 0, Some(0.0), 0.0),
        ];
        for (job, usd, fa, fu, secs) in table {
            let r = by(job);
            match (r.cost_usd, usd) {
                (Some(a), Some(b)) => assert!((a - b).abs() < 1e-9, "{job}: {a} != {b}"),
                (a, b) => assert_eq!(a, *b, "{job}"),
            }
            assert_eq!(r.failed_attempts, *fa, "{job}");
            match (r.failed_usd, fu) {
                (Some(a), Some(b)) => assert!((a - b).abs() < 1e-9, "{job}"),
                (a, b) => assert_eq!(a, *b, "{job}"),
            }
            assert!((r.seconds - secs).abs() < 1e-9, "{job}");
            assert!(
                r.instances.is_empty(),
                "the instances' lifetimes are the queue's"
            );
        }
        assert_eq!(by("b").unknown.as_deref(), Some("no instance"));
        assert_eq!(
            by("a").attempts[1].started_at.as_deref(),
            Some("2027-01-15T08:00:40.000Z")
        );
        assert_eq!(by("a").price_source.as_deref(), Some("AWS Price List API"));
        assert!((by("c").on_demand_usd.unwrap() - 0.1).abs() < 1e-9);
        // The batch: unknown while one job is; its savings from spot.
        let all = total(&recs, None);
        assert_eq!(all.total_usd, None);
        assert_eq!(all.note.as_deref(), Some("no instance"));
        assert!(all.basis.as_deref().is_some_and(|b| b.contains("idle")));
        let known: Vec<CostRecord> = recs.iter().filter(|r| r.job_id != "b").cloned().collect();
        let all = total(&known, None);
        assert!((all.total_usd.unwrap() - 0.1405).abs() < 1e-9);
        assert!((all.failed_usd.unwrap() - 0.0305).abs() < 1e-9);
        assert!((all.spot_savings_usd.unwrap() - 0.05).abs() < 1e-9);
        assert_eq!(
            all.sources,
            ["AWS Price List API", "EC2 spot price history"]
        );
    }

    #[test]
    fn without_a_price_the_reason_says_what_is_missing() {
        let w = no_price(2, None, Some("ECS DescribeContainerInstances was refused"));
        assert!(w.contains("attempt 2") && w.contains("refused"), "{w}");
        let w = no_price(1, Some("i-9"), None);
        assert!(w.contains("i-9") && w.contains("not known"), "{w}");
    }
}
