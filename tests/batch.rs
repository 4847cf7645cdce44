//! `run-render batch` end to end on the emulator: the vwcc2 CSV expanded exactly, a real
//! batch on a pool (a MATLAB error, an instance terminated from outside and retried), resume,
//! Ctrl-C mid-batch, and bad files refused before anything is launched.
//!
//! The client runs as the shipped client policy's principal and its instances as the instance
//! role, through the world's IAM proxy (`World::enforced`); each test fails on a refused call.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{run_render, support_image, unique, Watched, World};

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

/// Octave code that writes `frame.txt` holding `text` into the job's outputs.
fn frame(text: &str) -> String {
    format!("fid = fopen(fullfile(getenv('OUTPUT_SCRATCH'), 'frame.txt'), 'w'); fprintf(fid, '{text}'); fclose(fid);")
}

/// A CSV field, quoted (RFC 4180).
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The batch file for rows (n, cmd) on the test AMI, outputs under s3://bucket/<n>.
async fn batch_file(
    w: &World,
    desk: &Desk,
    name: &str,
    bucket: &str,
    parallel: u32,
    rows: &[(u32, String)],
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
parallel = {parallel}
retries = 2

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

/// (id, state) of every instance tagged with this batch.
async fn batch_instances(w: &World, batch: &str) -> Vec<(String, String)> {
    w.instances_tagged("rtb:batch", batch).await
}

async fn all_ended(w: &World, batch: &str, limit: Duration) -> Vec<(String, String)> {
    let start = Instant::now();
    loop {
        let live: Vec<_> = batch_instances(w, batch)
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

#[test]
fn the_vwcc2_csv_expands_exactly_in_a_dry_run() {
    let desk = Desk::new();
    // The production CSV of the original scripts (client/vwcc2-production/), unchanged.
    let src =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vwcc2-short-test-jobs.csv");
    let csv_text = std::fs::read_to_string(&src).expect("tests/fixtures/vwcc2-short-test-jobs.csv");
    desk.write("vwcc2-jobs.csv", &csv_text);
    let file = desk.write(
        "vwcc2.toml",
        r#"[batch]
csv = "vwcc2-jobs.csv"
parallel = 10
per-instance = 1
retries = 2

[job]
ami = "ami-0abc1234def567890"
instance-type = "m4.2xlarge"
disk-gb = 100
matlab-root = "/usr/local/MATLAB/R2015b"
volume = ["/home/ubuntu:/home/ubuntu"]
startup = "/home/ubuntu/MATLAB/startup"
toolboxes = "{'VirtualWorldColorConstancy', 'isetbio'}"
command = "RunToyVirtualWorldRecipes('luminanceLevels', ${luminanceLevels}, 'reflectanceNumbers', ${reflectanceNumbers})"
env = ["OUTPUT_SCRATCH=/home/ubuntu/render-toolbox-working"]
output = "s3://${bucket path}"
name = "vwcc2-job-${job number}"
job-id = "vwcc2-${job number}"
"#,
    );
    // No AWS at all: an endpoint nobody listens on would fail any call.
    let (code, out, err) = desk.out(&[
        "batch",
        &file,
        "--dry-run",
        "--json",
        "--endpoint-url",
        "http://127.0.0.1:9",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    assert_eq!(doc["dry_run"], true);
    let jobs = doc["jobs"].as_array().expect("jobs");

    // The expected values, read from the CSV independently of the client.
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(csv_text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    let rows: Vec<BTreeMap<String, String>> = reader
        .records()
        .map(|r| {
            header
                .iter()
                .cloned()
                .zip(r.unwrap().iter().map(str::to_string))
                .collect()
        })
        .collect();
    assert_eq!(jobs.len(), rows.len());
    assert!(rows.len() >= 2);
    for (job, row) in jobs.iter().zip(&rows) {
        let n = &row["job number"];
        assert_eq!(job["job_id"], format!("vwcc2-{n}"));
        assert_eq!(job["name"], format!("vwcc2-job-{n}"));
        assert_eq!(job["output"], format!("s3://{}", row["bucket path"]));
        assert_eq!(
            job["command"],
            format!(
                "RunToyVirtualWorldRecipes('luminanceLevels', {}, 'reflectanceNumbers', {})",
                row["luminanceLevels"], row["reflectanceNumbers"]
            )
        );
        assert_eq!(job["startup"], "/home/ubuntu/MATLAB/startup");
        assert_eq!(
            job["toolboxes"],
            "{'VirtualWorldColorConstancy', 'isetbio'}"
        );
        let s = &job["settings"];
        assert_eq!(s["OUTPUT_SCRATCH"], "/home/ubuntu/render-toolbox-working");
        assert_eq!(s["OUTPUT_BUCKET"], format!("s3://{}", row["bucket path"]));
        assert_eq!(s["COMMAND"], job["command"]);
        assert_eq!(s["TOOLBOXES"], job["toolboxes"]);
    }
    // A flag on the command line overrides the file.
    let (code, out, err) = desk.out(&[
        "batch",
        &file,
        "--dry-run",
        "--json",
        "--instance-type",
        "c5.4xlarge",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("\"jobs\""), "{out}");
    let (code, text, err) =
        desk.out(&["batch", &file, "--dry-run", "--instance-type", "c5.4xlarge"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(text.contains("c5.4xlarge"), "{text}");
}

#[tokio::test]
async fn bad_files_are_refused_with_their_row_and_nothing_is_launched() {
    let w = World::enforced().await;
    let desk = Desk::of(&w);
    let bucket = w.output_bucket("bad").await;
    let name = unique("bad");
    let file = batch_file(
        &w,
        &desk,
        &name,
        &bucket,
        2,
        &[(1, frame("a")), (2, frame("b"))],
    )
    .await;
    // Row 2's output is not an S3 URL.
    desk.write(
        &format!("{name}.csv"),
        &format!(
            "n,cmd\n1,{}\n2 x,{}\n",
            quoted(&frame("a")),
            quoted(&frame("b"))
        ),
    );
    let (code, _, err) = desk.out(&["batch", &file]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("row 2 (line 3)"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    // An unknown column in the template.
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("${n}\"\ntimeout", "${N}\"\ntimeout");
    std::fs::write(&file, text).unwrap();
    let (code, _, err) = desk.out(&["batch", &file]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("${N} is not a column"), "{err}");
    assert!(
        batch_instances(&w, &name).await.is_empty(),
        "nothing was launched"
    );
    w.scope().assert_no_denials();
}

/// 8 jobs, parallel 3: one MATLAB error, one instance terminated from outside mid-job and
/// retried. Outputs of the others in S3, at most 3 instances at once and fewer than 8 in all,
/// the summary right, nothing left running. Then --resume runs only the failed job.
#[tokio::test]
async fn a_batch_runs_on_a_pool_retries_a_lost_instance_and_resumes() {
    let w = World::enforced().await;
    let desk = Desk::of(&w);
    let bucket = w.output_bucket("pool").await;
    let name = unique("pool");
    let rows: Vec<(u32, String)> = (1..=8)
        .map(|n| {
            let cmd = match n {
                5 => "error('boom in row 5');".to_string(),
                3 => format!("pause(8); {}", frame("row 3")),
                _ => format!("pause(1); {}", frame(&format!("row {n}"))),
            };
            (n, cmd)
        })
        .collect();
    let file = batch_file(&w, &desk, &name, &bucket, 3, &rows).await;
    let mut client = Watched::spawn(desk.cmd(&["batch", &file, "--json"]));

    // Watch the pool; kill row 3's first instance once its job has started writing its log.
    let lost_job = format!("{name}-3");
    let started = Instant::now();
    let mut peak = 0;
    let mut killed: Option<String> = None;
    while client.running() && started.elapsed() < Duration::from_secs(240) {
        let live = batch_instances(&w, &name)
            .await
            .into_iter()
            .filter(|(_, s)| s == "running" || s == "pending")
            .count();
        peak = peak.max(live);
        if killed.is_none() {
            let keys = w.keys(&bucket, &format!("3/_rtb-job/{lost_job}/")).await;
            if keys.iter().any(|k| k.contains("/log/")) {
                // A pool instance's tags name no job: the attempt's record says where it runs.
                let prefix = format!("3/_rtb-job/{lost_job}/");
                if let Some(id) = w.batch_job_instance(&bucket, &prefix).await {
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
    let killed = killed.expect("row 3's instance was seen running its job and terminated");
    assert_eq!(done.code, Some(71), "{}", done.stderr());
    let doc: serde_json::Value = serde_json::from_str(&done.stdout()).expect("one JSON document");
    let jobs = doc["jobs"].as_array().unwrap();
    let by_id: BTreeMap<String, &serde_json::Value> = jobs
        .iter()
        .map(|j| (j["job_id"].as_str().unwrap().to_string(), j))
        .collect();
    for n in 1..=8 {
        let j = by_id[&format!("{name}-{n}")];
        if n == 5 {
            assert_eq!(j["outcome"], "job_failed", "{j}");
            assert_eq!(j["exit_code"], 1);
            assert!(
                j["error"].as_str().unwrap_or("").contains("boom in row 5"),
                "the MATLAB error: {j}"
            );
            assert_eq!(
                j["attempts"].as_array().unwrap().len(),
                1,
                "a MATLAB error is not retried"
            );
        } else {
            assert_eq!(j["outcome"], "succeeded", "{j}");
            let got = w.get(&bucket, &format!("{n}/frame.txt")).await;
            assert_eq!(
                got.as_deref(),
                Some(format!("row {n}").as_bytes()),
                "row {n}'s output"
            );
        }
    }
    let lost = by_id[&lost_job]["attempts"].as_array().unwrap();
    assert_eq!(lost.len(), 2, "retried once: {lost:?}");
    assert_eq!(lost[0]["instance_id"], killed.as_str());
    assert!(lost[0]["retried_because"].as_str().is_some(), "{lost:?}");
    assert_ne!(
        lost[1]["instance_id"],
        killed.as_str(),
        "the retry ran on a fresh instance"
    );

    let launched: BTreeSet<String> = batch_instances(&w, &name)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert!(
        launched.len() < 8,
        "the pool reuses instances: {} launched",
        launched.len()
    );
    assert_eq!(doc["pool"]["instances_launched"], launched.len());
    assert!(peak <= 3, "{peak} instances at once");
    assert!(doc["pool"]["peak_instances"].as_u64().unwrap() <= 3);
    assert!(
        all_ended(&w, &name, Duration::from_secs(30))
            .await
            .is_empty(),
        "nothing left running"
    );
    assert!(desk
        .dir
        .path()
        .join(format!("run-render-logs/{name}/{name}-5.log"))
        .exists());

    // Again: refused, naming the jobs that have results.
    let (code, _, err) = desk.out(&["batch", &file]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--resume") && err.contains(&format!("{name}-1")),
        "{err}"
    );
    // --resume: only the failed job runs.
    let (code, out, err) = desk.out(&["batch", &file, "--resume", "--json"]);
    assert_eq!(code, Some(71), "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let ran: Vec<&str> = doc["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| !j["attempts"].as_array().unwrap().is_empty())
        .map(|j| j["job_id"].as_str().unwrap())
        .collect();
    assert_eq!(ran, [format!("{name}-5")]);
    assert_eq!(doc["pool"]["instances_launched"], 1);
    assert_eq!(doc["jobs_succeeded"], 7);

    // From a machine that never saw the batch: the job's output alone finds its newest
    // attempt's records (the retry's, which succeeded).
    let elsewhere = Desk::of(&w);
    let (code, out, err) = elsewhere.out(&[
        "status",
        &lost_job,
        "--output",
        &format!("s3://{bucket}/3"),
        "--json",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows[0]["state"], "succeeded", "{out}");

    // `status --batch` knows every job.
    let (code, out, err) = desk.out(&["status", "--batch", &name, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 8, "{out}");
    w.assert_no_denials();
}

/// Ctrl-C mid-batch: every running job is stopped with its partial outputs saved, every
/// instance is terminated, the queued jobs are reported not run.
#[tokio::test]
async fn ctrl_c_mid_batch_saves_partial_outputs_and_terminates_everything() {
    let w = World::enforced().await;
    let desk = Desk::of(&w);
    let bucket = w.output_bucket("stop").await;
    let name = unique("stop");
    let rows: Vec<(u32, String)> = (1..=4)
        .map(|n| (n, format!("{} pause(60);", frame(&format!("partial {n}")))))
        .collect();
    let file = batch_file(&w, &desk, &name, &bucket, 2, &rows).await;
    let client = Watched::spawn(desk.cmd(&["batch", &file, "--json"]));
    // Both running jobs have started (their logs exist).
    let start = Instant::now();
    loop {
        let a = w.keys(&bucket, &format!("1/_rtb-job/{name}-1/")).await;
        let b = w.keys(&bucket, &format!("2/_rtb-job/{name}-2/")).await;
        if a.iter().any(|k| k.contains("/log/")) && b.iter().any(|k| k.contains("/log/")) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "jobs did not start"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    client.signal(libc::SIGINT);
    let done = client.finish(Duration::from_secs(120));
    assert_eq!(done.code, Some(130), "{}", done.stderr());
    for n in 1..=2 {
        let got = w.get(&bucket, &format!("{n}/frame.txt")).await;
        assert_eq!(
            got.as_deref(),
            Some(format!("partial {n}").as_bytes()),
            "job {n}'s partial output"
        );
    }
    let doc: serde_json::Value = serde_json::from_str(&done.stdout()).expect("JSON");
    let outcomes: Vec<&str> = doc["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["interrupted", "interrupted", "not_run", "not_run"],
        "{doc}"
    );
    assert!(
        all_ended(&w, &name, Duration::from_secs(30))
            .await
            .is_empty(),
        "every instance terminated"
    );
    w.assert_no_denials();
}

/// A job file (`[job]` without csv) is a batch of one: `run --file`, flags on top.
#[test]
fn a_job_file_serves_a_single_run() {
    let desk = Desk::new();
    let file = desk.write(
        "job.toml",
        "[job]\nami = \"ami-0abc1234def567890\"\ncommand = \"render('scene 1')\"\noutput = \"s3://lab-renders/scene-1\"\njob-id = \"scene-1\"\n",
    );
    let (code, out, err) = desk.out(&[
        "run",
        "--file",
        &file,
        "--instance-type",
        "c5.large",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(doc["job_id"], "scene-1");
    assert_eq!(doc["launch"]["instance_types"][0], "c5.large");
    assert!(doc["script"]
        .as_str()
        .unwrap()
        .contains("render('scene 1')"));
    let bad = desk.write(
        "bad.toml",
        "[job]\nami = \"ami-0abc1234def567890\"\ncomand = \"x\"\n",
    );
    let (code, _, err) = desk.out(&["run", "--file", &bad]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("comand: is not a flag") && err.contains("did you mean command?"),
        "{err}"
    );
}

/// `per-instance = 2`: two jobs at once on one instance, so 4 jobs at parallel 4 take 2
/// instances; every job's output lands and nothing is left running.
#[tokio::test]
async fn two_jobs_share_an_instance_with_per_instance_2() {
    let w = World::enforced().await;
    let desk = Desk::of(&w);
    let bucket = w.output_bucket("per").await;
    let name = unique("per");
    let rows: Vec<(u32, String)> = (1..=4)
        .map(|n| (n, format!("pause(2); {}", frame(&format!("shared {n}")))))
        .collect();
    let file = batch_file(&w, &desk, &name, &bucket, 4, &rows).await;
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("parallel = 4\n", "parallel = 4\nper-instance = 2\n");
    std::fs::write(&file, text).unwrap();
    let (code, out, err) = desk.out(&["batch", &file, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(doc["pool"]["instances_launched"], 2, "{doc}");
    let per_instance: BTreeSet<String> = doc["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            j["attempts"][0]["instance_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(per_instance.len(), 2, "4 jobs on 2 instances: {doc}");
    for n in 1..=4 {
        let got = w.get(&bucket, &format!("{n}/frame.txt")).await;
        assert_eq!(got.as_deref(), Some(format!("shared {n}").as_bytes()));
    }
    assert!(all_ended(&w, &name, Duration::from_secs(30))
        .await
        .is_empty());
    w.assert_no_denials();
}
