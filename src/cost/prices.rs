//! Where an hourly price comes from, behind one trait: the user's `--price` (which wins), the
//! Price List API for on-demand, EC2's spot price history for the instance's own zone at
//! launch. An on-disk cache keeps each fetched price with its fetch time (on-demand a day,
//! spot an hour), and every price says where it came from and when. When no source answers,
//! the price is unknown: there is no table of prices in this program.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::cloud::{Cloud, CloudError, Failure};

/// How long a fetched on-demand price is reused.
pub const ON_DEMAND_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a fetched spot price is reused (spot prices move; a stale one misleads).
pub const SPOT_TTL: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Market {
    OnDemand,
    Spot,
}

impl Market {
    pub fn of(spot: bool) -> Market {
        if spot {
            Market::Spot
        } else {
            Market::OnDemand
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Market::OnDemand => "on-demand",
            Market::Spot => "spot",
        }
    }
}

/// Where a price came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// `--price` or `[batch] price`: the lab's own rate.
    User,
    /// The AWS Price List API (GetProducts).
    PriceList,
    /// EC2's spot price history (DescribeSpotPriceHistory).
    SpotHistory,
}

impl Origin {
    pub fn words(self) -> &'static str {
        match self {
            Origin::User => "--price",
            Origin::PriceList => "AWS Price List API",
            Origin::SpotHistory => "EC2 spot price history",
        }
    }
}

/// One hourly price and its provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Price {
    pub usd_per_hour: f64,
    pub market: Market,
    pub instance_type: String,
    /// The region (on-demand) or availability zone (spot) it is for; empty for the user's.
    pub place: String,
    pub source: Origin,
    /// RFC 3339: when it was fetched from its source (the user's: when it was given).
    pub fetched_at: String,
    /// Served from the on-disk cache rather than fetched by this run.
    #[serde(default)]
    pub cached: bool,
}

impl Price {
    /// "$0.0960/h on-demand m6i.large in us-east-1 (AWS Price List API, fetched 2026-12-04T03:00:00Z, cached)"
    pub fn provenance(&self) -> String {
        if self.source == Origin::User {
            return format!("${:.4}/h (--price)", self.usd_per_hour);
        }
        format!(
            "${:.4}/h {} {} in {} ({}, fetched {}{})",
            self.usd_per_hour,
            self.market.as_str(),
            self.instance_type,
            self.place,
            self.source.words(),
            self.fetched_at,
            if self.cached { ", cached" } else { "" }
        )
    }

    fn fetched(&self) -> Option<SystemTime> {
        humantime::parse_rfc3339(&self.fetched_at).ok()
    }
}

/// What is being priced: an instance type, in a region (and zone, for spot), at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub instance_type: String,
    pub region: String,
    /// The instance's own availability zone (spot prices are per zone).
    pub zone: Option<String>,
    pub market: Market,
    /// When the instance was launched (the spot price in force then).
    pub at: SystemTime,
}

/// A price, or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub enum Priced {
    Known(Price),
    Unknown(String),
}

impl Priced {
    pub fn known(&self) -> Option<&Price> {
        match self {
            Priced::Known(p) => Some(p),
            Priced::Unknown(_) => None,
        }
    }
}

/// A source of prices. `Ok(None)`: it has nothing for this query (another source may);
/// `Err`: it could not be asked (no permission, no network), in words for the user.
pub trait PriceSource {
    fn lookup(&self, q: &Query) -> impl Future<Output = Result<Option<Price>, String>>;
}

/// The user's own rate: it applies to every instance, whatever its type or market.
#[derive(Debug, Clone, Copy)]
pub struct UserRate {
    pub usd_per_hour: f64,
    pub given_at: SystemTime,
}

impl PriceSource for UserRate {
    async fn lookup(&self, q: &Query) -> Result<Option<Price>, String> {
        Ok(Some(Price {
            usd_per_hour: self.usd_per_hour,
            market: q.market,
            instance_type: q.instance_type.clone(),
            place: String::new(),
            source: Origin::User,
            fetched_at: rfc3339(self.given_at),
            cached: false,
        }))
    }
}

/// On-demand rates from the Price List API.
pub struct PriceList<'a>(pub &'a Cloud);

impl PriceSource for PriceList<'_> {
    async fn lookup(&self, q: &Query) -> Result<Option<Price>, String> {
        if q.market != Market::OnDemand {
            return Ok(None);
        }
        let got = self
            .0
            .on_demand_price(&q.instance_type, &q.region)
            .await
            .map_err(|e| unavailable(&e, "pricing:GetProducts"))?;
        Ok(got.map(|p| Price {
            usd_per_hour: p.usd_per_hour,
            market: Market::OnDemand,
            instance_type: q.instance_type.clone(),
            place: q.region.clone(),
            source: Origin::PriceList,
            fetched_at: rfc3339(SystemTime::now()),
            cached: false,
        }))
    }
}

/// Spot prices from EC2's history, for the instance's own zone at its launch.
pub struct SpotHistory<'a>(pub &'a Cloud);

impl PriceSource for SpotHistory<'_> {
    async fn lookup(&self, q: &Query) -> Result<Option<Price>, String> {
        let (Market::Spot, Some(zone)) = (q.market, &q.zone) else {
            return Ok(None);
        };
        let got = self
            .0
            .spot_price_at(&q.instance_type, zone, q.at)
            .await
            .map_err(|e| unavailable(&e, "ec2:DescribeSpotPriceHistory"))?;
        Ok(got.map(|p| Price {
            usd_per_hour: p.usd_per_hour,
            market: Market::Spot,
            instance_type: q.instance_type.clone(),
            place: zone.clone(),
            source: Origin::SpotHistory,
            fetched_at: rfc3339(SystemTime::now()),
            cached: false,
        }))
    }
}

/// Why a price API gave nothing, in one phrase a user can act on.
fn unavailable(e: &CloudError, action: &str) -> String {
    let denied = e.code.as_deref().is_some_and(|c| {
        c.contains("AccessDenied") || c == "UnauthorizedOperation" || c.contains("NotAuthorized")
    });
    if denied {
        return format!(
            "{} was refused ({}): the client needs {action} (ami/iam/client-policy.json)",
            e.op,
            e.code.as_deref().unwrap_or_default()
        );
    }
    match e.failure {
        Failure::NoAnswer => format!("{} did not answer ({})", e.op, e.message),
        _ => format!("{} is not available here ({e})", e.op),
    }
}

/// The on-disk cache: `$XDG_CACHE_HOME/run-render/prices.json` (else `~/.cache/...`).
#[derive(Debug, Clone)]
pub struct Cache {
    path: PathBuf,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    prices: Vec<Price>,
}

impl Cache {
    pub fn open() -> Cache {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(|| std::env::temp_dir().join("run-render-cache"));
        Cache::at(base.join("run-render").join("prices.json"))
    }

    pub fn at(path: PathBuf) -> Cache {
        Cache { path }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn read(&self) -> CacheFile {
        std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    /// A fresh cached price for `q` at `now`, marked as cached.
    pub fn get(&self, q: &Query, now: SystemTime) -> Option<Price> {
        self.read()
            .prices
            .into_iter()
            .filter(|p| matches_query(p, q) && fresh(p, q, now))
            .max_by_key(|p| p.fetched_at.clone())
            .map(|p| Price { cached: true, ..p })
    }

    /// Keep a fetched price (replacing the same key's), dropping what has expired. A cache
    /// that cannot be written is only a cache: the price is still used.
    pub fn put(&self, p: &Price, now: SystemTime) {
        if p.source == Origin::User {
            return;
        }
        let mut file = self.read();
        file.prices.retain(|old| {
            !(old.market == p.market
                && old.instance_type == p.instance_type
                && old.place == p.place)
                && old
                    .fetched()
                    .is_some_and(|t| now.duration_since(t).unwrap_or_default() < ttl(old.market))
        });
        file.prices.push(Price {
            cached: false,
            ..p.clone()
        });
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let tmp = self
            .path
            .with_extension(format!("{}.tmp", std::process::id()));
        let text = serde_json::to_string_pretty(&file).unwrap_or_default();
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, &self.path);
        }
    }
}

pub fn ttl(m: Market) -> Duration {
    match m {
        Market::OnDemand => ON_DEMAND_TTL,
        Market::Spot => SPOT_TTL,
    }
}

fn matches_query(p: &Price, q: &Query) -> bool {
    let place = match q.market {
        Market::OnDemand => Some(q.region.as_str()),
        Market::Spot => q.zone.as_deref(),
    };
    p.market == q.market && p.instance_type == q.instance_type && Some(p.place.as_str()) == place
}

/// Fetched within its lifetime of now; a spot price also within an hour of the launch it
/// prices.
fn fresh(p: &Price, q: &Query, now: SystemTime) -> bool {
    let Some(t) = p.fetched() else { return false };
    let age = now.duration_since(t).unwrap_or_default();
    if age >= ttl(p.market) {
        return false;
    }
    match p.market {
        Market::OnDemand => true,
        Market::Spot => {
            let apart = q.at.duration_since(t).unwrap_or_else(|e| e.duration());
            apart < SPOT_TTL
        }
    }
}

/// Every price a run needs, from the first source that has it: the user's rate, else the
/// cache, else the APIs (whose answers go into the cache). Each answer is remembered for the
/// run, so a batch asks each API once per instance type and zone.
pub struct Prices<'a> {
    user: Option<UserRate>,
    cloud: Option<&'a Cloud>,
    cache: Option<Cache>,
    region: Option<String>,
    memo: Mutex<HashMap<String, Priced>>,
}

impl<'a> Prices<'a> {
    /// `user`: the `--price`; `cloud`: where to ask (None: ask nothing); `cache`: None to
    /// neither read nor write one.
    pub fn new(user: Option<f64>, cloud: Option<&'a Cloud>, cache: Option<Cache>) -> Prices<'a> {
        Prices {
            user: user.map(|usd_per_hour| UserRate {
                usd_per_hour,
                given_at: SystemTime::now(),
            }),
            region: cloud.and_then(|c| c.region().map(str::to_string)),
            cloud,
            cache,
            memo: Mutex::new(HashMap::new()),
        }
    }

    /// The region instances run in (the jobs' client's).
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    pub fn user(&self) -> Option<f64> {
        self.user.map(|u| u.usd_per_hour)
    }

    /// The price for `q`.
    pub async fn price(&self, q: &Query) -> Priced {
        let key = format!(
            "{}/{}/{}/{}",
            q.market.as_str(),
            q.region,
            q.zone.as_deref().unwrap_or(""),
            q.instance_type
        );
        if let Some(p) = self.lock().get(&key) {
            return p.clone();
        }
        let got = self.resolve(q).await;
        self.lock().insert(key, got.clone());
        got
    }

    /// The on-demand price of `instance_type` in this run's region, launched now.
    pub async fn on_demand(&self, instance_type: &str) -> Priced {
        let Some(region) = self
            .region
            .clone()
            .or_else(|| self.user.map(|_| String::new()))
        else {
            return Priced::Unknown("no AWS region is set, so no price can be looked up".into());
        };
        self.price(&Query {
            instance_type: instance_type.to_string(),
            region,
            zone: None,
            market: Market::OnDemand,
            at: SystemTime::now(),
        })
        .await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Priced>> {
        self.memo.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn resolve(&self, q: &Query) -> Priced {
        if let Some(u) = &self.user {
            if let Ok(Some(p)) = u.lookup(q).await {
                return Priced::Known(p);
            }
        }
        let now = SystemTime::now();
        if let Some(p) = self.cache.as_ref().and_then(|c| c.get(q, now)) {
            return Priced::Known(p);
        }
        let Some(cloud) = self.cloud else {
            return Priced::Unknown("no price given (--price) and no AWS to ask".into());
        };
        let asked = match q.market {
            Market::OnDemand => PriceList(cloud).lookup(q).await,
            Market::Spot if q.zone.is_none() => Err(format!(
                "the spot price depends on the instance's zone, and {} has none known yet",
                q.instance_type
            )),
            Market::Spot => SpotHistory(cloud).lookup(q).await,
        };
        match asked {
            Ok(Some(p)) => {
                if let Some(c) = &self.cache {
                    c.put(&p, now);
                }
                Priced::Known(p)
            }
            Ok(None) => Priced::Unknown(format!(
                "no {} price for {} in {} was found",
                q.market.as_str(),
                q.instance_type,
                q.zone.as_deref().unwrap_or(&q.region)
            )),
            Err(why) => Priced::Unknown(why),
        }
    }
}

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(market: Market, at: SystemTime) -> Query {
        Query {
            instance_type: "m6i.large".into(),
            region: "us-east-1".into(),
            zone: Some("us-east-1a".into()),
            market,
            at,
        }
    }

    fn price(market: Market, fetched: SystemTime, usd: f64) -> Price {
        Price {
            usd_per_hour: usd,
            market,
            instance_type: "m6i.large".into(),
            place: match market {
                Market::OnDemand => "us-east-1".into(),
                Market::Spot => "us-east-1a".into(),
            },
            source: match market {
                Market::OnDemand => Origin::PriceList,
                Market::Spot => Origin::SpotHistory,
            },
            fetched_at: rfc3339(fetched),
            cached: false,
        }
    }

    #[test]
    fn cached_prices_are_reused_within_their_lifetime_and_then_expire() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path().join("sub/prices.json"));
        let t0 = humantime::parse_rfc3339("2026-12-01T10:00:00Z").unwrap();
        let h = |n: u64| t0 + Duration::from_secs(n * 3600);
        let m = |n: u64| t0 + Duration::from_secs(n * 60);
        cache.put(&price(Market::OnDemand, t0, 0.096), t0);
        cache.put(&price(Market::Spot, t0, 0.03), t0);
        // (market, launch, now, reused)
        let table = [
            (Market::OnDemand, t0, m(1), true),
            (Market::OnDemand, t0, h(23), true),
            (Market::OnDemand, t0, h(24), false),
            (Market::Spot, t0, m(59), true),
            (Market::Spot, t0, m(60), false),
            // A spot price fetched now is not the price of a launch two hours ago.
            (Market::Spot, t0 - Duration::from_secs(7200), m(5), false),
        ];
        for (market, launch, now, reused) in table {
            let got = cache.get(&q(market, launch), now);
            assert_eq!(
                got.is_some(),
                reused,
                "{market:?} launch {launch:?} now {now:?}"
            );
            if let Some(p) = got {
                assert!(p.cached && p.fetched_at == rfc3339(t0));
            }
        }
        // Another type or zone is another price.
        let mut other = q(Market::Spot, t0);
        other.zone = Some("us-east-1b".into());
        assert!(cache.get(&other, m(1)).is_none());
        // A newer fetch replaces the older; what expired is dropped on the next write.
        cache.put(&price(Market::OnDemand, h(2), 0.1), h(2));
        assert_eq!(
            cache
                .get(&q(Market::OnDemand, h(2)), h(3))
                .map(|p| p.usd_per_hour),
            Some(0.1)
        );
        assert_eq!(
            cache.read().prices.len(),
            1,
            "the expired spot price was dropped"
        );
    }

    #[test]
    fn an_unreadable_cache_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prices.json");
        std::fs::write(&path, "{ not json").unwrap();
        let cache = Cache::at(path);
        assert!(cache
            .get(&q(Market::OnDemand, SystemTime::now()), SystemTime::now())
            .is_none());
    }

    #[tokio::test]
    async fn the_user_price_wins_and_nothing_is_asked_without_a_cloud() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path().join("prices.json"));
        let now = SystemTime::now();
        cache.put(&price(Market::OnDemand, now, 0.096), now);
        let with_user = Prices::new(Some(0.5), None, Some(cache.clone()));
        let p = with_user.price(&q(Market::OnDemand, now)).await;
        assert_eq!(
            p.known().map(|p| (p.usd_per_hour, p.source)),
            Some((0.5, Origin::User))
        );
        let spot = with_user.price(&q(Market::Spot, now)).await;
        assert_eq!(spot.known().map(|p| p.usd_per_hour), Some(0.5));
        // Without --price: the cache, then nothing (no AWS to ask) with a reason.
        let without = Prices::new(None, None, Some(cache));
        let p = without.price(&q(Market::OnDemand, now)).await;
        assert_eq!(
            p.known().map(|p| (p.usd_per_hour, p.cached)),
            Some((0.096, true))
        );
        match without.price(&q(Market::Spot, now)).await {
            Priced::Unknown(why) => assert!(why.contains("--price"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn provenance_names_source_and_time() {
        let t0 = humantime::parse_rfc3339("2026-12-01T10:00:00Z").unwrap();
        let mut p = price(Market::OnDemand, t0, 0.096);
        p.cached = true;
        assert_eq!(
            p.provenance(),
            "$0.0960/h on-demand m6i.large in us-east-1 (AWS Price List API, fetched 2026-12-01T10:00:00Z, cached)"
        );
    }
}
