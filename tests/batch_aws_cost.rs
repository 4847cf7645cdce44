//! What a batch costs on the AWS Batch engine, end to end on moto: each job's cost is its
//! attempts' run time as DescribeJobs reports it (startedAt to stoppedAt) at the price, failed
//! attempts apart; the summary's total is their sum; `status --batch`, `cost --batch` and
//! `report` (and `cost --output`, `report --output` from another workstation, from S3) agree
//! with it. Skipped,
//! with the reason, when moto is not in the test world.
//!
//! The world's moto names the container instance each attempt ran on, as AWS does
//! (tests/world/moto_server.py): the client finds its EC2 instance through ECS and prices it
//! from the Price List (served by the fault proxy in its real shape), or at `--price`.
//!
//! The client runs as the shipped client policies' principal through the world's IAM proxy in
//! front of moto, its jobs as the queue's job role (`common::moto::scope`); each test fails on
//! a refused call.

mod common;

use std::collections::BTreeMap;

use common::moto::{
    assert_no_denials, batch_file, clients, enforced, frame, moto, queue_of, rows, scope, Desk,
    Enforced,
};
use common::unique;

fn f(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn json(desk: &Desk, args: &[&str]) -> serde_json::Value {
    let (code, out, err) = desk.out(args);
    assert_eq!(code, Some(0), "{args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}\n{out}"))
}

/// The batch's jobs (row job id -> AWS Batch's id) from the local record of its submission.
fn submitted(desk: &Desk, name: &str) -> BTreeMap<String, String> {
    let path = desk
        .state
        .path()
        .join("run-render/batches")
        .join(format!("{name}.json"));
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("the batch record")).expect("JSON");
    rec["submitted"]["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| {
            (
                j["job_id"].as_str().expect("job_id").to_string(),
                j["batch_job_id"]
                    .as_str()
                    .expect("batch_job_id")
                    .to_string(),
            )
        })
        .collect()
}

/// $36/h is a cent a second, so "to the cent" is "to the second". Three rows, one failing:
/// every job's cost is its attempts' seconds from DescribeJobs at $36/h, the failed one's all
/// failed-attempt cost; the total is the sum; the summary says the compute environment's idle
/// minutes are not a job's; `status --batch`, `cost --batch` and another workstation's `cost
/// --output` show the same figures.
#[tokio::test]
async fn each_jobs_cost_is_its_attempts_time_at_the_price_and_status_and_cost_agree() {
    let Some(moto) = moto() else { return };
    let Enforced {
        desk,
        c,
        queue: q,
        bucket,
        scope,
    } = enforced(&moto).await;
    let name = unique("abc");
    let file = batch_file(
        &desk,
        &name,
        &bucket,
        &rows([
            frame(1),
            format!("{} pause(2);", frame(2)),
            "error('the lamp is missing');".to_string(),
        ]),
    );
    let (code, out, err) = desk.out(&[
        "batch",
        &file,
        "--engine",
        "aws-batch",
        "--queue",
        &q,
        "--json",
        "--price",
        "36",
    ]);
    assert_eq!(code, Some(71), "one row fails: {err}\n{out}");
    let summary: serde_json::Value = serde_json::from_str(&out).expect("summary JSON");
    assert_eq!(summary["currency"], "USD", "{summary}");
    assert_eq!(summary["price_source"], "--price", "{summary}");
    assert!(
        summary["cost"]["basis"]
            .as_str()
            .is_some_and(|b| b.contains("idle minutes are the queue's, not a job's")),
        "{summary}"
    );

    // AWS Batch's own times for every attempt.
    let ids = submitted(&desk, &name);
    assert_eq!(ids.len(), 3, "{ids:?}");
    let described = c
        .batch
        .describe_jobs()
        .set_jobs(Some(ids.values().cloned().collect()))
        .send()
        .await
        .expect("describe jobs");
    let mut want: BTreeMap<String, f64> = BTreeMap::new();
    for d in described.jobs() {
        let job = ids
            .iter()
            .find(|(_, b)| Some(b.as_str()) == d.job_id())
            .map(|(j, _)| j.clone())
            .expect("one of ours");
        assert!(!d.attempts().is_empty(), "{d:?}");
        let ms: i64 = d
            .attempts()
            .iter()
            .map(|a| a.stopped_at().expect("stoppedAt") - a.started_at().expect("startedAt"))
            .sum();
        want.insert(job, ms as f64 / 1000.0 * 36.0 / 3600.0);
    }
    let jobs = summary["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 3);
    let mut by_job = BTreeMap::new();
    for j in jobs {
        let id = j["job_id"].as_str().expect("job_id").to_string();
        let usd = f(&j["cost_usd"]);
        assert!(
            (usd - want[&id]).abs() < 0.005,
            "{id}: {usd} against DescribeJobs' {} : {j}",
            want[&id]
        );
        assert_eq!(j["cost"]["currency"], "USD", "{j}");
        assert_eq!(j["cost"]["price_source"], "--price", "{j}");
        let attempts = j["cost"]["attempts"].as_array().expect("attempts");
        assert_eq!(attempts.len(), 1, "moto makes one attempt: {j}");
        if j["outcome"] == "succeeded" {
            assert_eq!(j["cost"]["failed_attempts"], 0, "{j}");
        } else {
            // The failed attempt is counted and its cost shown apart.
            assert_eq!(j["cost"]["failed_attempts"], 1, "{j}");
            assert!((f(&j["cost"]["failed_usd"]) - usd).abs() < 1e-9, "{j}");
        }
        by_job.insert(id, usd);
    }
    let total = f(&summary["cost_usd"]);
    assert!(
        (by_job.values().sum::<f64>() - total).abs() < 1e-9,
        "{total} is the jobs' sum: {by_job:?}"
    );
    assert!(total > 0.0, "{summary}");

    // status --batch, cost --batch on this workstation; cost --output from another one.
    let rows = json(&desk, &["status", "--batch", &name, "--json"]);
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 3, "{rows:?}");
    for r in rows {
        let id = r["job_id"].as_str().expect("job_id");
        assert!((f(&r["cost_usd"]) - by_job[id]).abs() < 1e-9, "{r}");
        assert_eq!(r["currency"], "USD", "{r}");
        assert_eq!(r["price_source"], "--price", "{r}");
    }
    let doc = json(&desk, &["cost", "--batch", &name, "--json"]);
    assert!((f(&doc["cost_usd"]) - total).abs() < 1e-9, "{doc}");
    assert_eq!(doc["jobs"], 3, "{doc}");
    for r in doc["rows"].as_array().expect("rows") {
        let id = r["key"].as_str().expect("key");
        assert!((f(&r["cost_usd"]) - by_job[id]).abs() < 1e-9, "{r}");
    }
    let mut other = Desk::new(&moto);
    other.enforce(&scope);
    let doc = json(
        &other,
        &["cost", "--output", &format!("s3://{bucket}"), "--json"],
    );
    assert!((f(&doc["cost_usd"]) - total).abs() < 1e-9, "{doc}");
    assert_eq!(doc["jobs"], 3, "{doc}");
    let rows = json(
        &other,
        &["status", "--output", &format!("s3://{bucket}"), "--json"],
    );
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 3, "{rows:?}");
    for r in rows {
        let id = r["job_id"].as_str().expect("job_id");
        assert!((f(&r["cost_usd"]) - by_job[id]).abs() < 1e-9, "{r}");
        assert_eq!(r["price_source"], "--price", "{r}");
    }
    // `report` brings the batch's page up to date with the same figures, here and from the
    // other workstation (its page's model in S3).
    for (d, extra) in [(&desk, None), (&other, Some(format!("s3://{bucket}")))] {
        let mut args = vec!["report", "--batch", name.as_str()];
        if let Some(o) = &extra {
            args.extend(["--output", o.as_str()]);
        }
        let (code, _, err) = d.out(&args);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        let model = d
            .dir
            .path()
            .join(format!("run-render-logs/{name}/report.json"));
        let page: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&model).expect("the page's model")).unwrap();
        assert!((f(&page["cost_usd"]) - total).abs() < 1e-9, "{page}");
        for card in page["jobs"].as_array().expect("cards") {
            let id = card["job_id"].as_str().expect("job_id");
            assert!((f(&card["cost_usd"]) - by_job[id]).abs() < 1e-9, "{card}");
        }
    }
    assert_no_denials(&scope, true);
    let _ = desk.admin(&["aws-batch", "teardown", "--queue", &q]);
}

/// Where AWS Batch names the container instance an attempt ran on (moto does here as AWS does:
/// tests/world/moto_server.py), the client finds its EC2 instance through ECS, its type in EC2,
/// and its price in the Price List (the fault proxy serves GetProducts in the real shape, as
/// moto has no Price List): each job's cost is its attempts' time at the listed price. When the
/// Price List does not answer, the cost is unknown and the summary says why in one line, never
/// a built-in figure.
#[tokio::test]
async fn a_jobs_instance_is_found_through_ecs_and_priced_from_the_price_list() {
    use rtb_testkit::{FaultProxy, PriceAnswer, Prices};
    let Some(moto) = moto() else { return };
    let Enforced {
        mut desk,
        c,
        queue: q,
        bucket,
        scope,
    } = enforced(&moto).await;
    // Prices answered in front of the IAM proxy; a cache of this desk's own.
    let proxy = FaultProxy::start_for(&desk.endpoint);
    proxy.set_prices(Prices::new().on_demand("m5.large", "us-east-1", "0.0960"));
    desk.endpoint = proxy.endpoint();
    let cache = desk.dir.path().join("cache");
    desk.env
        .push(("XDG_CACHE_HOME", cache.display().to_string()));
    let name = unique("abl");
    let file = batch_file(&desk, &name, &bucket, &rows([frame(1), frame(2)]));
    let (code, out, err) = desk.out(&[
        "batch",
        &file,
        "--engine",
        "aws-batch",
        "--queue",
        &q,
        "--json",
    ]);
    assert_eq!(code, Some(0), "{err}\n{out}");
    let summary: serde_json::Value = serde_json::from_str(&out).expect("summary JSON");
    assert_eq!(summary["price_source"], "AWS Price List API", "{summary}");
    let called = |action: &str| proxy.calls().iter().any(|c| c.action == action);
    assert!(called("DescribeContainerInstances"), "ECS was asked");
    assert!(called("GetProducts"), "the Price List was asked");

    let ids = submitted(&desk, &name);
    let described = c
        .batch
        .describe_jobs()
        .set_jobs(Some(ids.values().cloned().collect()))
        .send()
        .await
        .expect("describe jobs");
    let mut total = 0.0;
    for j in summary["jobs"].as_array().expect("jobs") {
        let id = j["job_id"].as_str().expect("job_id");
        let d = described
            .jobs()
            .iter()
            .find(|d| d.job_id() == Some(ids[id].as_str()))
            .expect("described");
        let a = &d.attempts()[0];
        let arn = a
            .container()
            .and_then(|c| c.container_instance_arn())
            .unwrap_or_default();
        assert!(arn.contains(":container-instance/"), "{arn}");
        // The instance the cost names is EC2's, of the environment's type.
        let instance = j["cost"]["attempts"][0]["instance_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let ec2 = c
            .ec2
            .describe_instances()
            .instance_ids(&instance)
            .send()
            .await
            .expect("the attempt's instance is EC2's");
        let kind = ec2.reservations()[0].instances()[0]
            .instance_type()
            .map(|t| t.as_str().to_string());
        assert_eq!(kind.as_deref(), Some("m5.large"), "{instance}");
        let price = &j["cost"]["prices"][0];
        assert_eq!(price["source"], "price-list", "{j}");
        assert_eq!(price["usd_per_hour"], 0.096, "{j}");
        assert_eq!(price["instance_type"], "m5.large", "{j}");
        let secs = (a.stopped_at().expect("stoppedAt") - a.started_at().expect("startedAt")) as f64
            / 1000.0;
        let usd = f(&j["cost_usd"]);
        assert!(
            (usd - secs * 0.096 / 3600.0).abs() < 1e-9,
            "{id}: {usd} for {secs} s at $0.096/h: {j}"
        );
        total += usd;
    }
    assert!((f(&summary["cost_usd"]) - total).abs() < 1e-9, "{summary}");

    // The Price List cut off, on a fresh cache: unknown, and why, in one line.
    proxy.set_prices(
        Prices::new()
            .on_demand("m5.large", "us-east-1", "0.0960")
            .answer_get_products(PriceAnswer::NoAnswer),
    );
    desk.env.retain(|(k, _)| *k != "XDG_CACHE_HOME");
    desk.env.push((
        "XDG_CACHE_HOME",
        desk.dir.path().join("cache2").display().to_string(),
    ));
    let name = unique("abn");
    let file = batch_file(&desk, &name, &bucket, &rows([frame(1)]));
    let (code, out, err) = desk.out(&["batch", &file, "--engine", "aws-batch", "--queue", &q]);
    assert_eq!(code, Some(0), "{err}\n{out}");
    let line: Vec<&str> = err
        .lines()
        .filter(|l| l.trim_start().starts_with("cost: unknown"))
        .collect();
    assert_eq!(line.len(), 1, "one line says why: {err}");
    assert!(
        line[0].contains("GetProducts") && line[0].contains("--price"),
        "{err}"
    );
    assert!(
        err.contains("idle minutes are the queue's, not a job's"),
        "the summary says what a job's cost leaves out: {err}"
    );
    let rows = json(&desk, &["status", "--batch", &name, "--json"]);
    assert!(rows[0]["cost_usd"].is_null(), "{rows}");
    assert_no_denials(&scope, true);
    let _ = desk.admin(&["aws-batch", "teardown", "--queue", &q]);
}

/// A batch left with `--detach` has no client at its end: once its jobs ended, `status
/// --batch` works out their cost at the `--price` it was submitted with and records it (in the
/// registry and beside the results in S3), so `cost --batch` and `report` here, and `cost
/// --output` and `report --output` from another workstation show the same figures: the
/// attempts' time at the price.
#[tokio::test]
async fn a_detached_batchs_cost_is_recorded_by_status_once_its_jobs_ended() {
    let Some(moto) = moto() else { return };
    let Enforced {
        desk,
        c,
        queue: q,
        bucket,
        scope,
    } = enforced(&moto).await;
    let name = unique("abd");
    let file = batch_file(&desk, &name, &bucket, &rows([frame(1), frame(2)]));
    let (code, out, err) = desk.out(&[
        "batch",
        &file,
        "--engine",
        "aws-batch",
        "--queue",
        &q,
        "--detach",
        "--price",
        "36",
    ]);
    assert_eq!(code, Some(0), "{err}\n{out}");
    let ids = submitted(&desk, &name);
    // Until AWS Batch says both ended.
    let start = std::time::Instant::now();
    let described = loop {
        let d = c
            .batch
            .describe_jobs()
            .set_jobs(Some(ids.values().cloned().collect()))
            .send()
            .await
            .expect("describe jobs");
        let done = d.jobs().len() == ids.len()
            && d.jobs()
                .iter()
                .all(|j| matches!(j.status().map(|s| s.as_str()), Some("SUCCEEDED" | "FAILED")));
        if done {
            break d;
        }
        assert!(start.elapsed().as_secs() < 120, "not ended: {d:?}");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    let mut want = BTreeMap::new();
    for d in described.jobs() {
        let job = ids
            .iter()
            .find(|(_, b)| Some(b.as_str()) == d.job_id())
            .map(|(j, _)| j.clone())
            .expect("one of ours");
        let ms: i64 = d
            .attempts()
            .iter()
            .map(|a| a.stopped_at().expect("stoppedAt") - a.started_at().expect("startedAt"))
            .sum();
        want.insert(job, ms as f64 / 1000.0 * 36.0 / 3600.0);
    }
    let rows = json(&desk, &["status", "--batch", &name, "--json"]);
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{rows:?}");
    for r in rows {
        let id = r["job_id"].as_str().expect("job_id");
        assert!((f(&r["cost_usd"]) - want[id]).abs() < 1e-9, "{r}");
        assert_eq!(r["price_source"], "--price", "{r}");
    }
    let total: f64 = want.values().sum();
    let doc = json(&desk, &["cost", "--batch", &name, "--json"]);
    assert!((f(&doc["cost_usd"]) - total).abs() < 1e-9, "{doc}");
    let mut other = Desk::new(&moto);
    other.enforce(&scope);
    let doc = json(
        &other,
        &["cost", "--output", &format!("s3://{bucket}"), "--json"],
    );
    assert!((f(&doc["cost_usd"]) - total).abs() < 1e-9, "{doc}");
    // `report` puts the recorded figures on the page, here and from the other workstation.
    let out = format!("s3://{bucket}");
    for (d, args) in [
        (&desk, vec!["report", "--batch", name.as_str()]),
        (
            &other,
            vec!["report", "--batch", name.as_str(), "--output", out.as_str()],
        ),
    ] {
        let (code, _, err) = d.out(&args);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        let model = d
            .dir
            .path()
            .join(format!("run-render-logs/{name}/report.json"));
        let page: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&model).expect("the page's model")).unwrap();
        for card in page["jobs"].as_array().expect("cards") {
            let id = card["job_id"].as_str().expect("job_id");
            assert!(
                (f(&card["cost_usd"]) - want[id]).abs() < 1e-9,
                "{args:?}: {card}"
            );
        }
    }
    assert_no_denials(&scope, true);
    let _ = desk.admin(&["aws-batch", "teardown", "--queue", &q]);
}

/// A compute environment of `optimal` types: the world's moto names no container instance
/// (`TBD`, as moto does), and the runner records none (the jobs here get no metadata
/// service). Without `--price` the cost is unknown, and the summary says why in one line; with
/// it, the attempts' time at the price is the cost all the same.
#[tokio::test]
async fn without_a_known_instance_the_cost_needs_the_price_and_says_why() {
    let Some(moto) = moto() else { return };
    let mut desk = Desk::new(&moto);
    let c = clients(&moto).await;
    let q = queue_of(&desk, &c, "optimal").await;
    let bucket = c.bucket().await;
    let scope = scope(&q, &[&bucket]);
    desk.enforce(&scope);
    let name = unique("abu");
    let file = batch_file(&desk, &name, &bucket, &rows([frame(1)]));
    let (code, out, err) = desk.out(&["batch", &file, "--engine", "aws-batch", "--queue", &q]);
    assert_eq!(code, Some(0), "{err}\n{out}");
    let line: Vec<&str> = err
        .lines()
        .filter(|l| l.trim_start().starts_with("cost: unknown"))
        .collect();
    assert_eq!(line.len(), 1, "one line says why: {err}");
    assert!(
        line[0].contains("did not say which instance attempt 1 ran on")
            && line[0].contains("--price"),
        "{err}"
    );
    let status = json(&desk, &["status", "--batch", &name, "--json"]);
    assert!(status[0]["cost_usd"].is_null(), "{status}");
    assert!(
        status[0]["cost_note"]
            .as_str()
            .is_some_and(|n| n.contains("did not say which instance")),
        "{status}"
    );
    // The same job again with --price: the attempts' time at it.
    let name = unique("abp");
    let file = batch_file(&desk, &name, &bucket, &rows([frame(1)]));
    let (code, out, err) = desk.out(&[
        "batch",
        &file,
        "--engine",
        "aws-batch",
        "--queue",
        &q,
        "--json",
        "--price",
        "36",
    ]);
    assert_eq!(code, Some(0), "{err}\n{out}");
    let summary: serde_json::Value = serde_json::from_str(&out).expect("summary JSON");
    let job = &summary["jobs"][0];
    assert!(f(&job["cost_usd"]) > 0.0, "{job}");
    assert_eq!(job["cost"]["attempts"][0]["instance_id"], "", "{job}");
    assert_eq!(summary["price_source"], "--price", "{summary}");
    assert_no_denials(&scope, true);
    let _ = desk.admin(&["aws-batch", "teardown", "--queue", &q]);
}
