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

async fn price_of(
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
        if let Err(e) = cloud.put_bytes(at.bucket(), &key, body).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_name_their_region() {
        assert_eq!(region_of_zone("us-east-1a"), "us-east-1");
        assert_eq!(region_of_zone("eu-west-3c"), "eu-west-3");
    }
}
