//! The subcommands end to end on the emulator: `run --detach` and a job nobody watches,
//! `status`, `logs`, `stop`, `attach`, `cleanup`, a lost instance, a crashed client.
//! Each test has a registry of its own (XDG_STATE_HOME) and an owner of its own (USER), and
//! runs the client and its instances under the shipped IAM policies (`World::enforced`),
//! failing on a refused call.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{run_render, support_image, unique, Watched, World};

/// A test's own workstation: its registry folder and its user name, and the world's client
/// principal (its keys and the IAM proxy as endpoint).
struct Desk {
    state: tempfile::TempDir,
    user: String,
    env: Vec<(&'static str, String)>,
}

impl Desk {
    fn new(w: &World) -> Desk {
        Desk {
            state: tempfile::tempdir().expect("tmp"),
            user: unique("user"),
            env: w.scope().client_env(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = run_render(args);
        c.envs(self.env.iter().cloned())
            .env_remove("AWS_SESSION_TOKEN")
            .env("XDG_STATE_HOME", self.state.path())
            .env("USER", &self.user);
        c
    }

    /// Run a subcommand to its end: (exit code, stdout, stderr).
    fn out(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let o = self.cmd(args).output().expect("run");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    /// `status JOB --json`, the job's row.
    fn status(&self, job: &str) -> serde_json::Value {
        let (code, out, err) = self.out(&["status", job, "--json"]);
        assert_eq!(code, Some(0), "{err}");
        let rows: serde_json::Value = serde_json::from_str(&out).expect("JSON");
        rows[0].clone()
    }

    fn wait_state(&self, job: &str, want: &str, limit: Duration) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let row = self.status(job);
            if row["state"] == want || start.elapsed() > limit {
                return row;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// A container job's flags on the test AMI with Octave, its output under `s3://<out>/o`.
async fn job(w: &World, name: &str, command: &str) -> (Vec<String>, String, String) {
    let ami = w.test_ami().await;
    let out = w.output_bucket(name).await;
    let job_id = unique(name);
    let args = [
        "--ami",
        &ami,
        "--job-id",
        &job_id,
        "--image",
        &support_image(),
        "--interpreter",
        "octave-cli",
        "--instance-type",
        "t3.micro",
        "--output",
        &format!("s3://{out}/o"),
        "--command",
        command,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    (args, job_id, out)
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

async fn wait_gone(w: &World, id: &str, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        let s = w.state_of(id).await;
        if s == "terminated" || s == "gone" || start.elapsed() > limit {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

const TICKING: &str = "for i = 1:8, printf('tick %d\\n', i); pause(1); end; \
    fid = fopen(fullfile(getenv('OUTPUT_SCRATCH'), 'frame.txt'), 'w'); fprintf(fid, 'rendered'); fclose(fid);";

/// `run --detach` returns while the job runs; the job runs to its end with no client, its
/// outputs and record land in S3, `status` follows it, `logs` shows every line, and the
/// instance ends itself within a minute of the job's end.
#[tokio::test]
async fn a_detached_job_runs_to_its_end_alone_and_its_instance_ends_itself() {
    let w = World::enforced().await;
    let desk = Desk::new(&w);
    let (mut args, job_id, out) = job(&w, "det", TICKING).await;
    args.insert(0, "run".into());
    args.push("--detach".into());
    let started = Instant::now();
    let (code, _, err) = desk.out(&refs(&args));
    assert_eq!(code, Some(0), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        err.contains(&format!("run-render logs {job_id} --follow")),
        "{err}"
    );
    let instances = w.instances_of(&job_id).await;
    assert_eq!(instances.len(), 1);
    let id = instances[0].0.clone();
    assert_eq!(
        instances[0].1, "running",
        "the client left it running the job"
    );

    let row = desk.status(&job_id);
    assert!(
        row["state"] == "starting" || row["state"] == "running",
        "{row}"
    );
    assert_eq!(row["instance_id"], id.as_str());

    let row = desk.wait_state(&job_id, "succeeded", Duration::from_secs(90));
    assert_eq!(row["state"], "succeeded", "{row}");
    assert_eq!(row["exit_code"], 0);
    let ended = Instant::now();
    let state = wait_gone(&w, &id, Duration::from_secs(60)).await;
    assert!(state == "terminated" || state == "gone", "{state}");
    assert!(
        ended.elapsed() < Duration::from_secs(60),
        "took {:?}",
        ended.elapsed()
    );

    assert_eq!(
        w.get(&out, "o/frame.txt").await.as_deref(),
        Some(&b"rendered"[..])
    );
    assert!(w
        .get(&out, &format!("o/_rtb-job/{job_id}/result.json"))
        .await
        .is_some());
    let (code, log, err) = desk.out(&["logs", &job_id]);
    assert_eq!(code, Some(0), "{err}");
    for i in 1..=8 {
        assert_eq!(
            log.matches(&format!("│ tick {i}\n")).count(),
            1,
            "tick {i}:\n{log}"
        );
    }
    // From a machine that never saw the job: S3 and tags alone.
    let other = Desk::new(&w);
    let output = format!("s3://{out}/o");
    let (code, out_json, err) = other.out(&["status", &job_id, "--output", &output, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let rows: serde_json::Value = serde_json::from_str(&out_json).unwrap();
    assert_eq!(rows[0]["state"], "succeeded", "{rows}");
    let (code, log, _) = other.out(&["logs", &job_id, "--output", &output]);
    assert_eq!(code, Some(0));
    assert!(log.contains("tick 8"), "{log}");
    w.assert_no_denials();
}

/// `stop` on a running detached job: the runner saves what it has, the instance is
/// terminated and confirmed.
#[tokio::test]
async fn stop_saves_a_detached_jobs_partial_outputs_and_terminates() {
    let w = World::enforced().await;
    let desk = Desk::new(&w);
    let command = "fid = fopen(fullfile(getenv('OUTPUT_SCRATCH'), 'partial.txt'), 'w'); fprintf(fid, 'half'); fclose(fid); \
        disp(['long render ' 'started']); pause(300);";
    let (mut args, job_id, out) = job(&w, "stop", command).await;
    args.push("--detach".into());
    let (code, _, err) = desk.out(&refs(&args));
    assert_eq!(code, Some(0), "{err}");
    desk.wait_state(&job_id, "running", Duration::from_secs(60));
    // Give the job a moment to write its file.
    std::thread::sleep(Duration::from_secs(2));
    let (code, _, err) = desk.out(&["stop", &job_id]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("terminated"), "{err}");
    assert_eq!(
        w.get(&out, "o/partial.txt").await.as_deref(),
        Some(&b"half"[..]),
        "{err}"
    );
    let result = w
        .get(&out, &format!("o/_rtb-job/{job_id}/result.json"))
        .await
        .expect("result record");
    let result: serde_json::Value = serde_json::from_slice(&result).unwrap();
    assert_eq!(result["outcome"], "interrupted");
    let instances = w.instances_of(&job_id).await;
    assert!(
        instances.iter().all(|i| i.1 == "terminated"),
        "{instances:?}"
    );
    assert_eq!(desk.status(&job_id)["state"], "interrupted");
    w.assert_no_denials();
}

/// `attach` follows a detached job to its end, with its log, and terminates the instance.
#[tokio::test]
async fn attach_follows_a_detached_job_to_its_end_and_terminates_it() {
    let w = World::enforced().await;
    let desk = Desk::new(&w);
    let (mut args, job_id, out) = job(&w, "att", TICKING).await;
    args.push("--detach".into());
    args.push("--keep".into());
    let (code, _, err) = desk.out(&refs(&args));
    assert_eq!(code, Some(0), "{err}");
    let done = Watched::spawn(desk.cmd(&["attach", &job_id])).finish(Duration::from_secs(120));
    assert_eq!(done.code, Some(0), "{}", done.all());
    let stdout = done.stdout();
    assert!(stdout.contains("tick 8"), "{}", done.all());
    assert!(done.stderr().contains("terminated"), "{}", done.stderr());
    assert_eq!(
        w.get(&out, "o/frame.txt").await.as_deref(),
        Some(&b"rendered"[..])
    );
    let instances = w.instances_of(&job_id).await;
    assert_eq!(instances.len(), 1);
    assert_eq!(
        instances[0].1, "terminated",
        "attach ends even a --keep job's instance"
    );
    w.assert_no_denials();
}

/// An instance terminated from outside, with its job unfinished, is `lost`.
#[tokio::test]
async fn an_instance_terminated_from_outside_shows_as_lost() {
    let w = World::enforced().await;
    let desk = Desk::new(&w);
    let (mut args, job_id, _) =
        job(&w, "lost", "disp(['long render ' 'started']); pause(300);").await;
    args.push("--detach".into());
    let (code, _, err) = desk.out(&refs(&args));
    assert_eq!(code, Some(0), "{err}");
    desk.wait_state(&job_id, "running", Duration::from_secs(60));
    let id = w.instances_of(&job_id).await[0].0.clone();
    w.terminate(&id).await;
    let row = desk.wait_state(&job_id, "lost", Duration::from_secs(30));
    assert_eq!(row["state"], "lost", "{row}");
    assert!(
        row["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("terminated"),
        "{row}"
    );
    w.assert_no_denials();
}

/// `cleanup` ends a `--keep` instance whose job finished, and leaves alone another owner's
/// finished `--keep` instance and an instance without our tags.
#[tokio::test]
async fn cleanup_ends_finished_kept_instances_and_only_its_owners() {
    let w = World::enforced().await;
    let desk = Desk::new(&w);
    let other = Desk::new(&w);
    let (mut mine, my_job, _) = job(&w, "cln", "disp('done')").await;
    mine.push("--keep".into());
    let (code, _, err) = desk.out(&refs(&mine));
    assert_eq!(code, Some(0), "{err}");
    let (mut theirs, their_job, _) = job(&w, "clo", "disp('done')").await;
    theirs.push("--keep".into());
    let (code, _, err) = other.out(&refs(&theirs));
    assert_eq!(code, Some(0), "{err}");
    // An instance that is not ours at all.
    let ami = w.test_ami().await;
    let stranger = w
        .ec2
        .run_instances()
        .image_id(&ami)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .expect("launch")
        .instances()[0]
        .instance_id()
        .unwrap()
        .to_string();

    let mine_id = w.instances_of(&my_job).await[0].0.clone();
    let theirs_id = w.instances_of(&their_job).await[0].0.clone();
    let (code, _, err) = desk.out(&["cleanup", "--dry-run"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains(&format!("terminate {mine_id}")), "{err}");
    assert!(
        !err.contains(&theirs_id) && !err.contains(&stranger),
        "{err}"
    );
    assert_eq!(
        w.state_of(&mine_id).await,
        "running",
        "--dry-run only lists"
    );
    // Without a terminal and without --yes, nobody can be asked: refused.
    let (code, _, err) = desk.out(&["cleanup"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--yes"), "{err}");
    let (code, _, err) = desk.out(&["cleanup", "--yes"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(w.state_of(&mine_id).await, "terminated");
    assert_eq!(
        w.state_of(&theirs_id).await,
        "running",
        "another owner's instance"
    );
    assert_eq!(
        w.state_of(&stranger).await,
        "running",
        "an untagged instance"
    );
    w.terminate(&theirs_id).await;
    w.terminate(&stranger).await;
    w.assert_no_denials();
}

/// The client is killed -9 while its launch is under way (its answer never came back):
/// `status` finds the instance by the launch token the registry holds, and `cleanup` ends it.
#[tokio::test]
async fn a_launch_whose_client_was_killed_is_found_by_status_and_ended_by_cleanup() {
    use rtb_testkit::{FaultProxy, Rule};
    let w = World::enforced().await;
    let desk = Desk::new(&w);
    // Faults between the client and the IAM proxy: both at once.
    let proxy = FaultProxy::start_for(&w.scope().endpoint());
    // The launch is carried out, its answer lost, and every lookup hangs: the client is
    // stuck right after RunInstances, not knowing its instance.
    proxy.add(Rule::on("RunInstances").drop_response());
    proxy.add(Rule::on("DescribeInstances").stall());
    let (mut args, job_id, _) = job(&w, "crash", "disp(1)").await;
    let endpoint = proxy.endpoint();
    args.extend(["--endpoint-url".to_string(), endpoint]);
    let mut run = Watched::spawn(desk.cmd(&refs(&args)));
    assert!(
        run.wait_for(
            "looking for the instance by its launch token",
            Duration::from_secs(60)
        )
        .is_some(),
        "{}",
        run.seen
            .iter()
            .map(|l| l.2.clone())
            .collect::<Vec<_>>()
            .join("\n")
    );
    run.signal(libc::SIGKILL);
    let _ = run.finish(Duration::from_secs(10));
    let instances = w.instances_of(&job_id).await;
    assert_eq!(instances.len(), 1, "{instances:?}");
    let id = instances[0].0.clone();
    let enforced = w.scope().endpoint();
    let (code, out, err) = desk.out(&["status", "--endpoint-url", &enforced, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows[0]["job_id"], job_id.as_str(), "{rows}");
    assert_eq!(
        rows[0]["instance_id"],
        id.as_str(),
        "found by its launch token: {rows}"
    );
    assert_eq!(rows[0]["state"], "starting", "{rows}");
    let (code, _, err) = desk.out(&[
        "cleanup",
        "--endpoint-url",
        &enforced,
        "--older-than",
        "0s",
        "--yes",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains(&format!("terminate {id}")), "{err}");
    assert_eq!(w.state_of(&id).await, "terminated");
    w.assert_no_denials();
}
