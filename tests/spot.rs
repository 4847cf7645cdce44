//! Spot without lost work, end to end on the emulator: a job of 20 "frames" (each a pause and
//! one output file; the code skips frames whose file exists) checkpoints every 2 s on a real
//! (container) instance; the instance is terminated from outside after frame 12; the retry, on
//! a fresh instance, restores what the last checkpoint held and renders only the rest.
//!
//! The two attempts are two `run`s, the second given the first's records (RTB_ATTEMPT,
//! RTB_RESUME_FROM), as the batch pool will pass them once it is wired to (see
//! docs/batches.md, "What is left to wire").

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
