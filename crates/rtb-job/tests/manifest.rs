//! `RTB_MANIFEST`: an AWS Batch array child reads its row of the batch manifest from S3 and runs
//! it as if the row were its environment. The real `rtb-job` binary, Octave, MiniStack's S3.

mod common;

use std::process::{Command, Output, Stdio};

use common::{client, get, list, put, remove_bucket, unique_bucket};
use rtb_model::exit::runner as exit;
use rtb_model::manifest::{Manifest, Row};
use rtb_model::JobResult;

/// The runner as AWS Batch starts an array child: the container's own environment, plus the
/// manifest and the job id AWS Batch sets.
fn runner(dir: &std::path::Path, manifest: &str, batch_job_id: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rtb-job"));
    for var in rtb_model::contract::ALL {
        cmd.env_remove(var.name);
    }
    cmd.env_remove("AWS_BATCH_JOB_ARRAY_INDEX")
        .env("MATLAB_EXECUTABLE", "octave-cli")
        .env("COMMAND", "disp('from the container')")
        .env("INPUT_SCRATCH", dir.join("in"))
        .env("OUTPUT_SCRATCH", dir.join("out"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RTB_MANIFEST", manifest)
        .env("AWS_BATCH_JOB_ID", batch_job_id)
        .stdin(Stdio::null());
    cmd
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn row(job_id: &str, command: &str, output: &str) -> Row {
    Row {
        job_id: job_id.to_string(),
        settings: [
            ("COMMAND".to_string(), command.to_string()),
            ("OUTPUT_BUCKET".to_string(), output.to_string()),
        ]
        .into(),
    }
}

async fn write_manifest(bucket: &str, key: &str, rows: Vec<Row>) -> String {
    let c = client().await;
    let body = serde_json::to_vec(&Manifest { jobs: rows }).expect("manifest serializes");
    put(&c, bucket, key, body).await;
    format!("s3://{bucket}/{key}")
}

async fn result_of(bucket: &str, prefix: &str, job_id: &str) -> JobResult {
    let c = client().await;
    let bytes = get(
        &c,
        bucket,
        &format!("{prefix}_rtb-job/{job_id}/result.json"),
    )
    .await;
    serde_json::from_slice(&bytes).expect("result record parses")
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run rtb-job")
}

#[tokio::test]
async fn child_runs_its_own_row_picked_by_the_job_id_suffix() {
    let c = client().await;
    let b = unique_bucket(&c, "manifest-row").await;
    let url = write_manifest(
        &b,
        "batch/manifest.json",
        (0..3)
            .map(|i| {
                row(
                    &format!("scene-{i}"),
                    &format!("disp('row {i} ran')"),
                    &format!("s3://{b}/out/{i}/"),
                )
            })
            .collect(),
    )
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    // moto's array children: no AWS_BATCH_JOB_ARRAY_INDEX, only `<uuid>:<index>`.
    let out = run(&mut runner(
        dir.path(),
        &url,
        "0f1e2d3c-aaaa-bbbb-cccc-123456789abc:1",
    ));
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("batch manifest row 1 (job scene-1)"),
        "{stdout}"
    );
    // The row's COMMAND overrides the container's.
    assert!(stdout.contains("row 1 ran"), "{stdout}");
    assert!(!stdout.contains("from the container"), "{stdout}");
    // The row's job id names the records, under the row's output.
    let r = result_of(&b, "out/1/", "scene-1").await;
    assert_eq!(r.exit_code, 0);
    assert!(list(&c, &b, "out/0/").await.is_empty());
    assert!(list(&c, &b, "out/2/").await.is_empty());
    remove_bucket(&c, &b).await;
}

#[tokio::test]
async fn array_index_wins_over_the_job_id_suffix() {
    let c = client().await;
    let b = unique_bucket(&c, "manifest-index").await;
    let url = write_manifest(
        &b,
        "m.json",
        vec![
            row("a", "disp('row a')", &format!("s3://{b}/a/")),
            row("b", "error('row b failed')", &format!("s3://{b}/b/")),
        ],
    )
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let out = run(runner(dir.path(), &url, "uuid:0").env("AWS_BATCH_JOB_ARRAY_INDEX", "1"));
    // Row b's own failure passes through as for any job.
    assert_eq!(
        out.status.code(),
        Some(exit::COMMAND_FAILED),
        "{}",
        text(&out.stderr)
    );
    let r = result_of(&b, "b/", "b").await;
    assert_eq!(r.exit_code, exit::COMMAND_FAILED);
    remove_bucket(&c, &b).await;
}

#[tokio::test]
async fn an_unreadable_manifest_or_a_missing_row_is_one_line_and_exit_7() {
    let c = client().await;
    let b = unique_bucket(&c, "manifest-bad").await;
    let url = write_manifest(
        &b,
        "m.json",
        vec![row("a", "disp(1)", &format!("s3://{b}/a/"))],
    )
    .await;
    put(&c, &b, "not-json.json", b"{\"rows\": 3}".to_vec()).await;
    let bad_id = write_manifest(
        &b,
        "bad-id.json",
        vec![row("a/b", "disp(1)", &format!("s3://{b}/x/"))],
    )
    .await;
    let cases = [
        (url.clone(), "uuid:4", "has no row 4 (it has 1)"),
        (url.clone(), "uuid", "is this an array child of the batch?"),
        (
            format!("s3://{b}/missing.json"),
            "uuid:0",
            "cannot read s3://",
        ),
        (
            format!("s3://{b}/not-json.json"),
            "uuid:0",
            "is not a batch manifest",
        ),
        ("my-bucket/m.json".to_string(), "uuid:0", "RTB_MANIFEST: "),
        (format!("s3://{b}/"), "uuid:0", "names no object"),
        (bad_id, "uuid:0", "row 0 (job 'a/b'): job_id: "),
    ];
    for (manifest, id, expected) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = run(&mut runner(dir.path(), &manifest, id));
        let stderr = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(exit::BAD_MANIFEST),
            "{manifest} {id}: {stderr}"
        );
        assert!(stderr.starts_with("rtb-job: RTB_MANIFEST: "), "{stderr}");
        assert!(stderr.contains(expected), "{manifest} {id}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
        assert!(!text(&out.stdout).contains("from the container"));
    }
    // Nothing ran, so nothing was written besides the manifests.
    let keys: Vec<String> = list(&c, &b, "").await.into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["bad-id.json", "m.json", "not-json.json"]);
    remove_bucket(&c, &b).await;
}

/// AWS Batch retries a job as a new attempt of the same container (`AWS_BATCH_JOB_ATTEMPT` =
/// 1, 2, ...). Each attempt keeps its records apart, in the same layout as the EC2 engine's
/// (`<job records>/<run>-a<N>/`): the second attempt's log starts at chunk 1 in its own
/// folder, and the first attempt's failed result stays where it was, not mistaken for the
/// job's end. (moto never retries: the two attempts are run here as AWS Batch would run them.)
#[tokio::test]
async fn each_attempt_of_a_retried_child_keeps_its_own_records() {
    let c = client().await;
    let b = unique_bucket(&c, "manifest-attempts").await;
    let flaky = "a = str2num(getenv('AWS_BATCH_JOB_ATTEMPT')); printf('attempt %d here\\n', a); if a == 1, error('the lamp flickered'); end";
    let mut r = row("scene-7", flaky, &format!("s3://{b}/out/7/"));
    r.settings.insert(
        "LOG_BUCKET".into(),
        format!("s3://{b}/out/7/_rtb-job/scene-7/"),
    );
    r.settings
        .insert("RTB_RUN_ID".into(), "r20261201T101500".into());
    let url = write_manifest(&b, "batch/manifest.json", vec![r]).await;
    for attempt in ["1", "2"] {
        let dir = tempfile::tempdir().expect("temp dir");
        let out =
            run(runner(dir.path(), &url, "0f1e2d3c-aaaa:0").env("AWS_BATCH_JOB_ATTEMPT", attempt));
        let want = if attempt == "1" { 1 } else { 0 };
        assert_eq!(
            out.status.code(),
            Some(want),
            "attempt {attempt}: {}",
            text(&out.stderr)
        );
    }
    let base = "out/7/_rtb-job/scene-7/r20261201T101500";
    for (n, outcome, line) in [
        (1, rtb_model::Outcome::Failed, "attempt 1 here"),
        (2, rtb_model::Outcome::Succeeded, "attempt 2 here"),
    ] {
        let result: JobResult =
            serde_json::from_slice(&get(&c, &b, &format!("{base}-a{n}/result.json")).await)
                .expect("result parses");
        assert_eq!(result.outcome, outcome, "attempt {n}");
        // Each attempt's chunks start at 1 in its own folder.
        let chunks = list(&c, &b, &format!("{base}-a{n}/log/")).await;
        assert_eq!(
            chunks.first().map(|(k, _)| k.as_str()),
            Some(format!("{base}-a{n}/log/000001.log").as_str())
        );
        let mut log = String::new();
        for (key, _) in &chunks {
            log.push_str(&text(&get(&c, &b, key).await));
        }
        assert!(log.contains(line), "attempt {n}: {log}");
        assert!(!log.contains(&format!("attempt {} here", 3 - n)), "{log}");
    }
    // Nothing at the job's own folder: every record is an attempt's.
    let keys: Vec<String> = list(&c, &b, "out/7/_rtb-job/scene-7/")
        .await
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| !k.contains("-a1/") && !k.contains("-a2/"))
        .collect();
    assert!(keys.is_empty(), "{keys:?}");
    remove_bucket(&c, &b).await;
}
