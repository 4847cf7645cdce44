//! `run-render batch --engine aws-batch` on moto: what the client keeps and reads while AWS
//! Batch does the work: each attempt's records, the local record of a submission. Skipped,
//! with the reason, when moto is not in the test world.
//!
//! The client runs as the shipped client policies' principal through the world's IAM proxy in
//! front of moto, its jobs as the queue's job role (`common::moto::scope`); setup and teardown
//! are the administrator's. Each test fails on a refused call.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::moto::{assert_no_denials, batch_file, enforced, moto, rows, Clients, Desk, Enforced};
use common::unique;

/// The local record `batch` keeps of a submission (`<state>/run-render/batches/<name>.json`).
fn record(desk: &Desk, name: &str) -> serde_json::Value {
    let path = desk
        .state
        .path()
        .join("run-render/batches")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("the batch record parses")
}

/// Wait until AWS Batch says every job of `ids` ended; their final statuses.
async fn ended(c: &Clients, ids: &[String], limit: Duration) -> Vec<String> {
    let start = Instant::now();
    loop {
        let out = c
            .batch
            .describe_jobs()
            .set_jobs(Some(ids.to_vec()))
            .send()
            .await
            .expect("describe jobs");
        let states: Vec<String> = out
            .jobs()
            .iter()
            .filter_map(|j| j.status().map(|s| s.as_str().to_string()))
            .collect();
        if states.len() == ids.len() && states.iter().all(|s| s == "SUCCEEDED" || s == "FAILED") {
            return states;
        }
        assert!(
            start.elapsed() < limit,
            "not ended after {limit:?}: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// AWS Batch retries a failed attempt as a new attempt of the same job (`AWS_BATCH_JOB_ATTEMPT`
/// 2, 3, ...). moto never retries, so the second attempt is submitted here as AWS Batch would
/// run it: the same definition, queue and environment, attempt 2. Each attempt's log and
/// result stay in a folder of their own (`<job>/<run>-a<N>/`, as the EC2 engine's), and
/// `status` and `logs` read the newest attempt, not the first one's failure.
#[tokio::test]
async fn a_retried_attempt_keeps_its_records_apart_and_status_and_logs_read_the_newest() {
    let Some(moto) = moto() else { return };
    let Enforced {
        desk,
        c,
        queue: q,
        bucket,
        scope,
    } = enforced(&moto).await;
    let name = unique("abr");
    // moto sets no AWS_BATCH_JOB_ATTEMPT on a first attempt (AWS does): the runner takes 1.
    let flaky = "a = str2num(getenv('AWS_BATCH_JOB_ATTEMPT')); if isempty(a), a = 1; end; printf('attempt %d here\\n', a); if a == 1, error('the lamp flickered'); end";
    let file = batch_file(&desk, &name, &bucket, &rows([flaky.to_string()]));
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
    let rec = record(&desk, &name);
    let first = rec["submitted"]["jobs"][0]["batch_job_id"]
        .as_str()
        .expect("the AWS Batch job id")
        .to_string();
    assert_eq!(
        ended(&c, std::slice::from_ref(&first), Duration::from_secs(120)).await,
        ["FAILED"]
    );

    // AWS Batch's retry: attempt 2 of the same job.
    let described = c
        .batch
        .describe_jobs()
        .jobs(&first)
        .send()
        .await
        .expect("describe");
    let job = &described.jobs()[0];
    let mut env: BTreeMap<String, String> = job
        .container()
        .map(|c| {
            c.environment()
                .iter()
                .filter_map(|kv| Some((kv.name()?.to_string(), kv.value()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    env.remove("AWS_BATCH_JOB_ID");
    env.insert("AWS_BATCH_JOB_ATTEMPT".into(), "2".into());
    let overrides = aws_sdk_batch::types::ContainerOverrides::builder()
        .set_environment(Some(
            env.iter()
                .map(|(k, v)| {
                    aws_sdk_batch::types::KeyValuePair::builder()
                        .name(k)
                        .value(v)
                        .build()
                })
                .collect(),
        ))
        .build();
    let second = c
        .batch
        .submit_job()
        .job_name(job.job_name().unwrap_or("retry"))
        .job_queue(&q)
        .job_definition(job.job_definition().expect("definition"))
        .container_overrides(overrides)
        .send()
        .await
        .expect("the second attempt")
        .job_id()
        .expect("id")
        .to_string();
    assert_eq!(
        ended(&c, &[second], Duration::from_secs(120)).await,
        ["SUCCEEDED"]
    );

    let job_id = format!("{name}-1");
    let keys = c.keys(&bucket, &format!("1/_rtb-job/{job_id}/")).await;
    let run = rec["run_id"].as_str().expect("the run id in the record");
    for n in [1, 2] {
        for part in ["log/000001.log", "result.json"] {
            let key = format!("1/_rtb-job/{job_id}/{run}-a{n}/{part}");
            assert!(keys.contains(&key), "{key} in {keys:?}");
        }
        let mut log = String::new();
        for key in keys
            .iter()
            .filter(|k| k.contains(&format!("/{run}-a{n}/log/")))
        {
            let chunk = c.get(&bucket, key).await.unwrap_or_default();
            log.push_str(&String::from_utf8_lossy(&chunk));
        }
        assert!(
            log.contains(&format!("attempt {n} here")),
            "attempt {n}'s log: {log}"
        );
        assert!(!log.contains(&format!("attempt {} here", 3 - n)), "{log}");
    }
    let (code, out, err) = desk.out(&["status", &job_id, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let row: serde_json::Value = serde_json::from_str(&out).expect("status JSON");
    let row = row.as_array().map_or(&row, |rows| &rows[0]);
    assert_eq!(row["state"], "succeeded", "{out}");
    let (code, out, err) = desk.out(&["logs", &job_id]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("attempt 2 here") && !out.contains("attempt 1 here"),
        "{out}"
    );
    assert_no_denials(&scope, true);
    let _ = desk.admin(&["aws-batch", "teardown", "--queue", &q]);
}

/// SubmitJob has no client token. When its answer is lost on the way back (the array was
/// made), the client finds the array by its name and run instead of submitting it again:
/// the rows run once, not twice into the same outputs.
#[tokio::test]
async fn a_lost_submit_answer_does_not_submit_the_rows_twice() {
    let Some(moto) = moto() else { return };
    let Enforced {
        desk,
        c,
        queue: q,
        bucket,
        scope,
    } = enforced(&moto).await;
    let name = unique("abl");
    let file = batch_file(
        &desk,
        &name,
        &bucket,
        &rows((1..=2).map(|n| format!("disp('row {n}')"))),
    );
    let proxy = rtb_testkit::FaultProxy::start_for(&desk.endpoint);
    proxy.add(rtb_testkit::Rule::on("SubmitJob").times(1).drop_response());
    let mut through = Desk::new(&moto);
    through.endpoint = proxy.endpoint();
    through.env = desk.env.clone();
    let mut cmd = through.cmd(&["batch", &file, "--engine", "aws-batch", "--queue", &q]);
    cmd.env("XDG_STATE_HOME", desk.state.path())
        .env("USER", &desk.user)
        .current_dir(desk.dir.path());
    let out = cmd.output().expect("batch");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let listed = c
        .batch
        .list_jobs()
        .job_queue(&q)
        .filters(
            aws_sdk_batch::types::KeyValuesPair::builder()
                .name("JOB_NAME")
                .values(format!("rtb-{name}--*"))
                .build(),
        )
        .send()
        .await
        .expect("list");
    let mut parents: Vec<&str> = listed
        .job_summary_list()
        .iter()
        .filter_map(|j| j.job_id())
        .filter(|id| !id.contains(':'))
        .collect();
    parents.sort();
    parents.dedup();
    assert_eq!(parents.len(), 1, "arrays submitted: {parents:?}\n{err}");
    assert_no_denials(&scope, true);
    let _ = desk.admin(&["aws-batch", "teardown", "--queue", &q]);
}

/// A submission that fails partway (here the second of three SubmitJob calls, one job per
/// row) says what was submitted and what to do, and leaves a record that knows it: `stop
/// --batch` ends what runs.
#[tokio::test]
async fn a_submission_cut_short_says_what_runs_and_is_recorded() {
    let Some(moto) = moto() else { return };
    let Enforced {
        desk,
        c: _,
        queue: q,
        bucket,
        scope,
    } = enforced(&moto).await;
    let name = unique("abp");
    let file = batch_file(
        &desk,
        &name,
        &bucket,
        &rows((1..=3).map(|n| format!("{} pause(120);", common::moto::frame(n)))),
    );
    let text = std::fs::read_to_string(&file).expect("file");
    std::fs::write(
        &file,
        text.replace("[batch]\n", "[batch]\nsubmit = \"per-row\"\n"),
    )
    .expect("file");
    let proxy = rtb_testkit::FaultProxy::start_for(&desk.endpoint);
    proxy.add(
        rtb_testkit::Rule::on("SubmitJob")
            .skip(1)
            .error(400, "ClientException")
            .message("the queue refused it"),
    );
    let mut through = Desk::new(&moto);
    through.endpoint = proxy.endpoint();
    through.env = desk.env.clone();
    let mut cmd = through.cmd(&["batch", &file, "--engine", "aws-batch", "--queue", &q]);
    cmd.env("XDG_STATE_HOME", desk.state.path())
        .env("USER", &desk.user)
        .current_dir(desk.dir.path());
    let out = cmd.output().expect("batch");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(68), "{err}");
    assert!(
        err.contains("submitting stopped after 1 of 3 job(s)")
            && err.contains("the queue refused it")
            && err.contains(&format!("run-render stop --batch {name}")),
        "{err}"
    );
    let rec = record(&desk, &name);
    assert_eq!(rec["state"], "incomplete", "{rec}");
    assert_eq!(
        rec["submitted"]["jobs"].as_array().map(Vec::len),
        Some(1),
        "{rec}"
    );
    let (code, _, err) = desk.out(&["stop", "--batch", &name]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("1 job(s) ended"), "{err}");
    assert_no_denials(&scope, false);
    let _ = desk.admin(&["aws-batch", "teardown", "--queue", &q]);
}

/// While following, AWS Batch stops answering: the client gives it `--api-patience`, as the
/// EC2 engine does, then leaves with exit 69, saying the jobs go on and how to stop them.
#[tokio::test]
async fn the_follow_loop_gives_up_after_its_patience() {
    let Some(moto) = moto() else { return };
    let Enforced {
        desk,
        c: _,
        queue: q,
        bucket,
        scope,
    } = enforced(&moto).await;
    let name = unique("abt");
    let file = batch_file(
        &desk,
        &name,
        &bucket,
        &rows((1..=2).map(|n| format!("{} pause(120);", common::moto::frame(n)))),
    );
    let proxy = rtb_testkit::FaultProxy::start_for(&desk.endpoint);
    let mut through = Desk::new(&moto);
    through.endpoint = proxy.endpoint();
    through.env = desk.env.clone();
    let mut cmd = through.cmd(&[
        "batch",
        &file,
        "--engine",
        "aws-batch",
        "--queue",
        &q,
        "--api-patience",
        "10s",
    ]);
    cmd.env("XDG_STATE_HOME", desk.state.path())
        .env("USER", &desk.user)
        .current_dir(desk.dir.path());
    let mut client = common::Watched::spawn(cmd);
    assert!(
        client
            .wait_for("submitted to", Duration::from_secs(60))
            .is_some(),
        "not submitted"
    );
    proxy.add(rtb_testkit::Rule::on("ListJobs").error(500, "ServerException"));
    proxy.add(rtb_testkit::Rule::on("DescribeJobs").error(500, "ServerException"));
    let t = Instant::now();
    let done = client.finish(Duration::from_secs(120));
    assert_eq!(done.code, Some(69), "{}", done.all());
    assert!(t.elapsed() < Duration::from_secs(60), "{:?}", t.elapsed());
    let err = done.stderr();
    assert!(
        err.contains("has not answered for 10s")
            && err.contains(&format!("run-render stop --batch {name}")),
        "{err}"
    );
    let (code, _, err) = desk.out(&["stop", "--batch", &name]);
    assert_eq!(code, Some(0), "{err}");
    assert_no_denials(&scope, false);
    let _ = desk.admin(&["aws-batch", "teardown", "--queue", &q]);
}

/// The client dies while submitting (one job per row here), after SubmitJob made rows 1-3 and
/// before row 4, with nothing of the answers written down: its record says only that run R
/// was being submitted. `status --batch` finds what was submitted from AWS Batch (the jobs'
/// `rtb:run` tag) and says row 4 never was; `stop --batch` ends the rest.
#[tokio::test]
async fn a_submission_whose_client_died_is_read_back_from_aws_batch() {
    let Some(moto) = moto() else { return };
    let Enforced {
        desk,
        c: _,
        queue: q,
        bucket,
        scope,
    } = enforced(&moto).await;
    let name = unique("abc");
    let file = batch_file(
        &desk,
        &name,
        &bucket,
        &rows((1..=3).map(|n| format!("{} pause(120);", common::moto::frame(n)))),
    );
    let text = std::fs::read_to_string(&file).expect("file");
    std::fs::write(
        &file,
        text.replace("[batch]\n", "[batch]\nsubmit = \"per-row\"\n"),
    )
    .expect("file");
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
    // What a client killed before row 4 leaves: the intent (four rows), no answer written,
    // and row 4's registry entry.
    let state = desk.state.path().join("run-render");
    let mut rec = record(&desk, &name);
    rec["state"] = "submitting".into();
    rec["jobs"]
        .as_array_mut()
        .expect("jobs")
        .push(format!("{name}-4").into());
    rec["submitted"] = serde_json::json!({
        "batch": name, "queue": q, "definition": "", "manifests": [], "jobs": [],
        "arrays": [], "calls": 0
    });
    std::fs::write(state.join(format!("batches/{name}.json")), rec.to_string()).expect("record");
    let entry = std::fs::read_to_string(state.join(format!("jobs/{name}-1.json"))).expect("entry");
    std::fs::write(
        state.join(format!("jobs/{name}-4.json")),
        entry.replace(&format!("{name}-1"), &format!("{name}-4")),
    )
    .expect("entry");
    let start = Instant::now();
    loop {
        let mut states = desk.states(&name);
        states.sort();
        if states == ["failed", "running", "running", "running"] {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(90), "{states:?}");
        std::thread::sleep(Duration::from_secs(1));
    }
    let (code, out, err) = desk.out(&["status", &format!("{name}-4"), "--json"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("not submitted by run"), "{out}");
    let (code, _, err) = desk.out(&["stop", "--batch", &name]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("3 job(s) ended"), "{err}");
    assert_no_denials(&scope, false);
    let _ = desk.admin(&["aws-batch", "teardown", "--queue", &q]);
}
