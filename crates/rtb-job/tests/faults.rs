//! The runner under the faults a lab meets, through the fault proxy (rtb-testkit) in front of
//! MiniStack: refused and failing PUTs, throttling bursts, KMS-encrypted inputs, a refused log
//! prefix. Every byte that can arrive does; what cannot is listed.

mod common;

use std::time::Duration;

use common::{get, list, random_bytes, read_tree, unique_bucket, write_tree, Lines};
use rtb_job::transfer::{CopyOptions, Transfers};
use rtb_model::S3Url;
use rtb_testkit::{FaultProxy, Rule};

fn flags(value: &str) -> CopyOptions {
    CopyOptions::parse("TEST_FLAGS", value).expect("test flags parse")
}

fn url(bucket: &str, key: &str) -> S3Url {
    S3Url::new(bucket, key).expect("valid test URL")
}

fn no_log(_: String) {}

/// A proxy in front of the emulator, and the runner's S3 client through it.
async fn proxied() -> (FaultProxy, aws_sdk_s3::Client) {
    let _ = common::client().await; // the test environment
    let proxy = FaultProxy::start();
    let client = common::runner_client_via(&proxy.endpoint()).await;
    (proxy, client)
}

fn calls_to(proxy: &FaultProxy, action: &str, path: &str) -> usize {
    proxy
        .calls()
        .iter()
        .filter(|c| c.action == action && c.path.contains(path))
        .count()
}

/// Inputs encrypted with SSE-KMS have a 32-hex-digit ETag that is not their MD5 (the proxy
/// makes MiniStack's ETags look like that, as real S3's are). They download and verify against
/// S3's CRC32 where they have one, by size where not, and the log says so once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_encrypted_inputs_download_and_are_verified_by_checksum() {
    use aws_sdk_s3::types::ServerSideEncryption;
    let direct = common::client().await;
    let bucket = unique_bucket(&direct, "kms").await;
    // The runner's own client stores a CRC32 with each object; the plain one stores none.
    let plain = common::client_via(&common::endpoint()).await;
    let objects = [
        ("small/with-crc.bin", random_bytes(300_000, 31), &direct),
        ("small/no-checksum.bin", random_bytes(70_000, 32), &plain),
        ("large/twenty.bin", random_bytes(20 << 20, 33), &direct),
    ];
    for (key, bytes, client) in &objects {
        client
            .put_object()
            .bucket(&bucket)
            .key(*key)
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id("alias/rtb-test")
            .body(bytes.clone().into())
            .send()
            .await
            .unwrap();
    }
    let (proxy, client) = proxied().await;
    let t = Transfers::new(client);

    // Small objects: one GET each; the listing's and the GET's ETags are not MD5s.
    proxy.add(Rule::on("ListObjectsV2").rewrite_etag());
    proxy.add(Rule::on("GetObject").rewrite_etag());
    let dest = tempfile::tempdir().unwrap();
    let lines = Lines::default();
    let n = t
        .download(
            &url(&bucket, "small"),
            dest.path(),
            &flags("--recursive"),
            &lines.sink(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n.files, 2);
    assert_eq!(
        std::fs::read(dest.path().join("with-crc.bin")).unwrap(),
        objects[0].1
    );
    assert_eq!(
        std::fs::read(dest.path().join("no-checksum.bin")).unwrap(),
        objects[1].1
    );
    let logged = lines.take();
    let said: Vec<&String> = logged.iter().filter(|l| l.contains("SSE-KMS")).collect();
    assert_eq!(said.len(), 1, "once per copy: {logged:#?}");
    assert!(
        said[0].contains("2 objects are encrypted")
            && said[0].contains("1 verified with S3's checksum (CRC32)")
            && said[0].contains("1 by size only"),
        "{said:?}"
    );

    // A large object: ranged GETs (their If-Match needs the listing's real ETag, which the
    // proxy cannot translate back), then S3's full-object checksum from a HEAD.
    proxy.clear();
    proxy.add(Rule::on("GetObject").rewrite_etag());
    proxy.add(Rule::on("HeadObject").rewrite_etag());
    let dest = tempfile::tempdir().unwrap();
    t.download(
        &url(&bucket, "large"),
        dest.path(),
        &flags("--recursive"),
        &lines.sink(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(std::fs::read(dest.path().join("twenty.bin")).unwrap() == objects[2].1);
    assert!(lines
        .take()
        .iter()
        .any(|l| l.contains("1 object is encrypted") && l.contains("(CRC32)")),);
    assert!(calls_to(&proxy, "HeadObject", "twenty.bin") >= 1);

    // The checksum really is checked: bytes damaged on the way are caught (with the SDK's own
    // response validation off, only the engine stands in the way).
    proxy.clear();
    proxy.add(Rule::on("GetObject").corrupt_body(0x00, 0x01));
    let damaged = Transfers::new(common::client_via(&proxy.endpoint()).await);
    let dest = tempfile::tempdir().unwrap();
    let err = damaged
        .download(
            &url(&bucket, "small/with-crc.bin"),
            dest.path(),
            &flags(""),
            &no_log,
        )
        .await
        .unwrap_err();
    // The SDK checks the CRC32 too once checksum mode is on, and may be the first to see it.
    let said = err.to_string();
    assert!(
        said.contains("its CRC32 is") || said.contains("checksum mismatch"),
        "{said}"
    );
    assert!(read_tree(dest.path()).is_empty());
    common::remove_bucket(&direct, &bucket).await;
}

/// Throttling bursts (S3's 503 SlowDown) on every kind of call, up and down: more than the
/// SDK's own retries absorb, so some files go again in a later round. Every byte arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_bursts_lose_no_bytes() {
    let direct = common::client().await;
    let bucket = unique_bucket(&direct, "throttle").await;
    let (proxy, client) = proxied().await;
    let t = Transfers::new(client);
    let src = tempfile::tempdir().unwrap();
    let mut files: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| {
            (
                format!("f{i:02}.bin"),
                random_bytes(10_000 + i * 97, i as u64),
            )
        })
        .collect();
    files.push(("big.bin".into(), random_bytes(20 << 20, 99)));
    let refs: Vec<(&str, Vec<u8>)> = files.iter().map(|(p, b)| (p.as_str(), b.clone())).collect();
    write_tree(src.path(), &refs);
    let total: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();

    // Bursts longer than the SDK's three attempts: the small files share 90 refusals, each
    // step of the multipart upload gets a few more than three.
    proxy.add(Rule::on("PutObject").times(90).throttle());
    proxy.add(Rule::on("CreateMultipartUpload").times(4).throttle());
    proxy.add(Rule::on("UploadPart").times(12).throttle());
    proxy.add(Rule::on("CompleteMultipartUpload").times(4).throttle());
    let lines = Lines::default();
    let up = t
        .upload(
            src.path(),
            &url(&bucket, "t"),
            &flags("--recursive --quiet"),
            &lines.sink(),
        )
        .await
        .unwrap();
    assert!(up.skipped.is_empty(), "{:?}", up.skipped);
    assert_eq!((up.copied.files, up.copied.bytes), (41, total));
    assert!(proxy.calls().iter().filter(|c| c.fault.is_some()).count() >= 90);
    for (p, b) in &files {
        assert!(get(&direct, &bucket, &format!("t/{p}")).await == *b, "{p}");
    }

    proxy.clear();
    proxy.clear_calls();
    // The listing once beyond the SDK's three attempts; the objects in a long burst.
    proxy.add(Rule::on("ListObjectsV2").times(4).throttle());
    proxy.add(Rule::on("GetObject").times(90).throttle());
    let dest = tempfile::tempdir().unwrap();
    let down = t
        .download(
            &url(&bucket, "t"),
            dest.path(),
            &flags("--recursive --quiet"),
            &lines.sink(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(down, up.copied);
    let mut want = files;
    want.sort();
    assert!(read_tree(dest.path()) == want);
    common::remove_bucket(&direct, &bucket).await;
}

/// A PUT refused for one key (AccessDenied: not retried), and one failing with 500s beyond
/// every retry: the job uploads everything else, including a file whose first PUTs failed,
/// lists the two in `skipped` with their reasons, and exits 6.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_puts_skip_only_their_files_and_the_job_exits_6() {
    let direct = common::client().await;
    let bucket = unique_bucket(&direct, "putfail").await;
    let (proxy, _client) = proxied().await;
    proxy.add(
        Rule::on("PutObject")
            .path_contains("out/b.png")
            .error(403, "AccessDenied"),
    );
    proxy.add(
        Rule::on("PutObject")
            .path_contains("out/d.png")
            .error(500, "InternalError"),
    );
    // Four failures: more than the SDK's three attempts, fewer than the next round's.
    proxy.add(
        Rule::on("PutObject")
            .path_contains("out/c.png")
            .times(4)
            .error(500, "InternalError"),
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    write_tree(
        &out,
        &[
            ("a.png", b"a".to_vec()),
            ("b.png", b"b".to_vec()),
            ("c.png", b"c".to_vec()),
            ("d.png", b"d".to_vec()),
        ],
    );
    let run = common::runner(&proxy.endpoint(), dir.path())
        .env("COMMAND", "disp('rendered')")
        .env("OUTPUT_BUCKET", format!("s3://{bucket}/out"))
        .env("RTB_JOB_ID", "j-putfail")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(
        run.status.code(),
        Some(rtb_model::exit::runner::OUTPUT_INCOMPLETE),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(get(&direct, &bucket, "out/a.png").await, b"a");
    assert_eq!(get(&direct, &bucket, "out/c.png").await, b"c");
    let keys: Vec<String> = list(&direct, &bucket, "out/")
        .await
        .into_iter()
        .map(|k| k.0)
        .collect();
    assert!(
        !keys.iter().any(|k| k == "out/b.png" || k == "out/d.png"),
        "{keys:?}"
    );
    // Refused for good: one PUT, no retry. Failing transiently: three rounds of three.
    assert_eq!(calls_to(&proxy, "PutObject", "out/b.png"), 1);
    assert_eq!(calls_to(&proxy, "PutObject", "out/d.png"), 9);
    let r: rtb_model::JobResult =
        serde_json::from_slice(&get(&direct, &bucket, "out/_rtb-job/j-putfail/result.json").await)
            .unwrap();
    assert_eq!(r.outcome, rtb_model::Outcome::Incomplete);
    assert_eq!(r.output.files, 4, "a, c, matlab.log, the workspace: {r:?}");
    let skipped: Vec<(&str, &str)> = r
        .skipped
        .iter()
        .map(|s| (s.path.rsplit('/').next().unwrap_or(""), s.reason.as_str()))
        .collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(
        skipped[0].0 == "b.png" && skipped[0].1.starts_with("PutObject failed: AccessDenied"),
        "{skipped:?}"
    );
    assert!(
        skipped[1].0 == "d.png" && skipped[1].1.starts_with("PutObject failed: InternalError"),
        "{skipped:?}"
    );
    assert!(
        stdout.contains("upload: skipped ") && stdout.contains("trying again in"),
        "{stdout}"
    );
    common::remove_bucket(&direct, &bucket).await;
}

/// The result record is the client's proof that the outputs were saved: a PUT of it that
/// fails beyond the SDK's retries is tried again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_record_is_retried() {
    let direct = common::client().await;
    let bucket = unique_bucket(&direct, "record").await;
    let (proxy, _client) = proxied().await;
    proxy.add(
        Rule::on("PutObject")
            .path_contains("result.json")
            .times(4)
            .error(503, "ServiceUnavailable"),
    );
    let dir = tempfile::tempdir().unwrap();
    let run = common::runner(&proxy.endpoint(), dir.path())
        .env("COMMAND", "disp(1)")
        .env("OUTPUT_BUCKET", format!("s3://{bucket}/o"))
        .env("RTB_JOB_ID", "j-record")
        .output()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let r: rtb_model::JobResult =
        serde_json::from_slice(&get(&direct, &bucket, "o/_rtb-job/j-record/result.json").await)
            .unwrap();
    assert_eq!(r.outcome, rtb_model::Outcome::Succeeded);
    assert!(calls_to(&proxy, "PutObject", "result.json") >= 5);
    common::remove_bucket(&direct, &bucket).await;
}

/// Log chunks refused (AccessDenied on the records prefix) while a flood of lines comes: the
/// sink backs off instead of re-sending its buffer on every line, holds a bounded amount with
/// one marker line for what it dropped, and writes again once S3 accepts the chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_log_chunks_back_off_hold_a_bounded_amount_and_resume() {
    use rtb_job::logsink::{LogSink, HOLD_MAX_BYTES};
    let direct = common::client().await;
    let bucket = unique_bucket(&direct, "logsink").await;
    let (proxy, client) = proxied().await;
    let records = rtb_model::JobRecords::at(url(&bucket, "rec/"));
    proxy.add(
        Rule::on("PutObject")
            .path_contains("rec/log/")
            .error(403, "AccessDenied"),
    );
    let dir = tempfile::tempdir().unwrap();
    let sink = LogSink::start(
        dir.path().join("matlab.log"),
        Some((client, records.clone())),
        Duration::from_secs(1),
    );
    let log = sink.log();
    // 24 MiB of lines, half again the cap, as fast as they come.
    let line = "z".repeat(1023);
    let sent = 24 * 1024;
    for i in 0..sent {
        log.interpreter(format!("{i:06} {line}"));
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let tries = calls_to(&proxy, "PutObject", "rec/log/");
    // Backing off 1, 2, 4 s: a handful of tries in those seconds, not one per line.
    assert!((1..=6).contains(&tries), "{tries} chunk PUTs while refused");

    proxy.clear();
    log.interpreter("after the refusal");
    let start = std::time::Instant::now();
    while list(&direct, &bucket, "rec/log/").await.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "chunks never resumed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stats = sink.close().await;
    let mut text = String::new();
    let mut held = 0;
    for (key, size) in list(&direct, &bucket, "rec/log/").await {
        held += size;
        text.push_str(&String::from_utf8_lossy(&get(&direct, &bucket, &key).await));
    }
    assert!(
        held as usize <= HOLD_MAX_BYTES + (1 << 20),
        "{held} bytes held"
    );
    let markers: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("dropped here"))
        .collect();
    // One marker where lines were dropped (two when a refused chunk went back in front of a
    // later drop), each saying how many.
    assert!((1..=2).contains(&markers.len()), "{markers:?}");
    assert!(
        markers.iter().all(|m| m.contains("matlab.log")),
        "{markers:?}"
    );
    let dropped: u64 = markers
        .iter()
        .filter_map(|m| m.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    assert!(
        dropped > 0 && dropped == stats.dropped,
        "{markers:?} {stats:?}"
    );
    assert_eq!(stats.lines + stats.dropped, sent + 1);
    // The newest lines survive, in order, and the line after the refusal too.
    let last = format!("{:06} ", sent - 1);
    assert!(text.contains(&last) && text.ends_with("after the refusal\n"));
    // matlab.log has every line.
    let file = std::fs::read_to_string(dir.path().join("matlab.log")).unwrap();
    assert_eq!(file.lines().count() as u64, sent + 1);
    common::remove_bucket(&direct, &bucket).await;
}

/// A fresh instance may meet S3 saying "later" (throttling, a 5xx, credentials not served yet)
/// for some seconds: the runner's bucket check waits that out instead of refusing its settings
/// (a refused job fails its attempt); a missing bucket is still refused at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bucket_check_waits_out_a_slow_start_but_not_a_missing_bucket() {
    let direct = common::client().await;
    let bucket = unique_bucket(&direct, "slowstart").await;
    let (proxy, client) = proxied().await;

    // Six 503s: more than the SDK's own three attempts of one call.
    proxy.add(
        Rule::on("HeadBucket")
            .error(503, "ServiceUnavailable")
            .times(6),
    );
    let named = [("OUTPUT_BUCKET", bucket.as_str())];
    rtb_job::job::check_reachable(&client, &named, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("a slow start is waited out: {e}"));
    assert!(
        calls_to(&proxy, "HeadBucket", &bucket) >= 7,
        "asked again after the answers that said later: {:?}",
        proxy.calls()
    );

    // A bucket that does not exist: refused at once, without waiting out the patience.
    let started = std::time::Instant::now();
    let missing = format!("{bucket}-missing");
    let e = rtb_job::job::check_reachable(
        &client,
        &[("INPUT_BUCKET", missing.as_str())],
        Duration::from_secs(30),
    )
    .await
    .expect_err("a missing bucket is refused");
    assert!(
        e.contains("INPUT_BUCKET") && e.contains("does not exist"),
        "{e}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // Answers that keep saying later end at the patience, with the cause.
    proxy.add(Rule::on("HeadBucket").error(503, "ServiceUnavailable"));
    let started = std::time::Instant::now();
    let e = rtb_job::job::check_reachable(&client, &named, Duration::from_secs(3))
        .await
        .expect_err("an S3 that never answers well is refused at the patience");
    assert!(e.contains("is not reachable (S3 answered HTTP 503)"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// The runner as a container's PID 1, removed however the test ends.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &self.0])
            .output();
    }
}

fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A stop that comes while the runner still waits for its buckets (a slow start: S3 says
/// "later") ends the container at once, as `docker stop` or AWS Batch mean it to. As PID 1
/// the runner ignored SIGTERM until the job's own handler was set, so the stop waited out its
/// timeout and killed it.
#[tokio::test]
async fn a_stop_while_the_buckets_are_checked_ends_the_container_at_once() {
    let direct = common::client().await;
    let bucket = unique_bucket(&direct, "stopearly").await;
    let (proxy, _client) = proxied().await;
    proxy.add(
        Rule::on("HeadBucket")
            .error(503, "ServiceUnavailable")
            .times(10_000),
    );
    let image = std::env::var("RTB_WORLD_SUPPORT_IMAGE")
        .unwrap_or_else(|_| "rtb-world/support:test".to_string());
    let name = format!("rtb-stopearly-{}", std::process::id());
    let env = [
        format!("AWS_ENDPOINT_URL={}", proxy.endpoint()),
        "AWS_ACCESS_KEY_ID=test".to_string(),
        "AWS_SECRET_ACCESS_KEY=test".to_string(),
        "AWS_REGION=us-east-1".to_string(),
        "AWS_EC2_METADATA_DISABLED=true".to_string(),
        format!("OUTPUT_BUCKET=s3://{bucket}/out"),
        "RTB_JOB_ID=stopearly".to_string(),
        "MATLAB_EXECUTABLE=octave-cli".to_string(),
    ];
    let mut args = vec!["run", "-d", "--name", &name, "--network", "host"];
    for e in &env {
        args.extend(["-e", e.as_str()]);
    }
    args.push(&image);
    docker(&args);
    let container = Container(name.clone());

    // The runner is in its check once S3 has told it "later".
    let asked = std::time::Instant::now();
    while calls_to(&proxy, "HeadBucket", &bucket) < 2 {
        assert!(
            asked.elapsed() < Duration::from_secs(60),
            "the runner never checked its bucket: {}",
            docker(&["logs", &container.0])
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stopping = std::time::Instant::now();
    docker(&["stop", "-t", "20", &container.0]);
    let took = stopping.elapsed();
    let code = docker(&["inspect", "--format", "{{.State.ExitCode}}", &container.0]);
    let logs = std::process::Command::new("docker")
        .args(["logs", &container.0])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .unwrap_or_default();
    assert_eq!(code, "143", "ended by SIGTERM, not killed: {logs}");
    assert!(
        took < Duration::from_secs(10),
        "the stop took {took:?}: {logs}"
    );
    assert!(
        logs.contains("stopped by signal 15 before the job started"),
        "{logs}"
    );
}
