//! A job's cost as it is written down: `cost.json` in the job's records folder in S3 (beside
//! its result, so `status --output` from any workstation reads it) and the registry's entry.
//! Built from a ledger's [`Bill`], with the instance times and the prices that went into it.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::ledger::{Bill, EndFrom, Line, Span};
use super::prices::{rfc3339, Price, Priced};

/// The record's name inside a job's (newest attempt's) records folder.
pub const COST_NAME: &str = "cost.json";
pub const CURRENCY: &str = "USD";
/// Version of the record's shape.
pub const SCHEMA: u32 = 1;

/// One instance's times as they were billed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceTimes {
    pub id: String,
    /// RFC 3339, EC2's LaunchTime.
    pub launched: String,
    /// RFC 3339: its end (or `now`, for one still running).
    pub ended: String,
    pub end_from: EndFrom,
    pub billed_s: u64,
    pub usd: Option<f64>,
    pub spot: bool,
}

/// One attempt's share of one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptCost {
    pub attempt: u32,
    /// Empty when it is not known (an AWS Batch attempt whose instance nobody named).
    pub instance_id: String,
    pub seconds: f64,
    pub usd: Option<f64>,
    pub failed: bool,
    pub spot: bool,
    /// On AWS Batch, what the seconds are: the attempt's startedAt and stoppedAt (RFC 3339,
    /// milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<String>,
}

/// What one job cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostRecord {
    pub schema: u32,
    pub job_id: String,
    #[serde(default)]
    pub batch: Option<String>,
    pub owner: String,
    pub currency: String,
    /// None when a price could not be had.
    pub cost_usd: Option<f64>,
    /// Why the cost is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown: Option<String>,
    /// Instance-seconds charged to the job.
    pub seconds: f64,
    pub attempts: Vec<AttemptCost>,
    pub failed_attempts: u32,
    pub failed_usd: Option<f64>,
    /// What the same seconds cost on demand (equal to cost_usd without spot).
    pub on_demand_usd: Option<f64>,
    /// Where its prices came from, in words ("AWS Price List API", "--price", ...).
    pub price_source: Option<String>,
    pub prices: Vec<Price>,
    /// The instances it ran on, with the times billed.
    pub instances: Vec<InstanceTimes>,
    /// RFC 3339, when this was computed.
    pub computed_at: String,
    /// An instance still ran: the figure is what had accrued by `computed_at`.
    #[serde(default)]
    pub so_far: bool,
}

impl CostRecord {
    /// "$0.0123" or "unknown".
    pub fn usd_text(&self) -> String {
        usd_text(self.cost_usd)
    }
}

/// "$0.0123", or "unknown" without a figure.
pub fn usd_text(usd: Option<f64>) -> String {
    match usd {
        Some(v) if v < 10.0 => format!("${v:.4}"),
        Some(v) => format!("${v:.2}"),
        None => "unknown".into(),
    }
}

/// The record of every job in `bill`, given the spans it was computed from and each
/// instance's price (by instance id).
pub fn records(
    bill: &Bill,
    spans: &[Span],
    prices: &BTreeMap<String, Priced>,
    batch: Option<&str>,
    owner: &str,
    now: SystemTime,
) -> Vec<CostRecord> {
    bill.jobs()
        .into_iter()
        .map(|job| {
            let lines: Vec<&Line> = bill.lines.iter().filter(|l| l.job_id == job).collect();
            let c = bill.job(&job);
            let mut ids: Vec<&str> = lines.iter().map(|l| l.instance_id.as_str()).collect();
            ids.dedup();
            let instances: Vec<InstanceTimes> = ids
                .iter()
                .filter_map(|id| {
                    let s = spans.iter().find(|s| s.id == *id)?;
                    let b = bill.instances.iter().find(|b| b.id == *id)?;
                    Some(InstanceTimes {
                        id: id.to_string(),
                        launched: rfc3339(s.launched),
                        ended: rfc3339(s.ended),
                        end_from: s.end_from,
                        billed_s: b.billed_s,
                        usd: b.usd,
                        spot: s.spot,
                    })
                })
                .collect();
            let mut used: Vec<Price> = Vec::new();
            let mut unknown = None;
            for id in &ids {
                match prices.get(*id) {
                    Some(Priced::Known(p)) if !used.contains(p) => used.push(p.clone()),
                    Some(Priced::Known(_)) => {}
                    Some(Priced::Unknown(why)) => unknown = Some(why.clone()),
                    None => unknown = Some(format!("no price for instance {id}")),
                }
            }
            let mut sources: Vec<&str> = used.iter().map(|p| p.source.words()).collect();
            sources.dedup();
            CostRecord {
                schema: SCHEMA,
                job_id: job.clone(),
                batch: batch.map(str::to_string),
                owner: owner.to_string(),
                currency: CURRENCY.into(),
                cost_usd: c.usd,
                unknown: if c.usd.is_none() { unknown } else { None },
                seconds: c.seconds,
                attempts: lines
                    .iter()
                    .map(|l| AttemptCost {
                        attempt: l.attempt,
                        instance_id: l.instance_id.clone(),
                        seconds: l.seconds,
                        usd: l.usd,
                        failed: l.failed,
                        spot: l.spot,
                        started_at: None,
                        stopped_at: None,
                    })
                    .collect(),
                failed_attempts: c.failed_attempts,
                failed_usd: c.failed_usd,
                on_demand_usd: c.on_demand_usd,
                price_source: (!sources.is_empty()).then(|| sources.join(", ")),
                prices: used,
                instances: instances.clone(),
                computed_at: rfc3339(now),
                so_far: instances.iter().any(|i| i.end_from == EndFrom::Running),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::ledger::{bill, Use};
    use super::super::prices::{Market, Origin};
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_record_carries_its_times_prices_and_attempts() {
        let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s);
        let span = |id: &str, a: u64, b: u64, rate: Option<f64>| Span {
            id: id.into(),
            launched: t(a),
            ended: t(b),
            end_from: EndFrom::Ec2,
            rate,
            on_demand_rate: None,
            spot: false,
        };
        let spans = vec![
            span("i-1", 0, 100, Some(3.6)),
            span("i-2", 110, 400, Some(3.6)),
        ];
        let uses = vec![
            Use {
                job_id: "a".into(),
                attempt: 1,
                instance_id: "i-1".into(),
                start: t(30),
                end: t(90),
                failed: true,
            },
            Use {
                job_id: "a".into(),
                attempt: 2,
                instance_id: "i-2".into(),
                start: t(140),
                end: t(390),
                failed: false,
            },
        ];
        let price = Price {
            usd_per_hour: 3.6,
            market: Market::OnDemand,
            instance_type: "m6i.large".into(),
            place: "us-east-1".into(),
            source: Origin::PriceList,
            fetched_at: "2026-12-01T00:00:00Z".into(),
            cached: false,
        };
        let prices: BTreeMap<String, Priced> = ["i-1", "i-2"]
            .iter()
            .map(|i| (i.to_string(), Priced::Known(price.clone())))
            .collect();
        let recs = records(
            &bill(&spans, &uses),
            &spans,
            &prices,
            Some("b"),
            "me",
            t(500),
        );
        assert_eq!(recs.len(), 1);
        let r = &recs[0];
        assert!((r.cost_usd.unwrap() - 0.39).abs() < 1e-9);
        assert_eq!(r.failed_attempts, 1);
        assert_eq!(r.instances.len(), 2);
        assert_eq!(r.instances[0].billed_s, 100);
        assert_eq!(r.prices.len(), 1, "one price, once");
        assert_eq!(r.price_source.as_deref(), Some("AWS Price List API"));
        assert!(!r.so_far);
        let back: CostRecord = serde_json::from_str(&serde_json::to_string(r).unwrap()).unwrap();
        assert_eq!(&back, r);
        // Without a price: no figure, and why.
        let mut none = prices.clone();
        none.insert(
            "i-2".into(),
            Priced::Unknown("the Price List API did not answer".into()),
        );
        let spans2 = vec![spans[0].clone(), span("i-2", 110, 400, None)];
        let recs = records(&bill(&spans2, &uses), &spans2, &none, None, "me", t(500));
        assert_eq!(recs[0].cost_usd, None);
        assert_eq!(
            recs[0].unknown.as_deref(),
            Some("the Price List API did not answer")
        );
        assert_eq!(usd_text(None), "unknown");
        assert_eq!(usd_text(Some(0.01234)), "$0.0123");
        assert_eq!(usd_text(Some(123.456)), "$123.46");
    }
}
