//! A batch you can look at, end to end on the emulator: a real 6-job batch (one MATLAB error,
//! one job that writes no image, one instance terminated under its job and retried) writes its
//! page beside its logs and in S3; Debian's chromium, driven by Selenium, opens it and sees 6
//! cards, 5 thumbnails that decode, the failed job's error and log, one timeline bar per
//! attempt, and working filters, with no request leaving the file. `report` writes the page
//! again from this workstation and, from another one, from S3 alone.
//!
//! The client runs as the shipped client policy's principal and its instances as the instance
//! role, through the world's IAM proxy (`World::enforced`); each test fails on a refused call.
//! The AWS Batch page test does the same in front of moto (`common::moto::scope`).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{run_render, support_image, unique, Watched, World};

/// A test's own workstation (registry, owner, working folder).
struct Desk {
    /// The world's client principal (keys, IAM proxy) when the world is enforced.
    env: Vec<(&'static str, String)>,
    state: tempfile::TempDir,
    dir: tempfile::TempDir,
    user: String,
}

impl Desk {
    fn new() -> Desk {
        Desk {
            env: Vec::new(),
            state: tempfile::tempdir().expect("tmp"),
            dir: tempfile::tempdir().expect("tmp"),
            user: unique("user"),
        }
    }

    /// A desk whose commands run as the world's client principal.
    fn of(w: &World) -> Desk {
        Desk {
            env: w.client_env(),
            ..Desk::new()
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = run_render(args);
        c.envs(self.env.iter().cloned())
            .env_remove("AWS_SESSION_TOKEN")
            .env("XDG_STATE_HOME", self.state.path())
            .env("USER", &self.user)
            .current_dir(self.dir.path());
        c
    }

    fn out(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let o = self.cmd(args).output().expect("run");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    fn write(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.display().to_string()
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

/// Octave code rendering a `w` x `h` lit sphere of colour `rgb`, as a P6 image in
/// OUTPUT_SCRATCH/render/.
fn image(w: u32, h: u32, rgb: [u8; 3]) -> String {
    format!(
        "d = fullfile(getenv('OUTPUT_SCRATCH'), 'render'); mkdir(d); \
         [X, Y] = meshgrid(1:{w}, 1:{h}); s = min({w}, {h}) / 2.2; \
         px = (X - {w}/2) / s; py = (Y - {h}/2) / s; r2 = px.^2 + py.^2; in = r2 < 1; \
         v = max(0, 0.5 * px - 0.6 * py + 0.62 * sqrt(max(0, 1 - r2))); \
         rgb = [{r} {g} {b}] / 255; img = zeros({h}, {w}, 3); \
         for c = 1:3, ch = 0.08 + 0.2 * rgb(c) * Y / {h}; ch(in) = rgb(c) * (0.15 + 0.85 * v(in)); img(:, :, c) = ch; end; \
         fid = fopen(fullfile(d, 'frame.ppm'), 'w'); fprintf(fid, 'P6\\n%d %d\\n255\\n', {w}, {h}); \
         fwrite(fid, uint8(255 * min(1, permute(img, [3 2 1]))), 'uint8'); fclose(fid);",
        r = rgb[0],
        g = rgb[1],
        b = rgb[2],
    )
}

fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Where this test's screenshot goes: under target/, kept after the test.
fn artifact(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts/report");
    std::fs::create_dir_all(&dir).expect("artifact dir");
    dir.join(name)
}

/// What the browser saw (tests/world/browser.py's JSON).
fn browse(page: &Path, screenshot: &Path) -> serde_json::Value {
    let python = std::env::var("RTB_WORLD_BROWSER_PYTHON").expect(
        "RTB_WORLD_BROWSER_PYTHON: run tests/world/setup.sh and source .world/env (it installs chromium, chromium-driver and Selenium)",
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/world/browser.py");
    let out = Command::new(python)
        .arg(script)
        .arg(page)
        .arg(screenshot)
        .output()
        .expect("run browser.py");
    assert!(
        out.status.success(),
        "browser.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "browser.py printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[tokio::test]
async fn a_real_batch_page_opens_in_a_browser_with_every_picture_and_the_timeline() {
    let w = World::enforced().await;
    let desk = Desk::of(&w);
    let bucket = w.output_bucket("page").await;
    let name = unique("page");
    let ami = w.test_ami().await;
    let rows: Vec<(u32, String)> = vec![
        (1, format!("pause(1); {}", image(64, 48, [220, 60, 40]))),
        (2, format!("pause(1); {}", image(200, 100, [40, 180, 60]))),
        // Lost mid-job (terminated below) and retried on a fresh instance.
        (3, format!("pause(8); {}", image(96, 96, [60, 90, 220]))),
        (4, format!("pause(1); {}", image(400, 300, [230, 200, 40]))),
        // A MATLAB error after a partial render: outputs and the picture are still saved.
        (
            5,
            format!(
                "{} disp('rendering pass 2 of 3'); error('boom in row 5: the scene file is missing');",
                image(32, 32, [128, 128, 128])
            ),
        ),
        // Succeeds without writing any image: flagged.
        (
            6,
            "fid = fopen(fullfile(getenv('OUTPUT_SCRATCH'), 'notes.txt'), 'w'); fprintf(fid, 'no picture'); fclose(fid);".into(),
        ),
    ];
    let mut csv = String::from("n,cmd\n");
    for (n, cmd) in &rows {
        csv.push_str(&format!("{n},{}\n", quoted(cmd)));
    }
    desk.write(&format!("{name}.csv"), &csv);
    let file = desk.write(
        &format!("{name}.toml"),
        &format!(
            r#"[batch]
csv = "{name}.csv"
parallel = 3
retries = 2

[job]
ami = "{ami}"
instance-type = "t3.micro"
image = "{image}"
interpreter = "octave-cli"
command = "${{cmd}}"
output = "s3://{bucket}/run/${{n}}"
job-id = "{name}-${{n}}"
timeout = "10m"
"#,
            image = support_image()
        ),
    );

    let mut client = Watched::spawn(desk.cmd(&["batch", &file, "--json"]));
    // The live page appears while the batch runs, and reloads itself.
    let page = desk.path(&format!("run-render-logs/{name}/report.html"));
    let lost = format!("{name}-3");
    let started = Instant::now();
    let (mut killed, mut live_seen) = (None, false);
    while client.running() && started.elapsed() < Duration::from_secs(300) {
        if !live_seen {
            if let Ok(text) = std::fs::read_to_string(&page) {
                live_seen = text.contains("http-equiv=\"refresh\"");
            }
        }
        if killed.is_none() {
            let records = format!("run/3/_rtb-job/{lost}/");
            let keys = w.keys(&bucket, &records).await;
            if keys.iter().any(|k| k.contains("/log/")) {
                // A pool instance's tags name its run, not its job: the job's attempt record
                // says where it runs.
                if let Some(id) = w.batch_job_instance(&bucket, &records).await {
                    if w.state_of(&id).await == "running" {
                        w.terminate(&id).await;
                        killed = Some(id);
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let done = client.finish(Duration::from_secs(60));
    assert!(
        killed.is_some(),
        "row 3's instance was terminated under its job"
    );
    assert!(
        live_seen,
        "a live page (with a refresh tag) was written while the batch ran"
    );
    assert_eq!(done.code, Some(71), "one job failed:\n{}", done.all());

    // The summary: the flag, and the page's places at the end.
    let doc: serde_json::Value = serde_json::from_str(&done.stdout()).expect("one JSON document");
    let jobs = doc["jobs"].as_array().expect("jobs");
    let job = |n: u32| {
        jobs.iter()
            .find(|j| j["job_id"] == format!("{name}-{n}"))
            .expect("job")
    };
    assert_eq!(job(6)["outcome"], "succeeded");
    assert_eq!(job(6)["picture_flag"], "no_image");
    assert!(job(1)["picture_flag"].is_null());
    assert_eq!(job(5)["outcome"], "job_failed");
    assert_eq!(job(3)["attempts"].as_array().unwrap().len(), 2);
    let attempts: usize = jobs
        .iter()
        .map(|j| j["attempts"].as_array().unwrap().len())
        .sum();
    let instances: BTreeSet<&str> = jobs
        .iter()
        .flat_map(|j| j["attempts"].as_array().unwrap())
        .filter_map(|a| a["instance_id"].as_str())
        .collect();
    assert_eq!(
        doc["report"]["path"].as_str().map(Path::new),
        Some(Path::new(&format!("run-render-logs/{name}/report.html")))
    );
    let s3_url = format!("s3://{bucket}/run/_rtb-batch/{name}/report.html");
    assert_eq!(doc["report"]["s3_url"], s3_url.as_str());

    // The final page, and its copy in S3, byte for byte.
    let html = std::fs::read_to_string(&page).expect("the page beside the logs");
    assert!(
        !html.contains("http-equiv=\"refresh\""),
        "the final page does not reload"
    );
    let copy = w
        .get(&bucket, &format!("run/_rtb-batch/{name}/report.html"))
        .await
        .expect("the page's copy in S3");
    assert_eq!(copy, html.as_bytes());
    assert!(html.len() < 2 << 20, "{} bytes", html.len());
    // The thumbnails are the runner's: in each attempt's records, small.
    let thumbs: Vec<String> = w
        .keys(&bucket, "run/")
        .await
        .into_iter()
        .filter(|k| k.ends_with("/thumbnail.png"))
        .collect();
    assert_eq!(thumbs.len(), 5, "{thumbs:?}");

    // In the browser.
    let shot = artifact(&format!("{name}.png"));
    let seen = browse(&page, &shot);
    println!("screenshot of the batch's page: {}", shot.display());
    let cards = seen["cards"].as_array().expect("cards");
    assert_eq!(cards.len(), 6, "{seen}");
    let imgs = seen["imgs"].as_array().expect("imgs");
    assert_eq!(imgs.len(), 5, "{seen}");
    let alts: BTreeSet<String> = imgs
        .iter()
        .map(|i| i["alt"].as_str().unwrap().to_string())
        .collect();
    let want: BTreeSet<String> = (1..=5).map(|n| format!("{name}-{n}")).collect();
    assert_eq!(alts, want);
    for i in imgs {
        assert!(i["naturalWidth"].as_u64().unwrap_or(0) > 0, "{i}");
    }
    // Thumbnails keep each render's shape (never enlarged): row 2 is 200x100.
    let img2 = imgs
        .iter()
        .find(|i| i["alt"] == format!("{name}-2"))
        .unwrap();
    assert_eq!(
        (
            img2["naturalWidth"].as_u64(),
            img2["naturalHeight"].as_u64()
        ),
        (Some(200), Some(100))
    );
    let img4 = imgs
        .iter()
        .find(|i| i["alt"] == format!("{name}-4"))
        .unwrap();
    assert_eq!(
        (
            img4["naturalWidth"].as_u64(),
            img4["naturalHeight"].as_u64()
        ),
        (Some(320), Some(240))
    );
    let failed = cards
        .iter()
        .find(|c| c["id"] == format!("{name}-5"))
        .unwrap();
    let text = failed["text"].as_str().unwrap();
    assert!(failed["classes"].as_str().unwrap().contains("failed"));
    assert!(
        text.contains("boom in row 5: the scene file is missing"),
        "{text}"
    );
    assert!(
        text.contains("rendering pass 2 of 3"),
        "the log's last lines: {text}"
    );
    let flagged = cards
        .iter()
        .find(|c| c["id"] == format!("{name}-6"))
        .unwrap();
    assert!(flagged["classes"].as_str().unwrap().contains("flagged"));
    assert!(flagged["text"].as_str().unwrap().contains("no image"));
    // The timeline: one bar per attempt, one row per instance; the retry in orange.
    let bars = seen["bars"].as_array().expect("bars");
    assert_eq!(bars.len(), attempts, "{seen}");
    assert_eq!(bars.iter().filter(|b| b["job"] == lost.as_str()).count(), 2);
    assert!(bars
        .iter()
        .any(|b| b["job"] == lost.as_str() && b["cls"].as_str().unwrap().contains("retried")));
    assert!(bars
        .iter()
        .all(|b| b["width"].as_f64().unwrap_or(0.0) > 0.0));
    let rows: BTreeSet<&str> = seen["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(rows, instances);
    assert!(seen["hbars"].as_u64().unwrap_or(0) >= 1);
    // The filters: "failed" leaves the failed card alone.
    assert_eq!(seen["filters_visible"], true);
    assert_eq!(
        seen["shown_when_failed"],
        serde_json::json!([format!("{name}-5")])
    );
    // Nothing left the file: every request is the page itself or a data: URI.
    for r in seen["requests"].as_array().unwrap() {
        let r = r.as_str().unwrap();
        assert!(r.starts_with("file://") || r.starts_with("data:"), "{r}");
    }

    // `report` from this workstation: the same jobs, up to date from S3.
    let (code, out, err) = desk.out(&["report", "--batch", &name, "--out", "again.html"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), "again.html");
    let again = std::fs::read_to_string(desk.path("again.html")).unwrap();
    assert_eq!(again.matches("<article class=\"card").count(), 6);
    assert_eq!(again.matches("<img alt=").count(), 5);
    assert_eq!(again.matches("<rect class=\"bar ").count(), attempts);

    // From another workstation, given the outputs' folder: S3 alone.
    let other = Desk::of(&w);
    let (code, _, err) = other.out(&[
        "report",
        "--batch",
        &name,
        "--output",
        &format!("s3://{bucket}/run"),
    ]);
    assert_eq!(code, Some(0), "{err}");
    let elsewhere =
        std::fs::read_to_string(other.path(&format!("run-render-logs/{name}/report.html")))
            .unwrap();
    assert_eq!(elsewhere.matches("<article class=\"card").count(), 6);
    assert_eq!(elsewhere.matches("<img alt=").count(), 5);
    assert!(elsewhere.contains("boom in row 5"));
    assert!(elsewhere.contains("rendering pass 2 of 3"));

    // And nothing is left running.
    let live: Vec<_> = w
        .instances_tagged("rtb:batch", &name)
        .await
        .into_iter()
        .filter(|(_, s)| s != "terminated")
        .collect();
    assert!(live.is_empty(), "{live:?}");
    w.assert_no_denials();
}

/// `aws-batch setup` of a fresh queue over moto's default VPC; the queue's name.
async fn moto_queue(desk: &Desk, moto: &str, ec2: &aws_sdk_ec2::Client) -> String {
    let subnet = ec2
        .describe_subnets()
        .send()
        .await
        .expect("subnets")
        .subnets()[0]
        .subnet_id()
        .unwrap_or_default()
        .to_string();
    let sg = ec2
        .describe_security_groups()
        .send()
        .await
        .expect("groups")
        .security_groups()[0]
        .group_id()
        .unwrap_or_default()
        .to_string();
    let q = unique("rtbq");
    let o = desk
        .cmd(&[
            "aws-batch",
            "setup",
            "--queue",
            &q,
            "--ami",
            "ami-12345678",
            "--instance-type",
            "m5.large",
            "--max-vcpus",
            "16",
            "--subnet",
            &subnet,
            "--security-group",
            &sg,
            "--output-bucket",
            "renders",
        ])
        .env("AWS_ENDPOINT_URL", moto)
        .output()
        .expect("setup");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    q
}

/// The AWS Batch engine (moto runs each row as a real container of the rtb-support test image)
/// writes the same page: a card and a thumbnail per job, the failed job's error, a bar per
/// attempt from the runner's own times; beside the logs and in S3. `report` writes it again.
#[tokio::test]
async fn the_aws_batch_engine_writes_the_page_too() {
    let moto = match std::env::var("RTB_WORLD_MOTO_URL") {
        Ok(u) if u.starts_with("http://127.0.0.1:") => u,
        _ => {
            eprintln!("skipped: RTB_WORLD_MOTO_URL is not set (moto is not in this test world)");
            return;
        }
    };
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&moto)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(
            "test", "test", None, None, "t",
        ))
        .load()
        .await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let desk = Desk::new();
    let q = moto_queue(&desk, &moto, &ec2).await;
    let bucket = unique("rtbpg");
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("bucket");
    let scope = common::moto::scope(&q, &[&bucket]);
    let iam = scope
        .moto_endpoint()
        .expect("the IAM proxy in front of moto");
    let name = unique("abpage");
    let rows = [
        (1, image(120, 90, [200, 80, 40])),
        (2, image(90, 90, [40, 160, 200])),
        (3, "error('no lamp in row 3');".to_string()),
    ];
    let mut csv = String::from("n,cmd\n");
    for (n, cmd) in &rows {
        csv.push_str(&format!("{n},{}\n", quoted(cmd)));
    }
    desk.write(&format!("{name}.csv"), &csv);
    let file = desk.write(
        &format!("{name}.toml"),
        &format!(
            r#"[batch]
csv = "{name}.csv"
vcpus = 1
memory-mib = 1024

[job]
ami = "ami-12345678"
image = "{image}"
interpreter = "octave-cli"
command = "${{cmd}}"
output = "s3://{bucket}/run/${{n}}"
job-id = "{name}-${{n}}"
timeout = "10m"
"#,
            image = support_image()
        ),
    );
    // The client as the scope's client, through the IAM proxy in front of moto; its jobs
    // under the queue's job role.
    let batch = |args: &[&str]| {
        let o = desk
            .cmd(args)
            .env("AWS_ENDPOINT_URL", &iam)
            .env("AWS_ACCESS_KEY_ID", &scope.client().key_id)
            .env("AWS_SECRET_ACCESS_KEY", &scope.client().secret)
            // The jobs' own credentials in the test world (never the client's, on AWS).
            .env(
                "RUN_RENDER_TEST_JOB_CREDENTIALS",
                scope.batch_job_credentials(),
            )
            .output()
            .expect("run");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, out, err) = batch(&[
        "batch",
        &file,
        "--engine",
        "aws-batch",
        "--queue",
        &q,
        "--json",
    ]);
    assert_eq!(code, Some(71), "{err}\n{out}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    let key = format!("run/_rtb-batch/{name}/report.html");
    assert_eq!(doc["report"]["s3_url"], format!("s3://{bucket}/{key}"));
    let html = std::fs::read_to_string(desk.path(&format!("run-render-logs/{name}/report.html")))
        .expect("the page beside the logs");
    let copy = s3
        .get_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .expect("the page in S3")
        .body
        .collect()
        .await
        .unwrap()
        .to_vec();
    assert_eq!(copy, html.as_bytes());
    assert!(html.contains("engine aws-batch"));
    assert_eq!(html.matches("<article class=\"card").count(), 3);
    for n in 1..=2 {
        assert!(
            html.contains(&format!(
                "<img alt=\"{name}-{n}\" src=\"data:image/png;base64,"
            )),
            "job {n}"
        );
    }
    assert!(html.contains("no lamp in row 3"));
    assert_eq!(
        html.matches("<rect class=\"bar ").count(),
        3,
        "a bar per attempt"
    );

    // `report` again, from the registry and the records in moto's S3.
    let (code, _, err) = batch(&["report", "--batch", &name, "--out", "again.html"]);
    assert_eq!(code, Some(0), "{err}");
    let again = std::fs::read_to_string(desk.path("again.html")).unwrap();
    assert_eq!(again.matches("<img alt=").count(), 2);
    assert!(again.contains("engine aws-batch") && again.contains("no lamp in row 3"));

    // Detached: the page says where the jobs stood when the client left (and does not claim
    // to be live); `report` later brings it up to date from the records.
    let (code, _, err) = batch(&[
        "batch",
        &file,
        "--engine",
        "aws-batch",
        "--queue",
        &q,
        "--rerun",
        "--detach",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(&format!("run-render report --batch {name}")),
        "{err}"
    );
    let left =
        std::fs::read_to_string(desk.path(&format!("run-render-logs/{name}/report.html"))).unwrap();
    assert!(!left.contains("http-equiv=\"refresh\""));
    let started = Instant::now();
    let later = loop {
        let (code, _, err) = batch(&["report", "--batch", &name, "--out", "later.html"]);
        assert_eq!(code, Some(0), "{err}");
        let later = std::fs::read_to_string(desk.path("later.html")).unwrap();
        let ended = !later.contains("<span class=\"running\">")
            && !later.contains("<span class=\"queued\">");
        if ended || started.elapsed() > Duration::from_secs(120) {
            break later;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    assert!(
        later.contains("<span class=\"succeeded\">2 succeeded</span>"),
        "{later}"
    );
    assert_eq!(later.matches("<img alt=").count(), 2);

    common::moto::assert_no_denials(&scope, true);
    let _ = desk
        .cmd(&["aws-batch", "teardown", "--queue", &q])
        .env("AWS_ENDPOINT_URL", &moto)
        .output();
}

/// The README's lines work as written: the lab's vwcc2 batch ships in examples/ over its
/// unchanged CSV, and the demo's batch expands too.
#[test]
fn the_shipped_examples_expand_in_a_dry_run() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shipped = std::fs::read(repo.join("examples/vwcc2-short-test-jobs.csv")).unwrap();
    let fixture = std::fs::read(repo.join("tests/fixtures/vwcc2-short-test-jobs.csv")).unwrap();
    assert_eq!(shipped, fixture, "the lab's CSV, unchanged");
    let run = |args: &[&str]| {
        let o = run_render(args)
            .current_dir(repo)
            // No AWS at all: an endpoint nobody listens on would fail any call.
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(0), "{args:?}: {err}");
        serde_json::from_slice::<serde_json::Value>(&o.stdout).expect("one JSON document")
    };
    let vwcc2 = run(&["batch", "examples/vwcc2.toml", "--dry-run", "--json"]);
    let jobs = vwcc2["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0]["job_id"], "vwcc2-1");
    assert_eq!(jobs[1]["output"], "s3://render-toolbox-test/vwcc2/job-2");
    let demo = run(&[
        "batch",
        "examples/demo.toml",
        "--dry-run",
        "--json",
        "--ami",
        "ami-0123456789abcdef0",
        "--image",
        "rtb-world/support:test",
    ]);
    let ids: Vec<&str> = demo["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["demo-dawn", "demo-noon", "demo-dusk", "demo-night"]);
}

#[test]
fn report_refuses_a_batch_it_knows_nothing_of() {
    let desk = Desk::new();
    let (code, _, err) = desk.out(&[
        "report",
        "--batch",
        "never-ran",
        "--endpoint-url",
        "http://127.0.0.1:9",
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("batch never-ran: nothing known of it here"),
        "{err}"
    );
    assert!(err.contains("--output"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let (code, _, err) = desk.out(&["report", "--batch", "../x"]);
    assert_eq!(code, Some(2), "{err}");
}
