//! Spot without lost work, end to end on the emulator: a job of 20 "frames" (each a pause and
//! one output file; the code skips frames whose file exists) checkpoints every 2 s on a real
//! (container) instance; the instance is terminated from outside after frame 12; the retry, on
//! a fresh instance, restores what the last checkpoint held and renders only the rest.
//!
//! First as two `run`s, the second given the first's records by hand (RTB_ATTEMPT,
//! RTB_RESUME_FROM); then as a batch, whose pool does it by itself: the same job lost and
//! resumed, AWS's two-minute notice (served by the world's proxy for one instance), and the
//! accounting of reclaims (`spot-retries`, apart from `retries`).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{run_render, support_image, unique, Watched, World};
use rtb_model::checkpoint::Manifest;
use rtb_model::JobResult;

const FRAMES: u32 = 20;

/// Frames 1..=20, one second each; a frame whose file exists is skipped, as a resumed job
/// does. Each file says which attempt wrote it.
fn frames_command() -> String {
    format!(
        "d = fullfile(getenv('OUTPUT_SCRATCH'), 'frames'); if ~exist(d, 'dir'), mkdir(d); end; \
         printf('attempt=%s resumed_from=%s\\n', getenv('RTB_ATTEMPT'), getenv('RTB_RESUMED_FROM')); \
         for k = 1:{FRAMES}, f = fullfile(d, sprintf('f%02d.txt', k)); \
           if exist(f, 'file'), printf('frame %d exists\\n', k); continue; end; \
           pause(1); fid = fopen(f, 'w'); fprintf(fid, 'frame %d by attempt %s\\n', k, getenv('RTB_ATTEMPT')); fclose(fid); \
           printf('frame %d rendered\\n', k); fflush(stdout); end"
    )
}

fn frame_of(path: &str) -> Option<u32> {
    path.strip_prefix("frames/f")?
        .strip_suffix(".txt")?
        .parse()
        .ok()
}

async fn manifest(w: &World, bucket: &str, key: &str) -> Option<Manifest> {
    let bytes = w.get(bucket, key).await?;
    Some(serde_json::from_slice(&bytes).expect("manifest parses"))
}

fn frames_in(m: &Manifest) -> BTreeSet<u32> {
    m.files.iter().filter_map(|e| frame_of(&e.path)).collect()
}

/// Every frame N of a line "frame N <word>" of the job's log in `text` (the client shows
/// each log line after its time and a bar: `04:37:27 │ frame 1 rendered`).
fn frames_said(text: &str, word: &str) -> BTreeSet<u32> {
    text.lines()
        .filter_map(|l| {
            let line = l.rsplit_once("│ ").map_or(l, |(_, rest)| rest);
            let rest = line.trim().strip_prefix("frame ")?;
            let (n, w) = rest.split_once(' ')?;
            (w == word).then(|| n.parse().ok()).flatten()
        })
        .collect()
}

#[tokio::test]
async fn a_lost_instance_s_retry_restores_the_checkpoint_and_renders_only_the_rest() {
    let w = World::new().await;
    let ami = w.test_ami().await;
    let bucket = w.bucket("spot").await;
    let image = support_image();
    let output = format!("s3://{bucket}/frames");
    let (a1, a2) = (unique("spot-a1"), unique("spot-a2"));
    let command = frames_command();
    let args = |job_id: &str| -> Vec<String> {
        [
            "run",
            "--ami",
            &ami,
            "--job-id",
            job_id,
            "--image",
            &image,
            "--interpreter",
            "octave-cli",
            "--instance-type",
            "t3.micro",
            "--agent-timeout",
            "60s",
            "--output",
            &output,
            "--command",
            &command,
            "--checkpoint-every",
            "2s",
        ]
        .map(String::from)
        .to_vec()
    };

    // Attempt 1: terminated from outside once frame 12 is done and checkpointed.
    let first_args = args(&a1);
    let mut first = Watched::spawn(run_render(
        &first_args.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    assert!(
        first
            .wait_for("frame 12 rendered", Duration::from_secs(180))
            .is_some(),
        "attempt 1 never reached frame 12:\n{}",
        first
            .seen
            .iter()
            .map(|l| l.2.clone())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let key1 = format!("frames/_rtb-job/{a1}/checkpoint/manifest.json");
    let t = Instant::now();
    loop {
        if let Some(m) = manifest(&w, &bucket, &key1).await {
            if frames_in(&m).contains(&12) {
                break;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "frame 12 never checkpointed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let instances = w.instances_of(&a1).await;
    assert_eq!(instances.len(), 1, "{instances:?}");
    w.terminate(&instances[0].0).await;
    let lost = first.finish(Duration::from_secs(120));
    assert_eq!(lost.code, Some(70), "attempt 1 is lost:\n{}", lost.all());
    // What attempt 1 saved, read once nothing of it runs any more.
    let m1 = manifest(&w, &bucket, &key1)
        .await
        .expect("attempt 1's checkpoint");
    let saved = frames_in(&m1);
    let rendered1 = frames_said(&lost.stdout(), "rendered");
    assert!((1..=12).all(|k| saved.contains(&k)), "{saved:?}");
    assert!(
        saved.is_subset(&rendered1),
        "{saved:?} vs {rendered1:?}:\n{}",
        lost.all()
    );

    // Attempt 2, on a fresh instance, resumes from attempt 1's records.
    let mut second_args = args(&a2);
    second_args.extend([
        "--env".to_string(),
        "RTB_ATTEMPT=2".to_string(),
        "--env".to_string(),
        format!("RTB_RESUME_FROM={output}/_rtb-job/{a1}/"),
    ]);
    let second = Watched::spawn(run_render(
        &second_args.iter().map(String::as_str).collect::<Vec<_>>(),
    ))
    .finish(Duration::from_secs(240));
    assert_eq!(second.code, Some(0), "{}", second.all());
    let out2 = second.stdout();
    assert!(out2.contains("attempt=2 resumed_from=1"), "{out2}");
    let rendered2 = frames_said(&out2, "rendered");
    let skipped2 = frames_said(&out2, "exists");
    let all: BTreeSet<u32> = (1..=FRAMES).collect();
    assert_eq!(
        skipped2, saved,
        "attempt 2 found exactly the checkpoint's frames"
    );
    assert_eq!(
        rendered2,
        all.difference(&saved).copied().collect(),
        "attempt 2 rendered only the frames after the last checkpoint"
    );
    let redone: BTreeSet<u32> = rendered1.intersection(&rendered2).copied().collect();
    println!(
        "attempt 1 rendered {} frames, its last checkpoint held {}; attempt 2 re-rendered {} ({redone:?}) and rendered {} in all",
        rendered1.len(),
        saved.len(),
        redone.len(),
        rendered2.len()
    );
    // The summary says so.
    assert!(
        second
            .stderr()
            .contains("resumed:  from attempt 1's checkpoint"),
        "{}",
        second.stderr()
    );

    // The output: all 20 frames, each whole, each written once by the attempt that kept it.
    for k in 1..=FRAMES {
        let body = w
            .get(&bucket, &format!("frames/frames/f{k:02}.txt"))
            .await
            .unwrap_or_else(|| panic!("frame {k} missing"));
        let by = if saved.contains(&k) { 1 } else { 2 };
        assert_eq!(
            String::from_utf8_lossy(&body),
            format!("frame {k} by attempt {by}\n"),
            "frame {k}"
        );
    }
    let frames: Vec<String> = w
        .keys(&bucket, "frames/frames/")
        .await
        .into_iter()
        .collect();
    assert_eq!(frames.len(), FRAMES as usize, "{frames:?}");

    let result: JobResult = serde_json::from_slice(
        &w.get(&bucket, &format!("frames/_rtb-job/{a2}/result.json"))
            .await
            .expect("attempt 2's result"),
    )
    .expect("result parses");
    let resumed = result.resumed.expect("result.json says resumed");
    assert_eq!(resumed.from_attempt, 1);
    assert_eq!(resumed.files, saved.len() as u64);
    assert_eq!(resumed.from, format!("{output}/_rtb-job/{a1}/"));
    assert_eq!(result.attempt, Some(2));
    // With checkpoints the runner watches IMDS: MiniStack's answers "no notice", so none is
    // recorded.
    assert!(result.notice.is_none());
    assert!(w
        .get(&bucket, &format!("frames/_rtb-job/{a1}/interrupted.json"))
        .await
        .is_none());

    for job in [&a1, &a2] {
        let instances = w.instances_of(job).await;
        assert!(
            instances.iter().all(|(_, s)| s == "terminated"),
            "{job}: {instances:?}"
        );
    }
}

// ── The batch pool: a lost attempt's retry resumes, a notice makes a reclaim ─────────────────
//
// Each runs `batch` under the shipped IAM policies (`World::enforced`): the client, and the
// runner on each instance, as their own principals, with no call refused.

/// A workstation of the test's own (registry, owner) and a folder for its batch file.
struct Desk {
    state: tempfile::TempDir,
    dir: tempfile::TempDir,
    user: String,
}

impl Desk {
    fn new() -> Desk {
        Desk {
            state: tempfile::tempdir().expect("tmp"),
            dir: tempfile::tempdir().expect("tmp"),
            user: unique("user"),
        }
    }

    /// `run-render batch FILE --json` as the enforced world's client.
    fn batch(&self, w: &World, file: &str) -> Watched {
        let mut c = w.run_render(&["batch", file, "--json"]);
        c.env("XDG_STATE_HOME", self.state.path())
            .env("USER", &self.user)
            .current_dir(self.dir.path());
        Watched::spawn(c)
    }
}

/// A batch of one job (`<name>-1`, output `s3://bucket/1`) running `command`, with `batch`
/// and `job` lines added to `[batch]` and `[job]`.
async fn one_job_batch(
    w: &World,
    desk: &Desk,
    name: &str,
    bucket: &str,
    command: &str,
    batch: &str,
    job: &str,
) -> String {
    let ami = w.test_ami().await;
    std::fs::write(desk.dir.path().join(format!("{name}.csv")), "n\n1\n").expect("csv");
    let file = desk.dir.path().join(format!("{name}.toml"));
    std::fs::write(
        &file,
        format!(
            r#"[batch]
csv = "{name}.csv"
{batch}

[job]
ami = "{ami}"
instance-type = "t3.micro"
image = "{image}"
interpreter = "octave-cli"
command = '''{command}'''
output = "s3://{bucket}/${{n}}"
job-id = "{name}-${{n}}"
agent-timeout = "60s"
timeout = "10m"
{job}
"#,
            image = support_image()
        ),
    )
    .expect("batch file");
    file.display().to_string()
}

/// The records folder of attempt `n` of the job under `s3://bucket/<job records>`, once it
/// exists (`.../<run>-a<n>/`).
async fn attempt_folder(
    w: &World,
    bucket: &str,
    job_records: &str,
    n: u32,
    limit: Duration,
) -> String {
    let t = Instant::now();
    let tail = format!("-a{n}/");
    loop {
        let found = w.keys(bucket, job_records).await.into_iter().find_map(|k| {
            let at = k.find(&tail)?;
            Some(k[..at + tail.len()].to_string())
        });
        if let Some(f) = found {
            return f;
        }
        assert!(
            t.elapsed() < limit,
            "attempt {n} never started under s3://{bucket}/{job_records}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The log an attempt's runner has written so far (its chunks in order).
async fn attempt_log(w: &World, bucket: &str, folder: &str) -> String {
    let mut keys: Vec<String> = w
        .keys(bucket, &format!("{folder}log/"))
        .await
        .into_iter()
        .collect();
    keys.sort();
    let mut text = String::new();
    for k in keys {
        if let Some(b) = w.get(bucket, &k).await {
            text.push_str(&String::from_utf8_lossy(&b));
        }
    }
    text
}

/// Wait until `check` holds for attempt `folder`'s log; the log then.
async fn log_until(
    w: &World,
    bucket: &str,
    folder: &str,
    limit: Duration,
    what: &str,
    check: impl Fn(&str) -> bool,
) -> String {
    let t = Instant::now();
    loop {
        let log = attempt_log(w, bucket, folder).await;
        if check(&log) {
            return log;
        }
        assert!(t.elapsed() < limit, "{what} never came in {folder}:\n{log}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Wait until attempt `folder`'s checkpoint manifest holds every frame of `frames`.
async fn checkpointed(
    w: &World,
    bucket: &str,
    folder: &str,
    frames: &BTreeSet<u32>,
    limit: Duration,
) -> Manifest {
    let t = Instant::now();
    let key = format!("{folder}checkpoint/manifest.json");
    loop {
        if let Some(m) = manifest(w, bucket, &key).await {
            if frames.is_subset(&frames_in(&m)) {
                return m;
            }
        }
        assert!(
            t.elapsed() < limit,
            "frames {frames:?} never all checkpointed in {key}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// AWS's two-minute warning for one instance: its metadata's `spot/instance-action`, served
/// by the world's proxy (MiniStack's IMDS has no notices).
fn reclaim_notice(w: &World, instance: &str) {
    let time =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() + Duration::from_secs(120));
    w.scope().add_rule(
        &rtb_testkit::Rule::on("GetMetadata")
            .service("imds")
            .path_contains(&format!(
                "/_imds/{instance}/latest/meta-data/spot/instance-action"
            ))
            .respond(
                200,
                &[("content-type", "text/plain")],
                &format!(r#"{{"action": "terminate", "time": "{time}"}}"#),
            ),
    );
}

/// The one job of a `--json` summary.
fn the_job(out: &str) -> serde_json::Value {
    let doc: serde_json::Value = serde_json::from_str(out).expect("the summary is JSON");
    doc["jobs"][0].clone()
}

/// The frames each output file says wrote it: (frame, attempt).
async fn final_frames(w: &World, bucket: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for k in 1..=FRAMES {
        let body = w
            .get(bucket, &format!("1/frames/f{k:02}.txt"))
            .await
            .unwrap_or_else(|| panic!("frame {k} missing"));
        let text = String::from_utf8_lossy(&body).into_owned();
        let by = text
            .strip_prefix(&format!("frame {k} by attempt "))
            .and_then(|r| r.strip_suffix('\n'))
            .unwrap_or_else(|| panic!("frame {k} is not whole: {text:?}"))
            .to_string();
        out.push((k, by));
    }
    let files = w.keys(bucket, "1/frames/").await;
    assert_eq!(files.len(), FRAMES as usize, "{files:?}");
    out
}

/// A batch job that checkpoints every 2 s loses its instance after frame 12 (terminated from
/// outside, no notice): the pool retries it on a fresh instance, told to resume; the retry
/// restores what the last checkpoint held and renders only the rest; every frame is in the
/// output once, whole, written by the attempt that kept it; result.json and the summary say
/// the second attempt resumed, and what the first was interrupted by.
#[tokio::test]
async fn a_batch_retry_after_a_lost_instance_resumes_from_the_checkpoint() {
    let w = World::enforced().await;
    let desk = Desk::new();
    let bucket = w.output_bucket("spotpool").await;
    let name = unique("resume");
    let job = format!("{name}-1");
    let records = format!("1/_rtb-job/{job}/");
    let file = one_job_batch(
        &w,
        &desk,
        &name,
        &bucket,
        &frames_command(),
        "retries = 1",
        "checkpoint-every = \"2s\"",
    )
    .await;
    let client = desk.batch(&w, &file);

    let a1 = attempt_folder(&w, &bucket, &records, 1, Duration::from_secs(180)).await;
    let twelve: BTreeSet<u32> = (1..=12).collect();
    checkpointed(&w, &bucket, &a1, &twelve, Duration::from_secs(180)).await;
    let instance = w
        .batch_job_instance(&bucket, &a1)
        .await
        .expect("attempt 1's record names its instance");
    w.terminate(&instance).await;

    let done = client.finish(Duration::from_secs(300));
    assert_eq!(done.code, Some(0), "{}", done.all());
    let a2 = attempt_folder(&w, &bucket, &records, 2, Duration::ZERO).await;
    let saved = frames_in(
        &manifest(&w, &bucket, &format!("{a1}checkpoint/manifest.json"))
            .await
            .expect("attempt 1's checkpoint"),
    );
    assert!(twelve.is_subset(&saved), "{saved:?}");
    let (log1, log2) = (
        attempt_log(&w, &bucket, &a1).await,
        attempt_log(&w, &bucket, &a2).await,
    );
    let rendered1 = frames_said(&log1, "rendered");
    assert!(saved.is_subset(&rendered1), "{saved:?} vs {rendered1:?}");
    assert!(log2.contains("attempt=2 resumed_from=1"), "{log2}");
    let all: BTreeSet<u32> = (1..=FRAMES).collect();
    assert_eq!(frames_said(&log2, "exists"), saved, "{log2}");
    assert_eq!(
        frames_said(&log2, "rendered"),
        all.difference(&saved).copied().collect(),
        "the retry renders only the frames after the last checkpoint:\n{log2}"
    );
    for (k, by) in final_frames(&w, &bucket).await {
        let want = if saved.contains(&k) { "1" } else { "2" };
        assert_eq!(by, want, "frame {k}");
    }

    let result: JobResult = serde_json::from_slice(
        &w.get(&bucket, &format!("{a2}result.json"))
            .await
            .expect("attempt 2's result"),
    )
    .expect("result parses");
    let resumed = result.resumed.expect("result.json says resumed");
    assert_eq!(
        (resumed.from_attempt, resumed.files),
        (1, saved.len() as u64)
    );
    assert_eq!(result.attempt, Some(2));

    let j = the_job(&done.stdout());
    assert_eq!(j["outcome"], "succeeded", "{j}");
    let attempts = j["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{j}");
    assert_eq!(attempts[0]["outcome"], "instance_lost", "{j}");
    assert_eq!(attempts[0]["interrupted_by"], "instance_lost", "{j}");
    assert_eq!(attempts[1]["resume_asked"], true, "{j}");
    assert_eq!(attempts[1]["resumed"]["from_attempt"], 1, "{j}");
    assert_eq!(attempts[1]["resumed"]["files"], saved.len(), "{j}");
    w.assert_no_denials();
}

/// AWS's two-minute notice on a spot instance (the world's proxy answers its metadata's
/// `spot/instance-action` with a termination two minutes away): the runner says so in the
/// log and checkpoints within seconds, though the job's own checkpoints are 10 minutes apart;
/// then the instance goes. The pool counts a reclaim (retried on spot), and the retry has
/// every frame written before the notice: none is lost or rendered again.
#[tokio::test]
async fn a_reclaim_notice_checkpoints_at_once_and_the_retry_loses_nothing_before_it() {
    let w = World::enforced().await;
    let desk = Desk::new();
    let bucket = w.output_bucket("spotnote").await;
    let name = unique("notice");
    let job = format!("{name}-1");
    let records = format!("1/_rtb-job/{job}/");
    let file = one_job_batch(
        &w,
        &desk,
        &name,
        &bucket,
        &frames_command(),
        "spot = true\nretries = 0",
        "checkpoint-every = \"10m\"",
    )
    .await;
    let client = desk.batch(&w, &file);

    let a1 = attempt_folder(&w, &bucket, &records, 1, Duration::from_secs(180)).await;
    log_until(&w, &bucket, &a1, Duration::from_secs(180), "frame 5", |l| {
        frames_said(l, "rendered").contains(&5)
    })
    .await;
    let instance = w
        .batch_job_instance(&bucket, &a1)
        .await
        .expect("attempt 1's record names its instance");
    let noticed = Instant::now();
    reclaim_notice(&w, &instance);
    let log = log_until(
        &w,
        &bucket,
        &a1,
        Duration::from_secs(30),
        "the notice",
        |l| l.contains("spot reclaim notice at "),
    )
    .await;
    // Every frame rendered before the runner saw the notice.
    let before: BTreeSet<u32> = frames_said(
        log.split("spot reclaim notice at ")
            .next()
            .unwrap_or_default(),
        "rendered",
    );
    assert!(before.contains(&5), "{log}");
    checkpointed(&w, &bucket, &a1, &before, Duration::from_secs(20)).await;
    let took = noticed.elapsed();
    assert!(
        took < Duration::from_secs(20),
        "the notice's checkpoint took {took:?}"
    );
    assert!(
        w.get(&bucket, &format!("{a1}interrupted.json"))
            .await
            .is_some(),
        "the runner recorded the interruption"
    );
    w.terminate(&instance).await;

    let done = client.finish(Duration::from_secs(300));
    assert_eq!(done.code, Some(0), "{}", done.all());
    let j = the_job(&done.stdout());
    let attempts = j["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{j}");
    assert_eq!(attempts[0]["interrupted_by"], "reclaim_notice", "{j}");
    assert_eq!(attempts[0]["notice"]["notice"], "spot-interruption", "{j}");
    assert!(
        attempts[0]["retried_because"]
            .as_str()
            .is_some_and(|r| r.contains("reclaimed")),
        "{j}"
    );
    assert!(
        attempts[1]["resumed"]["files"].as_u64().unwrap_or(0) >= before.len() as u64,
        "{j}"
    );
    let a2 = attempt_folder(&w, &bucket, &records, 2, Duration::ZERO).await;
    let log2 = attempt_log(&w, &bucket, &a2).await;
    assert!(
        before.is_subset(&frames_said(&log2, "exists")),
        "{before:?} restored:\n{log2}"
    );
    for (k, by) in final_frames(&w, &bucket).await {
        if before.contains(&k) {
            assert_eq!(by, "1", "frame {k}, written before the notice, was lost");
        }
    }
    // A reclaim is retried on spot (spot-retries, default 3).
    let asked = spot_asked(&w, &bucket, &records).await;
    assert_eq!(asked, [true, true], "spot, then spot again");
    w.assert_no_denials();
}

/// What each attempt's record says it asked for (spot or not), in attempt order.
async fn spot_asked(w: &World, bucket: &str, records: &str) -> Vec<bool> {
    let mut keys: Vec<String> = w
        .keys(bucket, records)
        .await
        .into_iter()
        .filter(|k| k.ends_with("/attempt.json"))
        .collect();
    keys.sort();
    let mut asked = Vec::new();
    for k in keys {
        let doc: serde_json::Value =
            serde_json::from_slice(&w.get(bucket, &k).await.expect("attempt.json")).expect("JSON");
        asked.push(doc["spot_requested"].as_bool().expect("spot_requested"));
    }
    asked
}

/// Reclaims have their own bound: with `retries = 0` and `spot-retries = 1`, a job reclaimed
/// twice (each time AWS's notice, then the instance gone) is retried on spot once, then on
/// demand, and succeeds there; the summary shows the three attempts and what interrupted
/// each. (MiniStack ignores InstanceMarketOptions: EC2 says every instance is on demand, so
/// "spot" here is what the pool asked for, which attempt.json keeps beside EC2's word.)
#[tokio::test]
async fn reclaims_do_not_use_up_retries_and_spot_retries_then_goes_on_demand() {
    let w = World::enforced().await;
    let desk = Desk::new();
    let bucket = w.output_bucket("spotacct").await;
    let name = unique("reclaims");
    let job = format!("{name}-1");
    let records = format!("1/_rtb-job/{job}/");
    let file = one_job_batch(
        &w,
        &desk,
        &name,
        &bucket,
        &frames_command(),
        "spot = true\nretries = 0\nspot-retries = 1",
        "",
    )
    .await;
    let client = desk.batch(&w, &file);

    for n in 1..=2 {
        let folder = attempt_folder(&w, &bucket, &records, n, Duration::from_secs(180)).await;
        // (Attempt 2 starts from the frames attempt 1 saved on its notice.)
        log_until(
            &w,
            &bucket,
            &folder,
            Duration::from_secs(180),
            "a frame",
            |l| !frames_said(l, "rendered").is_empty(),
        )
        .await;
        let instance = w
            .batch_job_instance(&bucket, &folder)
            .await
            .expect("the attempt's record names its instance");
        reclaim_notice(&w, &instance);
        let t = Instant::now();
        while w
            .get(&bucket, &format!("{folder}interrupted.json"))
            .await
            .is_none()
        {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "attempt {n}: no interruption recorded"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        w.terminate(&instance).await;
    }

    let done = client.finish(Duration::from_secs(300));
    assert_eq!(done.code, Some(0), "{}", done.all());
    let j = the_job(&done.stdout());
    assert_eq!(j["outcome"], "succeeded", "{j}");
    let attempts = j["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 3, "{j}");
    for a in &attempts[..2] {
        assert_eq!(a["outcome"], "instance_lost", "{j}");
        assert_eq!(a["interrupted_by"], "reclaim_notice", "{j}");
    }
    assert!(
        attempts[1]["retried_because"]
            .as_str()
            .is_some_and(|r| r.contains("on demand")),
        "{j}"
    );
    assert_eq!(attempts[2]["outcome"], "succeeded", "{j}");
    assert!(attempts[2].get("interrupted_by").is_none(), "{j}");
    assert_eq!(
        spot_asked(&w, &bucket, &records).await,
        [true, true, false],
        "spot, spot again (spot-retries = 1), then on demand"
    );
    w.assert_no_denials();
}
