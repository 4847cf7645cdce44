//! `run-render batch --engine aws-batch` on moto: what the client keeps and reads while AWS
//! Batch does the work: each attempt's records, the local record of a submission. Skipped,
//! with the reason, when moto is not in the test world.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::moto::{batch_file, clients, moto, queue, rows, Clients, Desk};
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
    let desk = Desk::new(&moto);
    let c = clients(&moto).await;
    let q = queue(&desk, &c).await;
    let bucket = c.bucket().await;
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
    let _ = desk.out(&["aws-batch", "teardown", "--queue", &q]);
}
