//! A hundred jobs at once inside AWS's API limits: `run-render batch` at parallel 100 talks to
//! MiniStack through the fault proxy with AWS's own token buckets (tests/world/limits.py). The
//! jobs run a light image whose `matlab` is a script that sleeps a few seconds and writes one
//! file, so a hundred of them fit on a small machine. Every job must succeed, no throttling
//! error may show as a job's failure, AWS never has to throttle the client's EC2 and SSM
//! calls, and the calls the batch made per job-minute are printed by API family.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{run_render, support_image, unique, Watched, World};
use rtb_testkit::{FaultProxy, Limits};

/// Jobs, all at once (bench/calls.sh sets RTB_SCALE_JOBS to measure 10, 50 and 100).
fn jobs() -> u32 {
    std::env::var("RTB_SCALE_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
}
/// How long each job's `matlab` "renders".
const RENDER_S: u32 = 8;

/// The light image: the world's support image (the runner, the docker CLI) whose `matlab` is
/// a shell script: a line a second for RENDER_S seconds, then `frame.txt` in the outputs.
fn light_image() -> String {
    let support = support_image();
    let image = match support.rsplit_once('/') {
        Some((prefix, _)) => format!("{prefix}/light:test"),
        None => "rtb-world/light:test".to_string(),
    };
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("matlab"),
        format!(
            "#!/bin/sh\n\
             # A stand-in for MATLAB: a few seconds of work, one output file.\n\
             for i in $(seq 1 {RENDER_S}); do echo \"rendering $RTB_JOB_ID: step $i\"; sleep 1; done\n\
             echo \"frame of $RTB_JOB_ID\" > \"$OUTPUT_SCRATCH/frame.txt\"\n"
        ),
    )
    .expect("write matlab");
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!(
            "FROM {support}\nCOPY matlab /usr/local/bin/matlab\nRUN [\"/bin/chmod\", \"755\", \"/usr/local/bin/matlab\"]\n"
        ),
    )
    .expect("write Dockerfile");
    // Built every time (the layer cache makes it quick): the support image follows the tree.
    let ok = Command::new("docker")
        .args(["build", "-q", "-t", &image])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "could not build {image}");
    image
}

/// CPU seconds (user + system) of the children this process has reaped.
fn children_cpu() -> f64 {
    let u = usage();
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

/// The largest peak RSS of a reaped child (the client; the docker CLI's is far smaller).
fn children_peak_rss_mb() -> f64 {
    usage().ru_maxrss as f64 / 1024.0
}

fn usage() -> libc::rusage {
    // SAFETY: getrusage fills the struct it is given.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut u);
        u
    }
}

/// Error codes that mean "slow down" (EC2, SSM, S3): none may be a job's failure.
const THROTTLING: &[&str] = &["RequestLimitExceeded", "ThrottlingException", "SlowDown"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_jobs_at_once_succeed_inside_aws_rate_limits() {
    let w = World::new().await;
    let jobs_n = jobs();
    let image = light_image();
    let ami = w.test_ami().await;
    let bucket = w.bucket("scale").await;
    let name = unique("scale");
    let state = tempfile::tempdir().expect("tmp");
    let dir = tempfile::tempdir().expect("tmp");

    let mut csv = String::from("n\n");
    for n in 1..=jobs_n {
        csv.push_str(&format!("{n}\n"));
    }
    std::fs::write(dir.path().join("jobs.csv"), csv).expect("csv");
    let file = dir.path().join("scale.toml");
    std::fs::write(
        &file,
        format!(
            r#"[batch]
csv = "jobs.csv"
parallel = {jobs_n}
per-instance = 10
retries = 0

[job]
ami = "{ami}"
instance-type = "t3.micro"
image = "{image}"
interpreter = "matlab"
command = "render(${{n}})"
output = "s3://{bucket}/${{n}}"
job-id = "{name}-${{n}}"
timeout = "10m"
"#
        ),
    )
    .expect("toml");

    let proxy = FaultProxy::start();
    proxy.limits(Limits::aws());
    proxy.clear_limit_stats();
    let endpoint = proxy.endpoint();
    let file = file.display().to_string();
    let args = ["batch", &file, "--json", "--endpoint-url", &endpoint];
    // bench/calls.sh measures another build of the client (main's) with the same test.
    let mut cmd = match std::env::var("RTB_SCALE_CLIENT") {
        Ok(client) => {
            let mut c = Command::new(client);
            c.args(args)
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .stdin(std::process::Stdio::null());
            c
        }
        Err(_) => run_render(&args),
    };
    cmd.env("XDG_STATE_HOME", state.path())
        .env("USER", unique("user"))
        .current_dir(dir.path());
    let cpu_before = children_cpu();
    let started = Instant::now();
    let done = Watched::spawn(cmd).finish(Duration::from_secs(300));
    let wall = started.elapsed();
    // The client is the only child reaped in between.
    let cpu = children_cpu() - cpu_before;
    let stats = proxy.limit_stats();

    let out = done.stdout();
    let doc: serde_json::Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("one JSON document ({e}):\n{}", done.all()));
    let jobs = doc["jobs"].as_array().expect("jobs");
    let job_minutes: f64 = jobs
        .iter()
        .filter_map(|j| j["duration_s"].as_f64())
        .sum::<f64>()
        / 60.0;

    println!(
        "parallel {jobs_n}: batch wall {:.1} s, {:.1} job-minutes, {} instances",
        wall.as_secs_f64(),
        job_minutes,
        doc["pool"]["instances_launched"]
    );
    println!(
        "client: {cpu:.1} s CPU ({:.1} % of a core), peak RSS {:.0} MB",
        100.0 * cpu / wall.as_secs_f64(),
        children_peak_rss_mb()
    );
    println!(
        "{:<14} {:>8} {:>10} {:>16} {:>12}",
        "family", "calls", "throttled", "per job-minute", "per second"
    );
    for (family, c) in &stats.families {
        println!(
            "{family:<14} {:>8} {:>10} {:>16.1} {:>12.2}",
            c.calls,
            c.throttled,
            c.calls as f64 / job_minutes.max(1e-9),
            c.calls as f64 / wall.as_secs_f64()
        );
    }
    for (action, c) in &stats.actions {
        println!("  {action:<40} {:>8} {:>10}", c.calls, c.throttled);
    }

    let failed: Vec<String> = jobs
        .iter()
        .filter(|j| j["outcome"] != "succeeded")
        .map(|j| format!("{} {} {}", j["job_id"], j["outcome"], j["error"]))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {jobs_n} jobs did not succeed:\n{}\n{}",
        failed.len(),
        failed.join("\n"),
        done.stderr()
    );
    assert_eq!(done.code, Some(0), "{}", done.stderr());
    // The client keeps to its own budget, under AWS's: EC2 and SSM never have to throttle it
    // (the rest of the account keeps its share).
    for family in ["ec2-describe", "ec2-mutating", "ssm"] {
        let c = stats.family(family);
        assert_eq!(
            c.throttled, 0,
            "{family}: {} of {} calls throttled by AWS's limits",
            c.throttled, c.calls
        );
    }
    assert_eq!(doc["jobs_succeeded"], jobs_n);
    for j in jobs {
        let text = j.to_string();
        assert!(
            !THROTTLING.iter().any(|t| text.contains(t)),
            "a throttling error in a job's record: {text}"
        );
    }
    // Every job's one output file is in S3.
    for n in 1..=jobs_n {
        let frame = w.get(&bucket, &format!("{n}/frame.txt")).await;
        assert!(
            frame.is_some_and(|f| String::from_utf8_lossy(&f).contains(&format!("{name}-{n}"))),
            "row {n} has no frame.txt"
        );
    }
    assert!(
        wall < Duration::from_secs(240),
        "the batch took {wall:?}: it must stay a CI test"
    );
}
