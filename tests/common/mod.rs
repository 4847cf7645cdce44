//! The emulator world for the client's end-to-end tests: MiniStack (started by
//! tests/world/setup.sh), the test AMI registered from a local image, an instance profile,
//! fresh buckets, and a way to run the real `run-render` binary and watch its output.
//! [`World::enforced`] (enforced.rs) runs that binary, and the instances it launches, under the
//! shipped IAM policies.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;

mod enforced;
pub mod moto;

pub const PROFILE: &str = "run-render-instance";

pub fn endpoint() -> String {
    match std::env::var("AWS_ENDPOINT_URL") {
        Ok(e) if e.starts_with("http://127.0.0.1:") => e,
        _ => panic!(
            "AWS_ENDPOINT_URL must point at the local emulator: run tests/world/setup.sh && source .world/env (or tests/run.sh)"
        ),
    }
}

pub fn support_image() -> String {
    std::env::var("RTB_WORLD_SUPPORT_IMAGE").unwrap_or_else(|_| "rtb-world/support:test".into())
}

pub struct World {
    pub ec2: aws_sdk_ec2::Client,
    pub s3: aws_sdk_s3::Client,
    pub iam: aws_sdk_iam::Client,
    /// Set by [`World::enforced`]: the test's principals at the IAM-enforcing proxy.
    pub enforcement: Option<rtb_testkit::IamScope>,
}

impl World {
    pub async fn new() -> World {
        endpoint();
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .force_path_style(true)
                .build(),
        );
        let w = World {
            ec2: aws_sdk_ec2::Client::new(&config),
            s3,
            iam: aws_sdk_iam::Client::new(&config),
            enforcement: None,
        };
        // The profile the client's preflight looks for; creating it twice is fine.
        let _ = w
            .iam
            .create_instance_profile()
            .instance_profile_name(PROFILE)
            .send()
            .await;
        w
    }

    /// Register a local Docker image as an AMI (a fresh name each time).
    pub async fn ami(&self, image: &str) -> String {
        let name = format!("rtb-test-{}", unique("ami"));
        self.ec2
            .register_image()
            .name(name)
            .image_location(image)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "register {image}: {}",
                    aws_sdk_ec2::error::DisplayErrorContext(e)
                )
            })
            .image_id()
            .expect("image id")
            .to_string()
    }

    /// The test AMI: a shell (so the "agent" is online), the Docker CLI, rtb-deadline.
    pub async fn test_ami(&self) -> String {
        let image =
            std::env::var("RTB_WORLD_AMI_IMAGE").unwrap_or_else(|_| "rtb-world/ami:test".into());
        self.ami(&image).await
    }

    /// An AMI whose instances have no shell: MiniStack's analogue of no SSM agent.
    pub async fn no_agent_ami(&self) -> String {
        let image = "rtb-world/noagent:test";
        let exists = Command::new("docker")
            .args(["image", "inspect", image])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !exists {
            let dir = tempfile::tempdir().expect("tmp");
            std::fs::write(
                dir.path().join("Dockerfile"),
                "FROM rtb-world/base:bookworm\nRUN [\"/bin/rm\", \"-f\", \"/usr/bin/sh\", \"/bin/sh\", \"/usr/bin/dash\", \"/usr/bin/bash\", \"/bin/bash\"]\n",
            )
            .expect("write Dockerfile");
            let ok = Command::new("docker")
                .args(["build", "-q", "-t", image])
                .arg(dir.path())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "could not build {image}");
        }
        self.ami(image).await
    }

    pub async fn bucket(&self, prefix: &str) -> String {
        let name = unique(prefix);
        self.s3
            .create_bucket()
            .bucket(&name)
            .send()
            .await
            .expect("create bucket");
        name
    }

    pub async fn put(&self, bucket: &str, key: &str, body: &str) {
        self.s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body.as_bytes().to_vec()))
            .send()
            .await
            .expect("put");
    }

    pub async fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let out = self
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .ok()?;
        Some(out.body.collect().await.ok()?.to_vec())
    }

    pub async fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let out = self
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .send()
            .await
            .expect("list");
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect()
    }

    /// (instance id, state) of every instance tagged with this job id.
    pub async fn instances_of(&self, job_id: &str) -> Vec<(String, String)> {
        self.instances_tagged("rtb:job-id", job_id).await
    }

    /// The instance a batch job's newest attempt was handed to, from the attempt's record
    /// (`attempt.json` under `s3://bucket/<records prefix>`): a pool instance's tags name no job.
    pub async fn batch_job_instance(&self, bucket: &str, records_prefix: &str) -> Option<String> {
        let newest = self
            .keys(bucket, records_prefix)
            .await
            .into_iter()
            .filter(|k| k.ends_with("/attempt.json"))
            .max()?;
        let doc: serde_json::Value =
            serde_json::from_slice(&self.get(bucket, &newest).await?).ok()?;
        doc["instance_id"].as_str().map(str::to_string)
    }

    /// (instance id, state) of every instance with tag `key` = `value`.
    pub async fn instances_tagged(&self, key: &str, value: &str) -> Vec<(String, String)> {
        let out = self
            .ec2
            .describe_instances()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name(format!("tag:{key}"))
                    .values(value)
                    .build(),
            )
            .send()
            .await
            .expect("describe instances");
        out.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .map(|i| {
                (
                    i.instance_id().unwrap_or_default().to_string(),
                    i.state()
                        .and_then(|s| s.name())
                        .map(|n| n.as_str().to_string())
                        .unwrap_or_default(),
                )
            })
            .collect()
    }

    pub async fn state_of(&self, id: &str) -> String {
        match self.ec2.describe_instances().instance_ids(id).send().await {
            Ok(out) => out
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .next()
                .and_then(|i| {
                    i.state()
                        .and_then(|s| s.name())
                        .map(|n| n.as_str().to_string())
                })
                .unwrap_or_else(|| "gone".into()),
            Err(_) => "gone".into(),
        }
    }

    pub async fn terminate(&self, id: &str) {
        let _ = self.ec2.terminate_instances().instance_ids(id).send().await;
    }
}

/// A name no other test (or run) uses: lowercase, bucket-safe.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() % 1_000_000_000)
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The real client binary, with the test world's defaults.
pub fn run_render(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_run-render"));
    cmd.args(args)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null());
    cmd
}

/// A running client whose stdout and stderr lines are timestamped as they arrive.
pub struct Watched {
    pub child: Child,
    started: Instant,
    lines: mpsc::Receiver<(Duration, bool, String)>,
    pub seen: Vec<(Duration, bool, String)>,
}

impl Watched {
    pub fn spawn(mut cmd: Command) -> Watched {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn run-render");
        let started = Instant::now();
        let (tx, rx) = mpsc::channel();
        for (stream, is_stdout) in [
            (
                Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
                true,
            ),
            (Box::new(child.stderr.take().expect("stderr")), false),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send((started.elapsed(), is_stdout, line));
                }
            });
        }
        Watched {
            child,
            started,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Wait (up to `limit`) for a line containing `text`; returns when it arrived.
    pub fn wait_for(&mut self, text: &str, limit: Duration) -> Option<Duration> {
        if let Some(l) = self.seen.iter().find(|l| l.2.contains(text)) {
            return Some(l.0);
        }
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(50)) {
                Ok(l) => {
                    let hit = l.2.contains(text);
                    let at = l.0;
                    self.seen.push(l);
                    if hit {
                        return Some(at);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        None
    }

    pub fn running(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }

    /// Wait for the exit (bounded), collecting the remaining lines.
    pub fn finish(mut self, limit: Duration) -> Finished {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "run-render did not finish within {limit:?}; output so far:\n{}",
                    join(&self.seen)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let ended = self.started.elapsed();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.seen.push(l);
        }
        Finished {
            code: status.code(),
            ended,
            seen: self.seen,
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }
}

pub struct Finished {
    pub code: Option<i32>,
    pub ended: Duration,
    pub seen: Vec<(Duration, bool, String)>,
}

impl Finished {
    pub fn stdout(&self) -> String {
        self.seen
            .iter()
            .filter(|l| l.1)
            .map(|l| format!("{}\n", l.2))
            .collect()
    }
    pub fn stderr(&self) -> String {
        self.seen
            .iter()
            .filter(|l| !l.1)
            .map(|l| format!("{}\n", l.2))
            .collect()
    }
    pub fn all(&self) -> String {
        join(&self.seen)
    }
}

fn join(lines: &[(Duration, bool, String)]) -> String {
    lines
        .iter()
        .map(|(t, out, l)| {
            format!(
                "[{:>6.2}s {}] {l}\n",
                t.as_secs_f64(),
                if *out { "out" } else { "err" }
            )
        })
        .collect()
}
