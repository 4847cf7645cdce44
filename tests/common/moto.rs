//! The AWS Batch world on moto (`RTB_WORLD_MOTO_URL`, started by tests/world/setup.sh), for the
//! tests that run `run-render batch --engine aws-batch` end to end: a desk (a user, their
//! state folder and files), clients, a queue made by `aws-batch setup`, batch files.

use std::process::Command;

use rtb_testkit::{IamScope, ScopeSetup};

use super::{run_render, support_image, unique};

/// The jobs' credentials in this world: only the test-only setting gives jobs any (never the
/// client's own keys), and only with a custom endpoint. An enforced desk gives its scope's.
pub const JOB_CREDENTIALS: &str = "rtbbatchjob:rtbbatchjobsecret";

/// moto's account: the one in the ARNs it answers with (queues, the job role setup makes).
pub const MOTO_ACCOUNT: &str = "123456789012";

/// A scope at the IAM proxy in front of moto for `queue`: the client under the shipped client
/// policies, AWS Batch jobs under the job role setup makes (`<queue>-job`:
/// instance-role-policy.json and batch-job-role-policy.json), `buckets` as the output buckets.
pub fn scope(queue: &str, buckets: &[&str]) -> IamScope {
    let scope = IamScope::with(ScopeSetup {
        account: MOTO_ACCOUNT.into(),
        queue: queue.into(),
        output_buckets: buckets.iter().map(|b| b.to_string()).collect(),
        batch_job_policies: vec![
            "instance-role-policy.json".into(),
            "batch-job-role-policy.json".into(),
        ],
        ..ScopeSetup::default()
    });
    assert!(
        scope.moto_endpoint().is_some(),
        "the world has no IAM proxy in front of moto (RTB_WORLD_MOTO_IAM_URL): rerun tests/world/setup.sh"
    );
    scope
}

/// Nothing the client or its jobs did was refused, and both really went through enforcement
/// (`jobs_ran`: a job of the scope ran and made calls).
pub fn assert_no_denials(scope: &IamScope, jobs_ran: bool) {
    assert!(
        scope.evaluated("client") > 0,
        "no call of the client was evaluated: it did not go through the IAM proxy"
    );
    if jobs_ran {
        assert!(
            scope.evaluated("batch-job") > 0,
            "no call of a job was evaluated: the jobs did not go through the IAM proxy"
        );
    }
    scope.assert_no_denials();
}

/// moto's endpoint, or `None` with the reason printed (the test then passes as skipped).
pub fn moto() -> Option<String> {
    match std::env::var("RTB_WORLD_MOTO_URL") {
        Ok(u) if u.starts_with("http://127.0.0.1:") => Some(u),
        _ => {
            eprintln!("skipped: RTB_WORLD_MOTO_URL is not set (moto is not in this test world)");
            None
        }
    }
}

/// One user at one workstation: their own state folder (registry, batch records), their own
/// working folder, their name (`rtb:owner`), the endpoint their client talks to, and, once
/// [`Desk::enforce`]d, the keys of a scope's client and jobs.
pub struct Desk {
    pub state: tempfile::TempDir,
    pub dir: tempfile::TempDir,
    pub user: String,
    pub endpoint: String,
    /// moto itself: what the lab's administrator talks to (`aws-batch setup`, `teardown`).
    pub world: String,
    /// The client's and the jobs' keys, over the world's `test` keys.
    pub env: Vec<(&'static str, String)>,
}

impl Desk {
    pub fn new(moto: &str) -> Desk {
        Desk {
            state: tempfile::tempdir().expect("tmp"),
            dir: tempfile::tempdir().expect("tmp"),
            user: unique("user"),
            endpoint: moto.to_string(),
            world: moto.to_string(),
            env: Vec::new(),
        }
    }

    /// From now on the client runs as `scope`'s client through its IAM proxy in front of moto,
    /// and gives its AWS Batch jobs the scope's job keys.
    pub fn enforce(&mut self, scope: &IamScope) {
        self.endpoint = scope
            .moto_endpoint()
            .expect("an IAM proxy in front of moto");
        self.env = vec![
            ("AWS_ACCESS_KEY_ID", scope.client().key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", scope.client().secret.clone()),
            (
                "RUN_RENDER_TEST_JOB_CREDENTIALS",
                scope.batch_job_credentials(),
            ),
        ];
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = run_render(args);
        c.env("XDG_STATE_HOME", self.state.path())
            .env("USER", &self.user)
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("RUN_RENDER_TEST_JOB_CREDENTIALS", JOB_CREDENTIALS)
            .env_remove("AWS_SESSION_TOKEN")
            .envs(self.env.iter().cloned())
            .current_dir(self.dir.path());
        c
    }

    /// The lab's administrator at this desk: moto itself with the world's keys (setup and
    /// teardown need `batch-setup-policy.json`, which no client has).
    pub fn admin(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let o = self
            .cmd(args)
            .env("AWS_ENDPOINT_URL", &self.world)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .output()
            .expect("run");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    pub fn out(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let o = self.cmd(args).output().expect("run");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    /// The states `status --batch NAME --json` reports, in its order.
    pub fn states(&self, batch: &str) -> Vec<String> {
        let (code, out, err) = self.out(&["status", "--batch", batch, "--json"]);
        assert_eq!(code, Some(0), "{err}");
        let rows: serde_json::Value = serde_json::from_str(&out).expect("status JSON");
        rows.as_array()
            .expect("rows")
            .iter()
            .map(|r| r["state"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

pub struct Clients {
    pub s3: aws_sdk_s3::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub batch: aws_sdk_batch::Client,
}

pub async fn clients(moto: &str) -> Clients {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(moto)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(
            "test", "test", None, None, "t",
        ))
        .load()
        .await;
    Clients {
        s3: aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .force_path_style(true)
                .build(),
        ),
        ec2: aws_sdk_ec2::Client::new(&config),
        batch: aws_sdk_batch::Client::new(&config),
    }
}

impl Clients {
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

    /// Every key under `prefix`.
    pub async fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.expect("list");
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
        }
        keys.sort();
        keys
    }

    pub async fn bucket(&self) -> String {
        let b = unique("rtbab");
        self.s3
            .create_bucket()
            .bucket(&b)
            .send()
            .await
            .expect("bucket");
        b
    }
}

/// `aws-batch setup` for a fresh queue over moto's default VPC; the queue's name.
/// One user's desk under the shipped policies, with a queue made for it and an output bucket:
/// what most AWS Batch tests start from.
pub struct Enforced {
    pub desk: Desk,
    pub c: Clients,
    pub queue: String,
    pub bucket: String,
    pub scope: IamScope,
}

pub async fn enforced(moto: &str) -> Enforced {
    let mut desk = Desk::new(moto);
    let c = clients(moto).await;
    let queue = queue(&desk, &c).await;
    let bucket = c.bucket().await;
    let scope = scope(&queue, &[&bucket]);
    desk.enforce(&scope);
    Enforced {
        desk,
        c,
        queue,
        bucket,
        scope,
    }
}

pub async fn queue(desk: &Desk, c: &Clients) -> String {
    queue_of(desk, c, "m5.large").await
}

/// `aws-batch setup` for a fresh queue whose compute environment launches `instance_type`.
pub async fn queue_of(desk: &Desk, c: &Clients, instance_type: &str) -> String {
    let subnet = c
        .ec2
        .describe_subnets()
        .send()
        .await
        .expect("subnets")
        .subnets()[0]
        .subnet_id()
        .unwrap_or_default()
        .to_string();
    let sg = c
        .ec2
        .describe_security_groups()
        .send()
        .await
        .expect("groups")
        .security_groups()[0]
        .group_id()
        .unwrap_or_default()
        .to_string();
    let q = unique("rtbq");
    let args = [
        "aws-batch",
        "setup",
        "--queue",
        &q,
        "--ami",
        "ami-12345678",
        "--instance-type",
        instance_type,
        "--max-vcpus",
        "16",
        "--subnet",
        &subnet,
        "--security-group",
        &sg,
        "--output-bucket",
        "renders",
    ];
    let (code, _, err) = desk.admin(&args);
    assert_eq!(code, Some(0), "{err}");
    q
}

/// A batch file `<name>.toml` (and its csv) in the desk's folder: one row per `(n, command,
/// timeout)`, outputs at `s3://bucket/<n>/`, job ids `<name>-<n>`, Octave in the test image.
/// No `ami`: AWS Batch launches from its compute environment.
pub fn batch_file(desk: &Desk, name: &str, bucket: &str, rows: &[(u32, String, &str)]) -> String {
    let mut csv = String::from("n,cmd,timeout\n");
    for (n, c, t) in rows {
        csv.push_str(&format!("{n},\"{}\",{t}\n", c.replace('"', "\"\"")));
    }
    std::fs::write(desk.dir.path().join(format!("{name}.csv")), csv).expect("csv");
    let path = desk.dir.path().join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"[batch]
csv = "{name}.csv"
vcpus = 1
memory-mib = 1024

[job]
image = "{image}"
interpreter = "octave-cli"
command = "${{cmd}}"
output = "s3://{bucket}/${{n}}"
job-id = "{name}-${{n}}"
timeout = "${{timeout}}"
"#,
            image = support_image(),
        ),
    )
    .expect("batch file");
    path.display().to_string()
}

/// Rows of `commands`, numbered from 1, each with a 10-minute timeout.
pub fn rows(commands: impl IntoIterator<Item = String>) -> Vec<(u32, String, &'static str)> {
    commands
        .into_iter()
        .enumerate()
        .map(|(i, c)| (i as u32 + 1, c, "10m"))
        .collect()
}

/// Octave that writes `row N` to frame.txt in the job's output.
pub fn frame(n: u32) -> String {
    format!("fid = fopen(fullfile(getenv('OUTPUT_SCRATCH'), 'frame.txt'), 'w'); fprintf(fid, 'row {n}'); fclose(fid);")
}

/// The job definition's ARN from the client's "job definition NAME (ARN, ...)" line.
pub fn definition_arn(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|l| {
            let rest = l.split("job definition ").nth(1)?;
            let arn = rest.split(" (").nth(1)?.split(',').next()?;
            Some(arn.to_string())
        })
        .unwrap_or_else(|| panic!("no job definition line in: {stderr}"))
}
