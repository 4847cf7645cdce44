//! `run-render batch --engine aws-batch` end to end on moto (its AWS Batch runs each job as a
//! real container from the rtb-support test image, with Octave): setup, the same batch file
//! as the EC2 engine, the summary and exit code, `--detach` then `status --batch`, `stop
//! --batch`, teardown. Skipped, with the reason, when moto is not in the test world.
//!
//! The client runs as the shipped client policies' principal through the world's IAM proxy in
//! front of moto, its jobs as the queue's job role (`common::moto::scope`); setup and teardown
//! are the administrator's. Each test fails on a refused call.

mod common;

use std::time::{Duration, Instant};

use common::moto::{
    assert_no_denials, batch_file, clients, definition_arn, enforced, frame, moto, queue, rows,
    scope, Desk, Enforced,
};
use common::unique;

/// 6 rows through the rtb-support test image and Octave on moto's AWS Batch: outputs in
/// moto's S3, the failing row FAILED with its MATLAB error, the summary and exit code right;
/// the job definition is reused by a second run; teardown removes what setup made.
///
/// What the definition holds, read back: the file names no `ami` (the compute environment
/// has it); the largest row timeout, plus the runner's upload margin (a row with a longer
/// timeout than row 1's is not cut short); the jobs' credentials only from the test-only
/// setting, never the client's own keys; the job role setup made.
#[tokio::test]
async fn a_batch_file_runs_on_aws_batch_with_one_matlab_error() {
    let Some(moto) = moto() else { return };
    let Enforced {
        desk,
        c,
        queue: q,
        bucket,
        scope,
    } = enforced(&moto).await;
    let name = unique("ab");
    let mut rows = rows((1..=6).map(|n| {
        if n == 4 {
            "error('the lamp is missing in row 4');".into()
        } else {
            frame(n)
        }
    }));
    rows[0].2 = "2m";
    rows[4].2 = "45m";
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
                c.get(&bucket, &format!("{n}/frame.txt")).await.as_deref(),
                Some(format!("row {n}").as_bytes())
            );
        }
    }
    assert!(err.contains("job definition run-render-"), "{err}");

    let arn = definition_arn(&err);
    let described = c
        .batch
        .describe_job_definitions()
        .job_definitions(&arn)
        .send()
        .await
        .expect("describe the definition");
    let d = described.job_definitions().first().expect("the definition");
    assert_eq!(
        d.timeout().and_then(|t| t.attempt_duration_seconds()),
        Some(45 * 60 + 10 * 60),
        "the largest row timeout and the upload margin"
    );
    let props = d.container_properties().expect("container");
    let env: std::collections::BTreeMap<&str, &str> = props
        .environment()
        .iter()
        .filter_map(|kv| Some((kv.name()?, kv.value()?)))
        .collect();
    let creds = scope.batch_job_credentials();
    let (key, secret) = creds.split_once(':').unwrap();
    assert_eq!(env.get("AWS_ACCESS_KEY_ID"), Some(&key), "{env:?}");
    assert_eq!(env.get("AWS_SECRET_ACCESS_KEY"), Some(&secret), "{env:?}");
    assert!(
        !env.values()
            .any(|v| *v == scope.client().key_id || *v == scope.client().secret)
            && !env.contains_key("AWS_SESSION_TOKEN"),
        "the client's own keys reached the definition: {env:?}"
    );
    assert!(
        props
            .job_role_arn()
            .is_some_and(|r| r.ends_with(&format!(":role/{q}-job"))),
        "{props:?}"
    );

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

    assert_no_denials(&scope, true);
    let (code, _, err) = desk.admin(&["aws-batch", "teardown", "--queue", &q]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("did: delete job queue"), "{err}");
    let (code, _, err) = desk.admin(&["aws-batch", "teardown", "--queue", &q]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("nothing to do"), "{err}");
}

/// `--detach` returns after submitting; `status --batch` shows the jobs; `stop --batch`
/// ends the running ones.
#[tokio::test]
async fn a_detached_aws_batch_is_seen_by_status_and_ended_by_stop() {
    let Some(moto) = moto() else { return };
    let Enforced {
        desk,
        c: _,
        queue: q,
        bucket,
        scope,
    } = enforced(&moto).await;
    let name = unique("abd");
    let rows = rows((1..=2).map(|n| {
        format!(
            "{} disp('row {n} is rendering'); fflush(stdout); pause(120);",
            frame(n)
        )
    }));
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
    // One array job with its two rows, ended and confirmed before stop returned.
    assert!(err.contains("1 job(s) ended"), "{err}");
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
    assert_no_denials(&scope, true);
    let _ = desk.admin(&["aws-batch", "teardown", "--queue", &q]);
}

/// Ctrl-C while following an AWS Batch batch only detaches: the jobs belong to AWS Batch and
/// go on; the client says how to stop them, and `stop --batch` does.
#[tokio::test]
async fn ctrl_c_while_following_detaches_and_the_jobs_go_on() {
    let Some(moto) = moto() else { return };
    let Enforced {
        desk,
        c: _,
        queue: q,
        bucket,
        scope,
    } = enforced(&moto).await;
    let name = unique("abc");
    let rows = rows((1..=2).map(|n| format!("{} pause(120);", frame(n))));
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
    // The jobs may be stopped before their runner calls anything: the client's calls count.
    assert_no_denials(&scope, false);
    let _ = desk.admin(&["aws-batch", "teardown", "--queue", &q]);
}

/// Two people run a batch of the same name on one shared queue. A second submission of
/// yours is refused while your first one's jobs run (it would write into the same outputs),
/// `--resume` too; your colleague's is not yours to block. `stop --batch` ends your array in
/// a handful of AWS Batch calls (one TerminateJob for the array; AWS Batch ends the
/// children), confirms it, and leaves the colleague's batch running.
#[tokio::test]
async fn one_submission_at_a_time_and_stop_ends_only_yours_in_a_few_calls() {
    let Some(moto) = moto() else { return };
    let mut ann = Desk::new(&moto);
    let mut bob = Desk::new(&moto);
    let c = clients(&moto).await;
    let q = queue(&ann, &c).await;
    let (ann_bucket, bob_bucket) = (c.bucket().await, c.bucket().await);
    let scope = scope(&q, &[&ann_bucket, &bob_bucket]);
    ann.enforce(&scope);
    bob.enforce(&scope);
    let name = unique("abs");
    let long = rows((1..=4).map(|n| format!("{} pause(150);", frame(n))));
    let ann_file = batch_file(&ann, &name, &ann_bucket, &long);
    let bob_file = batch_file(&bob, &name, &bob_bucket, &long[..2]);
    let submit = |desk: &Desk, file: &str, more: &[&str]| {
        let mut args = vec![
            "batch",
            file,
            "--engine",
            "aws-batch",
            "--queue",
            &q,
            "--detach",
        ];
        args.extend_from_slice(more);
        desk.out(&args)
    };
    let (code, _, err) = submit(&ann, &ann_file, &[]);
    assert_eq!(code, Some(0), "{err}");
    // Another owner's batch of the same name on the same queue is not refused.
    let (code, _, err) = submit(&bob, &bob_file, &[]);
    assert_eq!(code, Some(0), "bob's own batch: {err}");
    let start = Instant::now();
    while !ann.states(&name).iter().all(|s| s == "running") {
        assert!(start.elapsed() < Duration::from_secs(120), "not running");
        std::thread::sleep(Duration::from_secs(1));
    }

    for more in [&[][..], &["--resume"][..]] {
        let (code, _, err) = submit(&ann, &ann_file, more);
        assert_eq!(code, Some(65), "a second submission {more:?}: {err}");
        assert!(
            err.contains("still queued or running")
                && err.contains(&format!("run-render stop --batch {name}")),
            "{err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    }

    // stop --batch through a proxy that counts AWS Batch's calls.
    let proxy = rtb_testkit::FaultProxy::start_for(&ann.endpoint);
    let mut counted = Desk::new(&moto);
    counted.endpoint = proxy.endpoint();
    counted.env = ann.env.clone();
    let stop = |desk: &Desk| {
        let mut cmd = desk.cmd(&["stop", "--batch", &name]);
        cmd.env("XDG_STATE_HOME", ann.state.path())
            .env("USER", &ann.user);
        let o = cmd.output().expect("stop");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, err) = stop(&counted);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("another owner's: left alone"), "{err}");
    let batch_calls: Vec<_> = proxy
        .calls()
        .into_iter()
        .filter(|c| c.service == "batch")
        .collect();
    let count = |a: &str| batch_calls.iter().filter(|c| c.action == a).count();
    assert_eq!(count("TerminateJob"), 1, "{batch_calls:?}");
    assert_eq!(count("CancelJob"), 0, "{batch_calls:?}");
    assert!(
        batch_calls.len() <= 8,
        "{} calls: {batch_calls:?}",
        batch_calls.len()
    );
    // Confirmed before it returned: every row of ann's has ended; bob's still run.
    assert!(
        ann.states(&name)
            .iter()
            .all(|s| s != "running" && s != "starting"),
        "{:?}",
        ann.states(&name)
    );
    assert!(
        bob.states(&name).iter().all(|s| s == "running"),
        "{:?}",
        bob.states(&name)
    );
    let (code, _, err) = bob.out(&["stop", "--batch", &name]);
    assert_eq!(code, Some(0), "{err}");
    // The jobs may be stopped before their runner calls anything: the client's calls count.
    assert_no_denials(&scope, false);
    let _ = ann.admin(&["aws-batch", "teardown", "--queue", &q]);
}
