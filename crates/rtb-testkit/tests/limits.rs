//! AWS's rate limits in the proxy, against the real MiniStack (and moto for AWS Batch):
//! bursts over a bucket are throttled with the service's own error, the buckets are AWS's
//! (one per action, RunInstances' small one, its instance bucket), the SDK's retries ride out
//! light throttling, and the meter counts what went through.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::Filter;
use rtb_testkit::{FaultProxy, Limits};

/// SDK config for `endpoint`, retries off: each throttle reaches the test as it is.
async fn sdk(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .retry_config(RetryConfig::disabled())
        .load()
        .await
}

/// What the client uses: the SDK's defaults (standard retries, 3 attempts).
async fn sdk_default_retries(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .load()
        .await
}

fn s3(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(true)
            .build(),
    )
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// `n` calls of `call`, `parallel` at a time; (successes, error codes with HTTP status).
async fn burst<F, Fut>(n: usize, parallel: usize, call: F) -> (usize, Vec<(String, u16)>)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), (String, u16)>> + Send,
{
    let call = Arc::new(call);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..parallel {
        let (call, next) = (call.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < n {
                out.push(call().await);
            }
            out
        }));
    }
    let mut ok = 0;
    let mut errors = Vec::new();
    for t in tasks {
        for r in t.await.unwrap() {
            match r {
                Ok(()) => ok += 1,
                Err(e) => errors.push(e),
            }
        }
    }
    (ok, errors)
}

fn code_and_status<E: ProvideErrorMetadata>(e: &aws_sdk_ec2::error::SdkError<E>) -> (String, u16) {
    (
        e.code().unwrap_or("no code").to_string(),
        e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0),
    )
}

/// The refill a bucket of `refill` per second can have given over `elapsed`, plus one for
/// rounding: an upper bound on calls beyond the bucket's capacity.
fn refilled(refill: f64, elapsed: Duration) -> usize {
    (refill * elapsed.as_secs_f64()).ceil() as usize + 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_instances_burst_over_its_bucket_is_throttled_and_counted() {
    let proxy = FaultProxy::start();
    proxy.limits(Limits::aws());
    let ec2 = aws_sdk_ec2::Client::new(&sdk(&proxy.endpoint()).await);

    // Unfiltered and unpaginated: AWS's smaller bucket, 50 tokens refilled 10 a second.
    let started = Instant::now();
    let client = ec2.clone();
    let (ok, errors) = burst(120, 12, move || {
        let c = client.clone();
        async move {
            c.describe_instances()
                .send()
                .await
                .map(drop)
                .map_err(|e| code_and_status(&e))
        }
    })
    .await;
    let elapsed = started.elapsed();

    assert!(
        !errors.is_empty(),
        "120 calls in {elapsed:?}: none throttled"
    );
    assert!(
        errors
            .iter()
            .all(|e| e == &("RequestLimitExceeded".to_string(), 503)),
        "{errors:?}"
    );
    assert!(
        ok >= 50,
        "the full bucket lets 50 through, only {ok} passed"
    );
    assert!(
        ok <= 50 + refilled(10.0, elapsed),
        "{ok} passed in {elapsed:?}: more than 50 + 10/s"
    );

    // The filtered call has its own, full bucket.
    ec2.describe_instances()
        .filters(Filter::builder().name("tag:rtb-limits").values("x").build())
        .send()
        .await
        .expect("a filtered DescribeInstances takes the standard bucket");

    let stats = proxy.limit_stats();
    let family = stats.family("ec2-describe");
    assert_eq!(family.calls, 121, "{stats:#?}");
    assert_eq!(family.throttled as usize, errors.len(), "{stats:#?}");
    assert_eq!(stats.action("ec2:DescribeInstances").calls, 121);
    assert!(family.first <= family.last && family.last <= stats.now);
    // The meter and the call log agree on what was throttled here.
    let limited = proxy
        .calls()
        .iter()
        .filter(|c| c.fault.as_deref() == Some("rate_limit"))
        .count();
    assert_eq!(limited, errors.len());
}

/// The ids of the instances carrying `rtb-limits=<tag>`.
async fn tagged(ec2: &aws_sdk_ec2::Client, tag: &str) -> Vec<String> {
    ec2.describe_instances()
        .filters(Filter::builder().name("tag:rtb-limits").values(tag).build())
        .send()
        .await
        .unwrap()
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter(|i| {
            i.state().and_then(|s| s.name())
                != Some(&aws_sdk_ec2::types::InstanceStateName::Terminated)
        })
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect()
}

/// Terminates every instance carrying the tag when dropped, the test passed or not.
struct TerminateTagged {
    endpoint: String,
    tag: String,
}

impl Drop for TerminateTagged {
    fn drop(&mut self) {
        let (endpoint, tag) = (self.endpoint.clone(), self.tag.clone());
        // Its own thread and runtime: drop cannot await, and may run while panicking.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let ec2 = aws_sdk_ec2::Client::new(&sdk(&endpoint).await);
                let ids = tagged(&ec2, &tag).await;
                if !ids.is_empty() {
                    ec2.terminate_instances()
                        .set_instance_ids(Some(ids))
                        .send()
                        .await
                        .map(drop)
                        .map_err(|e| format!("{e:?}"))
                } else {
                    Ok(())
                }
            })
        })
        .join();
        if !matches!(done, Ok(Ok(()))) {
            eprintln!(
                "could not terminate the instances tagged rtb-limits={}",
                self.tag
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_instances_has_its_own_request_bucket_and_an_instance_bucket() {
    let proxy = FaultProxy::start();
    let direct = aws_sdk_ec2::Client::new(&sdk(proxy.upstream()).await);
    let tag = unique("rtb-limits-run");
    let _cleanup = TerminateTagged {
        endpoint: proxy.upstream().to_string(),
        tag: tag.clone(),
    };
    let via = aws_sdk_ec2::Client::new(&sdk(&proxy.endpoint()).await);
    let run = move |client: aws_sdk_ec2::Client, tag: String, count: i32| async move {
        // An AMI never registered: MiniStack makes metadata-only instances, no containers.
        client
            .run_instances()
            .image_id("ami-0123456789abcdef0")
            .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
            // MiniStack launches MinCount: ask for exactly `count`.
            .min_count(count)
            .max_count(count)
            .tag_specifications(
                aws_sdk_ec2::types::TagSpecification::builder()
                    .resource_type(aws_sdk_ec2::types::ResourceType::Instance)
                    .tags(
                        aws_sdk_ec2::types::Tag::builder()
                            .key("rtb-limits")
                            .value(tag)
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .map(drop)
            .map_err(|e| code_and_status(&e))
    };

    // AWS's RunInstances request bucket: 5, refilled 2 a second. DescribeImages meanwhile
    // has its own bucket of 100.
    proxy.limits(Limits::aws());
    let started = Instant::now();
    let (c, t) = (via.clone(), tag.clone());
    let (ok, errors) = burst(9, 9, move || run(c.clone(), t.clone(), 1)).await;
    let elapsed = started.elapsed();
    let (images_ok, image_errors) = {
        let c = via.clone();
        burst(20, 4, move || {
            let c = c.clone();
            async move {
                c.describe_images()
                    .owners("self")
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| code_and_status(&e))
            }
        })
        .await
    };

    assert!(
        ok >= 5,
        "the full bucket lets 5 launches through: {ok}, {errors:?}"
    );
    assert!(
        ok <= 5 + refilled(2.0, elapsed),
        "{ok} launches in {elapsed:?}"
    );
    assert!(!errors.is_empty(), "9 launches at once, none throttled");
    assert!(errors
        .iter()
        .all(|e| e == &("RequestLimitExceeded".to_string(), 503)));
    assert_eq!((images_ok, image_errors.len()), (20, 0));

    // The instance bucket: a launch of 2 with 1 token left is refused whole, and takes no
    // request token either.
    proxy.limits(Limits::aws().bucket("ec2:RunInstances/instances", 3.0, 0.0));
    run(via.clone(), tag.clone(), 2)
        .await
        .expect("2 of 3 instance tokens");
    let refused = run(via.clone(), tag.clone(), 2).await.unwrap_err();
    assert_eq!(refused, ("RequestLimitExceeded".to_string(), 503));
    let stats = proxy.limit_stats();
    let tokens = |name: &str| {
        stats
            .tokens
            .iter()
            .find(|(k, _)| k.ends_with(name))
            .map(|(_, t)| *t)
            .unwrap_or_else(|| panic!("no bucket {name} in {stats:#?}"))
    };
    assert!(tokens(" ec2:RunInstances/instances") < 1.01);
    assert!(tokens(" ec2:RunInstances") >= 4.0 - 0.01);
    run(via.clone(), tag.clone(), 1)
        .await
        .expect("the last instance token");
    assert_eq!(
        stats.family("ec2-mutating").throttled,
        errors.len() as u64 + 1
    );

    let ids = tagged(&direct, &tag).await;
    assert_eq!(ids.len(), ok + 3, "launched: {ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdks_standard_retries_ride_out_light_throttling() {
    let proxy = FaultProxy::start();
    // Light: 4 calls at once against one token, refilled 50 a second.
    proxy.limits(Limits::aws().bucket("ec2:DescribeInstances/unfiltered", 1.0, 50.0));
    let ec2 = aws_sdk_ec2::Client::new(&sdk_default_retries(&proxy.endpoint()).await);
    for round in 0..5 {
        let c = ec2.clone();
        let (ok, errors) = burst(4, 4, move || {
            let c = c.clone();
            async move {
                c.describe_instances()
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| code_and_status(&e))
            }
        })
        .await;
        assert_eq!((ok, errors), (4, vec![]), "round {round}");
    }
    let stats = proxy.limit_stats();
    let c = stats.action("ec2:DescribeInstances");
    assert!(c.throttled > 0, "nothing was throttled: {stats:#?}");
    // Every throttled attempt was retried: 20 calls succeeded on top of the throttled ones.
    assert_eq!(c.calls, 20 + c.throttled, "{stats:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_throttles_with_its_own_error() {
    let proxy = FaultProxy::start();
    proxy.limits(
        Limits::none()
            .bucket("ssm:DescribeInstanceInformation", 1.0, 0.0)
            .bucket("s3:read", 2.0, 0.0),
    );
    let via = sdk(&proxy.endpoint()).await;
    let ssm = aws_sdk_ssm::Client::new(&via);
    ssm.describe_instance_information().send().await.unwrap();
    let err = ssm
        .describe_instance_information()
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ThrottlingException"), "{err:?}");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(400));
    // Another SSM action has its own bucket (none here).
    ssm.list_commands().send().await.unwrap();

    // S3: per bucket; a HEAD and a GET are both reads; writes are another class.
    let b = unique("rtb-limits");
    let bucket_a = s3(&via);
    bucket_a.create_bucket().bucket(&b).send().await.unwrap();
    bucket_a.head_bucket().bucket(&b).send().await.unwrap();
    bucket_a.list_objects_v2().bucket(&b).send().await.unwrap();
    let err = bucket_a
        .list_objects_v2()
        .bucket(&b)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("SlowDown"), "{err:?}");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(503));
    bucket_a
        .put_object()
        .bucket(&b)
        .key("k")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"x"))
        .send()
        .await
        .expect("writes are not reads");
    let other = unique("rtb-limits-b");
    bucket_a
        .create_bucket()
        .bucket(&other)
        .send()
        .await
        .unwrap();
    bucket_a
        .list_objects_v2()
        .bucket(&other)
        .send()
        .await
        .expect("another S3 bucket has its own reads");

    let stats = proxy.limit_stats();
    assert_eq!(stats.family("ssm").throttled, 1, "{stats:#?}");
    assert_eq!(stats.family("s3").throttled, 1, "{stats:#?}");
    assert_eq!(stats.action("s3:ListObjectsV2").calls, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_throttles_with_too_many_requests() {
    let moto = std::env::var("RTB_WORLD_MOTO_URL").expect(
        "RTB_WORLD_MOTO_URL: run tests/world/setup.sh && source .world/env (moto serves AWS Batch)",
    );
    let proxy = FaultProxy::start_for(&moto);
    proxy.limits(Limits::aws().bucket("batch:DescribeJobQueues", 1.0, 0.0));
    let batch = aws_sdk_batch::Client::new(&sdk(&proxy.endpoint()).await);
    batch.describe_job_queues().send().await.unwrap();
    let err = batch.describe_job_queues().send().await.unwrap_err();
    assert_eq!(err.code(), Some("TooManyRequestsException"), "{err:?}");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(429));
    // Every other Batch action keeps AWS's 50 a second.
    batch.describe_compute_environments().send().await.unwrap();
    assert_eq!(proxy.limit_stats().family("batch").throttled, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_meter_counts_by_family_with_limits_off_and_limits_go_off_again() {
    let proxy = FaultProxy::start();
    let via = sdk(&proxy.endpoint()).await;
    let ec2 = aws_sdk_ec2::Client::new(&via);
    let ssm = aws_sdk_ssm::Client::new(&via);
    for _ in 0..60 {
        ec2.describe_instances().send().await.unwrap();
    }
    ssm.list_commands().send().await.unwrap();
    ec2.create_tags()
        .resources("i-00000000000000000")
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("k")
                .value("v")
                .build(),
        )
        .send()
        .await
        .ok();
    let stats = proxy.limit_stats();
    assert!(!stats.enabled);
    assert_eq!(stats.family("ec2-describe").calls, 60, "{stats:#?}");
    assert_eq!(stats.family("ec2-mutating").calls, 1, "{stats:#?}");
    assert_eq!(stats.family("ssm").calls, 1);
    assert_eq!(stats.throttled(), 0);
    assert!(stats.tokens.is_empty());

    proxy.clear_limit_stats();
    proxy.limits(Limits::aws().bucket("ec2:DescribeInstances/unfiltered", 1.0, 0.0));
    ec2.describe_instances().send().await.unwrap();
    assert!(ec2.describe_instances().send().await.is_err());
    proxy.no_limits();
    ec2.describe_instances().send().await.unwrap();
    let stats = proxy.limit_stats();
    assert_eq!(
        (stats.family("ec2-describe").calls, stats.throttled()),
        (3, 1),
        "{stats:#?}"
    );
}
