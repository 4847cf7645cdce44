//! What a render costs and a budget it never passes, end to end on the emulator (MiniStack,
//! Octave, Docker): the dry run's worst case, a budget without a price refused before launch,
//! a batch whose summary, `status` and `cost` agree to the cent with the instance times EC2
//! reports (with `--price` winning over every other source), a budget of about three jobs'
//! cost over six, and on-budget = "stop" saving the running job's outputs.
//!
//! MiniStack has neither the Price List API nor spot price history: without `--price` every
//! figure here is unknown, which the refusal test relies on. One test puts the fault proxy's
//! Price List answers (tests/world/prices.py, the real response shape) in front of it: a job
//! costed from the Price List, and unknown when the Price List does not answer.
//!
//! The client runs as the shipped client policy's principal and its instances as the instance
//! role, through the world's IAM proxy (`World::enforced`); each test fails on a refused call.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{run_render, support_image, unique, Watched, World};

/// A test's own workstation: registry, price cache, owner, and folder for its files.
struct Desk {
    /// The world's client principal (keys, IAM proxy) when the world is enforced.
    env: Vec<(&'static str, String)>,
    state: tempfile::TempDir,
    cache: tempfile::TempDir,
    dir: tempfile::TempDir,
    user: String,
}

impl Desk {
    fn new() -> Desk {
        Desk {
            env: Vec::new(),
            state: tempfile::tempdir().expect("tmp"),
            cache: tempfile::tempdir().expect("tmp"),
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
            .env("XDG_CACHE_HOME", self.cache.path())
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

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let (code, out, err) = self.out(args);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{args:?} (exit {code:?}): {e}\n{out}\n{err}"))
    }

    fn write(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.display().to_string()
    }
}

/// A batch file of `rows` (n, Octave code) on the test AMI, outputs under s3://bucket/<n>.
async fn batch_file(
    w: &World,
    desk: &Desk,
    name: &str,
    bucket: &str,
    batch_keys: &str,
    rows: &[(u32, String)],
) -> String {
    let ami = w.test_ami().await;
    let mut csv = String::from("n,cmd\n");
    for (n, cmd) in rows {
        csv.push_str(&format!("{n},\"{}\"\n", cmd.replace('"', "\"\"")));
    }
    desk.write(&format!("{name}.csv"), &csv);
    desk.write(
        &format!("{name}.toml"),
        &format!(
            r#"[batch]
csv = "{name}.csv"
retries = 0
{batch_keys}

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

/// Octave: write `frame.txt` into the outputs, then pause `secs`.
fn frame_then_pause(secs: u32) -> String {
    format!("fid = fopen(fullfile(getenv('OUTPUT_SCRATCH'), 'frame.txt'), 'w'); fprintf(fid, 'done'); fclose(fid); pause({secs});")
}

fn f(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// (id, LaunchTime) of every instance with this batch's tag, as EC2 reports them.
async fn launch_times(w: &World, batch: &str) -> Vec<(String, std::time::SystemTime)> {
    let out = w
        .ec2
        .describe_instances()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:rtb:batch")
                .values(batch)
                .build(),
        )
        .send()
        .await
        .expect("describe");
    out.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| {
            (
                i.instance_id().unwrap_or_default().to_string(),
                std::time::SystemTime::try_from(*i.launch_time().expect("LaunchTime"))
                    .expect("time"),
            )
        })
        .collect()
}

#[test]
fn dry_runs_show_the_worst_case() {
    let desk = Desk::new();
    // No AWS at all: the user's price needs no lookup.
    let doc = desk.json(&[
        "run",
        "--ami",
        "ami-0123456789abcdef0",
        "--command",
        "ver",
        "--output",
        "s3://lab-bucket/x",
        "--timeout",
        "1h",
        "--deadline-margin",
        "30m",
        "--price",
        "0.36",
        "--dry-run",
        "--json",
        "--endpoint-url",
        "http://127.0.0.1:9",
    ]);
    let cost = &doc["cost"];
    assert_eq!(cost["currency"], "USD");
    assert_eq!(cost["instances"], 1);
    // 1 instance x 1h30m x $0.36/h; the deadline is set a moment after "now", so allow a second.
    assert!((f(&cost["worst_case_usd"]) - 0.54).abs() < 0.0002, "{cost}");
    assert!(
        cost["price_source"].as_str().unwrap().contains("--price"),
        "{cost}"
    );

    // A batch: at most ceil(parallel / per-instance) instances at once, each to its deadline.
    desk.write("j.csv", "n\n1\n2\n3\n4\n5\n");
    let file = desk.write(
        "b.toml",
        "[batch]\ncsv = \"j.csv\"\nparallel = 4\nper-instance = 2\nprice = 0.5\n[job]\nami = \"ami-0123456789abcdef0\"\ncommand = \"r(${n})\"\noutput = \"s3://lab-bucket/${n}\"\ntimeout = \"2h\"\ndeadline-margin = \"30m\"\n",
    );
    let (code, out, err) = desk.out(&[
        "batch",
        &file,
        "--dry-run",
        "--endpoint-url",
        "http://127.0.0.1:9",
    ]);
    assert_eq!(code, Some(0), "{err}");
    // 2 instances x 2h30m x $0.50/h = $2.50.
    assert!(
        out.contains("# cost: worst case $2.5000 (2 instances x 2h29m")
            || out.contains("# cost: worst case $2.5000 (2 instances x 2h30m")
            || out.contains("# cost: worst case $2.4999"),
        "{out}"
    );
    // With --detach every job starts at once: 3 instances; a $2 budget makes their deadlines
    // shorter so the worst case fits, and the dry run says so.
    let doc = desk.json(&[
        "batch",
        &file,
        "--dry-run",
        "--json",
        "--detach",
        "--max-cost",
        "2",
        "--endpoint-url",
        "http://127.0.0.1:9",
    ]);
    let cost = &doc["cost"];
    assert_eq!(cost["instances"], 3, "{cost}");
    assert!(f(&cost["worst_case_usd"]) <= 2.0, "{cost}");
    assert_eq!(cost["detached_lifetime_s"], 4800, "{cost}");
}

#[test]
fn a_cached_price_is_reused_and_expires() {
    let desk = Desk::new();
    // Every call goes through the proxy, which counts them; MiniStack behind it has no Price
    // List API, so a price asked for is not found.
    let proxy = rtb_testkit::FaultProxy::start();
    let cache = desk.cache.path().join("run-render/prices.json");
    std::fs::create_dir_all(cache.parent().unwrap()).unwrap();
    let fetched = |ago: u64| {
        let t = std::time::SystemTime::now() - Duration::from_secs(ago);
        let doc = serde_json::json!({"prices": [{
            "usd_per_hour": 0.0104, "market": "on-demand", "instance_type": "t3.micro",
            "place": "us-east-1", "source": "price-list",
            "fetched_at": humantime::format_rfc3339_seconds(t).to_string(), "cached": false,
        }]});
        std::fs::write(&cache, doc.to_string()).unwrap();
    };
    let dry_run = || {
        let mut c = desk.cmd(&[
            "run",
            "--ami",
            "ami-0123456789abcdef0",
            "--instance-type",
            "t3.micro",
            "--command",
            "ver",
            "--output",
            "s3://lab-bucket/x",
            "--timeout",
            "1h",
            "--deadline-margin",
            "30m",
            "--region",
            "us-east-1",
            "--dry-run",
            "--json",
        ]);
        c.env("AWS_ENDPOINT_URL", proxy.endpoint());
        let o = c.output().expect("run");
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        serde_json::from_str::<serde_json::Value>(&text)
            .unwrap_or_else(|e| panic!("{e}: {text}{}", String::from_utf8_lossy(&o.stderr)))
    };
    // Fetched 23 h ago: within a day, reused, and AWS is not asked.
    fetched(23 * 3600);
    let doc = dry_run();
    let cost = &doc["cost"];
    assert_eq!(cost["usd_per_hour"], 0.0104, "{cost}");
    let source = cost["price_source"].as_str().unwrap();
    assert!(
        source.contains("AWS Price List API") && source.contains("cached"),
        "{source}"
    );
    assert!(
        (f(&cost["worst_case_usd"]) - 0.0156).abs() < 0.0001,
        "{cost}"
    );
    assert_eq!(proxy.count("GetProducts"), 0);
    // Fetched 25 h ago: expired, so the Price List API is asked (here it has no answer: the
    // figure is unknown, never the stale price).
    fetched(25 * 3600);
    let doc = dry_run();
    let cost = &doc["cost"];
    assert!(cost["worst_case_usd"].is_null(), "{cost}");
    assert!(
        cost["unknown"].as_str().unwrap().contains("GetProducts"),
        "{cost}"
    );
    assert!(proxy.count("GetProducts") >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_budget_without_a_price_is_refused_before_launch() {
    let w = World::enforced().await;
    let desk = Desk::of(&w);
    let bucket = w.output_bucket("cost-noprice").await;
    let ami = w.test_ami().await;
    let job = unique("noprice");
    // MiniStack has no Price List API: no price, so no budget.
    let (code, out, err) = desk.out(&[
        "run",
        "--ami",
        &ami,
        "--command",
        "ver",
        "--output",
        &format!("s3://{bucket}/x"),
        "--job-id",
        &job,
        "--max-cost",
        "5",
        "--image",
        &support_image(),
    ]);
    assert_eq!(code, Some(2), "{out}{err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("run-render:"))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("--max-cost") && lines[0].contains("--price"),
        "{err}"
    );
    assert!(
        w.instances_of(&job).await.is_empty(),
        "an instance was launched"
    );

    let name = unique("nopb");
    let file = batch_file(
        &w,
        &desk,
        &name,
        &bucket,
        "parallel = 2\nmax-cost = 5",
        &[(1, "1".into()), (2, "2".into())],
    )
    .await;
    let (code, _, err) = desk.out(&["batch", &file]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--max-cost") && err.contains("--price"),
        "{err}"
    );
    assert!(w.instances_tagged("rtb:batch", &name).await.is_empty());
    // With a price the same batch file would be accepted: the refusal is the missing price.
    let (code, out, err) = desk.out(&["batch", &file, "--dry-run", "--price", "0.1"]);
    assert_eq!(code, Some(0), "{out}{err}");
    w.assert_no_denials();
}

#[tokio::test(flavor = "multi_thread")]
async fn summary_status_and_cost_agree_with_ec2s_instance_times() {
    let w = World::enforced().await;
    let desk = Desk::of(&w);
    let bucket = w.output_bucket("cost-agree").await;
    let name = unique("agree");
    // $36/h: a second costs a cent, so "to the cent" is "to the second".
    let file = batch_file(
        &w,
        &desk,
        &name,
        &bucket,
        "parallel = 2\nprice = 1.0",
        &[(1, frame_then_pause(3)), (2, "error('boom');".into())],
    )
    .await;
    // --price on the command line wins over [batch] price.
    let (code, out, err) = desk.out(&["batch", &file, "--json", "--price", "36"]);
    assert_eq!(code, Some(71), "one job fails: {out}{err}");
    let ec2 = launch_times(&w, &name).await;
    let summary: serde_json::Value = serde_json::from_str(&out).expect("summary JSON");
    assert_eq!(summary["currency"], "USD");
    assert_eq!(summary["price_source"], "--price");
    let total = f(&summary["cost_usd"]);
    let jobs = summary["jobs"].as_array().expect("jobs");
    let mut billed = 0u64;
    let mut by_job = std::collections::BTreeMap::new();
    for j in jobs {
        let usd = f(&j["cost_usd"]);
        by_job.insert(j["job_id"].as_str().unwrap().to_string(), usd);
        for i in j["cost"]["instances"].as_array().expect("instances") {
            // The launch time billed is EC2's own.
            let id = i["id"].as_str().unwrap();
            let launched = humantime::parse_rfc3339(i["launched"].as_str().unwrap()).unwrap();
            let (_, t) = ec2
                .iter()
                .find(|(e, _)| e == id)
                .unwrap_or_else(|| panic!("{id} not in EC2's {ec2:?}"));
            assert_eq!(launched, *t, "{id}");
            // Its end: EC2's transition time, or (MiniStack gives none) when the pool saw it.
            assert!(
                matches!(i["end_from"].as_str(), Some("ec2" | "client")),
                "{i}"
            );
            let ended = humantime::parse_rfc3339(i["ended"].as_str().unwrap()).unwrap();
            let secs = ended.duration_since(launched).unwrap().as_secs().max(60);
            assert!(i["billed_s"].as_u64().unwrap().abs_diff(secs) <= 1, "{i}");
            billed += i["billed_s"].as_u64().unwrap();
            let usd = f(&i["usd"]);
            assert!(
                (usd - i["billed_s"].as_u64().unwrap() as f64 / 100.0).abs() < 0.005,
                "{i}"
            );
        }
        assert_eq!(j["cost"]["prices"][0]["source"], "user", "{j}");
    }
    // Per-second billing at $36/h: one cent per second, across every instance.
    assert!(
        (total - billed as f64 / 100.0).abs() < 0.005,
        "total {total} vs {billed} s"
    );
    assert!((by_job.values().sum::<f64>() - total).abs() < 0.005);
    // The batch's page shows the same figures, the batch's and each job's.
    let model = desk
        .dir
        .path()
        .join(format!("run-render-logs/{name}/report.json"));
    let page: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&model).expect("the page's model")).unwrap();
    assert!((f(&page["cost_usd"]) - total).abs() < 1e-9, "{page}");
    for card in page["jobs"].as_array().expect("cards") {
        let job = card["job_id"].as_str().unwrap();
        assert!((f(&card["cost_usd"]) - by_job[job]).abs() < 1e-9, "{card}");
    }
    // The failed job's cost is its failed attempt's.
    let failed = jobs
        .iter()
        .find(|j| j["outcome"] == "job_failed")
        .expect("failed job");
    assert!((f(&failed["cost"]["failed_usd"]) - f(&failed["cost_usd"])).abs() < 1e-9);

    // status --batch, from this workstation, and status --output from another one (S3 only).
    let rows = desk.json(&["status", "--batch", &name, "--json"]);
    let other = Desk::of(&w);
    for rows in [
        rows,
        other.json(&["status", "--output", &format!("s3://{bucket}"), "--json"]),
    ] {
        let rows = rows.as_array().expect("rows").clone();
        assert_eq!(rows.len(), 2, "{rows:?}");
        for r in rows {
            let job = r["job_id"].as_str().unwrap();
            assert!(
                (f(&r["cost_usd"]) - by_job[job]).abs() < 0.005,
                "{job}: {r}"
            );
            assert_eq!(r["currency"], "USD");
            assert_eq!(r["price_source"], "--price");
        }
    }
    // cost --batch, and by batch: the same total.
    let doc = desk.json(&["cost", "--batch", &name, "--by", "batch", "--json"]);
    assert!((f(&doc["cost_usd"]) - total).abs() < 0.005, "{doc}");
    assert_eq!(doc["rows"][0]["jobs"], 2);
    let doc = other.json(&["cost", "--output", &format!("s3://{bucket}"), "--json"]);
    assert!((f(&doc["cost_usd"]) - total).abs() < 0.005, "{doc}");
    w.assert_no_denials();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_detached_run_under_a_budget_gets_a_deadline_that_fits() {
    let w = World::enforced().await;
    let desk = Desk::of(&w);
    let bucket = w.output_bucket("cost-detach").await;
    let ami = w.test_ami().await;
    let job = unique("detach");
    // $36/h (a cent a second) and $3: the instance may live 300 s; its 24h30m deadline moves
    // in, and the job's timeout with it (keeping the 1 minute margin).
    let (code, out, err) = desk.out(&[
        "run",
        "--ami",
        &ami,
        "--instance-type",
        "t3.micro",
        "--image",
        &support_image(),
        "--interpreter",
        "octave-cli",
        "--command",
        "pause(60)",
        "--output",
        &format!("s3://{bucket}/d"),
        "--job-id",
        &job,
        "--deadline-margin",
        "1m",
        "--price",
        "36",
        "--max-cost",
        "3",
        "--detach",
        "--json",
    ]);
    let started = std::time::SystemTime::now();
    let instances = w.instances_of(&job).await;
    for (id, _) in &instances {
        w.terminate(id).await;
    }
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        err.contains("budget $3.00") && err.contains("powers itself off 5m00s after launch"),
        "{err}"
    );
    let doc: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    assert_eq!(doc["outcome"], "detached");
    assert_eq!(doc["cost_so_far"], true, "{doc}");
    assert_eq!(doc["currency"], "USD");
    // What it has cost so far: at least its first minute.
    assert!(f(&doc["cost_usd"]) >= 0.6 - 1e-9, "{doc}");
    // The deadline the instance carries is launch + 300 s, not 24h30m.
    let entry = std::fs::read_to_string(
        desk.state
            .path()
            .join(format!("run-render/jobs/{job}.json")),
    )
    .expect("registry entry");
    let entry: serde_json::Value = serde_json::from_str(&entry).unwrap();
    let deadline = humantime::parse_rfc3339(entry["deadline"].as_str().expect("deadline")).unwrap();
    let left = deadline.duration_since(started).unwrap_or_default();
    assert!(
        left <= Duration::from_secs(300) && left >= Duration::from_secs(240),
        "{left:?}"
    );
    assert!(instances.len() == 1, "{instances:?}");
    w.assert_no_denials();
}

/// The summary's job outcomes: (done, not run for the budget, other).
fn outcomes(summary: &serde_json::Value) -> (usize, usize, Vec<String>) {
    let mut done = 0;
    let mut budget = 0;
    let mut other = Vec::new();
    for j in summary["jobs"].as_array().expect("jobs") {
        match j["outcome"].as_str().unwrap_or_default() {
            "succeeded" => done += 1,
            "not_run" if j["not_run"].as_str().unwrap_or_default().contains("budget") => {
                budget += 1
            }
            o => other.push(format!("{}: {o} {}", j["job_id"], j["not_run"])),
        }
    }
    (done, budget, other)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_budget_of_about_three_jobs_over_six_finishes_what_runs() {
    let w = World::enforced().await;
    let desk = Desk::of(&w);
    let bucket = w.output_bucket("cost-budget").await;
    let name = unique("budget");
    let rows: Vec<(u32, String)> = (1..=6).map(|n| (n, frame_then_pause(40))).collect();
    // $3.6/h is a dollar per 1000 s: a budget of $0.16 is 160 instance-seconds, about three
    // 40 s jobs on two instances billed at least a minute each.
    let file = batch_file(
        &w,
        &desk,
        &name,
        &bucket,
        "parallel = 2\nprice = 3.6\nmax-cost = 0.16\non-budget = \"finish\"",
        &rows,
    )
    .await;
    let (code, out, err) = desk.out(&["batch", &file, "--json"]);
    assert_eq!(code, Some(71), "{out}{err}");
    let summary: serde_json::Value = serde_json::from_str(&out).expect("summary");
    let (done, held, other) = outcomes(&summary);
    assert!(other.is_empty(), "{other:?}\n{err}");
    eprintln!(
        "budget $0.16 over 6 jobs: {done} done, {held} held, spent ${:.4}",
        f(&summary["cost_usd"])
    );
    assert!((3..=5).contains(&done), "{done} done\n{err}");
    assert_eq!(done + held, 6);
    // Spend under the budget plus one billing minute of the instances that were running.
    let total = f(&summary["cost_usd"]);
    assert!(total <= 0.16 + 2.0 * 0.06, "spent ${total}");
    assert!(
        summary["pool"]["budget_reached"]
            .as_str()
            .unwrap_or_default()
            .contains("budget"),
        "{summary}"
    );
    assert!(w
        .instances_tagged("rtb:batch", &name)
        .await
        .iter()
        .all(|(_, s)| s == "terminated"));
    // --resume goes on later with the jobs the budget held.
    let (_, out, err) = desk.out(&["batch", &file, "--resume", "--dry-run"]);
    assert!(out.contains("worst case"), "{out}{err}");
    w.assert_no_denials();
}

#[tokio::test(flavor = "multi_thread")]
async fn on_budget_stop_saves_the_running_jobs_outputs() {
    let w = World::enforced().await;
    let desk = Desk::of(&w);
    let bucket = w.output_bucket("cost-stop").await;
    let name = unique("stop");
    // One job that writes its frame at once, then would run 5 minutes; the budget (80 s at
    // $3.6/h) is reached long before.
    let file = batch_file(
        &w,
        &desk,
        &name,
        &bucket,
        "parallel = 1\nprice = 3.6\nmax-cost = 0.08\non-budget = \"stop\"",
        &[(1, frame_then_pause(300))],
    )
    .await;
    let mut run = Watched::spawn(desk.cmd(&["batch", &file, "--json"]));
    assert!(
        run.wait_for("budget is reached", Duration::from_secs(240))
            .is_some(),
        "the budget never stopped it"
    );
    let done = run.finish(Duration::from_secs(240));
    assert_eq!(done.code, Some(71), "{}", done.all());
    let summary: serde_json::Value = serde_json::from_str(&done.stdout()).expect("summary");
    assert_eq!(summary["jobs"][0]["outcome"], "interrupted", "{summary}");
    // Its output was saved, as Ctrl-C saves it.
    let frame = w.get(&bucket, "1/frame.txt").await;
    assert_eq!(frame.as_deref(), Some(&b"done"[..]), "{}", done.all());
    eprintln!("budget $0.08, stop: spent ${:.4}", f(&summary["cost_usd"]));
    assert!(f(&summary["cost_usd"]) <= 0.08 + 0.06, "{summary}");
    w.assert_no_denials();
}

/// Prices from the real APIs' answers (the proxy serves GetProducts in the Price List's shape,
/// which MiniStack lacks): a job run without --price is costed from the Price List, says so,
/// and agrees with EC2's instance time at that price (60 s minimum); when the Price List does
/// not answer, the cost is unknown (never a built-in figure) and a budget is refused before
/// anything is launched.
#[tokio::test]
async fn a_job_is_costed_from_the_price_list_and_unknown_without_it() {
    use rtb_testkit::{FaultProxy, PriceAnswer, Prices};
    let w = World::new().await;
    let desk = Desk::new();
    let bucket = w.bucket("cost-list").await;
    let ami = w.test_ami().await;
    let proxy = FaultProxy::start();
    proxy.set_prices(Prices::new().on_demand("t3.micro", "us-east-1", "0.1040"));
    let job = unique("listed");
    let args = |job: &str, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "run",
            "--ami",
            &ami,
            "--instance-type",
            "t3.micro",
            "--image",
            &support_image(),
            "--interpreter",
            "octave-cli",
            "--command",
            "disp(42)",
            "--output",
            &format!("s3://{bucket}/{job}"),
            "--job-id",
            job,
            "--endpoint-url",
            &proxy.endpoint(),
            "--json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let a = args(&job, &[]);
    let doc = desk.json(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(doc["outcome"], "succeeded", "{doc}");
    assert!(
        proxy.calls().iter().any(|c| c.action == "GetProducts"),
        "the Price List was asked"
    );
    // The instance's billed time (EC2's launch time to its end, 60 s minimum) at the listed
    // price.
    let (id, _) = w
        .instances_of(&job)
        .await
        .into_iter()
        .next()
        .expect("its instance");
    let instances = doc["cost"]["instances"].as_array().expect("instances");
    assert_eq!(instances.len(), 1, "{doc}");
    assert_eq!(instances[0]["id"], id.as_str(), "{doc}");
    let billed = instances[0]["billed_s"].as_u64().expect("billed_s") as f64;
    assert!(billed >= 60.0, "{doc}");
    let want = billed * 0.1040 / 3600.0;
    assert!(
        (f(&doc["cost_usd"]) - want).abs() < 0.00005,
        "cost {} against {want:.6} for {billed} s: {doc}",
        doc["cost_usd"]
    );
    assert_eq!(doc["price_source"], "AWS Price List API", "{doc}");
    let price = &doc["cost"]["prices"][0];
    assert_eq!(price["source"], "price-list", "{doc}");
    assert_eq!(price["usd_per_hour"], 0.104, "{doc}");
    assert_eq!(price["place"], "us-east-1", "{doc}");

    // The Price List cut off, on a desk with no cached price: unknown, and a budget refused.
    let desk = Desk::new();
    proxy.set_prices(
        Prices::new()
            .on_demand("t3.micro", "us-east-1", "0.1040")
            .answer_get_products(PriceAnswer::NoAnswer),
    );
    let job = unique("unlisted");
    let a = args(&job, &["--max-cost", "5"]);
    let (code, out, err) = desk.out(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, Some(2), "{out}{err}");
    let line: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(line.len(), 1, "one line: {err}");
    assert!(
        line[0].contains("--max-cost") && line[0].contains("--price"),
        "{err}"
    );
    assert!(w.instances_of(&job).await.is_empty(), "nothing launched");
    let a = args(&job, &["--dry-run"]);
    let doc = desk.json(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(doc["cost"]["worst_case_usd"].is_null(), "{doc}");
}
