//! Checkpoints, the spot notice and restore, end to end: the real `rtb-job` binary, real GNU
//! Octave, MiniStack's S3, and the fault proxy (call counts; an IMDS stand-in for the notice).
//! "The instance is lost" is the runner and its interpreter killed with SIGKILL: nothing of
//! theirs runs after it, as on a terminated instance.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::{client, get, list, unique_bucket};
use rtb_model::checkpoint::{Interrupted, Manifest};
use rtb_model::JobResult;
use rtb_testkit::{FaultProxy, Rule};

/// One runner process, its folders and everything it printed.
struct Runner {
    dir: tempfile::TempDir,
    cmd: Command,
}

struct Running {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Runner {
    fn new(command: &str) -> Runner {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rtb-job"));
        for var in rtb_model::contract::ALL {
            cmd.env_remove(var.name);
        }
        cmd.env_remove("AWS_BATCH_JOB_ATTEMPT")
            .env("MATLAB_EXECUTABLE", "octave-cli")
            .env("COMMAND", command)
            .env("INPUT_SCRATCH", dir.path().join("in"))
            .env("OUTPUT_SCRATCH", dir.path().join("out"))
            .env("MOUNT_SCRATCH", dir.path().join("mnt"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null());
        Runner { dir, cmd }
    }

    fn env(mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> Runner {
        self.cmd.env(k, v);
        self
    }

    fn env_remove(mut self, k: &str) -> Runner {
        self.cmd.env_remove(k);
        self
    }

    fn output(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    fn start(&mut self) -> Running {
        let mut child = self
            .cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rtb-job");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        let out: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().expect("stdout"));
        let err: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().expect("stderr"));
        for stream in [out, err] {
            let lines = lines.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().expect("lines").push(line);
                }
            }));
        }
        Running {
            child,
            lines,
            readers,
        }
    }
}

impl Running {
    fn text(&self) -> String {
        self.lines.lock().expect("lines").join("\n")
    }

    /// Wait until the job printed a line containing `what`, or panic after `limit`.
    fn wait_for_line(&mut self, what: &str, limit: Duration) {
        let t = Instant::now();
        while !self.text().contains(what) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "rtb-job ended ({status}) before printing {what:?}:\n{}",
                    self.text()
                );
            }
            assert!(
                t.elapsed() < limit,
                "no {what:?} within {limit:?}:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait for the job to end by itself: its exit code and everything it printed.
    fn finish(mut self) -> (i32, String) {
        let status = self.child.wait().expect("wait for rtb-job");
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        (status.code().unwrap_or(-1), self.text())
    }

    /// The instance is lost: SIGKILL to the interpreter's process group and to the runner.
    fn kill_hard(mut self) -> String {
        let pid = self.child.id();
        for child in children(pid) {
            // SAFETY: kill(2) on a process group the runner made for its interpreter.
            unsafe {
                libc::kill(-(child as i32), libc::SIGKILL);
                libc::kill(child as i32, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        self.text()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            for child in children(self.child.id()) {
                // SAFETY: as in kill_hard.
                unsafe {
                    libc::kill(-(child as i32), libc::SIGKILL);
                }
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The runner's child processes (any of its threads may have spawned them).
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(
                    text.split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
    }
    out
}

async fn manifest(bucket: &str, key: &str) -> Option<Manifest> {
    let c = client().await;
    let out = c.get_object().bucket(bucket).key(key).send().await.ok()?;
    let bytes = out.body.collect().await.ok()?.to_vec();
    Some(serde_json::from_slice(&bytes).expect("manifest parses"))
}

/// Wait until the manifest at `key` satisfies `done`; panic after `limit`.
async fn wait_for_manifest(
    bucket: &str,
    key: &str,
    limit: Duration,
    what: &str,
    done: impl Fn(&Manifest) -> bool,
) -> Manifest {
    let t = Instant::now();
    loop {
        if let Some(m) = manifest(bucket, key).await {
            if done(&m) {
                return m;
            }
        }
        assert!(
            t.elapsed() < limit,
            "no checkpoint with {what} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn names(m: &Manifest) -> Vec<String> {
    m.files.iter().map(|e| e.path.clone()).collect()
}

async fn result_of(bucket: &str, key: &str) -> (JobResult, serde_json::Value) {
    let bytes = get(&client().await, bucket, key).await;
    (
        serde_json::from_slice(&bytes).expect("result record parses"),
        serde_json::from_slice(&bytes).expect("result record is JSON"),
    )
}

/// Every object a manifest names is there, in the version (ETag) and size it says.
async fn check_entries(m: &Manifest) {
    let c = client().await;
    for e in &m.files {
        let url: rtb_model::S3Url = e.url.parse().expect("entry URL");
        let head = c
            .head_object()
            .bucket(url.bucket())
            .key(url.key())
            .send()
            .await
            .unwrap_or_else(|err| panic!("{}: {err:?}", e.url));
        assert_eq!(head.e_tag(), Some(e.etag.as_str()), "{}", e.path);
        assert_eq!(head.content_length(), Some(e.size as i64), "{}", e.path);
    }
}

/// Octave code that writes frames `from..=to` into OUTPUT_SCRATCH/frames, each after a
/// pause, skipping those whose file exists: the idiom a resumed job uses.
fn frames_code(from: u32, to: u32, pause: f64, then_sleep: f64) -> String {
    format!(
        "d = fullfile(getenv('OUTPUT_SCRATCH'), 'frames'); if ~exist(d, 'dir'), mkdir(d); end; \
         printf('attempt=%s resumed_from=%s\\n', getenv('RTB_ATTEMPT'), getenv('RTB_RESUMED_FROM')); \
         for k = {from}:{to}, f = fullfile(d, sprintf('f%02d.txt', k)); \
           if exist(f, 'file'), printf('frame %d exists\\n', k); continue; end; \
           pause({pause}); fid = fopen(f, 'w'); fprintf(fid, 'frame %d by attempt %s\\n', k, getenv('RTB_ATTEMPT')); fclose(fid); \
           printf('frame %d rendered\\n', k); fflush(stdout); end; \
         disp('frames done'); fflush(stdout); pause({then_sleep});"
    )
}

/// Only what changed is sent again: a file written once is PUT once however many
/// checkpoints pass; a rewritten file twice; the runner's own log never; and the newest
/// manifest names each file's newest version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_send_only_what_changed() {
    let c = client().await;
    let bucket = unique_bucket(&c, "cp-incr").await;
    let proxy = FaultProxy::start();
    let code = "o = getenv('OUTPUT_SCRATCH'); \
        fid = fopen(fullfile(o, 'a.txt'), 'w'); fprintf(fid, 'first a'); fclose(fid); \
        fid = fopen(fullfile(o, 'b.txt'), 'w'); fprintf(fid, 'first b'); fclose(fid); \
        disp('written'); fflush(stdout); pause(5); \
        fid = fopen(fullfile(o, 'b.txt'), 'w'); fprintf(fid, 'second b, longer'); fclose(fid); \
        fid = fopen(fullfile(o, 'c.txt'), 'w'); fprintf(fid, 'c'); fclose(fid); \
        disp('rewritten'); fflush(stdout); pause(5);";
    let mut runner = Runner::new(code)
        .env("AWS_ENDPOINT_URL", proxy.endpoint())
        .env("OUTPUT_BUCKET", format!("s3://{bucket}/run"))
        .env("RTB_JOB_ID", "incr")
        .env("RTB_CHECKPOINT_EVERY", "1s");
    let (code, text) = runner.start().finish();
    assert_eq!(code, 0, "{text}");

    let puts = |name: &str| {
        proxy
            .calls()
            .iter()
            .filter(|c| {
                c.action == "PutObject" && c.path.contains(&format!("checkpoint/files/{name}"))
            })
            .count()
    };
    assert_eq!(puts("a.txt"), 1, "a.txt never changed:\n{text}");
    assert_eq!(puts("b.txt"), 2, "b.txt was rewritten once:\n{text}");
    assert_eq!(puts("c.txt"), 1, "{text}");
    assert_eq!(
        puts("matlab.log"),
        0,
        "the runner's own log is no checkpoint's"
    );
    let manifests = proxy
        .calls()
        .iter()
        .filter(|c| c.action == "PutObject" && c.path.contains("checkpoint/manifest.json"))
        .count();
    let m = manifest(&bucket, "run/_rtb-job/incr/checkpoint/manifest.json")
        .await
        .expect("a manifest");
    assert_eq!(names(&m), ["a.txt", "b.txt", "c.txt"]);
    assert_eq!(
        m.seq as usize, manifests,
        "one manifest per checkpoint that sent something"
    );
    assert!(
        (2..=4).contains(&manifests),
        "{manifests} manifests:\n{text}"
    );
    check_entries(&m).await;
    let b = get(&c, &bucket, "run/_rtb-job/incr/checkpoint/files/b.txt").await;
    assert_eq!(b, b"second b, longer");

    let (r, _) = result_of(&bucket, "run/_rtb-job/incr/result.json").await;
    let cp = r.checkpoints.expect("checkpoints in the result");
    assert_eq!((cp.files, cp.saved, cp.count), (4, 3, m.seq), "{cp:?}");
    assert!(r.resumed.is_none());
    // The outputs themselves went up as always.
    let out: Vec<String> = list(&c, &bucket, "run/")
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    for k in ["run/a.txt", "run/b.txt", "run/c.txt", "run/matlab.log"] {
        assert!(out.iter().any(|o| o == k), "{k} missing: {out:?}");
    }
    common::remove_bucket(&c, &bucket).await;
}

/// A file that is being written while checkpoints run is never recorded until it is
/// complete: every manifest seen while it grew either leaves it out or has all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_being_written_is_not_recorded_complete() {
    let c = client().await;
    let bucket = unique_bucket(&c, "cp-grow").await;
    // 120 appends of 1 KiB, 50 ms apart: 6 s of a file that is never still for long.
    let code = "o = getenv('OUTPUT_SCRATCH'); \
        fid = fopen(fullfile(o, 'still.txt'), 'w'); fprintf(fid, 'still'); fclose(fid); \
        fid = fopen(fullfile(o, 'grow.bin'), 'w'); \
        for k = 1:120, fwrite(fid, repmat(uint8(65), 1, 1024)); fflush(fid); pause(0.05); end; \
        fclose(fid); disp('grown'); fflush(stdout); pause(5);";
    let mut runner = Runner::new(code)
        .env("OUTPUT_BUCKET", format!("s3://{bucket}/run"))
        .env("RTB_JOB_ID", "grow")
        .env("RTB_CHECKPOINT_EVERY", "1s");
    let mut running = runner.start();
    let key = "run/_rtb-job/grow/checkpoint/manifest.json";
    let full = 120 * 1024;
    let mut seen = 0;
    while !running.text().contains("grown") {
        if let Ok(Some(_)) = running.child.try_wait() {
            break;
        }
        if let Some(m) = manifest(&bucket, key).await {
            seen += 1;
            for e in &m.files {
                if e.path == "grow.bin" {
                    assert_eq!(e.size, full, "grow.bin recorded while it was written");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, text) = running.finish();
    assert_eq!(code, 0, "{text}");
    assert!(seen > 0, "no checkpoint while the file grew:\n{text}");
    let m = manifest(&bucket, key).await.expect("a manifest");
    let grow = m.files.iter().find(|e| e.path == "grow.bin");
    assert_eq!(
        grow.map(|e| e.size),
        Some(full),
        "once still, it is saved:\n{text}"
    );
    check_entries(&m).await;
    common::remove_bucket(&c, &bucket).await;
}

/// Attempt 1 checkpoints frames and loses its instance; attempt 2, told attempt 1's records,
/// finds them in OUTPUT_SCRATCH before its command, with RTB_ATTEMPT and RTB_RESUMED_FROM, and
/// renders only the rest. Each frame is written once; result.json says what was restored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_restores_the_checkpoint_and_renders_only_the_rest() {
    let c = client().await;
    let bucket = unique_bucket(&c, "cp-resume").await;
    let mut first = Runner::new(&frames_code(1, 5, 0.3, 120.0))
        .env("OUTPUT_BUCKET", format!("s3://{bucket}/run"))
        .env("RTB_JOB_ID", "frames-1")
        .env("RTB_CHECKPOINT_EVERY", "1s");
    let mut running = first.start();
    running.wait_for_line("frames done", Duration::from_secs(60));
    let key1 = "run/_rtb-job/frames-1/checkpoint/manifest.json";
    let m1 = wait_for_manifest(&bucket, key1, Duration::from_secs(60), "5 frames", |m| {
        m.files.len() == 5
    })
    .await;
    let text1 = running.kill_hard();
    assert!(
        !text1.contains("ended:"),
        "attempt 1 was to be lost:\n{text1}"
    );
    let local1 = first.output().join("frames");
    let mtimes: Vec<SystemTime> = (1..=5)
        .map(|k| {
            std::fs::metadata(local1.join(format!("f{k:02}.txt")))
                .and_then(|m| m.modified())
                .expect("frame on attempt 1's disk")
        })
        .collect();

    let mut second = Runner::new(&frames_code(1, 8, 0.3, 0.0))
        .env("OUTPUT_BUCKET", format!("s3://{bucket}/run"))
        .env("RTB_JOB_ID", "frames-2")
        .env("RTB_CHECKPOINT_EVERY", "1s")
        .env("RTB_ATTEMPT", "2")
        .env(
            "RTB_RESUME_FROM",
            format!("s3://{bucket}/run/_rtb-job/frames-1/"),
        );
    let (code, text) = second.start().finish();
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("attempt=2 resumed_from=1"), "{text}");
    for k in 1..=5 {
        assert!(text.contains(&format!("frame {k} exists")), "{k}:\n{text}");
        assert!(
            !text.contains(&format!("frame {k} rendered")),
            "{k}:\n{text}"
        );
    }
    for k in 6..=8 {
        assert!(
            text.contains(&format!("frame {k} rendered")),
            "{k}:\n{text}"
        );
    }
    // The restored files have their saved times back.
    for (k, want) in (1..=5).zip(&mtimes) {
        let got = std::fs::metadata(second.output().join(format!("frames/f{k:02}.txt")))
            .and_then(|m| m.modified())
            .expect("restored frame");
        assert_eq!(got, *want, "frame {k}");
    }

    // Every frame in the output, once each, whole, by the attempt that rendered it.
    for k in 1..=8u32 {
        let body = get(&c, &bucket, &format!("run/frames/f{k:02}.txt")).await;
        let by = if k <= 5 { 1 } else { 2 };
        assert_eq!(
            String::from_utf8_lossy(&body),
            format!("frame {k} by attempt {by}\n")
        );
    }
    let (r, _) = result_of(&bucket, "run/_rtb-job/frames-2/result.json").await;
    let resumed = r.resumed.expect("resumed in result.json");
    assert_eq!(
        (resumed.from_attempt, resumed.files, resumed.missed),
        (1, 5, 0),
        "{resumed:?}"
    );
    assert_eq!(
        resumed.from,
        format!("s3://{bucket}/run/_rtb-job/frames-1/")
    );
    assert_eq!(r.attempt, Some(2));

    // Attempt 2's own checkpoint names the restored frames where attempt 1 saved them (so a
    // third attempt would find them), and its own new frames in its own folder.
    let m2 = manifest(&bucket, "run/_rtb-job/frames-2/checkpoint/manifest.json")
        .await
        .expect("attempt 2's manifest");
    assert_eq!(m2.attempt, 2);
    for e in &m2.files {
        let k: u32 = e.path[8..10].parse().expect("frame number");
        let from = if k <= 5 { "frames-1" } else { "frames-2" };
        assert!(
            e.url.contains(&format!("/_rtb-job/{from}/checkpoint/")),
            "{e:?}"
        );
    }
    assert!(m2.files.len() >= 5, "{m2:?}");
    assert_eq!(
        m1.files.iter().map(|e| &e.etag).collect::<Vec<_>>(),
        m2.files.iter().take(5).map(|e| &e.etag).collect::<Vec<_>>()
    );
    check_entries(&m2).await;
    common::remove_bucket(&c, &bucket).await;
}

/// `RTB_RESUME_FROM=previous` in a batch's attempt layout: attempt 3 looks beside its own
/// records, finds no checkpoint from attempt 2 (lost before its first), and restores
/// attempt 1's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previous_finds_the_newest_earlier_attempt_with_a_checkpoint() {
    let c = client().await;
    let bucket = unique_bucket(&c, "cp-prev").await;
    let records = |n: u32| format!("s3://{bucket}/run/_rtb-job/j/r1-a{n}/");
    let mut first = Runner::new(&frames_code(1, 3, 0.1, 120.0))
        .env("OUTPUT_BUCKET", format!("s3://{bucket}/run"))
        .env("LOG_BUCKET", records(1))
        .env("RTB_JOB_ID", "j")
        .env("RTB_ATTEMPT", "1")
        .env("RTB_CHECKPOINT_EVERY", "1s");
    let mut running = first.start();
    running.wait_for_line("frames done", Duration::from_secs(60));
    wait_for_manifest(
        &bucket,
        "run/_rtb-job/j/r1-a1/checkpoint/manifest.json",
        Duration::from_secs(60),
        "3 frames",
        |m| m.files.len() == 3,
    )
    .await;
    running.kill_hard();
    drop(first);

    let mut third = Runner::new(&frames_code(1, 4, 0.1, 0.0))
        .env("OUTPUT_BUCKET", format!("s3://{bucket}/run"))
        .env("LOG_BUCKET", records(3))
        .env("RTB_JOB_ID", "j")
        .env("RTB_ATTEMPT", "3")
        .env("RTB_RESUME_FROM", "previous");
    let (code, text) = third.start().finish();
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!("no checkpoint in {}", records(2))),
        "{text}"
    );
    assert!(text.contains("attempt=3 resumed_from=1"), "{text}");
    assert!(
        text.contains("frame 4 rendered") && !text.contains("frame 3 rendered"),
        "{text}"
    );
    let (r, _) = result_of(&bucket, "run/_rtb-job/j/r1-a3/result.json").await;
    assert_eq!(r.resumed.map(|x| (x.from_attempt, x.files)), Some((1, 3)));
    // Without RTB_CHECKPOINT_EVERY the retry restores but keeps no checkpoints of its own.
    assert!(r.checkpoints.is_none());
    common::remove_bucket(&c, &bucket).await;
}

/// A job without the new settings behaves as before: no checkpoint, no interruption record,
/// no resume, and a result record without any of their keys. Its command sees RTB_ATTEMPT=1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_without_checkpoints_is_unchanged() {
    let c = client().await;
    let bucket = unique_bucket(&c, "cp-none").await;
    let mut runner = Runner::new(&frames_code(1, 3, 0.1, 2.5))
        .env("OUTPUT_BUCKET", format!("s3://{bucket}/run"))
        .env("RTB_JOB_ID", "plain");
    let (code, text) = runner.start().finish();
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("attempt=1 resumed_from=\n"), "{text}");
    for word in ["checkpoint", "resume:", "spot", "metadata"] {
        assert!(!text.contains(word), "{word}:\n{text}");
    }
    let keys: Vec<String> = list(&c, &bucket, "run/_rtb-job/plain/")
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert!(
        keys.iter()
            .all(|k| k.contains("/log/") || k.ends_with("/result.json")),
        "{keys:?}"
    );
    let (_, json) = result_of(&bucket, "run/_rtb-job/plain/result.json").await;
    for key in ["attempt", "resumed", "checkpoints", "notice"] {
        assert!(json.get(key).is_none(), "{key}: {json}");
    }
    let out: Vec<String> = list(&c, &bucket, "run/frames/")
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(out.len(), 3, "{out:?}");
    common::remove_bucket(&c, &bucket).await;
}

/// The two-minute warning: IMDS (a stand-in through the fault proxy, in front of MiniStack's
/// IMDS) answers `spot/instance-action`. With no periodic checkpoints at all, the runner
/// checkpoints because of the notice, logs it, records the interruption, and lets the command
/// run on. Then the instance is lost: nothing written before the notice is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spot_notice_checkpoints_at_once_and_nothing_before_it_is_lost() {
    let c = client().await;
    let bucket = unique_bucket(&c, "cp-notice").await;
    let imds = FaultProxy::start();
    // Frames every 0.4 s for a long while: the command is still running when we pull the plug.
    let mut runner = Runner::new(&frames_code(1, 99, 0.4, 0.0))
        .env_remove("AWS_EC2_METADATA_DISABLED")
        .env(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            format!("{}/", imds.endpoint()),
        )
        .env("OUTPUT_BUCKET", format!("s3://{bucket}/run"))
        .env("RTB_JOB_ID", "notice")
        .env("RTB_WATCH_NOTICES", "on");
    let mut running = runner.start();
    running.wait_for_line("frame 6 rendered", Duration::from_secs(60));
    // IMDS answered "no notice" so far (404), polled by the runner.
    let polled = imds
        .calls()
        .iter()
        .filter(|c| c.path.ends_with("spot/instance-action") && c.status == Some(404))
        .count();
    assert!(polled >= 1, "{:?}", imds.calls());
    assert!(
        manifest(&bucket, "run/_rtb-job/notice/checkpoint/manifest.json")
            .await
            .is_none()
    );

    let before: Vec<(String, Vec<u8>)> = common::read_tree(&runner.output().join("frames"));
    let time =
        humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(120)).to_string();
    let body = format!("{{\"action\": \"terminate\", \"time\": \"{time}\"}}");
    imds.add(
        Rule::on("GetMetadata")
            .service("imds")
            .path_contains("spot/instance-action")
            .respond(200, &[("Content-Type", "text/plain")], &body),
    );
    let noticed = Instant::now();
    running.wait_for_line("spot reclaim notice at", Duration::from_secs(60));
    let key = "run/_rtb-job/notice/checkpoint/manifest.json";
    let m = wait_for_manifest(
        &bucket,
        key,
        Duration::from_secs(60),
        "the frames before the notice",
        |m| {
            before
                .iter()
                .all(|(rel, _)| m.files.iter().any(|e| e.path == format!("frames/{rel}")))
        },
    )
    .await;
    println!(
        "the notice's checkpoint held every earlier frame {:.1}s after IMDS answered",
        noticed.elapsed().as_secs_f64()
    );
    // The client's live log (the S3 chunks) shows the notice, about a second after it.
    let t = Instant::now();
    let chunks = loop {
        let mut chunks = String::new();
        for (k, _) in list(&c, &bucket, "run/_rtb-job/notice/log/").await {
            chunks.push_str(&String::from_utf8_lossy(&get(&c, &bucket, &k).await));
        }
        if chunks.contains("spot reclaim notice at") || t.elapsed() > Duration::from_secs(30) {
            break chunks;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The command runs on after the notice: two more frames than it had then.
    let said = running.text();
    let at_notice = said[..said
        .find("spot reclaim notice at")
        .expect("the notice line")]
        .matches(" rendered")
        .count();
    running.wait_for_line(
        &format!("frame {} rendered", at_notice + 2),
        Duration::from_secs(60),
    );
    let text = running.kill_hard();

    for (rel, bytes) in &before {
        let e = m
            .files
            .iter()
            .find(|e| e.path == format!("frames/{rel}"))
            .expect("in the manifest");
        let url: rtb_model::S3Url = e.url.parse().expect("URL");
        assert_eq!(&get(&c, url.bucket(), url.key()).await, bytes, "{rel}");
    }
    check_entries(&m).await;
    let rec: Interrupted =
        serde_json::from_slice(&get(&c, &bucket, "run/_rtb-job/notice/interrupted.json").await)
            .expect("interruption record");
    assert!(rec.is_interruption(), "{rec:?}");
    assert_eq!(
        (rec.action.as_deref(), rec.time.as_str()),
        (Some("terminate"), time.as_str())
    );
    assert_eq!((rec.job_id.as_str(), rec.attempt), ("notice", 1));
    assert!(
        chunks.contains("spot reclaim notice at"),
        "{chunks}\n---\n{text}"
    );
    // Once it has the notice the watcher stops asking.
    let asked = imds
        .calls()
        .iter()
        .filter(|c| c.fault.as_deref() == Some("respond"))
        .count();
    assert_eq!(asked, 1, "{:?}", imds.calls());
    common::remove_bucket(&c, &bucket).await;
}
