//! The fault proxy against the real MiniStack (tests/world/setup.sh, then source .world/env):
//! each fault kind does to the SDK what it says, and the call log names every call.

use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use md5::{Digest, Md5};
use rtb_testkit::{Call, FaultProxy, Rule};

/// SDK config for `endpoint`: retries off (a fault reaches the test as it is) and an
/// operation timeout.
async fn sdk(endpoint: &str, timeout: Duration) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .retry_config(RetryConfig::disabled())
        .timeout_config(TimeoutConfig::builder().operation_timeout(timeout).build())
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

/// Clients through the proxy, and straight to MiniStack (to see what really happened).
struct Clients {
    proxy: FaultProxy,
    via: aws_config::SdkConfig,
    direct: aws_config::SdkConfig,
}

async fn clients() -> Clients {
    let proxy = FaultProxy::start();
    let via = sdk(&proxy.endpoint(), Duration::from_secs(30)).await;
    let direct = sdk(proxy.upstream(), Duration::from_secs(30)).await;
    Clients { proxy, via, direct }
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

async fn bucket(c: &Clients) -> String {
    let b = unique("faults");
    s3(&c.direct)
        .create_bucket()
        .bucket(&b)
        .send()
        .await
        .unwrap();
    b
}

fn last(calls: &[Call], action: &str) -> Call {
    calls
        .iter()
        .rev()
        .find(|c| c.action == action)
        .unwrap_or_else(|| panic!("no {action} in {calls:#?}"))
        .clone()
}

fn is_md5_etag(etag: &str, body: &[u8]) -> bool {
    etag.trim_matches('"') == format!("{:x}", Md5::digest(body))
}

fn is_quoted_hex32(etag: &str) -> bool {
    let inner = etag.strip_prefix('"').and_then(|e| e.strip_suffix('"'));
    inner.is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttle_on_describe_instances_is_request_limit_exceeded_to_the_sdk() {
    let c = clients().await;
    c.proxy.add(
        Rule::on("DescribeInstances")
            .service("ec2")
            .times(1)
            .throttle(),
    );
    let ec2 = aws_sdk_ec2::Client::new(&c.via);

    let err = ec2.describe_instances().send().await.unwrap_err();
    assert_eq!(err.code(), Some("RequestLimitExceeded"), "{err:?}");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(503));
    // One fault only: the next call goes through to MiniStack.
    ec2.describe_instances().send().await.unwrap();

    let calls = c.proxy.calls();
    let throttled: Vec<_> = calls
        .iter()
        .filter(|c| c.action == "DescribeInstances")
        .collect();
    assert_eq!(throttled.len(), 2, "{calls:#?}");
    assert_eq!(throttled[0].service, "ec2");
    assert_eq!(throttled[0].status, Some(503));
    assert_eq!(throttled[0].fault.as_deref(), Some("throttle"));
    assert_eq!(throttled[1].status, Some(200));
    assert_eq!(throttled[1].fault, None);
    assert_eq!(c.proxy.count("DescribeInstances"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttle_speaks_each_services_own_code() {
    let c = clients().await;
    c.proxy.add(Rule::on("*").throttle());
    let ssm = aws_sdk_ssm::Client::new(&c.via);
    let err = ssm
        .describe_instance_information()
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ThrottlingException"), "{err:?}");

    let err = s3(&c.via).list_buckets().send().await.unwrap_err();
    assert_eq!(err.code(), Some("SlowDown"), "{err:?}");

    let calls = c.proxy.calls();
    assert_eq!(
        last(&calls, "DescribeInstanceInformation").status,
        Some(400)
    );
    assert_eq!(last(&calls, "ListBuckets").status, Some(503));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_response_on_put_object_stores_it_but_the_client_gets_no_answer() {
    let c = clients().await;
    let b = bucket(&c).await;
    c.proxy.add(
        Rule::on("PutObject")
            .path_contains("out/b.png")
            .drop_response(),
    );
    let via = s3(&c.via);

    let err = via
        .put_object()
        .bucket(&b)
        .key("out/b.png")
        .body(ByteStream::from_static(b"the image"))
        .send()
        .await
        .unwrap_err();
    assert!(err.raw_response().is_none(), "an answer came: {err:?}");
    // The call took effect all the same.
    let got = s3(&c.direct)
        .get_object()
        .bucket(&b)
        .key("out/b.png")
        .send()
        .await
        .unwrap();
    assert_eq!(got.body.collect().await.unwrap().to_vec(), b"the image");
    // Other keys are not touched.
    via.put_object()
        .bucket(&b)
        .key("out/a.png")
        .body(ByteStream::from_static(b"a"))
        .send()
        .await
        .unwrap();

    let calls = c.proxy.calls();
    let puts: Vec<_> = calls.iter().filter(|c| c.action == "PutObject").collect();
    assert_eq!(puts.len(), 2, "{calls:#?}");
    assert_eq!(puts[0].status, None);
    assert_eq!(puts[0].fault.as_deref(), Some("drop_response"));
    assert!(
        puts[0].path.starts_with(&format!("/{b}/out/b.png")),
        "{:?}",
        puts[0]
    );
    assert_eq!(
        (puts[1].status, puts[1].fault.as_deref()),
        (Some(200), None)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_request_never_reaches_the_emulator() {
    let c = clients().await;
    let b = unique("faults-dropped");
    c.proxy.add(Rule::on("CreateBucket").drop_request());
    let err = s3(&c.via)
        .create_bucket()
        .bucket(&b)
        .send()
        .await
        .unwrap_err();
    assert!(err.raw_response().is_none(), "an answer came: {err:?}");
    let head = s3(&c.direct).head_bucket().bucket(&b).send().await;
    assert!(head.is_err(), "the bucket was created: {head:?}");
    let call = last(&c.proxy.calls(), "CreateBucket");
    assert_eq!(
        (call.status, call.fault.as_deref()),
        (None, Some("drop_request"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_times_out_the_call_while_others_flow() {
    let c = clients().await;
    c.proxy.add(Rule::on("DescribeInstanceInformation").stall());
    let short = sdk(&c.proxy.endpoint(), Duration::from_secs(2)).await;
    let ssm = aws_sdk_ssm::Client::new(&short);

    let started = Instant::now();
    let stalled = tokio::spawn(async move { ssm.describe_instance_information().send().await });
    // While it hangs, other calls through the same proxy are answered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    aws_sdk_ec2::Client::new(&c.via)
        .describe_instances()
        .send()
        .await
        .unwrap();
    let err = stalled.await.unwrap().unwrap_err();
    let waited = started.elapsed();
    assert!(
        matches!(err, aws_sdk_ssm::error::SdkError::TimeoutError(_)),
        "{err:?}"
    );
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    let call = last(&c.proxy.calls(), "DescribeInstanceInformation");
    assert_eq!((call.status, call.fault.as_deref()), (None, Some("stall")));
    assert_eq!(
        last(&c.proxy.calls(), "DescribeInstances").status,
        Some(200)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_and_times_budget_the_faults() {
    let c = clients().await;
    c.proxy.add(
        Rule::on("DescribeInstances")
            .skip(1)
            .times(2)
            .error(500, "InternalError"),
    );
    let ec2 = aws_sdk_ec2::Client::new(&c.via);
    let mut outcomes = Vec::new();
    for _ in 0..4 {
        outcomes.push(match ec2.describe_instances().send().await {
            Ok(_) => "ok".to_string(),
            Err(e) => e.code().unwrap_or("?").to_string(),
        });
    }
    assert_eq!(outcomes, ["ok", "InternalError", "InternalError", "ok"]);
    let faults: Vec<_> = c
        .proxy
        .calls()
        .into_iter()
        .filter(|c| c.action == "DescribeInstances")
        .map(|c| (c.status, c.fault))
        .collect();
    let e = Some("error".to_string());
    assert_eq!(
        faults,
        [
            (Some(200), None),
            (Some(500), e.clone()),
            (Some(500), e),
            (Some(200), None)
        ]
    );

    // clear() removes the rules: nothing is faulted after it.
    c.proxy.add(Rule::on("DescribeInstances").throttle());
    c.proxy.clear();
    ec2.describe_instances().send().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_answers_parse_as_each_services_codes() {
    let c = clients().await;
    c.proxy.add(
        Rule::on("SendCommand")
            .error(400, "InvalidInstanceId")
            .message("agent not online"),
    );
    c.proxy
        .add(Rule::on("RunInstances").error(400, "InsufficientInstanceCapacity"));
    c.proxy
        .add(Rule::on("GetObject").error(503, "ServiceUnavailable"));

    let err = aws_sdk_ssm::Client::new(&c.via)
        .send_command()
        .instance_ids("i-0123456789abcdef0")
        .document_name("AWS-RunShellScript")
        .parameters("commands", vec!["true".into()])
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidInstanceId"), "{err:?}");
    assert_eq!(err.message(), Some("agent not online"));
    assert!(err
        .as_service_error()
        .is_some_and(|e| e.is_invalid_instance_id()));

    let err = aws_sdk_ec2::Client::new(&c.via)
        .run_instances()
        .image_id("ami-12345678")
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InsufficientInstanceCapacity"), "{err:?}");

    let err = s3(&c.via)
        .get_object()
        .bucket("any")
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ServiceUnavailable"), "{err:?}");

    // Answered here: nothing was launched.
    let calls = c.proxy.calls();
    assert_eq!(last(&calls, "RunInstances").status, Some(400));
    assert_eq!(last(&calls, "GetObject").status, Some(503));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_etag_gives_a_non_md5_hex_etag_in_head_and_list() {
    let c = clients().await;
    let b = bucket(&c).await;
    let body = b"encrypted with a KMS key".to_vec();
    let via = s3(&c.via);
    let put = via
        .put_object()
        .bucket(&b)
        .key("out/kms.bin")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();
    assert!(is_md5_etag(put.e_tag().unwrap(), &body), "{put:?}");

    c.proxy.add(Rule::on("*").service("s3").rewrite_etag());
    let head = via
        .head_object()
        .bucket(&b)
        .key("out/kms.bin")
        .send()
        .await
        .unwrap();
    let head_etag = head.e_tag().unwrap().to_string();
    assert!(is_quoted_hex32(&head_etag), "{head_etag}");
    assert!(!is_md5_etag(&head_etag, &body), "{head_etag}");

    let list = via.list_objects_v2().bucket(&b).send().await.unwrap();
    let listed = list.contents()[0].e_tag().unwrap().to_string();
    assert!(is_quoted_hex32(&listed), "{listed}");
    assert!(!is_md5_etag(&listed, &body), "{listed}");
    // The same object shows the same ETag everywhere, as on S3.
    assert_eq!(listed, head_etag);
    // The object itself is untouched.
    let got = via
        .get_object()
        .bucket(&b)
        .key("out/kms.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(got.e_tag(), Some(head_etag.as_str()));
    assert_eq!(got.body.collect().await.unwrap().to_vec(), body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_body_flips_bytes_small_and_streamed() {
    let c = clients().await;
    let b = bucket(&c).await;
    let direct = s3(&c.direct);
    let small = vec![0xFE, 0x00, 0xFE, 0x41];
    // 3 MiB: above the proxy's 1 MiB streaming threshold.
    let big: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 256) as u8).collect();
    for (key, data) in [("small.bin", &small), ("big.bin", &big)] {
        direct
            .put_object()
            .bucket(&b)
            .key(key)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap();
    }
    c.proxy.add(Rule::on("GetObject").corrupt_body(0xFE, 0xFD));
    // The SDK checks the CRC that MiniStack sends with each object: it sees the damage.
    let checked = s3(&c.via);
    // Without that check the flipped bytes reach the caller.
    let unchecked = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&c.via)
            .force_path_style(true)
            .response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            )
            .build(),
    );
    for (key, data) in [("small.bin", &small), ("big.bin", &big)] {
        let got = checked.get_object().bucket(&b).key(key).send().await;
        let read = match got {
            Ok(out) => out.body.collect().await.map(|b| b.to_vec()),
            Err(e) => panic!("{key}: {e:?}"),
        };
        let err = read.expect_err("the SDK took a corrupted body");
        assert!(
            format!("{err:?}").contains("ChecksumMismatch"),
            "{key}: {err:?}"
        );

        let got = unchecked
            .get_object()
            .bucket(&b)
            .key(key)
            .send()
            .await
            .unwrap();
        let got = got.body.collect().await.unwrap().to_vec();
        let want: Vec<u8> = data
            .iter()
            .map(|&x| if x == 0xFE { 0xFD } else { x })
            .collect();
        assert_eq!(got.len(), data.len(), "{key}");
        assert!(got == want, "{key}: bytes not flipped as asked");
        assert!(got != *data, "{key}: body unchanged");
    }
    let calls = c.proxy.calls();
    assert_eq!(
        last(&calls, "GetObject").fault.as_deref(),
        Some("corrupt_body")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_holds_one_call_and_lets_the_others_flow() {
    let c = clients().await;
    c.proxy
        .add(Rule::on("ListBuckets").delay(Duration::from_millis(1500)));
    let via = s3(&c.via);
    let started = Instant::now();
    let delayed = tokio::spawn(async move { via.list_buckets().send().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let other = Instant::now();
    aws_sdk_ec2::Client::new(&c.via)
        .describe_instances()
        .send()
        .await
        .unwrap();
    assert!(
        other.elapsed() < Duration::from_millis(1000),
        "{:?}",
        other.elapsed()
    );
    delayed.await.unwrap().unwrap();
    assert!(started.elapsed() >= Duration::from_millis(1500));
    let call = last(&c.proxy.calls(), "ListBuckets");
    assert_eq!(
        (call.status, call.fault.as_deref()),
        (Some(200), Some("delay"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_header_reaches_the_sdk() {
    let c = clients().await;
    let b = bucket(&c).await;
    let via = s3(&c.via);
    via.put_object()
        .bucket(&b)
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    c.proxy
        .add(Rule::on("HeadObject").set_header("x-amz-server-side-encryption", "aws:kms"));
    let head = via.head_object().bucket(&b).key("k").send().await.unwrap();
    assert_eq!(
        head.server_side_encryption(),
        Some(&aws_sdk_s3::types::ServerSideEncryption::AwsKms)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_named_by_service_and_action() {
    let c = clients().await;
    let b = unique("faults-names");
    let via = s3(&c.via);
    via.create_bucket().bucket(&b).send().await.unwrap();
    via.head_bucket().bucket(&b).send().await.unwrap();
    via.put_object()
        .bucket(&b)
        .key("dir/a b.txt")
        .body(ByteStream::from_static(b"a"))
        .send()
        .await
        .unwrap();
    via.copy_object()
        .bucket(&b)
        .key("dir/copy.txt")
        .copy_source(format!("{b}/dir/a%20b.txt"))
        .send()
        .await
        .unwrap();
    via.head_object()
        .bucket(&b)
        .key("dir/a b.txt")
        .send()
        .await
        .unwrap();
    via.get_object()
        .bucket(&b)
        .key("dir/a b.txt")
        .send()
        .await
        .unwrap();
    via.list_objects_v2().bucket(&b).send().await.unwrap();
    let up = via
        .create_multipart_upload()
        .bucket(&b)
        .key("mp")
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap();
    let part = via
        .upload_part()
        .bucket(&b)
        .key("mp")
        .upload_id(id)
        .part_number(1)
        .body(ByteStream::from_static(b"part"))
        .send()
        .await
        .unwrap();
    via.complete_multipart_upload()
        .bucket(&b)
        .key("mp")
        .upload_id(id)
        .multipart_upload(
            aws_sdk_s3::types::CompletedMultipartUpload::builder()
                .parts(
                    aws_sdk_s3::types::CompletedPart::builder()
                        .part_number(1)
                        .e_tag(part.e_tag().unwrap())
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    via.delete_object()
        .bucket(&b)
        .key("mp")
        .send()
        .await
        .unwrap();
    aws_sdk_ec2::Client::new(&c.via)
        .describe_instances()
        .send()
        .await
        .unwrap();
    aws_sdk_ssm::Client::new(&c.via)
        .describe_instance_information()
        .send()
        .await
        .unwrap();

    let seen: Vec<(String, String, Option<u16>)> = c
        .proxy
        .calls()
        .into_iter()
        .map(|c| (c.service, c.action, c.status))
        .collect();
    let want = [
        ("s3", "CreateBucket"),
        ("s3", "HeadBucket"),
        ("s3", "PutObject"),
        ("s3", "CopyObject"),
        ("s3", "HeadObject"),
        ("s3", "GetObject"),
        ("s3", "ListObjectsV2"),
        ("s3", "CreateMultipartUpload"),
        ("s3", "UploadPart"),
        ("s3", "CompleteMultipartUpload"),
        ("s3", "DeleteObject"),
        ("ec2", "DescribeInstances"),
        ("ssm", "DescribeInstanceInformation"),
    ];
    let names: Vec<(&str, &str)> = seen
        .iter()
        .map(|(s, a, _)| (s.as_str(), a.as_str()))
        .collect();
    assert_eq!(names, want);
    assert!(
        seen.iter().all(|(_, _, st)| st.is_some_and(|s| s < 300)),
        "{seen:?}"
    );
}

/// Peak resident memory of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_through() {
    let c = clients().await;
    let b = bucket(&c).await;
    let via = s3(&c.via);
    // Warm the proxy up, then measure how much more memory a 64 MiB round trip takes.
    via.list_buckets().send().await.unwrap();
    let before = peak_rss_kib(c.proxy.pid());
    let data: Vec<u8> = (0..64 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    via.put_object()
        .bucket(&b)
        .key("big")
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    let got = via.get_object().bucket(&b).key("big").send().await.unwrap();
    let got = got.body.collect().await.unwrap().into_bytes();
    assert!(
        got.len() == data.len() && got[..] == data[..],
        "round trip changed the data"
    );
    let grew_mib = (peak_rss_kib(c.proxy.pid()) - before) / 1024;
    assert!(grew_mib < 32, "mitmdump buffered the body: +{grew_mib} MiB");
    s3(&c.direct)
        .delete_object()
        .bucket(&b)
        .key("big")
        .send()
        .await
        .unwrap();
}

/// Run by `proxy_stops_when_its_test_process_dies` in a child process: start a proxy, print
/// mitmdump's pid, and die without running any destructor.
#[test]
#[ignore = "helper, run by proxy_stops_when_its_test_process_dies"]
fn orphan_helper() {
    if std::env::var_os("RTB_TESTKIT_ORPHAN_HELPER").is_none() {
        return;
    }
    let proxy = FaultProxy::start();
    println!("mitmdump-pid={}", proxy.pid());
    std::process::abort();
}

#[test]
fn proxy_stops_when_its_test_process_dies() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "orphan_helper", "--nocapture"])
        .env("RTB_TESTKIT_ORPHAN_HELPER", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let pid: u32 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("mitmdump-pid="))
        .unwrap_or_else(|| {
            panic!(
                "helper printed no pid: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .trim()
        .parse()
        .unwrap();
    let started = Instant::now();
    // Gone, or a zombie waiting for init to reap it.
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    };
    while alive() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!alive(), "mitmdump {pid} outlived its test process");
}

/// One raw HTTP/1.1 call through the proxy, signed (in form only) for `service`: for protocols
/// the workspace has no SDK for. Returns the status, the headers (lower-case names) and the body.
fn raw_call(
    proxy: &FaultProxy,
    method: &str,
    path: &str,
    service: &str,
    extra_headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    use std::io::{Read, Write};
    let addr = proxy.endpoint().trim_start_matches("http://").to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/{service}/aws4_request, \
         SignedHeaders=host, Signature=00\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in extra_headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status.parse().unwrap(), headers, body.to_string())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_paths_are_named_and_fail_in_rest_json() {
    let proxy = FaultProxy::start();
    proxy.add(Rule::on("SubmitJob").service("batch").throttle());
    proxy.add(
        Rule::on("DescribeJobs")
            .error(500, "ServerException")
            .message("boom"),
    );
    let json = [("Content-Type", "application/json")];

    let (status, headers, body) = raw_call(&proxy, "POST", "/v1/submitjob", "batch", &json, "{}");
    assert_eq!(status, 400);
    assert_eq!(
        header(&headers, "x-amzn-errortype"),
        Some("ThrottlingException")
    );
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["__type"], "ThrottlingException");

    let (status, headers, body) = raw_call(
        &proxy,
        "POST",
        "/v1/describejobs",
        "batch",
        &json,
        r#"{"jobs":[]}"#,
    );
    assert_eq!(status, 500);
    assert_eq!(
        header(&headers, "x-amzn-errortype"),
        Some("ServerException")
    );
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["message"], "boom");

    // Not faulted: forwarded to MiniStack, which answers it.
    let (status, _, _) = raw_call(
        &proxy,
        "POST",
        "/v1/describejobqueues",
        "batch",
        &json,
        "{}",
    );
    assert_eq!(status, 200);

    let names: Vec<_> = proxy
        .calls()
        .into_iter()
        .map(|c| (c.service, c.action, c.fault))
        .collect();
    let s = |x: &str| x.to_string();
    assert_eq!(
        names,
        [
            (s("batch"), s("SubmitJob"), Some(s("throttle"))),
            (s("batch"), s("DescribeJobs"), Some(s("error"))),
            (s("batch"), s("DescribeJobQueues"), None),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_protocol_errors_carry_their_code() {
    let proxy = FaultProxy::start();
    proxy.add(Rule::on("GetUser").throttle());
    proxy.add(Rule::on("GetCallerIdentity").error(403, "AccessDenied"));
    proxy.add(Rule::on("DescribeRegions").error(400, "UnauthorizedOperation"));
    let form = [(
        "Content-Type",
        "application/x-www-form-urlencoded; charset=utf-8",
    )];

    // IAM and STS: <ErrorResponse>, the action from the form body.
    let (status, _, body) = raw_call(
        &proxy,
        "POST",
        "/",
        "iam",
        &form,
        "Action=GetUser&Version=2010-05-08",
    );
    assert_eq!(status, 400);
    assert!(body.contains("<ErrorResponse>"), "{body}");
    assert!(body.contains("<Code>Throttling</Code>"), "{body}");
    let (status, _, body) = raw_call(
        &proxy,
        "POST",
        "/",
        "sts",
        &form,
        "Action=GetCallerIdentity&Version=2011-06-15",
    );
    assert_eq!(status, 403);
    assert!(
        body.contains("<Type>Sender</Type><Code>AccessDenied</Code>"),
        "{body}"
    );
    // EC2, the action in the query string: <Response><Errors>.
    let (status, _, body) = raw_call(
        &proxy,
        "GET",
        "/?Action=DescribeRegions&Version=2016-11-15",
        "ec2",
        &[],
        "",
    );
    assert_eq!(status, 400);
    assert!(
        body.contains("<Response><Errors><Error><Code>UnauthorizedOperation</Code>"),
        "{body}"
    );

    let actions: Vec<_> = proxy.calls().into_iter().map(|c| c.action).collect();
    assert_eq!(actions, ["GetUser", "GetCallerIdentity", "DescribeRegions"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_head_errors_have_no_body_and_bad_rules_are_refused() {
    let c = clients().await;
    let b = bucket(&c).await;
    c.proxy
        .add(Rule::on("HeadObject").error(403, "AccessDenied"));
    let err = s3(&c.via)
        .head_object()
        .bucket(&b)
        .key("k")
        .send()
        .await
        .unwrap_err();
    let raw = err.raw_response().expect("an answer");
    assert_eq!(raw.status().as_u16(), 403);
    assert!(raw.body().bytes().unwrap_or_default().is_empty());

    // The control API checks rules (the builder cannot make a bad one: send one by hand).
    let (status, _, body) = raw_call(
        &c.proxy,
        "POST",
        "/_faults/rules",
        "",
        &[],
        r#"[{"action": "PutObject", "fault": {"kind": "explode"}}]"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("rule.fault.kind"), "{body}");
    // ... and control calls are not in the call log.
    assert!(c
        .proxy
        .calls()
        .iter()
        .all(|c| !c.path.starts_with("/_faults/")));
}
