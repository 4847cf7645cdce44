//! The price answers through the proxy, read by AWS's own parsers: the Rust SDK's
//! DescribeSpotPriceHistory, and the aws cli (botocore) for GetProducts (aws-sdk-pricing is
//! not a dependency here) and for the spot history again.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime};

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::InstanceType;
use rtb_testkit::{FaultProxy, OnDemand, PriceAnswer, Prices};
use serde_json::Value;

async fn ec2(endpoint: &str, region: &'static str) -> aws_sdk_ec2::Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::from_static(region))
        .retry_config(RetryConfig::disabled())
        .load()
        .await;
    aws_sdk_ec2::Client::new(&config)
}

fn ago(minutes: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(60 * minutes)
}

fn spot_data() -> Prices {
    Prices::new()
        .spot("m5.large", "us-east-1a", "0.0354", ago(300))
        .spot("m5.large", "us-east-1a", "0.0360", ago(100))
        .spot("m5.large", "us-east-1b", "0.0371", ago(200))
        .spot("c5.xlarge", "us-east-1b", "0.0650", ago(50))
        .spot("m5.large", "us-west-2a", "0.0300", ago(50))
}

/// The aws cli of the world's venv, talking to the proxy; (exit ok, stdout, stderr).
fn aws_cli(proxy: &FaultProxy, args: &[&str]) -> (bool, String, String) {
    let venv = std::env::var_os("RTB_WORLD_VENV")
        .map(PathBuf::from)
        .expect("RTB_WORLD_VENV: run tests/world/setup.sh && source .world/env");
    let out = Command::new(venv.join("bin/aws"))
        .args(args)
        .env("AWS_ENDPOINT_URL", proxy.endpoint())
        .env("AWS_MAX_ATTEMPTS", "1")
        .env("AWS_RETRY_MODE", "standard")
        .output()
        .expect("the world's aws cli runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

const LINUX_M5_US_EAST_1: &[&str] = &[
    "Type=TERM_MATCH,Field=instanceType,Value=m5.large",
    "Type=TERM_MATCH,Field=location,Value=US East (N. Virginia)",
    "Type=TERM_MATCH,Field=operatingSystem,Value=Linux",
    "Type=TERM_MATCH,Field=tenancy,Value=Shared",
    "Type=TERM_MATCH,Field=preInstalledSw,Value=NA",
    "Type=TERM_MATCH,Field=capacitystatus,Value=Used",
];

fn get_products(
    proxy: &FaultProxy,
    region: &str,
    filters: &[&str],
    extra: &[&str],
) -> (bool, String, String) {
    let mut args = vec![
        "pricing",
        "get-products",
        "--region",
        region,
        "--service-code",
        "AmazonEC2",
        "--format-version",
        "aws_v1",
    ];
    if !filters.is_empty() {
        args.push("--filters");
        args.extend_from_slice(filters);
    }
    args.extend_from_slice(extra);
    aws_cli(proxy, &args)
}

/// The price of a Price List product: its one On-Demand dimension's USD.
fn on_demand_usd(product: &Value) -> String {
    let terms = product["terms"]["OnDemand"]
        .as_object()
        .expect("OnDemand terms");
    let (_, offer) = terms.iter().next().expect("one offer");
    let dims = offer["priceDimensions"]
        .as_object()
        .expect("priceDimensions");
    let (_, dim) = dims.iter().next().expect("one dimension");
    dim["pricePerUnit"]["USD"]
        .as_str()
        .expect("USD")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spot_price_history_parses_with_the_rust_sdk_and_honours_its_parameters() {
    let proxy = FaultProxy::start();
    proxy.set_prices(spot_data());
    let client = ec2(&proxy.endpoint(), "us-east-1").await;

    let out = client
        .describe_spot_price_history()
        .instance_types(InstanceType::M5Large)
        .product_descriptions("Linux/UNIX")
        .send()
        .await
        .unwrap();
    let rows: Vec<(&str, &str, &str)> = out
        .spot_price_history()
        .iter()
        .map(|p| {
            (
                p.availability_zone().unwrap(),
                p.spot_price().unwrap(),
                p.instance_type().unwrap().as_str(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("us-east-1a", "0.036000", "m5.large"),
            ("us-east-1b", "0.037100", "m5.large"),
            ("us-east-1a", "0.035400", "m5.large"),
        ]
    );
    let newest = out.spot_price_history()[0].timestamp().unwrap();
    let expected = ago(100)
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((newest.secs() - expected).abs() <= 1, "{newest:?}");
    assert_eq!(out.next_token(), Some(""), "the last page's <nextToken/>");

    // A window from 150 minutes ago: the 1a change inside it, and each zone's price in
    // force at its start (1a's from 300 minutes ago, 1b's from 200).
    let window = client
        .describe_spot_price_history()
        .instance_types(InstanceType::M5Large)
        .start_time(aws_smithy_types::DateTime::from(ago(150)))
        .end_time(aws_smithy_types::DateTime::from(SystemTime::now()))
        .send()
        .await
        .unwrap();
    let prices: Vec<&str> = window
        .spot_price_history()
        .iter()
        .filter_map(|p| p.spot_price())
        .collect();
    assert_eq!(prices, vec!["0.036000", "0.037100", "0.035400"]);

    let zone_b = client
        .describe_spot_price_history()
        .availability_zone("us-east-1b")
        .send()
        .await
        .unwrap();
    assert_eq!(zone_b.spot_price_history().len(), 2);

    // The SDK's paginator walks pages of 2 and stops at the empty token.
    let all: Vec<_> = client
        .describe_spot_price_history()
        .max_results(2)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    assert_eq!(all.len(), 4, "{all:#?}");
    let history_calls = proxy.count("DescribeSpotPriceHistory");
    assert_eq!(history_calls, 3 + 2, "3 calls above, then pages of 2, 2");

    // A client in another region sees that region's zones only.
    let west = ec2(&proxy.endpoint(), "us-west-2").await;
    let out = west.describe_spot_price_history().send().await.unwrap();
    let zones: Vec<_> = out
        .spot_price_history()
        .iter()
        .filter_map(|p| p.availability_zone())
        .collect();
    assert_eq!(zones, vec!["us-west-2a"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spot_price_history_without_data_is_denied_and_can_go_unanswered() {
    let proxy = FaultProxy::start();
    let client = ec2(&proxy.endpoint(), "us-east-1").await;

    let err = client
        .describe_spot_price_history()
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("UnauthorizedOperation"), "{err:?}");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(403));

    proxy.set_prices(Prices::new().on_demand("m5.large", "us-east-1", "0.096"));
    let err = client
        .describe_spot_price_history()
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some("UnauthorizedOperation"),
        "on-demand data only: spot is still denied"
    );

    proxy.no_prices();
    let err = client
        .describe_spot_price_history()
        .send()
        .await
        .unwrap_err();
    assert!(err.raw_response().is_none(), "no answer at all: {err:?}");
    assert!(
        matches!(err, aws_sdk_ec2::error::SdkError::DispatchFailure(_)),
        "{err:?}"
    );

    proxy.set_prices(Prices::new().answer_spot(PriceAnswer::Emulator));
    let err = client
        .describe_spot_price_history()
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidAction"), "MiniStack's own answer");

    proxy.set_prices(Prices::new().no_spot_history());
    let out = client.describe_spot_price_history().send().await.unwrap();
    assert!(out.spot_price_history().is_empty());

    proxy.clear_prices();
    let err = client
        .describe_spot_price_history()
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("UnauthorizedOperation"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_products_parses_with_the_aws_cli_and_honours_the_filters() {
    let proxy = FaultProxy::start();
    let mut windows = OnDemand::new("m5.large", "us-east-1", "0.188");
    windows.operating_system = "Windows".into();
    let mut reserved = OnDemand::new("m5.large", "us-east-1", "0.096");
    reserved.capacity_status = "UnusedCapacityReservation".into();
    proxy.set_prices(
        Prices::new()
            .on_demand("m5.large", "us-east-1", "0.096")
            .on_demand("m5.large", "eu-west-1", "0.107")
            .on_demand("c5.xlarge", "us-east-1", "0.17")
            .product(windows)
            .product(reserved),
    );

    let (ok, out, err) = get_products(&proxy, "us-east-1", LINUX_M5_US_EAST_1, &[]);
    assert!(ok, "{err}");
    let answer = json(&out);
    assert_eq!(answer["FormatVersion"], "aws_v1");
    let list = answer["PriceList"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{answer:#}");
    let product = json(list[0].as_str().expect("each product is a JSON string"));
    assert_eq!(on_demand_usd(&product), "0.0960000000");
    let attrs = &product["product"]["attributes"];
    assert_eq!(attrs["instanceType"], "m5.large");
    assert_eq!(attrs["location"], "US East (N. Virginia)");
    assert_eq!(attrs["capacitystatus"], "Used");

    // Without the capacity status filter, the reservation's product comes too; without the
    // operating system, Windows. Pages of 1: the cli follows NextToken.
    let (ok, out, err) = get_products(&proxy, "us-east-1", &LINUX_M5_US_EAST_1[..3], &[]);
    assert!(ok, "{err}");
    assert_eq!(json(&out)["PriceList"].as_array().unwrap().len(), 2);
    let (ok, out, err) = get_products(
        &proxy,
        "us-east-1",
        &LINUX_M5_US_EAST_1[..2],
        &["--page-size", "1"],
    );
    assert!(ok, "{err}");
    let mut prices: Vec<String> = json(&out)["PriceList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| on_demand_usd(&json(p.as_str().unwrap())))
        .collect();
    prices.sort();
    assert_eq!(prices, vec!["0.0960000000", "0.0960000000", "0.1880000000"]);
    let pages = proxy.count("GetProducts");
    assert_eq!(pages, 2 + 3, "2 calls, then 3 pages of 1");

    // The Price List answers in us-east-1, eu-central-1 and ap-south-1 only: elsewhere the
    // endpoint does not exist and the call is cut.
    let (ok, _, err) = get_products(&proxy, "eu-central-1", &LINUX_M5_US_EAST_1[..1], &[]);
    assert!(ok, "{err}");
    let (ok, _, err) = get_products(&proxy, "us-west-2", &LINUX_M5_US_EAST_1[..1], &[]);
    assert!(!ok && err.contains("Connection was closed"), "{err}");

    // The spot history through botocore too.
    proxy.set_prices(spot_data());
    let (ok, out, err) = aws_cli(
        &proxy,
        &[
            "ec2",
            "describe-spot-price-history",
            "--region",
            "us-east-1",
            "--instance-types",
            "c5.xlarge",
        ],
    );
    assert!(ok, "{err}");
    let history = json(&out);
    assert_eq!(history["SpotPriceHistory"][0]["SpotPrice"], "0.065000");
    assert_eq!(
        history["SpotPriceHistory"][0]["AvailabilityZone"],
        "us-east-1b"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_products_without_data_is_access_denied_or_unanswered() {
    let proxy = FaultProxy::start();
    let (ok, _, err) = get_products(&proxy, "us-east-1", &[], &[]);
    assert!(!ok && err.contains("AccessDeniedException"), "{err}");
    proxy.no_prices();
    let (ok, _, err) = get_products(&proxy, "us-east-1", &[], &[]);
    assert!(!ok && err.contains("Connection was closed"), "{err}");
    // A lost pricing call is cut, not counted as answered.
    let calls = proxy.calls();
    let last = calls
        .iter()
        .rev()
        .find(|c| c.action == "GetProducts")
        .unwrap();
    assert_eq!((last.service.as_str(), last.status), ("pricing", None));
}

/// The keys of a Price List product, with the SKU-named keys and the attributes' content
/// (which differs by product family) left out: its structure.
fn shape(v: &Value, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Value::Object(m) = v {
        for (k, child) in m {
            let generic = match path {
                "/terms/OnDemand" => "<offer>",
                p if p.ends_with("/priceDimensions") => "<rate>",
                _ => k.as_str(),
            };
            let here = format!("{path}/{generic}");
            out.push(here.clone());
            if here != "/product/attributes" {
                out.extend(shape(child, &here));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_products_documents_have_the_structure_of_awss_documented_example() {
    // The example answer of AWS's API documentation, as botocore ships it.
    let venv = PathBuf::from(std::env::var_os("RTB_WORLD_VENV").expect("RTB_WORLD_VENV"));
    let examples = std::fs::read_dir(venv.join("lib"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|python| {
            python
                .path()
                .join("site-packages/botocore/data/pricing/2017-10-15/examples-1.json")
        })
        .find(|p| p.is_file())
        .expect("botocore's pricing examples in the world venv");
    let doc = json(&std::fs::read_to_string(examples).unwrap());
    let example = json(
        doc["examples"]["GetProducts"][0]["output"]["PriceList"][0]
            .as_str()
            .expect("the example's PriceList holds JSON strings"),
    );

    let proxy = FaultProxy::start();
    proxy.set_prices(Prices::new().on_demand("m5.large", "us-east-1", "0.096"));
    let (ok, out, err) = get_products(&proxy, "us-east-1", &[], &[]);
    assert!(ok, "{err}");
    let ours = json(json(&out)["PriceList"][0].as_str().unwrap());
    assert_eq!(shape(&ours, ""), shape(&example, ""));
    assert!(shape(&example, "")
        .contains(&"/terms/OnDemand/<offer>/priceDimensions/<rate>/pricePerUnit/USD".to_string()));
    // The documented example's keys name the SKU the same way: SKU.TERM and SKU.TERM.RATE.
    let sku = ours["product"]["sku"].as_str().unwrap();
    let offer = &ours["terms"]["OnDemand"][format!("{sku}.JRTCKXETXF")];
    assert!(offer["priceDimensions"][format!("{sku}.JRTCKXETXF.6YS6EN2CT7")].is_object());
}
