//! Price answers in the proxy (tests/world/prices.py): the Price List API's GetProducts and
//! EC2's DescribeSpotPriceHistory, from data the test sets.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::proxy::FaultProxy;

/// How the proxy answers one of the two price APIs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PriceAnswer {
    /// From the data set with [`FaultProxy::set_prices`] (empty when nothing matches).
    Data,
    /// As AWS answers a principal without the permission: pricing `AccessDeniedException`,
    /// EC2 `UnauthorizedOperation`. The answer of an API the data leaves out.
    Denied,
    /// The connection is cut, as when the endpoint cannot be reached.
    NoAnswer,
    /// Forwarded to the emulator (MiniStack has neither API).
    Emulator,
}

impl PriceAnswer {
    fn word(self) -> &'static str {
        match self {
            PriceAnswer::Data => "data",
            PriceAnswer::Denied => "denied",
            PriceAnswer::NoAnswer => "no_answer",
            PriceAnswer::Emulator => "emulator",
        }
    }
}

/// An on-demand price: one Price List product (Linux, shared tenancy, no pre-installed
/// software, capacity status `Used` unless changed).
#[derive(Clone, Debug, PartialEq)]
pub struct OnDemand {
    pub instance_type: String,
    pub region: String,
    /// A decimal number, kept as written (`"0.096"`).
    pub usd_per_hour: String,
    pub operating_system: String,
    pub tenancy: String,
    pub pre_installed_sw: String,
    pub capacity_status: String,
    /// More product attributes (`vcpu`, `memory`...).
    pub attributes: Vec<(String, String)>,
}

impl OnDemand {
    pub fn new(instance_type: &str, region: &str, usd_per_hour: &str) -> OnDemand {
        OnDemand {
            instance_type: instance_type.to_string(),
            region: region.to_string(),
            usd_per_hour: usd_per_hour.to_string(),
            operating_system: "Linux".to_string(),
            tenancy: "Shared".to_string(),
            pre_installed_sw: "NA".to_string(),
            capacity_status: "Used".to_string(),
            attributes: Vec::new(),
        }
    }

    fn to_json(&self) -> Value {
        let attrs: Map<String, Value> = self
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        json!({
            "instance_type": self.instance_type,
            "region": self.region,
            "usd_per_hour": self.usd_per_hour,
            "operating_system": self.operating_system,
            "tenancy": self.tenancy,
            "pre_installed_sw": self.pre_installed_sw,
            "capacity_status": self.capacity_status,
            "attributes": attrs,
        })
    }
}

/// A spot price change in one availability zone.
#[derive(Clone, Debug, PartialEq)]
pub struct Spot {
    pub instance_type: String,
    pub availability_zone: String,
    pub usd_per_hour: String,
    pub at: SystemTime,
    /// `Linux/UNIX` unless changed.
    pub product_description: String,
}

impl Spot {
    fn to_json(&self) -> Value {
        let secs = self
            .at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        json!({
            "instance_type": self.instance_type,
            "availability_zone": self.availability_zone,
            "usd_per_hour": self.usd_per_hour,
            "timestamp": secs,
            "product_description": self.product_description,
        })
    }
}

/// The price data the proxy answers from. No price is ever built in: every figure is the
/// test's.
///
/// ```
/// use std::time::SystemTime;
/// use rtb_testkit::{PriceAnswer, Prices};
/// let p = Prices::new()
///     .on_demand("m5.large", "us-east-1", "0.096")
///     .spot("m5.large", "us-east-1a", "0.0354", SystemTime::now())
///     .answer_spot(PriceAnswer::NoAnswer);
/// assert_eq!(p.to_json()["answer"]["DescribeSpotPriceHistory"], "no_answer");
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Prices {
    on_demand: Option<Vec<OnDemand>>,
    spot: Option<Vec<Spot>>,
    get_products: Option<PriceAnswer>,
    spot_history: Option<PriceAnswer>,
}

impl Prices {
    /// No data yet: both APIs answer [`PriceAnswer::Denied`] until given some.
    pub fn new() -> Prices {
        Prices::default()
    }

    /// An on-demand price (GetProducts then answers from data).
    pub fn on_demand(self, instance_type: &str, region: &str, usd_per_hour: &str) -> Prices {
        self.product(OnDemand::new(instance_type, region, usd_per_hour))
    }

    /// An on-demand product with other attributes (another OS, a capacity status...).
    pub fn product(mut self, product: OnDemand) -> Prices {
        self.on_demand.get_or_insert_with(Vec::new).push(product);
        self
    }

    /// A spot history without a single change: DescribeSpotPriceHistory answers an empty
    /// list instead of being denied.
    pub fn no_spot_history(mut self) -> Prices {
        self.spot.get_or_insert_with(Vec::new);
        self
    }

    /// A Linux/UNIX spot price change at `at` (DescribeSpotPriceHistory then answers from data).
    pub fn spot(
        self,
        instance_type: &str,
        zone: &str,
        usd_per_hour: &str,
        at: SystemTime,
    ) -> Prices {
        self.spot_change(Spot {
            instance_type: instance_type.to_string(),
            availability_zone: zone.to_string(),
            usd_per_hour: usd_per_hour.to_string(),
            at,
            product_description: "Linux/UNIX".to_string(),
        })
    }

    pub fn spot_change(mut self, change: Spot) -> Prices {
        self.spot.get_or_insert_with(Vec::new).push(change);
        self
    }

    /// How GetProducts answers, whatever the data.
    pub fn answer_get_products(mut self, answer: PriceAnswer) -> Prices {
        self.get_products = Some(answer);
        self
    }

    /// How DescribeSpotPriceHistory answers, whatever the data.
    pub fn answer_spot(mut self, answer: PriceAnswer) -> Prices {
        self.spot_history = Some(answer);
        self
    }

    /// The JSON the proxy's `POST /_prices` takes.
    pub fn to_json(&self) -> Value {
        let mut v = Map::new();
        if let Some(list) = &self.on_demand {
            v.insert(
                "on_demand".into(),
                list.iter().map(OnDemand::to_json).collect(),
            );
        }
        if let Some(list) = &self.spot {
            v.insert("spot".into(), list.iter().map(Spot::to_json).collect());
        }
        let mut answer = Map::new();
        if let Some(a) = self.get_products {
            answer.insert("GetProducts".into(), a.word().into());
        }
        if let Some(a) = self.spot_history {
            answer.insert("DescribeSpotPriceHistory".into(), a.word().into());
        }
        if !answer.is_empty() {
            v.insert("answer".into(), Value::Object(answer));
        }
        Value::Object(v)
    }
}

impl FaultProxy {
    /// Answer the price APIs from this data (replacing any set before).
    pub fn set_prices(&self, prices: Prices) {
        let body = prices.to_json().to_string();
        let (status, answer) = self.control("POST", "/_prices", Some(&body));
        assert_eq!(status, 200, "the proxy refused prices {body}: {answer}");
    }

    /// Answer neither price API: the connection is cut (the client's "cost unknown" path).
    pub fn no_prices(&self) {
        self.set_prices(
            Prices::new()
                .answer_get_products(PriceAnswer::NoAnswer)
                .answer_spot(PriceAnswer::NoAnswer),
        );
    }

    /// Forget the price data: both APIs answer as to a principal without the permission.
    pub fn clear_prices(&self) {
        self.control("DELETE", "/_prices", None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn prices_to_json() {
        let at = UNIX_EPOCH + Duration::from_secs(1_796_000_000);
        let v = Prices::new()
            .on_demand("m5.large", "us-east-1", "0.096")
            .spot("m5.large", "us-east-1a", "0.0354", at)
            .to_json();
        assert_eq!(v["on_demand"][0]["usd_per_hour"], "0.096");
        assert_eq!(v["on_demand"][0]["capacity_status"], "Used");
        assert_eq!(v["spot"][0]["timestamp"], 1_796_000_000.0);
        assert!(v.get("answer").is_none());
        let none = Prices::new().to_json();
        assert!(none.get("on_demand").is_none() && none.get("spot").is_none());
        assert_eq!(Prices::new().no_spot_history().to_json()["spot"], json!([]));
    }
}
