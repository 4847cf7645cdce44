//! Who runs where: `status`, `list`, `cleanup` and `stop` right about pool instances (whose
//! tags cannot change after launch), instances that AWS Batch manages left alone, an earlier
//! run's instances ended only when that run is dead, rows that would overwrite each other
//! refused, `--resume` re-running rows that changed, and spot fallback that really is
//! on demand.
//!
//! The client runs as the shipped client policy's principal and its instances as the instance
//! role, through the world's IAM proxy (`World::enforced`); each test fails on a refused call.
//! `cleanup_all_owners_...` needs a MiniStack account of its own (`--all-owners` would end other
//! tests' instances): its client signs with that account's 12-digit key, registered as a scope.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{run_render, support_image, unique, Watched, World};
use rtb_testkit::Rule;

/// A test's own workstation (registry, owner) and folder for its batch files.
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

    /// Another workstation of the same user: its own registry, the same `$USER`.
    fn elsewhere(&self) -> Desk {
        Desk {
            env: self.env.clone(),
            state: tempfile::tempdir().expect("tmp"),
            dir: tempfile::tempdir().expect("tmp"),
            user: self.user.clone(),
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
}

/// Rows whose outputs are the same, or one inside another's, are refused before anything is
/// launched, naming both rows (job ids alone were checked, and the rows overwrote each other).
#[test]
fn rows_sharing_an_output_prefix_are_refused_before_launch() {
    let desk = Desk::new();
    desk.write(
        "shared.csv",
        "n,out\n1,s3://lab-renders/scene\n2,s3://lab-renders/other\n3,s3://lab-renders/scene/frames\n",
    );
    let file = desk.write(
        "shared.toml",
        "[batch]\ncsv = \"shared.csv\"\n[job]\nami = \"ami-0abc1234def567890\"\ncommand = \"render(${n})\"\noutput = \"${out}\"\n",
    );
    // Nothing may reach AWS: an endpoint nobody listens on would fail any call.
    for extra in [&[][..], &["--dry-run"][..]] {
        let mut args = vec![
            "batch",
            file.as_str(),
            "--endpoint-url",
            "http://127.0.0.1:9",
        ];
        args.extend_from_slice(extra);
        let (code, out, err) = desk.out(&args);
        assert_eq!(code, Some(2), "{err}");
        assert!(out.is_empty(), "{out}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(
            err.contains("row 3 (line 4)")
                && err.contains("row 1's output s3://lab-renders/scene")
                && err.contains("one inside the other"),
            "{err}"
        );
    }
}

/// An EC2 client for a MiniStack account of the test's own (MiniStack keeps separate state
/// per 12-digit access key id): `cleanup --all-owners` there sees no other test's instances.
async fn own_account() -> (String, aws_sdk_ec2::Client) {
    common::endpoint();
    let account = format!(
        "{:012}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() % 1_000_000_000_000)
            .unwrap_or(7)
    );
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .credentials_provider(aws_credential_types::Credentials::new(
            &account, "test", None, None, "test",
        ))
        .load()
        .await;
    (account, aws_sdk_ec2::Client::new(&config))
}

/// Launch a metadata-only instance (an AMI never registered) with these tags.
async fn tagged_instance(ec2: &aws_sdk_ec2::Client, tags: &[(&str, &str)]) -> String {
    use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
    let spec = TagSpecification::builder()
        .resource_type(ResourceType::Instance)
        .set_tags(Some(
            tags.iter()
                .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
                .collect(),
        ))
        .build();
    ec2.run_instances()
        .image_id("ami-0123456789abcdef0")
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .tag_specifications(spec)
        .send()
        .await
        .expect("run instances")
        .instances()[0]
        .instance_id()
        .expect("id")
        .to_string()
}

async fn state(ec2: &aws_sdk_ec2::Client, id: &str) -> String {
    ec2.describe_instances()
        .instance_ids(id)
        .send()
        .await
        .ok()
        .and_then(|o| {
            o.reservations()
                .iter()
                .flat_map(|r| r.instances())
                .next()
                .and_then(|i| {
                    i.state()
                        .and_then(|s| s.name())
                        .map(|n| n.as_str().to_string())
                })
        })
        .unwrap_or_else(|| "gone".into())
}

/// An AWS Batch compute environment's instance carries `rtb:tool` (the environment's launch
/// tags, as `aws-batch setup` sets them) and no job, so it looked like "no job, older than the
/// limit": `cleanup --all-owners` ended it under running Batch jobs. It is left alone, by the
/// tags AWS puts on the instances it launches for Batch; a real orphan of ours still ends.
#[tokio::test]
async fn cleanup_all_owners_leaves_a_compute_environments_instances_alone() {
    let (account, ec2) = own_account().await;
    // The tags AWS Batch's instances carry: the compute environment's own (ours), the service
    // tag, and the Auto Scaling group AWS Batch names after the environment.
    let ce = tagged_instance(
        &ec2,
        &[
            ("Name", "run-render-lab-queue"),
            ("rtb:tool", "run-render"),
            ("AWSBatchServiceTag", "batch"),
            (
                "aws:autoscaling:groupName",
                "AWSBatch-run-render-lab-ce-asg-6c1e3f2a-0b1d-3e59-9f27-5d0c2ab3e4f1",
            ),
        ],
    )
    .await;
    let orphan = tagged_instance(
        &ec2,
        &[
            ("Name", "run-render-orphan"),
            ("rtb:tool", "run-render"),
            ("rtb:owner", "a-colleague"),
        ],
    )
    .await;
    // The client under the shipped client policy, through the IAM proxy, in that account.
    let scope = rtb_testkit::IamScope::with_client_key(
        rtb_testkit::ScopeSetup {
            account: account.clone(),
            ..rtb_testkit::ScopeSetup::default()
        },
        &account,
    );
    let desk = Desk {
        env: scope.client_env(),
        ..Desk::new()
    };
    let run = |args: &[&str]| {
        let o = desk.cmd(args).output().expect("run");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&[
        "cleanup",
        "--all-owners",
        "--older-than",
        "0s",
        "--yes",
        "--json",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    let line = |id: &str| {
        doc["instances"]
            .as_array()
            .expect("instances")
            .iter()
            .find(|l| l["instance_id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} not judged: {doc}"))
    };
    let kept = line(&ce);
    assert_eq!(kept["terminate"], false, "{kept}");
    assert!(
        kept["why"].as_str().unwrap_or("").contains("AWS Batch"),
        "{kept}"
    );
    assert_eq!(line(&orphan)["terminate"], true, "{doc}");
    assert_eq!(
        state(&ec2, &ce).await,
        "running",
        "the Batch instance runs on"
    );
    assert_ne!(state(&ec2, &orphan).await, "running", "the orphan is ended");
    // `list` shows it for what it is.
    let (code, out, err) = run(&["list", "--all-owners"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with(&ce) && l.contains("(AWS Batch")),
        "{out}"
    );
    let _ = ec2.terminate_instances().instance_ids(&ce).send().await;
    assert!(
        scope.evaluated("client") > 0,
        "the client went through the IAM proxy"
    );
    scope.assert_no_denials();
}

/// Octave code that writes `frame.txt` holding `text` into the job's outputs.
fn frame(text: &str) -> String {
    format!("fid = fopen(fullfile(getenv('OUTPUT_SCRATCH'), 'frame.txt'), 'w'); fprintf(fid, '{text}'); fclose(fid);")
}

/// A CSV field, quoted (RFC 4180).
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The batch file for rows (n, cmd) on the test AMI, outputs under s3://bucket/<n>, with
/// `batch_extra` lines added to `[batch]`.
async fn batch_file(
    w: &World,
    desk: &Desk,
    name: &str,
    bucket: &str,
    rows: &[(u32, String)],
    batch_extra: &str,
) -> String {
    let ami = w.test_ami().await;
    let mut csv = String::from("n,cmd\n");
    for (n, cmd) in rows {
        csv.push_str(&format!("{n},{}\n", quoted(cmd)));
    }
    desk.write(&format!("{name}.csv"), &csv);
    desk.write(
        &format!("{name}.toml"),
        &format!(
            r#"[batch]
csv = "{name}.csv"
retries = 2
{batch_extra}

[job]
ami = "{ami}"
instance-type = "t3.micro"
image = "{image}"
interpreter = "octave-cli"
command = "${{cmd}}"
output = "s3://{bucket}/${{n}}"
job-id = "{name}-${{n}}"
timeout = "10m"
"#,
            image = support_image()
        ),
    )
}

/// Wait until job `job`'s log under `s3://bucket/<n>/` has started.
async fn log_started(w: &World, bucket: &str, n: u32, job: &str, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        let keys = w.keys(bucket, &format!("{n}/_rtb-job/{job}/")).await;
        if keys.iter().any(|k| k.contains("/log/")) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    false
}

/// Every instance of the batch ended (bounded wait); the live ones otherwise.
async fn all_ended(w: &World, batch: &str, limit: Duration) -> Vec<(String, String)> {
    let start = Instant::now();
    loop {
        let live: Vec<_> = w
            .instances_tagged("rtb:batch", batch)
            .await
            .into_iter()
            .filter(|(_, s)| s != "terminated")
            .collect();
        if live.is_empty() || start.elapsed() > limit {
            return live;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The shipped client policy allows CreateTags only inside RunInstances, so a pool instance
/// keeps its launch tags for life (the world's IAM proxy refuses CreateTags after launch as AWS
/// does; a fault proxy in front of it counts the calls). While
/// row 2 runs on the instance row 1 ran on, a workstation that never saw the batch is right
/// about it: `list` names row 2's job, `status` says running, `cleanup --yes` leaves the
/// instance alone; and every row succeeds.
#[tokio::test]
async fn a_reused_instance_is_known_by_the_job_it_runs_now() {
    let w = World::enforced().await;
    let desk = Desk::of(&w);
    let bucket = w.output_bucket("reuse").await;
    let name = unique("reuse");
    let rows = vec![
        (1, format!("pause(1); {}", frame("row 1"))),
        (2, format!("pause(30); {}", frame("row 2"))),
        (3, format!("pause(1); {}", frame("row 3"))),
    ];
    let file = batch_file(&w, &desk, &name, &bucket, &rows, "parallel = 1").await;
    let proxy = w.fault_proxy();
    let client = Watched::spawn({
        let mut c = desk.cmd(&["batch", &file, "--json"]);
        c.env("AWS_ENDPOINT_URL", proxy.endpoint());
        c
    });
    let job2 = format!("{name}-2");
    assert!(
        log_started(&w, &bucket, 2, &job2, Duration::from_secs(180)).await,
        "row 2 did not start"
    );
    let live = all_ended(&w, &name, Duration::ZERO).await;
    assert_eq!(live.len(), 1, "one instance, reused: {live:?}");
    let instance = live[0].0.clone();

    let other = desk.elsewhere();
    let (code, out, err) = other.out(&["list", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let rows: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["instance_id"] == instance.as_str())
        .unwrap_or_else(|| panic!("{instance} not listed: {out}"));
    assert_eq!(
        row["job_id"],
        job2.as_str(),
        "list names the job running now: {row}"
    );

    for (who, args) in [
        (
            &other,
            vec![
                "status",
                &job2,
                "--output",
                &format!("s3://{bucket}/2"),
                "--json",
            ],
        ),
        (&desk, vec!["status", &job2, "--json"]),
    ] {
        let args: Vec<&str> = args.iter().map(|a| a.as_ref()).collect();
        let (code, out, err) = who.out(&args);
        assert_eq!(code, Some(0), "{err}");
        let st: serde_json::Value = serde_json::from_str(&out).expect("JSON");
        assert_eq!(st[0]["state"], "running", "{out}");
        assert_eq!(st[0]["instance_id"], instance.as_str(), "{out}");
    }

    let (code, out, err) = other.out(&["cleanup", "--yes", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let line = doc["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["instance_id"] == instance.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{instance} not judged: {doc}"));
    assert_eq!(line["terminate"], false, "{line}");
    assert!(line["why"].as_str().unwrap_or("").contains(&job2), "{line}");

    let done = client.finish(Duration::from_secs(240));
    assert_eq!(done.code, Some(0), "{}", done.all());
    let doc: serde_json::Value = serde_json::from_str(&done.stdout()).expect("JSON");
    for j in doc["jobs"].as_array().unwrap() {
        assert_eq!(j["outcome"], "succeeded", "{j}");
        assert_eq!(j["attempts"].as_array().unwrap().len(), 1, "{j}");
        assert_eq!(j["attempts"][0]["instance_id"], instance.as_str(), "{j}");
    }
    for n in 1..=3 {
        let got = w.get(&bucket, &format!("{n}/frame.txt")).await;
        assert_eq!(got.as_deref(), Some(format!("row {n}").as_bytes()));
    }
    assert_eq!(proxy.count("CreateTags"), 0, "no tag changes after launch");
    assert!(all_ended(&w, &name, Duration::from_secs(30))
        .await
        .is_empty());
    w.assert_no_denials();
}

/// `stop --batch` from a workstation that never saw the batch, while rows 2 and 3 run on the
/// instance row 1 ran on (per-instance 2; the shipped client policy refuses CreateTags after
/// launch, enforced by the world's IAM proxy): the jobs
/// stopped are the ones running, each saves its partial outputs, and the instance ends once
/// neither runs. (The instance's tags named row 1, whose result exists: it was terminated
/// under rows 2 and 3, with nothing saved.)
#[tokio::test]
async fn stop_batch_stops_the_jobs_running_now_with_their_outputs_saved() {
    let w = World::enforced().await;
    let desk = Desk::of(&w);
    let bucket = w.output_bucket("stopb").await;
    let name = unique("stopb");
    let rows = vec![
        (1, format!("pause(1); {}", frame("row 1"))),
        (2, format!("{} pause(120);", frame("partial 2"))),
        (3, format!("{} pause(120);", frame("partial 3"))),
    ];
    let file = batch_file(
        &w,
        &desk,
        &name,
        &bucket,
        &rows,
        "parallel = 2\nper-instance = 2",
    )
    .await;
    let client = Watched::spawn(desk.cmd(&["batch", &file, "--json"]));
    for n in [2, 3] {
        assert!(
            log_started(
                &w,
                &bucket,
                n,
                &format!("{name}-{n}"),
                Duration::from_secs(180)
            )
            .await,
            "row {n} did not start"
        );
    }
    let live = all_ended(&w, &name, Duration::ZERO).await;
    assert_eq!(live.len(), 1, "one instance for all three rows: {live:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;

    let other = desk.elsewhere();
    // Two jobs at once on it: `list` names both.
    let (code, out, err) = other.out(&["list", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let listed: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["instance_id"] == live[0].0.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("not listed: {out}"));
    let mut jobs: Vec<&str> = row["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|j| j.as_str())
        .collect();
    jobs.sort();
    assert_eq!(jobs, [format!("{name}-2"), format!("{name}-3")], "{row}");
    let (code, out, err) = other.out(&["stop", "--batch", &name, "--json"]);
    assert_eq!(code, Some(0), "{err}\n{out}");
    for n in [2, 3] {
        let got = w.get(&bucket, &format!("{n}/frame.txt")).await;
        assert_eq!(
            got.as_deref(),
            Some(format!("partial {n}").as_bytes()),
            "row {n}'s partial output saved: {err}"
        );
    }
    assert!(
        !err.contains(&format!("{name}-1 has already ended")),
        "{err}"
    );
    assert!(all_ended(&w, &name, Duration::from_secs(30))
        .await
        .is_empty());
    let done = client.finish(Duration::from_secs(120));
    let doc: serde_json::Value = serde_json::from_str(&done.stdout()).expect("JSON");
    let outcomes: Vec<&str> = doc["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["outcome"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(outcomes[0], "succeeded", "{doc}");
    assert!(
        outcomes[1..]
            .iter()
            .all(|o| *o != "succeeded" && *o != "instance_lost"),
        "stopped, not lost: {doc}"
    );
    w.assert_no_denials();
}

/// `stop --batch` on the machine where the batch's client runs asks that client to stop, as
/// Ctrl-C does: the running job saves its outputs, queued jobs are not started, and every
/// instance ends. (Stopping the jobs behind the client's back made it launch the next.)
#[tokio::test]
async fn stop_batch_asks_a_client_on_this_machine_to_stop() {
    let w = World::enforced().await;
    let desk = Desk::of(&w);
    let bucket = w.output_bucket("stopc").await;
    let name = unique("stopc");
    let rows = vec![
        (1, format!("pause(1); {}", frame("row 1"))),
        (2, format!("{} pause(120);", frame("partial 2"))),
        (3, format!("pause(1); {}", frame("row 3"))),
    ];
    let file = batch_file(&w, &desk, &name, &bucket, &rows, "parallel = 1").await;
    let client = Watched::spawn(desk.cmd(&["batch", &file, "--json"]));
    assert!(
        log_started(
            &w,
            &bucket,
            2,
            &format!("{name}-2"),
            Duration::from_secs(180)
        )
        .await,
        "row 2 did not start"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (code, _, err) = desk.out(&["stop", "--batch", &name]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("asking it to stop"), "{err}");
    let done = client.finish(Duration::from_secs(30));
    assert_eq!(done.code, Some(130), "{}", done.all());
    let doc: serde_json::Value = serde_json::from_str(&done.stdout()).expect("JSON");
    let outcomes: Vec<&str> = doc["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["outcome"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(outcomes, ["succeeded", "interrupted", "not_run"], "{doc}");
    let got = w.get(&bucket, "2/frame.txt").await;
    assert_eq!(got.as_deref(), Some(&b"partial 2"[..]));
    assert!(all_ended(&w, &name, Duration::from_secs(30))
        .await
        .is_empty());
    w.assert_no_denials();
}

/// `--resume` / `--rerun` ended an earlier run's instances by batch name and `$USER` alone.
/// While that run is alive in another terminal, or may be alive elsewhere (here: another
/// workstation of the same user name, which knows nothing of it), they are refused with one
/// line saying how to stop it, and the earlier run goes on to succeed untouched.
#[tokio::test]
async fn a_live_earlier_run_keeps_its_instances_on_resume_and_rerun() {
    let w = World::enforced().await;
    let desk = Desk::of(&w);
    let bucket = w.output_bucket("alive").await;
    let name = unique("alive");
    let rows = vec![
        (1, format!("pause(25); {}", frame("row 1"))),
        (2, format!("pause(1); {}", frame("row 2"))),
    ];
    let file = batch_file(&w, &desk, &name, &bucket, &rows, "parallel = 1").await;
    let client = Watched::spawn(desk.cmd(&["batch", &file, "--json"]));
    assert!(
        log_started(
            &w,
            &bucket,
            1,
            &format!("{name}-1"),
            Duration::from_secs(180)
        )
        .await,
        "row 1 did not start"
    );
    let live = all_ended(&w, &name, Duration::ZERO).await;
    assert_eq!(live.len(), 1, "{live:?}");
    let instance = &live[0].0;

    let colleague = desk.elsewhere();
    let (code, out, err) = colleague.out(&["batch", &file, "--rerun"]);
    assert_eq!(code, Some(2), "{err}{out}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains(instance.as_str()) && err.contains(&format!("run-render stop --batch {name}")),
        "{err}"
    );
    let (code, _, err) = desk.out(&["batch", &file, "--resume"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("another terminal (pid"), "{err}");
    assert_eq!(w.state_of(instance).await, "running");

    let done = client.finish(Duration::from_secs(180));
    assert_eq!(done.code, Some(0), "{}", done.all());
    let doc: serde_json::Value = serde_json::from_str(&done.stdout()).expect("JSON");
    for j in doc["jobs"].as_array().unwrap() {
        assert_eq!(j["outcome"], "succeeded", "{j}");
        assert_eq!(j["attempts"].as_array().unwrap().len(), 1, "{j}");
    }
    w.assert_no_denials();
}

/// `--resume` trusted the job id alone: a row edited since (its command here; with default
/// ids, any row moved by an inserted one) was skipped as "succeeded". Each attempt records
/// what it ran; a row that changed runs again, and the client says so.
#[tokio::test]
async fn resume_runs_again_a_row_that_changed() {
    let w = World::enforced().await;
    let desk = Desk::of(&w);
    let bucket = w.output_bucket("changed").await;
    let name = unique("changed");
    let rows = vec![(1, frame("row 1 v1")), (2, frame("row 2 v1"))];
    let file = batch_file(&w, &desk, &name, &bucket, &rows, "parallel = 2").await;
    let (code, _, err) = desk.out(&["batch", &file]);
    assert_eq!(code, Some(0), "{err}");
    // Row 2 edited; its job id and output stay the same.
    desk.write(
        &format!("{name}.csv"),
        &format!(
            "n,cmd\n1,{}\n2,{}\n",
            quoted(&frame("row 1 v1")),
            quoted(&frame("row 2 v2"))
        ),
    );
    let (code, out, err) = desk.out(&["batch", &file, "--resume", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "{name}-2 (row 2) succeeded in an earlier run, but its row has changed since (COMMAND)"
        )),
        "{err}"
    );
    let doc: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let ran: Vec<&str> = doc["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| !j["attempts"].as_array().unwrap().is_empty())
        .map(|j| j["job_id"].as_str().unwrap())
        .collect();
    assert_eq!(ran, [format!("{name}-2")], "only the changed row: {doc}");
    let got = w.get(&bucket, "2/frame.txt").await;
    assert_eq!(got.as_deref(), Some(&b"row 2 v2"[..]));
    // Nothing changed now: nothing to run.
    let (code, _, err) = desk.out(&["batch", &file, "--resume"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("nothing to run"), "{err}");
    w.assert_no_denials();
}

/// Spot fallback: a job whose spot instance was lost is retried on demand, and no lane of
/// another spot instance may take it (it did: the retry went to the front of the queue, and
/// the first lane to finish took it, spot or not). Each attempt records what it asked for
/// and what EC2 says it ran on (MiniStack reports every instance on demand).
#[tokio::test]
async fn a_job_falling_back_to_on_demand_never_runs_on_a_spot_lane() {
    let w = World::enforced().await;
    let desk = Desk::of(&w);
    let bucket = w.output_bucket("spot").await;
    let name = unique("spot");
    let rows: Vec<(u32, String)> = (1..=4)
        .map(|n| (n, format!("pause(8); {}", frame(&format!("row {n}")))))
        .collect();
    let file = batch_file(
        &w,
        &desk,
        &name,
        &bucket,
        &rows,
        "parallel = 4\nper-instance = 2\nspot = true",
    )
    .await;
    let proxy = w.fault_proxy();
    // The on-demand instance for the retries comes late: the spot lane finishes first.
    proxy.add(
        Rule::on("RunInstances")
            .skip(2)
            .times(1)
            .delay(Duration::from_secs(15)),
    );
    let client = Watched::spawn({
        let mut c = desk.cmd(&["batch", &file, "--json"]);
        c.env("AWS_ENDPOINT_URL", proxy.endpoint());
        c
    });
    for n in 1..=4 {
        assert!(
            log_started(
                &w,
                &bucket,
                n,
                &format!("{name}-{n}"),
                Duration::from_secs(180)
            )
            .await,
            "row {n} did not start; refused: {:?}",
            w.scope().denials()
        );
    }
    let spot: Vec<String> = all_ended(&w, &name, Duration::ZERO)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(spot.len(), 2, "two spot instances: {spot:?}");
    let lost = w
        .batch_job_instance(&bucket, &format!("1/_rtb-job/{name}-1/"))
        .await
        .expect("row 1's attempt record");
    w.terminate(&lost).await;

    let done = client.finish(Duration::from_secs(240));
    assert_eq!(done.code, Some(0), "{}", done.all());
    let doc: serde_json::Value = serde_json::from_str(&done.stdout()).expect("JSON");
    let mut retried = 0;
    for j in doc["jobs"].as_array().unwrap() {
        assert_eq!(j["outcome"], "succeeded", "{j}");
        let attempts = j["attempts"].as_array().unwrap();
        if attempts[0]["instance_id"] == lost.as_str() {
            retried += 1;
            assert_eq!(attempts.len(), 2, "{j}");
            let again = attempts[1]["instance_id"].as_str().unwrap();
            assert!(
                !spot.iter().any(|s| s == again),
                "the on-demand retry ran on spot instance {again}: {j}"
            );
        }
        for a in attempts {
            assert_eq!(a["spot"], false, "EC2 (MiniStack) says on demand: {a}");
        }
    }
    assert_eq!(
        retried, 2,
        "both jobs of the lost instance were retried: {doc}"
    );
    // What each attempt asked for, in its record.
    let records: Vec<String> = w
        .keys(&bucket, &format!("1/_rtb-job/{name}-1/"))
        .await
        .into_iter()
        .filter(|k| k.ends_with("/attempt.json"))
        .collect();
    assert_eq!(records.len(), 2, "{records:?}");
    let asked: Vec<bool> = {
        let mut v = Vec::new();
        for k in &records {
            let doc: serde_json::Value =
                serde_json::from_slice(&w.get(&bucket, k).await.unwrap()).unwrap();
            v.push(doc["spot_requested"].as_bool().unwrap());
        }
        v
    };
    assert_eq!(asked, [true, false], "spot, then on demand");
    assert!(all_ended(&w, &name, Duration::from_secs(30))
        .await
        .is_empty());
    w.assert_no_denials();
}

/// A client that may not write the batch's records (a client policy from before they
/// existed) is refused before anything is launched, with one line naming what it needs:
/// without them, no other workstation could tell which job a pool instance runs. The shipped
/// policy allows the write, so a fault proxy in front of the IAM proxy refuses it as AWS would
/// under the older policy; every other call is the shipped policy's to allow.
#[tokio::test]
async fn a_client_that_may_not_write_the_records_launches_nothing() {
    let w = World::enforced().await;
    let desk = Desk::of(&w);
    let bucket = w.output_bucket("norec").await;
    let name = unique("norec");
    let rows = vec![(1, frame("row 1"))];
    let file = batch_file(&w, &desk, &name, &bucket, &rows, "parallel = 1").await;
    let proxy = w.fault_proxy();
    proxy.add(
        Rule::on("PutObject")
            .path_contains("_rtb-batch")
            .error(403, "AccessDenied")
            .message("Access Denied"),
    );
    let (code, _, err) = {
        let o = desk
            .cmd(&["batch", &file])
            .env("AWS_ENDPOINT_URL", proxy.endpoint())
            .output()
            .expect("run");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    assert_eq!(code, Some(65), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("AccessDenied")
            && err.contains("s3:PutObject")
            && err.contains("client-policy.json"),
        "{err}"
    );
    assert_eq!(proxy.count("RunInstances"), 0, "nothing launched");
    w.assert_no_denials();
}

/// The same, under the shipped policies enforced: the client, and the instances it launches,
/// act as their IAM principals through the world's IAM proxy, which refuses what
/// `ami/iam/` does not allow (CreateTags after launch among it). While row 2 runs on the
/// instance row 1 ran on, another workstation's `list` names row 2's job, `status` says
/// running, `cleanup --yes` leaves it alone; every row succeeds, and nothing was refused.
#[tokio::test]
async fn under_the_enforced_client_policy_a_reused_instance_is_known_by_its_job() {
    let w = World::enforced().await;
    let desk = Desk::new();
    let bucket = w.output_bucket("enf").await;
    let name = unique("enf");
    let rows = vec![
        (1, format!("pause(1); {}", frame("row 1"))),
        (2, format!("pause(30); {}", frame("row 2"))),
        (3, format!("pause(1); {}", frame("row 3"))),
    ];
    let file = batch_file(&w, &desk, &name, &bucket, &rows, "parallel = 1").await;
    let as_client = |d: &Desk, args: &[&str]| {
        let mut c = d.cmd(args);
        w.scope().apply(&mut c);
        c
    };
    let run = |d: &Desk, args: &[&str]| {
        let o = as_client(d, args).output().expect("run");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let client = Watched::spawn(as_client(&desk, &["batch", &file, "--json"]));
    let job2 = format!("{name}-2");
    assert!(
        log_started(&w, &bucket, 2, &job2, Duration::from_secs(180)).await,
        "row 2 did not start"
    );
    let live = all_ended(&w, &name, Duration::ZERO).await;
    assert_eq!(live.len(), 1, "one instance, reused: {live:?}");
    let instance = live[0].0.clone();

    let other = desk.elsewhere();
    let (code, out, err) = run(&other, &["list", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let listed: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["instance_id"] == instance.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{instance} not listed: {out}"));
    assert_eq!(row["job_id"], job2.as_str(), "{row}");
    let output = format!("s3://{bucket}/2");
    let (code, out, err) = run(&other, &["status", &job2, "--output", &output, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let st: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(st[0]["state"], "running", "{out}");
    let (code, out, err) = run(&other, &["cleanup", "--yes", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let line = doc["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["instance_id"] == instance.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{instance} not judged: {doc}"));
    assert_eq!(line["terminate"], false, "{line}");

    let done = client.finish(Duration::from_secs(240));
    assert_eq!(done.code, Some(0), "{}", done.all());
    let doc: serde_json::Value = serde_json::from_str(&done.stdout()).expect("JSON");
    for j in doc["jobs"].as_array().unwrap() {
        assert_eq!(j["outcome"], "succeeded", "{j}");
        assert_eq!(j["attempts"][0]["instance_id"], instance.as_str(), "{j}");
    }
    for n in 1..=3 {
        let got = w.get(&bucket, &format!("{n}/frame.txt")).await;
        assert_eq!(got.as_deref(), Some(format!("row {n}").as_bytes()));
    }
    w.assert_no_denials();
    assert!(
        w.scope().evaluated("instance") > 0,
        "the runner's calls went through enforcement as the instance role"
    );
    assert!(all_ended(&w, &name, Duration::from_secs(30))
        .await
        .is_empty());
}
