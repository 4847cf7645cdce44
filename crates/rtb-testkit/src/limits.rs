//! AWS's rate limits in the proxy (tests/world/limits.py): turning them on, reading the meter.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::proxy::FaultProxy;

/// Which token buckets the proxy enforces: AWS's documented ones ([`Limits::aws`]), scaled
/// and overridden bucket by bucket, or only the ones a test names ([`Limits::none`]).
///
/// Buckets are named `service:Action` (`ec2:DescribeInstances`, `ssm:SendCommand`,
/// `batch:SubmitJob`), plus `ec2:<Action>/unfiltered` (a Describe with no filter and no
/// pagination), `ec2:RunInstances/instances` (one token per instance) and `s3:read` /
/// `s3:write` (per S3 bucket). tests/world/README.md ("Rate limits") has the table.
///
/// ```
/// use rtb_testkit::Limits;
/// // The rest of the account uses half of every bucket; RunInstances gets 2, refilled 1/s.
/// let l = Limits::aws().scale(0.5).bucket("ec2:RunInstances", 2.0, 1.0);
/// assert_eq!(l.to_json()["overrides"]["ec2:RunInstances"]["capacity"], 2.0);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    profile: &'static str,
    scale: f64,
    overrides: Vec<(String, Option<(f64, f64)>)>,
}

impl Limits {
    /// Every bucket at AWS's documented size and refill rate (SSM's are assumed: AWS
    /// publishes none), account-wide per region.
    pub fn aws() -> Limits {
        Limits {
            profile: "aws",
            scale: 1.0,
            overrides: Vec::new(),
        }
    }

    /// No bucket but the ones [`Limits::bucket`] sets.
    pub fn none() -> Limits {
        Limits {
            profile: "none",
            ..Limits::aws()
        }
    }

    /// Multiply the profile's sizes and refill rates (0.5: the rest of the account uses half).
    /// Buckets set with [`Limits::bucket`] are not scaled.
    pub fn scale(mut self, factor: f64) -> Limits {
        self.scale = factor;
        self
    }

    /// Set one bucket outright: `capacity` tokens, refilled at `refill_per_second`.
    pub fn bucket(mut self, name: &str, capacity: f64, refill_per_second: f64) -> Limits {
        self.overrides
            .push((name.to_string(), Some((capacity, refill_per_second))));
        self
    }

    /// No limit for this bucket.
    pub fn unlimited(mut self, name: &str) -> Limits {
        self.overrides.push((name.to_string(), None));
        self
    }

    /// The JSON the proxy's `POST /_limits` takes.
    pub fn to_json(&self) -> Value {
        let overrides: Map<String, Value> = self
            .overrides
            .iter()
            .map(|(name, spec)| {
                let v = match spec {
                    Some((c, r)) => json!({"capacity": c, "refill": r}),
                    None => Value::Null,
                };
                (name.clone(), v)
            })
            .collect();
        json!({"profile": self.profile, "scale": self.scale, "overrides": overrides})
    }
}

/// Calls one family or action made, and how many of them the limits throttled.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Counter {
    pub calls: u64,
    pub throttled: u64,
    /// Wall-clock seconds since the epoch of the first and the last call.
    pub first: f64,
    pub last: f64,
}

/// The proxy's call meter (`GET /_limits/stats`). It counts whether limits are on or not.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LimitStats {
    /// Whether limits are enforced.
    pub enabled: bool,
    /// Per API family: `ec2-describe`, `ec2-mutating`, `ssm`, `s3`, `batch`, `iam`...
    pub families: BTreeMap<String, Counter>,
    /// Per `service:Action`.
    pub actions: BTreeMap<String, Counter>,
    /// Buckets in use: `"ACCOUNT REGION service:Action"` (S3: `"s3 BUCKET s3:read"`) ->
    /// tokens left.
    pub tokens: BTreeMap<String, f64>,
    /// When counting started (proxy start or the last clear) and when this was read, as
    /// wall-clock seconds since the epoch.
    pub since: f64,
    pub now: f64,
}

impl LimitStats {
    /// One family's counts (zero when it made no call).
    pub fn family(&self, name: &str) -> Counter {
        self.families.get(name).copied().unwrap_or_default()
    }

    /// One action's counts, by `service:Action` (zero when it made no call).
    pub fn action(&self, name: &str) -> Counter {
        self.actions.get(name).copied().unwrap_or_default()
    }

    /// Calls throttled, all families.
    pub fn throttled(&self) -> u64 {
        self.families.values().map(|c| c.throttled).sum()
    }

    pub(crate) fn from_json(v: &Value) -> LimitStats {
        let counters = |key: &str| -> BTreeMap<String, Counter> {
            v.get(key)
                .and_then(Value::as_object)
                .map(|m| m.iter().map(|(k, c)| (k.clone(), counter(c))).collect())
                .unwrap_or_default()
        };
        let tokens = v
            .get("buckets")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, b)| Some((k.clone(), b.get("tokens")?.as_f64()?)))
                    .collect()
            })
            .unwrap_or_default();
        let num = |k: &str| v.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        LimitStats {
            enabled: v.get("enabled").and_then(Value::as_bool).unwrap_or(false),
            families: counters("families"),
            actions: counters("actions"),
            tokens,
            since: num("since"),
            now: num("now"),
        }
    }
}

fn counter(v: &Value) -> Counter {
    let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let t = |k: &str| v.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    Counter {
        calls: n("calls"),
        throttled: n("throttled"),
        first: t("first"),
        last: t("last"),
    }
}

impl FaultProxy {
    /// Enforce these limits from now on (fresh, full buckets). Throttled calls get the
    /// service's own throttling error (EC2 `RequestLimitExceeded`, SSM
    /// `ThrottlingException`, S3 `SlowDown`, Batch `TooManyRequestsException`), are never
    /// forwarded, and show in [`crate::FaultProxy::calls`] with fault `"rate_limit"`.
    pub fn limits(&self, limits: Limits) {
        let body = limits.to_json().to_string();
        let (status, answer) = self.control("POST", "/_limits", Some(&body));
        assert_eq!(status, 200, "the proxy refused limits {body}: {answer}");
    }

    /// Enforce no limit (the meter keeps counting).
    pub fn no_limits(&self) {
        self.control("DELETE", "/_limits", None);
    }

    /// The call meter: calls and throttled calls per family and per action.
    pub fn limit_stats(&self) -> LimitStats {
        let (_, body) = self.control("GET", "/_limits/stats", None);
        match serde_json::from_str::<Value>(&body) {
            Ok(v) => LimitStats::from_json(&v),
            Err(e) => panic!("the proxy's limit stats are not JSON ({e}): {body}"),
        }
    }

    /// Start counting again from zero.
    pub fn clear_limit_stats(&self) {
        self.control("DELETE", "/_limits/stats", None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_to_json() {
        let v = Limits::none()
            .bucket("ssm:SendCommand", 2.0, 0.5)
            .unlimited("ec2:DescribeImages")
            .to_json();
        assert_eq!(v["profile"], "none");
        assert_eq!(v["scale"], 1.0);
        assert_eq!(v["overrides"]["ssm:SendCommand"]["refill"], 0.5);
        assert!(v["overrides"]["ec2:DescribeImages"].is_null());
    }

    #[test]
    fn stats_from_json() {
        let s = LimitStats::from_json(&json!({
            "enabled": true, "since": 10.0, "now": 20.5,
            "families": {"ec2-describe": {"calls": 7, "throttled": 2, "first": 11.0, "last": 12.0}},
            "actions": {"ec2:DescribeInstances": {"calls": 7, "throttled": 2, "first": 11.0, "last": 12.0}},
            "buckets": {"000000000000 us-east-1 ec2:DescribeInstances": {"capacity": 100.0, "refill": 20.0, "tokens": 93.5}}
        }));
        assert!(s.enabled);
        assert_eq!(s.family("ec2-describe").calls, 7);
        assert_eq!(s.action("ec2:DescribeInstances").throttled, 2);
        assert_eq!(s.family("ssm"), Counter::default());
        assert_eq!(s.throttled(), 2);
        assert_eq!(
            s.tokens["000000000000 us-east-1 ec2:DescribeInstances"],
            93.5
        );
        assert_eq!((s.since, s.now), (10.0, 20.5));
    }
}
