//! A pool job runs as if it had a fresh instance of its own (issue 15, "Isolation"), end to end
//! on the emulator with Octave in the support image and real Docker:
//! - the lab's layout (the host's home mounted, OUTPUT_SCRATCH inside it) over 4 rows on one
//!   instance: every output holds only its own row's files, the home's other files stay;
//!   per-instance = 2 sharing that folder is refused before launch, a folder per row runs;
//! - a long batch on one instance removes each finished job's container;
//! - an instance whose own deadline fired after its job is not handed the next one;
//! - per-instance = 2: Ctrl-C saves both lanes' outputs; `stop JOB` of one lane, or a row
//!   whose container cannot start, leaves the other running; a co-tenant's shorter timeout
//!   does not cut the longer job's deadline.
//!
//! The client runs as the shipped client policy's principal and its instances as the instance
//! role, through the world's IAM proxy (`World::enforced`); each test fails on a refused call.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
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

/// Removes, at the end of a test (passed or not), the job containers of its jobs that are
/// still on this Docker engine: only those labelled with one of its job ids.
struct JobContainers {
    prefix: String,
}

impl JobContainers {
    /// (job id, status) of every container whose rtb-job label starts with the prefix.
    fn list(&self) -> Vec<(String, String)> {
        let out = Command::new("docker")
            .args([
                "ps",
                "-a",
                "--filter",
                "label=rtb-job",
                "--format",
                "{{.Label \"rtb-job\"}}|{{.Status}}",
            ])
            .output()
            .expect("docker ps");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('|'))
            .filter(|(job, _)| job.starts_with(&self.prefix))
            .map(|(j, s)| (j.to_string(), s.to_string()))
            .collect()
    }
}

impl Drop for JobContainers {
    fn drop(&mut self) {
        for (job, _) in self.list() {
            let _ = Command::new("docker")
                .args(["rm", "-f", &format!("rtb-job-{job}")])
                .output();
        }
    }
}

/// Octave code that writes `name` holding `text` into the job's OUTPUT_SCRATCH.
fn put(name: &str, text: &str) -> String {
    format!("fid = fopen(fullfile(getenv('OUTPUT_SCRATCH'), '{name}'), 'w'); fprintf(fid, '{text}'); fclose(fid);")
}

/// A CSV field, quoted (RFC 4180).
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A batch file `<name>.toml` with its CSV: `[batch]` gets `batch`, `[job]` the test AMI,
/// the support image, Octave, `job-id = "<name>-${n}"`, `output = "s3://<bucket>/<name>/${n}"`
/// and `job`; the CSV has the columns `n,cmd` plus `columns`.
/// One test batch: its name, the bucket its outputs go to, what `[batch]` and `[job]` add,
/// the CSV's extra columns (",a,b") and its rows.
struct Spec<'a> {
    name: &'a str,
    bucket: &'a str,
    batch: &'a str,
    job: &'a str,
    columns: &'a str,
    rows: &'a [Vec<String>],
}

async fn batch_file(w: &World, desk: &Desk, spec: Spec<'_>) -> String {
    let Spec {
        name,
        bucket,
        batch,
        job,
        columns,
        rows,
    } = spec;
    let ami = w.test_ami().await;
    let mut csv = format!("n,cmd{columns}\n");
    for row in rows {
        csv.push_str(&row.iter().map(|v| quoted(v)).collect::<Vec<_>>().join(","));
        csv.push('\n');
    }
    desk.write(&format!("{name}.csv"), &csv);
    desk.write(
        &format!("{name}.toml"),
        &format!(
            r#"[batch]
csv = "{name}.csv"
{batch}

[job]
ami = "{ami}"
instance-type = "t3.micro"
{image}
interpreter = "octave-cli"
command = "${{cmd}}"
output = "s3://{bucket}/{name}/${{n}}"
job-id = "{name}-${{n}}"
{job}
"#,
            // A test may give its own (per row).
            image = if job.contains("image =") {
                String::new()
            } else {
                format!("image = \"{}\"", support_image())
            }
        ),
    )
}

/// The summary of a batch run with --json.
fn summary(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("one JSON document ({e}): {out}"))
}

fn job<'a>(doc: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    doc["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .find(|j| j["job_id"] == id)
        .unwrap_or_else(|| panic!("no job {id} in {doc}"))
}

/// The keys under `prefix/` that are the job's own outputs (its records folder left out).
async fn outputs(w: &World, bucket: &str, prefix: &str) -> BTreeSet<String> {
    w.keys(bucket, &format!("{prefix}/"))
        .await
        .into_iter()
        .filter(|k| !k.contains("/_rtb-job/"))
        .map(|k| k[prefix.len() + 1..].to_string())
        .collect()
}

/// Row `n`'s output holds its own files only: its `row-<n>.txt`, its matlab.log and the one
/// workspace (`rtb-job-<time>.mat`) the runner saves after the command.
async fn assert_own_files(w: &World, bucket: &str, prefix: &str, n: u32) {
    let got = outputs(w, bucket, prefix).await;
    let rows: Vec<&String> = got.iter().filter(|k| k.starts_with("row-")).collect();
    let workspaces = got.iter().filter(|k| k.ends_with(".mat")).count();
    assert!(
        rows == [&format!("row-{n}.txt")]
            && workspaces == 1
            && got.contains("matlab.log")
            && got.len() == 3,
        "{prefix} holds other jobs' files: {got:?}"
    );
}

/// The text of a job's log chunks so far (every attempt). (The log quotes the command first:
/// a job marks a moment with text its command does not hold, e.g. `disp(['rea' 'dy'])`.)
async fn log_text(w: &World, bucket: &str, prefix: &str) -> String {
    let mut text = String::new();
    for k in w.keys(bucket, &format!("{prefix}/_rtb-job/")).await {
        if k.contains("/log/") {
            if let Some(b) = w.get(bucket, &k).await {
                text.push_str(&String::from_utf8_lossy(&b));
            }
        }
    }
    text
}

async fn wait_for_logs(w: &World, bucket: &str, marks: &[(&str, &str)], limit: Duration) {
    let start = Instant::now();
    loop {
        let mut all = true;
        for (prefix, text) in marks {
            all &= log_text(w, bucket, prefix).await.contains(text);
        }
        if all {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "the jobs did not reach {marks:?} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}

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

/// A file's bytes and modification time.
fn fingerprint(p: &Path) -> (Vec<u8>, std::time::SystemTime) {
    (
        std::fs::read(p).expect("read"),
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .expect("mtime"),
    )
}

/// The lab's production layout on a pool: the host's home mounted at the same path (peer
/// renderers need host paths), OUTPUT_SCRATCH inside it, a startup script next to it. Four
/// rows on one instance, one after another: each output holds only its own row's files and
/// the home's other files are untouched. Then per-instance = 2 with that one shared folder
/// is refused before anything is launched, and with a folder per row it runs, isolated.
#[tokio::test]
async fn the_lab_layout_keeps_every_pool_job_to_its_own_files() {
    let w = World::enforced().await;
    let desk = Desk::of(&w);
    let bucket = w.output_bucket("lab").await;
    let name = unique("lab");
    let _containers = JobContainers {
        prefix: name.clone(),
    };
    // The instance's "home": a folder on this machine, which is the Docker host.
    let home = tempfile::Builder::new()
        .prefix("rtb-pool-home-")
        .tempdir()
        .expect("tmp");
    let home_path = home.path().display().to_string();
    std::fs::create_dir_all(home.path().join("MATLAB")).unwrap();
    let startup = home.path().join("MATLAB/startup.m");
    std::fs::write(&startup, "disp('lab startup ran');\n").unwrap();
    let notes = home.path().join("notes.txt");
    std::fs::write(&notes, "the lab's own file\n").unwrap();
    let (startup_before, notes_before) = (fingerprint(&startup), fingerprint(&notes));

    let lab_job = |scratch: &str| {
        format!(
            "volume = [\"{home_path}:{home_path}\"]\nstartup = \"{home_path}/MATLAB/startup\"\nenv = [\"OUTPUT_SCRATCH={home_path}/{scratch}\"]\ntimeout = \"10m\"\n"
        )
    };
    let rows: Vec<Vec<String>> = (1..=4)
        .map(|n| {
            vec![
                n.to_string(),
                put(&format!("row-{n}.txt"), &format!("row {n}")),
            ]
        })
        .collect();
    let file = batch_file(
        &w,
        &desk,
        Spec {
            name: &name,
            bucket: &bucket,
            batch: "parallel = 1\nretries = 0",
            job: &lab_job("render-toolbox-working"),
            columns: "",
            rows: &rows,
        },
    )
    .await;
    let (code, out, err) = desk.out(&["batch", &file, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let doc = summary(&out);
    assert_eq!(
        doc["pool"]["instances_launched"], 1,
        "the four rows ran one after another on one instance: {doc}"
    );
    for n in 1..=4 {
        assert_own_files(&w, &bucket, &format!("{name}/{n}"), n).await;
        let log = w
            .get(&bucket, &format!("{name}/{n}/matlab.log"))
            .await
            .unwrap();
        assert!(
            String::from_utf8_lossy(&log).contains("lab startup ran"),
            "row {n} ran the lab's startup script"
        );
    }
    assert_eq!(fingerprint(&startup), startup_before, "startup.m untouched");
    assert_eq!(fingerprint(&notes), notes_before, "notes.txt untouched");
    assert!(all_ended(&w, &name, Duration::from_secs(30))
        .await
        .is_empty());

    // per-instance = 2 with the one shared folder: refused before launch, naming the setting.
    let launched = w.instances_tagged("rtb:batch", &name).await.len();
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("parallel = 1\n", "parallel = 2\nper-instance = 2\n");
    std::fs::write(&file, text).unwrap();
    let (code, _, err) = desk.out(&["batch", &file, "--rerun"]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("OUTPUT_SCRATCH") && err.contains("per-instance"),
        "{err}"
    );
    assert_eq!(
        w.instances_tagged("rtb:batch", &name).await.len(),
        launched,
        "nothing was launched"
    );

    // A folder of its own per row: two at once on one instance, each with its own files.
    let iso = unique("iso");
    let _iso_containers = JobContainers {
        prefix: iso.clone(),
    };
    let file = batch_file(
        &w,
        &desk,
        Spec {
            name: &iso,
            bucket: &bucket,
            batch: "parallel = 2\nper-instance = 2\nretries = 0",
            job: &lab_job("rtw/${n}"),
            columns: "",
            rows: &rows,
        },
    )
    .await;
    let (code, out, err) = desk.out(&["batch", &file, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let doc = summary(&out);
    assert_eq!(doc["pool"]["instances_launched"], 1, "{doc}");
    for n in 1..=4 {
        assert_own_files(&w, &bucket, &format!("{iso}/{n}"), n).await;
    }
    assert_eq!(fingerprint(&startup), startup_before, "startup.m untouched");
    assert!(all_ended(&w, &iso, Duration::from_secs(30))
        .await
        .is_empty());
    w.assert_no_denials();
}

/// Six jobs one after another on one instance: each job's container is removed once it has
/// ended (its outputs uploaded), so at most one of them exists at a time and none is left.
#[tokio::test]
async fn a_long_batch_on_one_instance_removes_each_finished_container() {
    let w = World::enforced().await;
    let desk = Desk::of(&w);
    let bucket = w.output_bucket("disk").await;
    let name = unique("disk");
    let containers = JobContainers {
        prefix: name.clone(),
    };
    let rows: Vec<Vec<String>> = (1..=6)
        .map(|n| vec![n.to_string(), put("frame.txt", &format!("row {n}"))])
        .collect();
    let file = batch_file(
        &w,
        &desk,
        Spec {
            name: &name,
            bucket: &bucket,
            batch: "parallel = 1\nretries = 0",
            job: "timeout = \"10m\"",
            columns: "",
            rows: &rows,
        },
    )
    .await;
    let mut client = Watched::spawn(desk.cmd(&["batch", &file, "--json"]));
    let mut most = 0;
    let mut seen = BTreeSet::new();
    let start = Instant::now();
    while client.running() && start.elapsed() < Duration::from_secs(300) {
        let now = containers.list();
        most = most.max(now.len());
        seen.extend(now.into_iter().map(|(j, _)| j));
        std::thread::sleep(Duration::from_millis(200));
    }
    let done = client.finish(Duration::from_secs(60));
    assert_eq!(done.code, Some(0), "{}", done.all());
    let doc = summary(&done.stdout());
    assert_eq!(doc["pool"]["instances_launched"], 1, "{doc}");
    assert!(seen.len() >= 2, "the job containers were seen: {seen:?}");
    assert_eq!(most, 1, "at most one job container at a time, saw {most}");
    assert!(
        containers.list().is_empty(),
        "no job container left: {:?}",
        containers.list()
    );
    for n in 1..=6 {
        let got = w.get(&bucket, &format!("{name}/{n}/frame.txt")).await;
        assert_eq!(got.as_deref(), Some(format!("row {n}").as_bytes()));
    }
    assert!(all_ended(&w, &name, Duration::from_secs(30))
        .await
        .is_empty());
    w.assert_no_denials();
}

/// Row 1's instance reaches its own deadline just after row 1 ended (the client is held back
/// reading row 1's result, so the moment is certain): it is not handed row 2, which runs on
/// a fresh instance at its first attempt.
#[tokio::test]
async fn an_instance_whose_deadline_fired_after_its_job_is_not_handed_the_next() {
    let w = World::enforced().await;
    let desk = Desk::of(&w);
    let bucket = w.output_bucket("gone").await;
    let name = unique("gone");
    let _containers = JobContainers {
        prefix: name.clone(),
    };
    let rows: Vec<Vec<String>> = (1..=2)
        .map(|n| vec![n.to_string(), put("frame.txt", &format!("row {n}"))])
        .collect();
    let file = batch_file(
        &w,
        &desk,
        Spec {
            name: &name,
            bucket: &bucket,
            batch: "parallel = 1\nretries = 2",
            job: "timeout = \"10m\"",
            columns: "",
            rows: &rows,
        },
    )
    .await;
    let proxy = w.fault_proxy();
    // The client's read of the first attempt's result record (row 1's) waits 12 s.
    proxy.add(
        Rule::on("GetObject")
            .path_contains("-a1/result.json")
            .times(1)
            .delay(Duration::from_secs(12)),
    );
    let mut cmd = desk.cmd(&["batch", &file, "--json"]);
    cmd.env("AWS_ENDPOINT_URL", proxy.endpoint());
    let client = Watched::spawn(cmd);
    let start = Instant::now();
    loop {
        let held = proxy.calls().into_iter().any(|c| {
            c.action == "GetObject" && c.path.contains("-a1/result.json") && c.status.is_none()
        });
        if held {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "row 1 did not end"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let live: Vec<String> = w
        .instances_tagged("rtb:batch", &name)
        .await
        .into_iter()
        .filter(|(_, s)| s == "running")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(live.len(), 1, "{live:?}");
    let first = live[0].clone();
    // Its deadline fires in 2 s, armed as the job script arms it on the instance.
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let armed = Command::new("docker")
        .args([
            "exec",
            &format!("ministack-ec2-000000000000-us-east-1-{first}"),
            "rtb-deadline",
            &(epoch + 2).to_string(),
        ])
        .output()
        .expect("docker exec");
    assert!(armed.status.success(), "{armed:?}");
    let start = Instant::now();
    while w.state_of(&first).await != "terminated" {
        assert!(start.elapsed() < Duration::from_secs(9), "it did not end");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let done = client.finish(Duration::from_secs(240));
    assert_eq!(done.code, Some(0), "{}", done.all());
    let doc = summary(&done.stdout());
    let second = job(&doc, &format!("{name}-2"));
    let attempts = second["attempts"].as_array().unwrap();
    assert_eq!(
        attempts.len(),
        1,
        "no attempt burnt on the dead instance: {second}"
    );
    assert_ne!(attempts[0]["instance_id"], first.as_str(), "{second}");
    assert_eq!(doc["pool"]["instances_launched"], 2, "{doc}");
    for n in 1..=2 {
        let got = w.get(&bucket, &format!("{name}/{n}/frame.txt")).await;
        assert_eq!(got.as_deref(), Some(format!("row {n}").as_bytes()));
    }
    assert!(all_ended(&w, &name, Duration::from_secs(30))
        .await
        .is_empty());
    w.assert_no_denials();
}

/// per-instance = 2, Ctrl-C: both jobs are stopped and both save their outputs before the
/// instance is terminated, row 2's too, although its stop takes longer (it left a process
/// that ignores SIGTERM holding its output, which its runner waits 2 s for).
#[tokio::test]
async fn per_instance_2_ctrl_c_saves_both_lanes_outputs() {
    let w = World::enforced().await;
    let desk = Desk::of(&w);
    let bucket = w.output_bucket("twoc").await;
    let name = unique("twoc");
    let _containers = JobContainers {
        prefix: name.clone(),
    };
    let rows = vec![
        vec![
            "1".into(),
            format!(
                "{} disp(['rea' 'dy']); pause(120);",
                put("frame.txt", "partial 1")
            ),
        ],
        vec![
            "2".into(),
            format!(
                "{} system('trap \"\" TERM; sleep 300 &'); disp(['rea' 'dy']); pause(120);",
                put("frame.txt", "partial 2")
            ),
        ],
    ];
    let file = batch_file(
        &w,
        &desk,
        Spec {
            name: &name,
            bucket: &bucket,
            batch: "parallel = 2\nper-instance = 2\nretries = 0",
            job: "timeout = \"10m\"",
            columns: "",
            rows: &rows,
        },
    )
    .await;
    let client = Watched::spawn(desk.cmd(&["batch", &file, "--json"]));
    wait_for_logs(
        &w,
        &bucket,
        &[
            (&format!("{name}/1"), "ready"),
            (&format!("{name}/2"), "ready"),
        ],
        Duration::from_secs(180),
    )
    .await;
    client.signal(libc::SIGINT);
    let done = client.finish(Duration::from_secs(180));
    assert_eq!(done.code, Some(130), "{}", done.all());
    for n in 1..=2 {
        let got = w.get(&bucket, &format!("{name}/{n}/frame.txt")).await;
        assert_eq!(
            got.as_deref(),
            Some(format!("partial {n}").as_bytes()),
            "row {n}'s partial output; {}",
            done.all()
        );
    }
    let doc = summary(&done.stdout());
    assert_eq!(doc["pool"]["instances_launched"], 1, "{doc}");
    for n in 1..=2 {
        assert_eq!(job(&doc, &format!("{name}-{n}"))["outcome"], "interrupted");
    }
    assert!(all_ended(&w, &name, Duration::from_secs(30))
        .await
        .is_empty());
    w.assert_no_denials();
}

/// per-instance = 2: `run-render stop` of one lane's job stops that job (its outputs saved)
/// and leaves the instance to the other, which runs on to success at its first attempt.
#[tokio::test]
async fn per_instance_2_stop_of_one_job_leaves_the_other_running() {
    let w = World::enforced().await;
    let desk = Desk::of(&w);
    let bucket = w.output_bucket("twos").await;
    let name = unique("twos");
    let _containers = JobContainers {
        prefix: name.clone(),
    };
    let rows = vec![
        vec![
            "1".into(),
            format!(
                "{} disp(['rea' 'dy']); pause(120);",
                put("frame.txt", "partial 1")
            ),
        ],
        vec![
            "2".into(),
            format!(
                "disp(['rea' 'dy']); pause(25); {}",
                put("frame.txt", "whole 2")
            ),
        ],
    ];
    let file = batch_file(
        &w,
        &desk,
        Spec {
            name: &name,
            bucket: &bucket,
            batch: "parallel = 2\nper-instance = 2\nretries = 2",
            job: "timeout = \"10m\"",
            columns: "",
            rows: &rows,
        },
    )
    .await;
    let client = Watched::spawn(desk.cmd(&["batch", &file, "--json"]));
    wait_for_logs(
        &w,
        &bucket,
        &[
            (&format!("{name}/1"), "ready"),
            (&format!("{name}/2"), "ready"),
        ],
        Duration::from_secs(180),
    )
    .await;
    let (code, _, err) = desk.out(&["stop", &format!("{name}-1")]);
    assert_eq!(code, Some(0), "{err}");
    let live: Vec<(String, String)> = w
        .instances_tagged("rtb:batch", &name)
        .await
        .into_iter()
        .filter(|(_, s)| s == "running")
        .collect();
    assert_eq!(
        live.len(),
        1,
        "the instance still runs row 2: {live:?}; {err}"
    );
    let got = w.get(&bucket, &format!("{name}/1/frame.txt")).await;
    assert_eq!(
        got.as_deref(),
        Some(&b"partial 1"[..]),
        "row 1's outputs saved"
    );

    let done = client.finish(Duration::from_secs(180));
    assert_eq!(done.code, Some(71), "row 1 was stopped: {}", done.all());
    let doc = summary(&done.stdout());
    let second = job(&doc, &format!("{name}-2"));
    assert_eq!(second["outcome"], "succeeded", "{second}");
    let attempts = second["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "row 2 was not cut short: {second}");
    assert_eq!(attempts[0]["instance_id"], live[0].0.as_str());
    assert_eq!(
        job(&doc, &format!("{name}-1"))["attempts"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "a stopped job is not run again"
    );
    let got = w.get(&bucket, &format!("{name}/2/frame.txt")).await;
    assert_eq!(got.as_deref(), Some(&b"whole 2"[..]));
    assert_eq!(doc["pool"]["instances_launched"], 1, "{doc}");
    assert!(all_ended(&w, &name, Duration::from_secs(30))
        .await
        .is_empty());
    w.assert_no_denials();
}

/// per-instance = 2: row 1 works for 45 s; next to it row 2, then row 3 (timeout 30 s, no
/// margin) starts: the instance's deadline stays the latest its jobs need, so row 1 ends by
/// itself, on the same instance, at its first attempt.
#[tokio::test]
async fn per_instance_2_a_shorter_timeout_does_not_cut_the_longer_job() {
    let w = World::enforced().await;
    let desk = Desk::of(&w);
    let bucket = w.output_bucket("twod").await;
    let name = unique("twod");
    let _containers = JobContainers {
        prefix: name.clone(),
    };
    let row = |n: u32, cmd: String, timeout: &str, margin: &str| {
        vec![n.to_string(), cmd, timeout.to_string(), margin.to_string()]
    };
    let rows = vec![
        row(
            1,
            format!("pause(45); {}", put("frame.txt", "long 1")),
            "10m",
            "30m",
        ),
        row(
            2,
            format!("pause(1); {}", put("frame.txt", "quick 2")),
            "10m",
            "30m",
        ),
        row(
            3,
            format!("pause(1); {}", put("frame.txt", "short 3")),
            "30s",
            "0s",
        ),
    ];
    let file = batch_file(
        &w,
        &desk,
        Spec {
            name: &name,
            bucket: &bucket,
            batch: "parallel = 2\nper-instance = 2\nretries = 2",
            job: "timeout = \"${timeout}\"\ndeadline-margin = \"${margin}\"",
            columns: ",timeout,margin",
            rows: &rows,
        },
    )
    .await;
    let (code, out, err) = desk.out(&["batch", &file, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let doc = summary(&out);
    let first = job(&doc, &format!("{name}-1"));
    let attempts = first["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "row 1 was not cut short: {first}");
    assert_eq!(
        attempts[0]["instance_id"],
        job(&doc, &format!("{name}-3"))["attempts"][0]["instance_id"],
        "rows 1 and 3 on one instance"
    );
    assert_eq!(doc["pool"]["instances_launched"], 1, "{doc}");
    for (n, text) in [(1, "long 1"), (2, "quick 2"), (3, "short 3")] {
        let got = w.get(&bucket, &format!("{name}/{n}/frame.txt")).await;
        assert_eq!(got.as_deref(), Some(text.as_bytes()));
    }
    assert!(all_ended(&w, &name, Duration::from_secs(30))
        .await
        .is_empty());
    w.assert_no_denials();
}

/// per-instance = 2: row 2's container cannot be started (its image is nowhere to be had):
/// that row fails, and the instance is not ended under row 1, which runs on to success.
#[tokio::test]
async fn per_instance_2_a_row_that_cannot_start_leaves_the_other_running() {
    let w = World::enforced().await;
    let desk = Desk::of(&w);
    let bucket = w.output_bucket("twob").await;
    let name = unique("twob");
    let _containers = JobContainers {
        prefix: name.clone(),
    };
    let rows = vec![
        vec![
            "1".into(),
            format!("pause(15); {}", put("frame.txt", "whole 1")),
            support_image(),
        ],
        vec![
            "2".into(),
            "disp(2);".into(),
            // A registry that is not there (on this machine): the pull fails at once.
            "127.0.0.1:9/no-such-image:none".into(),
        ],
    ];
    let file = batch_file(
        &w,
        &desk,
        Spec {
            name: &name,
            bucket: &bucket,
            batch: "parallel = 2\nper-instance = 2\nretries = 0",
            job: "timeout = \"10m\"\nimage = \"${image}\"",
            columns: ",image",
            rows: &rows,
        },
    )
    .await;
    let (code, out, err) = desk.out(&["batch", &file, "--json"]);
    assert_eq!(code, Some(71), "{err}");
    let doc = summary(&out);
    assert_eq!(
        job(&doc, &format!("{name}-2"))["outcome"],
        "remote_failed",
        "{doc}"
    );
    let first = job(&doc, &format!("{name}-1"));
    assert_eq!(first["outcome"], "succeeded", "row 1 ran on: {first}");
    assert_eq!(first["attempts"].as_array().unwrap().len(), 1, "{first}");
    let got = w.get(&bucket, &format!("{name}/1/frame.txt")).await;
    assert_eq!(got.as_deref(), Some(&b"whole 1"[..]));
    assert_eq!(doc["pool"]["instances_launched"], 1, "{doc}");
    assert!(all_ended(&w, &name, Duration::from_secs(30))
        .await
        .is_empty());
    w.assert_no_denials();
}
