//! Fetch, then decide: the instances' times from EC2 and their prices, then the ledger's pure
//! arithmetic, then the records written where `status` and `cost` read them (the job's
//! records in S3, the registry).

use std::collections::BTreeMap;
use std::time::SystemTime;

use rtb_model::JobRecords;

use super::ledger::{self, Bill, EndFrom, Span, Use};
use super::prices::{Market, Priced, Prices, Query};
use super::record::{self, CostRecord};
use crate::cloud::{Cloud, CloudError};
use crate::registry::Registry;

/// An instance as the client saw it: what it asked for, and when it saw it start and end.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub id: String,
    pub instance_type: String,
    /// Asked for spot (EC2's own word wins when it gives one).
    pub spot: bool,
    /// When the client launched it (used when EC2 no longer lists it).
    pub launched: Option<SystemTime>,
    /// When the client saw EC2 report it ended (used when EC2 gives no transition time).
    pub ended: Option<SystemTime>,
}

/// Everything the ledger was computed from, and the ledger.
#[derive(Debug, Clone)]
pub struct Accounted {
    pub bill: Bill,
    pub spans: Vec<Span>,
    pub prices: BTreeMap<String, Priced>,
}

impl Accounted {
    /// The records of the jobs, for `batch` (if any) of `owner`.
    pub fn records(&self, batch: Option<&str>, owner: &str) -> Vec<CostRecord> {
        record::records(
            &self.bill,
            &self.spans,
            &self.prices,
            batch,
            owner,
            SystemTime::now(),
        )
    }

    /// Where the prices came from, in words, once each.
    pub fn sources(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .prices
            .values()
            .filter_map(|p| p.known().map(|p| p.source.words().to_string()))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Why some price is unknown, if one is.
    pub fn unknown(&self) -> Option<&str> {
        self.prices.values().find_map(|p| match p {
            Priced::Unknown(why) => Some(why.as_str()),
            Priced::Known(_) => None,
        })
    }
}

/// The ledger of `seen` instances and the `uses` of them, from EC2's times and the prices.
pub async fn account(
    cloud: &Cloud,
    prices: &Prices<'_>,
    seen: &[Seen],
    uses: &[Use],
    now: SystemTime,
) -> Result<Accounted, CloudError> {
    let ids: Vec<String> = seen.iter().map(|s| s.id.clone()).collect();
    let facts = cloud.billed_instances(&ids).await?;
    let mut spans = Vec::new();
    let mut priced = BTreeMap::new();
    for s in seen {
        let f = facts.iter().find(|f| f.id == s.id);
        let Some(launched) = f.map(|f| f.launched).or(s.launched) else {
            continue;
        };
        let running = f.is_some_and(|f| {
            matches!(
                f.state,
                crate::cloud::Lifecycle::Running | crate::cloud::Lifecycle::Pending
            )
        });
        let (ended, end_from) = match (f.and_then(|f| f.ended), s.ended, running) {
            (Some(t), _, _) => (t, EndFrom::Ec2),
            (None, _, true) => (now, EndFrom::Running),
            (None, Some(t), false) => (t, EndFrom::Client),
            (None, None, false) => (now, EndFrom::Client),
        };
        let spot = f.map_or(s.spot, |f| f.spot || s.spot);
        let instance_type = f
            .map(|f| f.instance_type.clone())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| s.instance_type.clone());
        let zone = f.and_then(|f| f.zone.clone());
        let price = price_of(prices, &instance_type, zone.clone(), spot, launched).await;
        let on_demand = if spot && prices.user().is_none() {
            price_of(prices, &instance_type, None, false, launched).await
        } else {
            price.clone()
        };
        spans.push(Span {
            id: s.id.clone(),
            launched,
            ended,
            end_from,
            rate: price.known().map(|p| p.usd_per_hour),
            on_demand_rate: on_demand.known().map(|p| p.usd_per_hour),
            spot,
        });
        priced.insert(s.id.clone(), price);
    }
    Ok(Accounted {
        bill: ledger::bill(&spans, uses),
        spans,
        prices: priced,
    })
}

/// The price of `instance_type` launched `at`: spot in its zone, else on demand in the region.
pub(super) async fn price_of(
    prices: &Prices<'_>,
    instance_type: &str,
    zone: Option<String>,
    spot: bool,
    at: SystemTime,
) -> Priced {
    let region = prices
        .region()
        .map(str::to_string)
        .or_else(|| zone.as_deref().map(region_of_zone));
    let Some(region) = region else {
        if prices.user().is_some() {
            return prices
                .price(&Query {
                    instance_type: instance_type.to_string(),
                    region: String::new(),
                    zone,
                    market: Market::of(spot),
                    at,
                })
                .await;
        }
        return Priced::Unknown("no AWS region is set, so no price can be looked up".into());
    };
    prices
        .price(&Query {
            instance_type: instance_type.to_string(),
            region,
            zone: if spot { zone } else { None },
            market: Market::of(spot),
            at,
        })
        .await
}

/// `us-east-1a` -> `us-east-1` (a zone's region: the name without its last letter(s)).
fn region_of_zone(zone: &str) -> String {
    zone.trim_end_matches(|c: char| c.is_ascii_lowercase())
        .to_string()
}

/// Write each record into its job's records folder and this workstation's registry. A
/// record that cannot be written to S3 is still kept locally; the first failure is returned
/// for the caller to show.
pub async fn write(
    cloud: &Cloud,
    registry: &Registry,
    records: &[(CostRecord, Option<JobRecords>)],
) -> Result<(), String> {
    let mut first_error = None;
    for (rec, at) in records {
        if let Err(e) = registry.save_cost(rec) {
            first_error.get_or_insert(e.to_string());
        }
        let Some(at) = at else { continue };
        let key = format!("{}{}", at.root().dir_prefix(), record::COST_NAME);
        let body = serde_json::to_vec_pretty(rec).unwrap_or_default();
        if let Err(e) = cloud
            .put_bytes(at.bucket(), &key, body, "application/json")
            .await
        {
            first_error.get_or_insert(format!(
                "could not write the cost record s3://{}/{key}: {e}",
                at.bucket()
            ));
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A job's cost record from its records folder in S3, if it has one.
pub async fn read(cloud: &Cloud, at: &JobRecords) -> Result<Option<CostRecord>, CloudError> {
    let key = format!("{}{}", at.root().dir_prefix(), record::COST_NAME);
    Ok(cloud
        .get_bytes(at.bucket(), &key)
        .await?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

/// A `run`'s cost, for its report.
#[derive(Debug, Clone, Default)]
pub struct RunCost {
    pub record: Option<CostRecord>,
    pub usd: Option<f64>,
    /// Why there is no figure, or where it could not be written.
    pub note: Option<String>,
    pub so_far: bool,
}

impl RunCost {
    /// `cost_usd`, `currency`, `price_source` and the whole record, into a job's JSON document.
    pub fn add_to(&self, doc: &mut serde_json::Value) {
        if let Some(map) = doc.as_object_mut() {
            map.insert("cost_usd".into(), serde_json::json!(self.usd));
            map.insert("currency".into(), serde_json::json!(record::CURRENCY));
            map.insert(
                "price_source".into(),
                serde_json::json!(self.record.as_ref().and_then(|r| r.price_source.clone())),
            );
            map.insert("cost_so_far".into(), serde_json::json!(self.so_far));
            map.insert("cost".into(), serde_json::json!(self.record));
            if let Some(n) = &self.note {
                map.insert("cost_note".into(), serde_json::json!(n));
            }
        }
    }

    /// "$0.0016 for 62 s of m6i.large at $0.0960/h ... (so far)", or "unknown: why".
    pub fn line(&self) -> String {
        let Some(usd) = self.usd else {
            return format!("unknown: {}", self.note.as_deref().unwrap_or("no price"));
        };
        let Some(r) = &self.record else {
            return format!(
                "{} ({})",
                record::usd_text(Some(usd)),
                self.note.as_deref().unwrap_or("")
            );
        };
        let prices: Vec<String> = r.prices.iter().map(|p| p.provenance()).collect();
        format!(
            "{} for {:.0} instance-seconds at {}{}{}",
            record::usd_text(Some(usd)),
            r.seconds,
            prices.join(", "),
            if self.so_far {
                " (so far: the instance still runs)"
            } else {
                ""
            },
            self.note
                .as_deref()
                .map(|n| format!("; {n}"))
                .unwrap_or_default()
        )
    }
}

/// How long working out a cost may hold the client's exit (reading instance times, prices).
pub const COST_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// What one `run` cost: its instance's times from EC2 at its price, written beside its
/// result (and into the registry) once the instance has ended.
pub async fn of_run(
    cloud: &Cloud,
    prices: &Prices<'_>,
    registry: &Registry,
    plan: &crate::plan::Plan,
    report: &crate::report::Report,
) -> RunCost {
    use crate::report::{InstanceFate, Outcome};
    let Some(id) = &report.instance_id else {
        return RunCost {
            usd: Some(0.0),
            note: Some("no instance was launched".into()),
            ..RunCost::default()
        };
    };
    if report.outcome == Outcome::Unknown || report.instance == InstanceFate::Unconfirmed {
        // AWS stopped answering: asking it again only delays the exit the user is owed.
        return RunCost {
            note: Some("AWS stopped answering, so the instance's times could not be read; `run-render status` shows the cost later".into()),
            ..RunCost::default()
        };
    }
    let now = SystemTime::now();
    let ended = matches!(report.instance, InstanceFate::Terminated).then_some(now);
    let start = now
        .checked_sub(std::time::Duration::from_secs_f64(
            report.phases.total_s.max(0.0),
        ))
        .unwrap_or(now);
    let seen = [Seen {
        id: id.clone(),
        instance_type: report.instance_type.clone(),
        spot: plan.launch.spot,
        launched: Some(start),
        ended,
    }];
    let uses = [Use {
        job_id: plan.job_id.clone(),
        attempt: 1,
        instance_id: id.clone(),
        start,
        end: now,
        failed: report.outcome != Outcome::Succeeded,
    }];
    let accounted = match account(cloud, prices, &seen, &uses, now).await {
        Ok(a) => a,
        Err(e) => {
            return RunCost {
                note: Some(format!("the instance's times could not be read: {e}")),
                ..RunCost::default()
            }
        }
    };
    let Some(rec) = accounted
        .records(plan.batch.as_deref(), &crate::plan::owner())
        .into_iter()
        .next()
    else {
        return RunCost::default();
    };
    let mut out = RunCost {
        usd: rec.cost_usd,
        so_far: rec.so_far,
        note: rec.unknown.clone(),
        record: Some(rec.clone()),
    };
    if !rec.so_far {
        let at = plan.work_records().cloned();
        if let Err(e) = write(cloud, registry, &[(rec, at)]).await {
            out.note = Some(e);
        }
    }
    out
}

/// What a batch cost: each job's record (by job id) and the whole.
#[derive(Debug, Clone, Default)]
pub struct BatchCost {
    pub jobs: BTreeMap<String, CostRecord>,
    pub total_usd: Option<f64>,
    pub failed_usd: Option<f64>,
    pub spot_savings_usd: Option<f64>,
    pub billed_s: u64,
    pub sources: Vec<String>,
    /// Why there is no figure, or where a record could not be written.
    pub note: Option<String>,
    /// What the figure counts when it is not instance time (AWS Batch: the jobs' attempts),
    /// and what it leaves out.
    pub basis: Option<String>,
}

impl BatchCost {
    pub fn unknown(why: impl Into<String>) -> BatchCost {
        BatchCost {
            note: Some(why.into()),
            ..BatchCost::default()
        }
    }

    pub fn job_usd(&self, job_id: &str, ran: bool) -> Option<f64> {
        match self.jobs.get(job_id) {
            Some(r) => r.cost_usd,
            // A job that launched nothing cost nothing.
            None if !ran => self.total_usd.map(|_| 0.0),
            None => None,
        }
    }
}

/// What a batch's jobs cost on the EC2 engine: the pool's instances' times from EC2 at their
/// prices, shared among the attempts by the times they ran; each job's record written beside
/// its newest attempt's result and into the registry.
pub async fn of_batch(
    cloud: &Cloud,
    prices: &Prices<'_>,
    registry: &Registry,
    batch: &str,
    jobs: &[crate::batch::BatchJob],
    ends: &[crate::batch::pool::JobEnd],
    ended_at: &BTreeMap<String, SystemTime>,
) -> BatchCost {
    let mut seen: Vec<Seen> = Vec::new();
    let mut uses = Vec::new();
    for (job, end) in jobs.iter().zip(ends) {
        for (n, a) in end.attempts.iter().enumerate() {
            let Some(id) = &a.instance_id else { continue };
            if !seen.iter().any(|s| &s.id == id) {
                seen.push(Seen {
                    id: id.clone(),
                    instance_type: job
                        .plan
                        .launch
                        .instance_types
                        .first()
                        .cloned()
                        .unwrap_or_default(),
                    spot: a.spot,
                    launched: a.ran.map(|r| r.started),
                    ended: ended_at.get(id).copied(),
                });
            }
            if let Some(crate::batch::pool::Span {
                started: start,
                ended: end_at,
                ..
            }) = a.ran
            {
                uses.push(Use {
                    job_id: job.job_id.clone(),
                    attempt: n as u32 + 1,
                    instance_id: id.clone(),
                    start,
                    end: end_at,
                    failed: a.outcome != crate::report::Outcome::Succeeded,
                });
            }
        }
    }
    if seen.is_empty() {
        return BatchCost {
            total_usd: Some(0.0),
            failed_usd: Some(0.0),
            spot_savings_usd: Some(0.0),
            ..BatchCost::default()
        };
    }
    let accounted = match account(cloud, prices, &seen, &uses, SystemTime::now()).await {
        Ok(a) => a,
        Err(e) => {
            return BatchCost::unknown(format!("the instances' times could not be read: {e}"))
        }
    };
    let records = accounted.records(Some(batch), &crate::plan::owner());
    let mut out = BatchCost {
        total_usd: accounted.bill.total_usd(),
        failed_usd: records.iter().try_fold(0.0, |t, r| Some(t + r.failed_usd?)),
        spot_savings_usd: accounted.bill.spot_savings_usd(),
        billed_s: accounted.bill.billed_seconds(),
        sources: accounted.sources(),
        note: accounted.unknown().map(str::to_string),
        jobs: BTreeMap::new(),
        basis: None,
    };
    let mut to_write = Vec::new();
    for rec in records {
        let at = jobs
            .iter()
            .zip(ends)
            .find(|(j, _)| j.job_id == rec.job_id)
            .and_then(|(_, e)| e.report.as_ref())
            .and_then(|r| r.records.as_deref())
            .and_then(|r| r.parse::<rtb_model::S3Url>().ok())
            .map(JobRecords::at);
        if !rec.so_far {
            to_write.push((rec.clone(), at));
        }
        out.jobs.insert(rec.job_id.clone(), rec);
    }
    if let Err(e) = write(cloud, registry, &to_write).await {
        out.note.get_or_insert(e);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_name_their_region() {
        assert_eq!(region_of_zone("us-east-1a"), "us-east-1");
        assert_eq!(region_of_zone("eu-west-3c"), "eu-west-3");
    }
}
