//! `run-render batch --engine aws-batch` end to end on moto (its AWS Batch runs each job as a
//! real container from the rtb-support test image, with Octave): setup, the same batch file
//! as the EC2 engine, the summary and exit code, `--detach` then `status --batch`, `stop
//! --batch`, teardown. Skipped, with the reason, when moto is not in the test world.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{run_render, support_image, unique};

fn moto() -> Option<String> {
    match std::env::var("RTB_WORLD_MOTO_URL") {
        Ok(u) if u.starts_with("http://127.0.0.1:") => Some(u),
        _ => {
            eprintln!("skipped: RTB_WORLD_MOTO_URL is not set (moto is not in this test world)");
            None
        }
    }
}

struct Desk {
    state: tempfile::TempDir,
    dir: tempfile::TempDir,
    user: String,
    moto: String,
}

impl Desk {
    fn new(moto: &str) -> Desk {
        Desk {
            state: tempfile::tempdir().expect("tmp"),
            dir: tempfile::tempdir().expect("tmp"),
            user: unique("user"),
            moto: moto.to_string(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = run_render(args);
        c.env("XDG_STATE_HOME", self.state.path())
            .env("USER", &self.user)
            .env("AWS_ENDPOINT_URL", &self.moto)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
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
}

async fn clients(moto: &str) -> (aws_sdk_s3::Client, aws_sdk_ec2::Client) {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(moto)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(
            "test", "test", None, None, "t",
        ))
        .load()
        .await;
    (
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .force_path_style(true)
                .build(),
        ),
        aws_sdk_ec2::Client::new(&config),
    )
}

async fn get(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Option<Vec<u8>> {
    let out = s3.get_object().bucket(bucket).key(key).send().await.ok()?;
    Some(out.body.collect().await.ok()?.to_vec())
}

/// `aws-batch setup` for a fresh queue over moto's default VPC; the queue's name.
async fn queue(desk: &Desk, ec2: &aws_sdk_ec2::Client) -> String {
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
    let args = [
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
    ];
    // A dry run first: it lists the steps and makes nothing.
    let mut dry = args.to_vec();
    dry.push("--dry-run");
    let (code, _, err) = desk.out(&dry);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("would: create job queue"), "{err}");
    let (code, _, err) = desk.out(&args);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("did: create job queue"), "{err}");
    // Idempotent: the second time nothing is created (the policies are put again as shipped).
    let (code, _, err) = desk.out(&args);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("create"), "{err}");
    q
}

fn batch_file(desk: &Desk, name: &str, bucket: &str, rows: &[(u32, String)]) -> String {
    let mut csv = String::from("n,cmd\n");
    for (n, c) in rows {
        csv.push_str(&format!("{n},\"{}\"\n", c.replace('"', "\"\"")));
    }
    std::fs::write(desk.dir.path().join(format!("{name}.csv")), csv).unwrap();
    let path = desk.dir.path().join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"[batch]
csv = "{name}.csv"
vcpus = 1
memory-mib = 1024

[job]
ami = "ami-12345678"
image = "{image}"
interpreter = "octave-cli"
command = "${{cmd}}"
output = "s3://{bucket}/${{n}}"
job-id = "{name}-${{n}}"
timeout = "10m"
"#,
            image = support_image(),
        ),
    )
    .unwrap();
    path.display().to_string()
}

fn frame(n: u32) -> String {
    format!("fid = fopen(fullfile(getenv('OUTPUT_SCRATCH'), 'frame.txt'), 'w'); fprintf(fid, 'row {n}'); fclose(fid);")
}

/// 6 rows through the rtb-support test image and Octave on moto's AWS Batch: outputs in
/// moto's S3, the failing row FAILED with its MATLAB error, the summary and exit code right;
/// the job definition is reused by a second run; teardown removes what setup made.
#[tokio::test]
async fn a_batch_file_runs_on_aws_batch_with_one_matlab_error() {
    let Some(moto) = moto() else { return };
    let desk = Desk::new(&moto);
    let (s3, ec2) = clients(&moto).await;
    let q = queue(&desk, &ec2).await;
    let bucket = unique("rtbab");
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("bucket");
    let name = unique("ab");
    let rows: Vec<(u32, String)> = (1..=6)
        .map(|n| {
            (
                n,
                if n == 4 {
                    "error('the lamp is missing in row 4');".into()
                } else {
                    frame(n)
                },
            )
        })
        .collect();
    let file = batch_file(&desk, &name, &bucket, &rows);
    let (code, out, err) = desk.out(&[
        "batch",
        &file,
        "--engine",
        "aws-batch",
        "--queue",
        &q,
        "--json",
    ]);
    assert_eq!(code, Some(71), "{err}\n{out}");
    assert!(
        err.contains("submitted to") && err.contains("1 call(s)"),
        "one array job: {err}"
    );
    let doc: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    for j in doc["jobs"].as_array().unwrap() {
        let id = j["job_id"].as_str().unwrap();
        let n: u32 = id.rsplit('-').next().unwrap().parse().unwrap();
        if n == 4 {
            assert_eq!(j["outcome"], "job_failed", "{j}");
            assert_eq!(j["exit_code"], 1, "{j}");
            assert!(
                j["error"]
                    .as_str()
                    .unwrap_or("")
                    .contains("the lamp is missing in row 4"),
                "{j}"
            );
        } else {
            assert_eq!(j["outcome"], "succeeded", "{j}");
            assert_eq!(
                get(&s3, &bucket, &format!("{n}/frame.txt"))
                    .await
                    .as_deref(),
                Some(format!("row {n}").as_bytes())
            );
        }
    }
    assert!(err.contains("job definition run-render-"), "{err}");

    // Again with --rerun: nothing changed, so the ACTIVE definition is reused, not registered
    // again (tests running side by side may have registered the same one first).
    let (code, _, err) = desk.out(&[
        "batch",
        &file,
        "--engine",
        "aws-batch",
        "--queue",
        &q,
        "--rerun",
        "--json",
    ]);
    assert_eq!(code, Some(71), "{err}");
    assert!(err.contains("reused: nothing changed"), "{err}");

    let (code, _, err) = desk.out(&["aws-batch", "teardown", "--queue", &q]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("did: delete job queue"), "{err}");
    let (code, _, err) = desk.out(&["aws-batch", "teardown", "--queue", &q]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("nothing to do"), "{err}");
}

/// `--detach` returns after submitting; `status --batch` shows the jobs; `stop --batch`
/// ends the running ones.
#[tokio::test]
async fn a_detached_aws_batch_is_seen_by_status_and_ended_by_stop() {
    let Some(moto) = moto() else { return };
    let desk = Desk::new(&moto);
    let (s3, ec2) = clients(&moto).await;
    let q = queue(&desk, &ec2).await;
    let bucket = unique("rtbab");
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("bucket");
    let name = unique("abd");
    let rows: Vec<(u32, String)> = (1..=2)
        .map(|n| {
            (
                n,
                format!(
                    "{} disp('row {n} is rendering'); fflush(stdout); pause(120);",
                    frame(n)
                ),
            )
        })
        .collect();
    let file = batch_file(&desk, &name, &bucket, &rows);
    let t = Instant::now();
    let (code, _, err) = desk.out(&[
        "batch",
        &file,
        "--engine",
        "aws-batch",
        "--queue",
        &q,
        "--detach",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(&format!("run-render stop --batch {name}")),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(60));
    // Both jobs start writing their logs, with no client.
    let start = Instant::now();
    loop {
        let (code, out, err) = desk.out(&["status", "--batch", &name, "--json"]);
        assert_eq!(code, Some(0), "{err}");
        let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
        let states: Vec<&str> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["state"].as_str().unwrap_or(""))
            .collect();
        if states.len() == 2 && states.iter().all(|s| *s == "running") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "{states:?}");
        std::thread::sleep(Duration::from_secs(1));
    }
    // The live log, from the job's S3 chunks while it runs.
    let start = Instant::now();
    loop {
        let (_, out, _) = desk.out(&["logs", &format!("{name}-2")]);
        if out.contains("row 2 is rendering") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no live log line: {out}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let (code, _, err) = desk.out(&["stop", "--batch", &name]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("2 terminated") || err.contains("terminated"),
        "{err}"
    );
    // Their containers were stopped: the runner wrote its record of the interruption.
    let start = Instant::now();
    loop {
        let (_, out, _) = desk.out(&["status", "--batch", &name, "--json"]);
        let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
        let states: Vec<&str> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["state"].as_str().unwrap_or(""))
            .collect();
        if states.iter().all(|s| *s != "running" && *s != "starting") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "still {states:?} after stop"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    // Following a stopped job ends: with its result record, or with AWS Batch's word that it
    // is over when it was killed before writing one.
    let t = Instant::now();
    let (code, _, err) = desk.out(&["logs", &format!("{name}-1"), "--follow"]);
    assert!(code == Some(0) || code == Some(68), "{code:?}: {err}");
    assert!(t.elapsed() < Duration::from_secs(30), "{err}");
    let _ = desk.out(&["aws-batch", "teardown", "--queue", &q]);
}

/// Ctrl-C while following an AWS Batch batch only detaches: the jobs belong to AWS Batch and
/// go on; the client says how to stop them, and `stop --batch` does.
#[tokio::test]
async fn ctrl_c_while_following_detaches_and_the_jobs_go_on() {
    let Some(moto) = moto() else { return };
    let desk = Desk::new(&moto);
    let (s3, ec2) = clients(&moto).await;
    let q = queue(&desk, &ec2).await;
    let bucket = unique("rtbab");
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("bucket");
    let name = unique("abc");
    let rows: Vec<(u32, String)> = (1..=2)
        .map(|n| (n, format!("{} pause(120);", frame(n))))
        .collect();
    let file = batch_file(&desk, &name, &bucket, &rows);
    let mut client =
        common::Watched::spawn(desk.cmd(&["batch", &file, "--engine", "aws-batch", "--queue", &q]));
    assert!(
        client
            .wait_for("submitted to", Duration::from_secs(60))
            .is_some(),
        "not submitted"
    );
    std::thread::sleep(Duration::from_secs(2));
    client.signal(libc::SIGINT);
    let done = client.finish(Duration::from_secs(30));
    assert_eq!(done.code, Some(0), "{}", done.all());
    assert!(
        done.stderr()
            .contains(&format!("run-render stop --batch {name}")),
        "{}",
        done.all()
    );
    // Still there after the client left: AWS Batch runs them.
    let (code, out, err) = desk.out(&["status", "--batch", &name, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["state"] == "running" || r["state"] == "starting"),
        "{out}"
    );
    let (code, _, err) = desk.out(&["stop", "--batch", &name]);
    assert_eq!(code, Some(0), "{err}");
    let _ = desk.out(&["aws-batch", "teardown", "--queue", &q]);
}
