//! What a cost needs from AWS: the Price List API's on-demand rate for an instance type
//! (GetProducts, asked in us-east-1 whatever region the jobs run in: the API answers in only a
//! few regions), EC2's spot price history for one availability zone, and the instances' own
//! times as EC2 reports them (LaunchTime, the time of the state transition). Plain values out;
//! where prices came from and when is `cost::prices`' business.

use std::time::SystemTime;

use aws_sdk_pricing::types::{Filter, FilterType};

use super::{cloud_error, Cloud, CloudError};

/// The region the Price List API is asked in.
pub const PRICING_REGION: &str = "us-east-1";

/// One on-demand product's hourly rate, as the Price List states it.
#[derive(Debug, Clone, PartialEq)]
pub struct ListPrice {
    pub usd_per_hour: f64,
    /// The product's SKU and the rate's effective date (provenance).
    pub sku: String,
    pub effective: Option<String>,
}

/// One point of a spot price history: the price in force from `at`.
#[derive(Debug, Clone, PartialEq)]
pub struct SpotPoint {
    pub usd_per_hour: f64,
    pub at: SystemTime,
    pub zone: String,
}

/// An instance as billing sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BilledInstance {
    pub id: String,
    pub instance_type: String,
    pub zone: Option<String>,
    /// EC2 says it is a spot instance (`InstanceLifecycle`).
    pub spot: bool,
    pub launched: SystemTime,
    pub state: super::Lifecycle,
    /// When it stopped running, from EC2's state transition reason, once it has ended.
    pub ended: Option<SystemTime>,
}

impl Cloud {
    /// The instances among `ids` that EC2 still lists, as billing sees them.
    pub async fn billed_instances(
        &self,
        ids: &[String],
    ) -> Result<Vec<BilledInstance>, CloudError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut found = Vec::new();
        // A terminated instance leaves the listing after a while; each id alone, so one gone
        // does not hide the others (EC2 refuses a whole list for one unknown id).
        for chunk in ids.chunks(100) {
            let out = self
                .ec2
                .describe_instances()
                .set_instance_ids(Some(chunk.to_vec()))
                .send()
                .await;
            let out = match out {
                Ok(o) => o,
                Err(e) => {
                    let e = cloud_error("EC2 DescribeInstances", e);
                    if !e.is("InvalidInstanceID.NotFound") {
                        return Err(e);
                    }
                    for id in chunk {
                        found.extend(
                            Box::pin(self.billed_instances(std::slice::from_ref(id)))
                                .await
                                .unwrap_or_default(),
                        );
                    }
                    continue;
                }
            };
            for i in out.reservations().iter().flat_map(|r| r.instances()) {
                let (Some(id), Some(launched)) = (i.instance_id(), i.launch_time()) else {
                    continue;
                };
                let Ok(launched) = SystemTime::try_from(*launched) else {
                    continue;
                };
                let state = super::Lifecycle::parse(
                    i.state().and_then(|s| s.name()).map_or("", |n| n.as_str()),
                );
                let ended = match state {
                    super::Lifecycle::Running | super::Lifecycle::Pending => None,
                    _ => i.state_transition_reason().and_then(transition_time),
                };
                found.push(BilledInstance {
                    id: id.to_string(),
                    instance_type: i
                        .instance_type()
                        .map(|t| t.as_str().to_string())
                        .unwrap_or_default(),
                    zone: i
                        .placement()
                        .and_then(|p| p.availability_zone())
                        .map(str::to_string),
                    spot: i.instance_lifecycle().map(|l| l.as_str()) == Some("spot"),
                    launched,
                    state,
                    ended,
                });
            }
        }
        Ok(found)
    }

    /// A Price List client: the same credentials and endpoint, asked in us-east-1.
    fn pricing(&self) -> aws_sdk_pricing::Client {
        let conf = aws_sdk_pricing::config::Builder::from(&self.config)
            .region(aws_config::Region::new(PRICING_REGION))
            .build();
        aws_sdk_pricing::Client::from_conf(conf)
    }

    /// The on-demand Linux rate of `instance_type` in `region` (shared tenancy, no
    /// pre-installed software, capacity "Used"); None when the Price List has no such product.
    pub async fn on_demand_price(
        &self,
        instance_type: &str,
        region: &str,
    ) -> Result<Option<ListPrice>, CloudError> {
        let mut filters = vec![
            ("instanceType", instance_type.to_string()),
            ("operatingSystem", "Linux".to_string()),
            ("tenancy", "Shared".to_string()),
            ("preInstalledSw", "NA".to_string()),
            ("capacitystatus", "Used".to_string()),
        ];
        // The location's name is what the Price List's examples filter on; a region this
        // client does not know by name is asked for by its code.
        match location_name(region) {
            Some(name) => filters.push(("location", name.to_string())),
            None => filters.push(("regionCode", region.to_string())),
        }
        let mut req = self
            .pricing()
            .get_products()
            .service_code("AmazonEC2")
            .format_version("aws_v1")
            .max_results(100);
        for (field, value) in filters {
            let f = Filter::builder()
                .r#type(FilterType::TermMatch)
                .field(field)
                .value(value)
                .build()
                .map_err(|e| CloudError::local("Pricing GetProducts", e.to_string()))?;
            req = req.filters(f);
        }
        let mut pages = req.into_paginator().send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| cloud_error("Pricing GetProducts", e))?;
            for doc in page.price_list() {
                if let Some(p) = parse_product(doc, instance_type) {
                    found.push(p);
                }
            }
        }
        // One product is expected; several (a stale duplicate) are settled by the highest
        // rate, so a figure is never an understatement.
        Ok(found
            .into_iter()
            .max_by(|a, b| a.usd_per_hour.total_cmp(&b.usd_per_hour)))
    }

    /// The Linux spot price of `instance_type` in `zone` that was in force at `at` (EC2
    /// answers the last change before the window's start too, which is the price at `at`).
    pub async fn spot_price_at(
        &self,
        instance_type: &str,
        zone: &str,
        at: SystemTime,
    ) -> Result<Option<SpotPoint>, CloudError> {
        let when = aws_smithy_types::DateTime::from(at);
        let out = self
            .ec2
            .describe_spot_price_history()
            .instance_types(aws_sdk_ec2::types::InstanceType::from(instance_type))
            .product_descriptions("Linux/UNIX")
            .availability_zone(zone)
            .start_time(when)
            .end_time(when)
            .send()
            .await
            .map_err(|e| cloud_error("EC2 DescribeSpotPriceHistory", e))?;
        let points: Vec<SpotPoint> = out
            .spot_price_history()
            .iter()
            .filter(|p| p.availability_zone() == Some(zone))
            .filter(|p| p.instance_type().map(|t| t.as_str()) == Some(instance_type))
            .filter_map(|p| {
                Some(SpotPoint {
                    usd_per_hour: p.spot_price()?.trim().parse().ok()?,
                    at: SystemTime::try_from(*p.timestamp()?).ok()?,
                    zone: zone.to_string(),
                })
            })
            .filter(|p| p.usd_per_hour.is_finite() && p.usd_per_hour >= 0.0)
            .collect();
        Ok(price_in_force(points, at))
    }
}

/// The time in EC2's state transition reason: "User initiated (2026-12-01 10:42:51 GMT)".
pub fn transition_time(reason: &str) -> Option<SystemTime> {
    let inner = reason.rsplit_once('(')?.1.split_once(')')?.0;
    let stamp = inner.trim().strip_suffix("GMT")?.trim();
    humantime::parse_rfc3339(&format!("{}Z", stamp.replacen(' ', "T", 1))).ok()
}

/// The point in force at `at`: the newest change at or before it, else the oldest after it.
fn price_in_force(mut points: Vec<SpotPoint>, at: SystemTime) -> Option<SpotPoint> {
    points.sort_by_key(|p| p.at);
    let before = points.iter().rev().find(|p| p.at <= at).cloned();
    before.or_else(|| points.into_iter().next())
}

/// One GetProducts document (a JSON string): its on-demand hourly USD rate, when it is the
/// product asked for.
fn parse_product(doc: &str, instance_type: &str) -> Option<ListPrice> {
    let v: serde_json::Value = serde_json::from_str(doc).ok()?;
    let product = &v["product"];
    if product["attributes"]["instanceType"].as_str() != Some(instance_type) {
        return None;
    }
    let sku = product["sku"].as_str().unwrap_or_default().to_string();
    let terms = v["terms"]["OnDemand"].as_object()?;
    for term in terms.values() {
        for dim in term["priceDimensions"].as_object()?.values() {
            if dim["unit"].as_str() != Some("Hrs") {
                continue;
            }
            let usd: f64 = dim["pricePerUnit"]["USD"].as_str()?.parse().ok()?;
            if usd.is_finite() && usd >= 0.0 {
                return Some(ListPrice {
                    usd_per_hour: usd,
                    sku,
                    effective: term["effectiveDate"].as_str().map(str::to_string),
                });
            }
        }
    }
    None
}

/// The Price List's `location` attribute for a region: names, not prices.
pub fn location_name(region: &str) -> Option<&'static str> {
    Some(match region {
        "us-east-1" => "US East (N. Virginia)",
        "us-east-2" => "US East (Ohio)",
        "us-west-1" => "US West (N. California)",
        "us-west-2" => "US West (Oregon)",
        "af-south-1" => "Africa (Cape Town)",
        "ap-east-1" => "Asia Pacific (Hong Kong)",
        "ap-south-1" => "Asia Pacific (Mumbai)",
        "ap-south-2" => "Asia Pacific (Hyderabad)",
        "ap-southeast-1" => "Asia Pacific (Singapore)",
        "ap-southeast-2" => "Asia Pacific (Sydney)",
        "ap-southeast-3" => "Asia Pacific (Jakarta)",
        "ap-southeast-4" => "Asia Pacific (Melbourne)",
        "ap-northeast-1" => "Asia Pacific (Tokyo)",
        "ap-northeast-2" => "Asia Pacific (Seoul)",
        "ap-northeast-3" => "Asia Pacific (Osaka)",
        "ca-central-1" => "Canada (Central)",
        "ca-west-1" => "Canada West (Calgary)",
        "eu-central-1" => "EU (Frankfurt)",
        "eu-central-2" => "EU (Zurich)",
        "eu-west-1" => "EU (Ireland)",
        "eu-west-2" => "EU (London)",
        "eu-west-3" => "EU (Paris)",
        "eu-north-1" => "EU (Stockholm)",
        "eu-south-1" => "EU (Milan)",
        "eu-south-2" => "EU (Spain)",
        "il-central-1" => "Israel (Tel Aviv)",
        "me-south-1" => "Middle East (Bahrain)",
        "me-central-1" => "Middle East (UAE)",
        "sa-east-1" => "South America (Sao Paulo)",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    //! Over the SDK's replay client: real answers in AWS's documented shapes, parsed by the
    //! SDK, and what the requests asked for.
    use super::*;
    use aws_smithy_http_client::test_util::{ReplayEvent, StaticReplayClient};
    use aws_smithy_types::body::SdkBody;
    use std::time::Duration;

    fn cloud(replay: &StaticReplayClient, region: &str) -> Cloud {
        let config = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_string()))
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(
                    aws_credential_types::Credentials::new("AKID", "SECRET", None, None, "test"),
                ),
            )
            .http_client(replay.clone())
            .build();
        Cloud::from_config(config)
    }

    fn answer(uri: &str, status: u16, body: String) -> ReplayEvent {
        ReplayEvent::new(
            http::Request::builder()
                .uri(uri)
                .body(SdkBody::empty())
                .unwrap(),
            http::Response::builder()
                .status(status)
                .body(SdkBody::from(body))
                .unwrap(),
        )
    }

    /// A product as the Price List documents it (GetProducts' example answer, trimmed).
    fn product(instance_type: &str, usd: &str) -> String {
        serde_json::json!({
            "product": {
                "productFamily": "Compute Instance",
                "attributes": {
                    "instanceType": instance_type,
                    "location": "EU (Ireland)",
                    "operatingSystem": "Linux",
                    "tenancy": "Shared",
                    "preInstalledSw": "NA",
                    "capacitystatus": "Used",
                    "servicecode": "AmazonEC2"
                },
                "sku": "ABCDEFGHJKLMNPQR"
            },
            "serviceCode": "AmazonEC2",
            "terms": {"OnDemand": {"ABCDEFGHJKLMNPQR.JRTCKXETXF": {
                "priceDimensions": {"ABCDEFGHJKLMNPQR.JRTCKXETXF.6YS6EN2CT7": {
                    "unit": "Hrs", "endRange": "Inf", "beginRange": "0", "appliesTo": [],
                    "description": "per On Demand Linux Instance Hour",
                    "rateCode": "ABCDEFGHJKLMNPQR.JRTCKXETXF.6YS6EN2CT7",
                    "pricePerUnit": {"USD": usd}
                }},
                "sku": "ABCDEFGHJKLMNPQR",
                "effectiveDate": "2026-11-01T00:00:00Z",
                "offerTermCode": "JRTCKXETXF",
                "termAttributes": {}
            }}},
            "version": "20261101000000",
            "publicationDate": "2026-11-01T00:00:00Z"
        })
        .to_string()
    }

    #[tokio::test]
    async fn on_demand_is_asked_in_us_east_1_with_the_documented_filters() {
        let body = serde_json::json!({
            "FormatVersion": "aws_v1",
            "PriceList": [product("m6i.large", "0.1070000000")],
        })
        .to_string();
        let replay = StaticReplayClient::new(vec![answer(
            "https://api.pricing.us-east-1.amazonaws.com/",
            200,
            body,
        )]);
        let got = cloud(&replay, "eu-west-1")
            .on_demand_price("m6i.large", "eu-west-1")
            .await
            .unwrap()
            .unwrap();
        assert!((got.usd_per_hour - 0.107).abs() < 1e-12);
        assert_eq!(got.sku, "ABCDEFGHJKLMNPQR");
        let req = replay.actual_requests().next().unwrap();
        assert!(req.uri().to_string().contains("us-east-1"), "{}", req.uri());
        let sent = String::from_utf8_lossy(req.body().bytes().unwrap()).into_owned();
        for want in [
            "\"ServiceCode\":\"AmazonEC2\"",
            "\"Value\":\"m6i.large\"",
            "\"Value\":\"EU (Ireland)\"",
            "\"Field\":\"operatingSystem\"",
            "\"Value\":\"Linux\"",
            "\"Value\":\"Shared\"",
            "\"Field\":\"preInstalledSw\"",
            "\"Field\":\"capacitystatus\"",
            "\"Value\":\"Used\"",
            "TERM_MATCH",
        ] {
            assert!(sent.contains(want), "{want} not in {sent}");
        }
    }

    #[tokio::test]
    async fn no_product_is_none_and_a_refusal_keeps_its_code() {
        let replay = StaticReplayClient::new(vec![answer(
            "https://api.pricing.us-east-1.amazonaws.com/",
            200,
            r#"{"FormatVersion":"aws_v1","PriceList":[]}"#.into(),
        )]);
        let c = cloud(&replay, "us-east-1");
        assert_eq!(
            c.on_demand_price("m6i.large", "us-east-1").await.unwrap(),
            None
        );
        let replay = StaticReplayClient::new(vec![answer(
            "https://api.pricing.us-east-1.amazonaws.com/",
            400,
            r#"{"__type":"AccessDeniedException","message":"not authorized to perform: pricing:GetProducts"}"#.into(),
        )]);
        let e = cloud(&replay, "us-east-1")
            .on_demand_price("m6i.large", "us-east-1")
            .await
            .unwrap_err();
        assert_eq!(e.code.as_deref(), Some("AccessDeniedException"), "{e}");
    }

    #[tokio::test]
    async fn the_spot_price_in_force_at_launch() {
        // DescribeSpotPriceHistory's documented answer shape, newest first.
        let body = r#"<DescribeSpotPriceHistoryResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>59dbff89-35bd-4eac-99ed-be587EXAMPLE</requestId>
  <spotPriceHistorySet>
    <item><instanceType>m6i.large</instanceType><productDescription>Linux/UNIX</productDescription><spotPrice>0.041000</spotPrice><timestamp>2026-12-01T12:00:00.000Z</timestamp><availabilityZone>us-east-1b</availabilityZone></item>
    <item><instanceType>m6i.large</instanceType><productDescription>Linux/UNIX</productDescription><spotPrice>0.035000</spotPrice><timestamp>2026-12-01T09:00:00.000Z</timestamp><availabilityZone>us-east-1b</availabilityZone></item>
  </spotPriceHistorySet>
  <nextToken/>
</DescribeSpotPriceHistoryResponse>"#;
        let replay = StaticReplayClient::new(vec![answer(
            "https://ec2.us-east-1.amazonaws.com/",
            200,
            body.into(),
        )]);
        let at = humantime::parse_rfc3339("2026-12-01T10:30:00Z").unwrap();
        let got = cloud(&replay, "us-east-1")
            .spot_price_at("m6i.large", "us-east-1b", at)
            .await
            .unwrap()
            .unwrap();
        assert!((got.usd_per_hour - 0.035).abs() < 1e-12, "{got:?}");
        let sent = replay.actual_requests().next().unwrap();
        let sent = String::from_utf8_lossy(sent.body().bytes().unwrap()).into_owned();
        for want in [
            "Action=DescribeSpotPriceHistory",
            "InstanceType.1=m6i.large",
            "AvailabilityZone=us-east-1b",
            "ProductDescription.1=Linux%2FUNIX",
            "StartTime=2026-12-01T10%3A30%3A00Z",
        ] {
            assert!(sent.contains(want), "{want} not in {sent}");
        }
    }

    #[test]
    fn price_in_force_picks_the_last_change_before() {
        let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let p = |usd: f64, s: u64| SpotPoint {
            usd_per_hour: usd,
            at: t(s),
            zone: "z".into(),
        };
        let cases = [
            (vec![p(1.0, 10), p(2.0, 20), p(3.0, 30)], 25, Some(2.0)),
            (vec![p(1.0, 10), p(2.0, 20)], 20, Some(2.0)),
            (vec![p(2.0, 20), p(1.0, 40)], 5, Some(2.0)),
            (vec![], 5, None),
        ];
        for (points, at, want) in cases {
            assert_eq!(
                price_in_force(points.clone(), t(at)).map(|p| p.usd_per_hour),
                want,
                "{points:?} at {at}"
            );
        }
    }

    #[test]
    fn the_transition_time_is_read_from_the_reason() {
        let t = |s: &str| humantime::parse_rfc3339(s).unwrap();
        for (reason, want) in [
            (
                "User initiated (2026-12-01 10:42:51 GMT)",
                Some(t("2026-12-01T10:42:51Z")),
            ),
            (
                "Service initiated (2026-12-01 10:42:51 GMT)",
                Some(t("2026-12-01T10:42:51Z")),
            ),
            ("User initiated shutdown", None),
            ("", None),
            ("x (not a time GMT)", None),
        ] {
            assert_eq!(transition_time(reason), want, "{reason}");
        }
    }

    #[test]
    fn products_of_another_type_or_without_an_hourly_rate_are_skipped() {
        assert!(parse_product(&product("m6i.large", "0.096"), "m6i.xlarge").is_none());
        assert!(parse_product(&product("m6i.large", "n/a"), "m6i.large").is_none());
        assert!(parse_product("not json", "m6i.large").is_none());
        assert_eq!(location_name("eu-west-1"), Some("EU (Ireland)"));
        assert_eq!(location_name("xx-nowhere-9"), None);
    }
}
