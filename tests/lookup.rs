//! `status --output URL` and `logs --output URL` with no job id, from a workstation that never
//! saw the jobs: the jobs are found from the records under that output (at the output itself,
//! or one or two folders below it, where a batch's rows put theirs).
//!
//! The client runs as the shipped client policy's principal and its instances as the instance
//! role, through the world's IAM proxy (`World::enforced`); each test fails on a refused call.

mod common;

use std::process::Command;

use common::{run_render, support_image, unique, World};

/// A workstation of its own: an empty registry and its own user name.
struct Desk {
    /// The world's client principal (keys, IAM proxy) when the world is enforced.
    env: Vec<(&'static str, String)>,
    state: tempfile::TempDir,
    user: String,
}

impl Desk {
    fn new() -> Desk {
        Desk {
            env: Vec::new(),
            state: tempfile::tempdir().expect("tmp"),
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
            .env("USER", &self.user);
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

/// Run one container job to its end from `desk`, its output at `output`.
fn run_job(desk: &Desk, ami: &str, job_id: &str, output: &str, said: &str) {
    let command = format!("disp('{said}')");
    let (code, _, err) = desk.out(&[
        "--ami",
        ami,
        "--job-id",
        job_id,
        "--image",
        &support_image(),
        "--interpreter",
        "octave-cli",
        "--instance-type",
        "t3.micro",
        "--output",
        output,
        "--command",
        &command,
    ]);
    assert_eq!(code, Some(0), "{err}");
}

#[tokio::test]
async fn status_and_logs_find_the_jobs_under_an_output_from_another_workstation() {
    let w = World::enforced().await;
    let ami = w.test_ami().await;
    let bucket = w.output_bucket("lookup").await;
    let there = Desk::of(&w);
    let (a, b) = (unique("look-a"), unique("look-b"));
    run_job(
        &there,
        &ami,
        &a,
        &format!("s3://{bucket}/run/a"),
        "said by a",
    );
    run_job(
        &there,
        &ami,
        &b,
        &format!("s3://{bucket}/run/b"),
        "said by b",
    );

    // Another workstation: no registry entry, only the output location.
    let here = Desk::of(&w);
    let (code, out, err) = here.out(&[
        "status",
        "--output",
        &format!("s3://{bucket}/run"),
        "--json",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let rows: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    let mut found: Vec<(String, String)> = rows
        .as_array()
        .expect("a list")
        .iter()
        .map(|r| {
            (
                r["job_id"].as_str().unwrap_or_default().to_string(),
                r["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    found.sort();
    let mut want = vec![
        (a.clone(), "succeeded".to_string()),
        (b.clone(), "succeeded".to_string()),
    ];
    want.sort();
    assert_eq!(found, want, "{out}");

    // The job's own output: that job only.
    let (code, out, err) = here.out(&["status", "--output", &format!("s3://{bucket}/run/a")]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(&a) && !out.contains(&b), "{out}");

    // One job under the output: its log.
    let (code, out, err) = here.out(&["logs", "--output", &format!("s3://{bucket}/run/b")]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("said by b") && !out.contains("said by a"),
        "{out}"
    );

    // Two: each log after a header naming its job.
    let (code, out, err) = here.out(&["logs", "--output", &format!("s3://{bucket}/run")]);
    assert_eq!(code, Some(0), "{err}");
    let (ha, hb) = (format!("==> {a} <=="), format!("==> {b} <=="));
    assert!(out.contains(&ha) && out.contains(&hb), "{out}");
    let (pa, pb) = (out.find(&ha).unwrap_or(0), out.find(&hb).unwrap_or(0));
    let (first, second) = if pa < pb { (pa, pb) } else { (pb, pa) };
    let said_first = if pa < pb { "said by a" } else { "said by b" };
    assert!(out[first..second].contains(said_first), "{out}");

    // Following needs one job: refused, naming them.
    let (code, _, err) = here.out(&[
        "logs",
        "--follow",
        "--output",
        &format!("s3://{bucket}/run"),
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(&a) && err.contains(&b), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // Nothing there: one line, not "no jobs started here" with exit 0.
    let (code, out, err) = here.out(&["status", "--output", &format!("s3://{bucket}/nothing")]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("no job records under"), "{err}");
    let (code, _, err) = here.out(&["logs", "--output", &format!("s3://{bucket}/nothing")]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no job records under"), "{err}");
    w.assert_no_denials();
}
