//! The AWS Batch engine against moto (tests/world/setup.sh starts it; `RTB_WORLD_MOTO_URL`),
//! whose Batch runs each job as a real container: the rtb-support test image, Octave, outputs
//! in moto's S3. Each test makes its own queue, so they run side by side. What moto does not
//! emulate (retries, evaluateOnExit, maxvCpus) is checked by reading back what was asked for.
//! The engine acts as the shipped client policies' principal and the jobs as the queue's job
//! role, through the world's IAM proxy in front of moto (`rtb_testkit::IamScope`); setup and
//! teardown are the administrator's, with the world's keys. Each test ends on no refused call.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rtb_model::{JobResult, Outcome, S3Url};
use rtb_testkit::{IamScope, ScopeSetup};
use run_render::engine::aws_batch::{
    AwsBatch, DefinitionSpec, JobState, SetupSpec, Size, Step, SubmitJob, Submitted,
};

/// moto's endpoint, or `None` with the reason printed (the test then passes as skipped).
fn moto() -> Option<String> {
    match std::env::var("RTB_WORLD_MOTO_URL") {
        Ok(u) if u.starts_with("http://127.0.0.1:") => Some(u),
        _ => {
            eprintln!("skipped: RTB_WORLD_MOTO_URL is not set (moto is not in this test world: run tests/world/setup.sh && source .world/env)");
            None
        }
    }
}

fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// moto's account, in the ARNs it answers with.
const MOTO_ACCOUNT: &str = "123456789012";

struct Moto {
    /// The IAM proxy in front of moto: the client's and the jobs' endpoint.
    iam_url: String,
    queue: String,
    /// The world's keys, on moto itself: the administrator and the test's own reads.
    config: aws_config::SdkConfig,
    /// The engine as the scope's client (client-policy.json, client-batch-policy.json).
    engine: AwsBatch,
    /// The engine as the lab's administrator (setup, teardown).
    admin: AwsBatch,
    scope: IamScope,
    s3: aws_sdk_s3::Client,
    ec2: aws_sdk_ec2::Client,
}

async fn sdk_config(url: &str, key: &str, secret: &str) -> aws_config::SdkConfig {
    let creds = aws_credential_types::Credentials::new(key, secret, None, None, "test");
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(url)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .load()
        .await
}

impl Moto {
    /// The world for a test whose queue is `queue` (made, when the test needs it, by
    /// `admin.setup`).
    async fn new(url: String, queue: &str) -> Moto {
        let config = sdk_config(&url, "test", "test").await;
        let scope = IamScope::with(ScopeSetup {
            account: MOTO_ACCOUNT.into(),
            queue: queue.into(),
            batch_job_policies: vec![
                "instance-role-policy.json".into(),
                "batch-job-role-policy.json".into(),
            ],
            ..ScopeSetup::default()
        });
        let iam_url = scope
            .moto_endpoint()
            .expect("an IAM proxy in front of moto (RTB_WORLD_MOTO_IAM_URL): rerun setup.sh");
        let client = sdk_config(&iam_url, &scope.client().key_id, &scope.client().secret).await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .force_path_style(true)
                .build(),
        );
        Moto {
            engine: AwsBatch::new(&client, "tester"),
            admin: AwsBatch::new(&config, "tester"),
            ec2: aws_sdk_ec2::Client::new(&config),
            s3,
            config,
            iam_url,
            queue: queue.to_string(),
            scope,
        }
    }

    /// A fresh bucket, an output bucket of the policies.
    async fn bucket(&self) -> String {
        let name = unique("rtb-batch");
        self.s3
            .create_bucket()
            .bucket(&name)
            .send()
            .await
            .expect("create bucket");
        self.scope.allow_output_bucket(&name);
        name
    }

    /// The client's calls went through enforcement (and the jobs', when `jobs_ran`), and
    /// none was refused.
    fn assert_no_denials(&self, jobs_ran: bool) {
        assert!(
            self.scope.evaluated("client") > 0,
            "the client was not evaluated"
        );
        if jobs_ran {
            assert!(
                self.scope.evaluated("batch-job") > 0,
                "no job's call was evaluated"
            );
        }
        self.scope.assert_no_denials();
    }

    async fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
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

    /// A setup spec over moto's default VPC.
    async fn setup_spec(&self, queue: &str) -> SetupSpec {
        let subnets = self.ec2.describe_subnets().send().await.expect("subnets");
        let groups = self
            .ec2
            .describe_security_groups()
            .send()
            .await
            .expect("security groups");
        SetupSpec {
            queue: queue.to_string(),
            ami: Some("ami-12345678".into()),
            instance_types: vec!["m5.large".into()],
            max_vcpus: 16,
            spot: true,
            allocation_strategy: None,
            subnets: subnets
                .subnets()
                .iter()
                .take(1)
                .filter_map(|s| s.subnet_id())
                .map(str::to_string)
                .collect(),
            security_groups: groups
                .security_groups()
                .iter()
                .take(1)
                .filter_map(|g| g.group_id())
                .map(str::to_string)
                .collect(),
            input_buckets: vec!["scenes".into()],
            output_buckets: vec!["renders".into()],
        }
    }

    /// The runner's fixed environment: Octave, and moto as its S3 through the IAM proxy, with
    /// the scope's job keys; the queue's job role, as the client gives it.
    fn spec(&self, matlab_root: &std::path::Path) -> DefinitionSpec {
        let creds = self.scope.batch_job_credentials();
        let (key, secret) = creds.split_once(':').expect("KEYID:SECRET");
        let env = [
            ("MATLAB_EXECUTABLE", "octave-cli"),
            ("AWS_ENDPOINT_URL", self.iam_url.as_str()),
            ("AWS_ACCESS_KEY_ID", key),
            ("AWS_SECRET_ACCESS_KEY", secret),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ];
        DefinitionSpec {
            image: std::env::var("RTB_WORLD_SUPPORT_IMAGE")
                .unwrap_or_else(|_| "rtb-world/support:test".into()),
            matlab_root: Some(matlab_root.to_path_buf()),
            volumes: vec![],
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            retries: 2,
            retry_on_job_error: false,
            timeout: Some(Duration::from_secs(600)),
            vcpus: 1,
            memory_mib: 1024,
            job_role: Some(format!(
                "arn:aws:iam::{MOTO_ACCOUNT}:role/{}",
                run_render::engine::aws_batch::job_role_name(&self.queue)
            )),
        }
    }

    /// Follow until every job ended, or panic after `limit`.
    async fn until_done(
        &self,
        submitted: &Submitted,
        limit: Duration,
    ) -> Vec<run_render::engine::aws_batch::JobOfBatch> {
        let start = Instant::now();
        loop {
            let states = self.engine.states(submitted).await.expect("states");
            if states
                .iter()
                .all(|j| j.status.as_ref().is_some_and(|s| s.state.is_final()))
            {
                return states;
            }
            assert!(
                start.elapsed() < limit,
                "not done after {limit:?}: {states:#?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

fn job(id: &str, command: &str, bucket: &str) -> SubmitJob {
    SubmitJob {
        job_id: id.to_string(),
        name: id.to_string(),
        settings: BTreeMap::from([
            ("COMMAND".to_string(), command.to_string()),
            (
                "OUTPUT_BUCKET".to_string(),
                format!("s3://{bucket}/out/{id}/"),
            ),
        ]),
    }
}

#[tokio::test]
async fn the_definition_reads_back_as_asked_and_is_reused() {
    let Some(url) = moto() else { return };
    let m = Moto::new(url, &unique("rtb-q")).await;
    let root = tempfile::tempdir().expect("tmp");
    let mut spec = m.spec(root.path());
    spec.volumes = vec![("/tmp".into(), "/scratch".into(), false)];
    // A spec of its own, so a parallel test's definition is never the one found.
    spec.env.insert("TEST_RUN".into(), unique("def"));
    let first = m.engine.definition(&spec, "b1").await.expect("register");
    assert!(!first.reused, "{first:?}");
    let again = m.engine.definition(&spec, "b2").await.expect("reuse");
    assert!(again.reused);
    assert_eq!(again.arn, first.arn);
    spec.retries = 1;
    let changed = m
        .engine
        .definition(&spec, "b3")
        .await
        .expect("register changed");
    assert!(!changed.reused && changed.name != first.name);

    let batch = aws_sdk_batch::Client::new(&m.config);
    let out = batch
        .describe_job_definitions()
        .job_definitions(&first.arn)
        .send()
        .await
        .expect("describe");
    let d = &out.job_definitions()[0];
    let retry = d.retry_strategy().expect("retry strategy");
    assert_eq!(retry.attempts(), Some(3));
    // moto answers the action in lower case.
    let rules: Vec<(Option<&str>, Option<&str>, String)> = retry
        .evaluate_on_exit()
        .iter()
        .map(|e| {
            (
                e.on_status_reason(),
                e.on_exit_code(),
                e.action()
                    .map(|a| a.as_str().to_ascii_uppercase())
                    .unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        rules,
        [
            (Some("Host EC2*"), None, "RETRY".to_string()),
            (None, Some("*"), "EXIT".to_string())
        ]
    );
    assert_eq!(
        d.timeout().and_then(|t| t.attempt_duration_seconds()),
        Some(600 + 600)
    );
    let c = d.container_properties().expect("container");
    let mounts: Vec<(String, Option<bool>)> = c
        .mount_points()
        .iter()
        .map(|p| {
            (
                p.container_path().unwrap_or_default().to_string(),
                p.read_only(),
            )
        })
        .collect();
    assert_eq!(
        mounts,
        [
            ("/usr/local/MATLAB/from-host".to_string(), Some(true)),
            ("/var/run/docker.sock".to_string(), Some(false)),
            ("/scratch".to_string(), Some(false)),
        ]
    );
    let sources: Vec<&str> = c
        .volumes()
        .iter()
        .filter_map(|v| v.host().and_then(|h| h.source_path()))
        .collect();
    assert_eq!(
        sources,
        [
            root.path().to_str().unwrap(),
            "/var/run/docker.sock",
            "/tmp"
        ]
    );
    let tags = d.tags().expect("tags");
    assert_eq!(tags.get("rtb:owner").map(String::as_str), Some("tester"));
    assert_eq!(tags.get("rtb:batch").map(String::as_str), Some("b1"));
    m.assert_no_denials(false);
}

/// A definition is reused only when its content is what would be registered: an ACTIVE
/// revision under the same name with other content (registered by hand, or by an older
/// client) is not reused; a new revision is registered, and the next run reuses that one.
#[tokio::test]
async fn a_definition_is_reused_only_when_its_content_matches() {
    let Some(url) = moto() else { return };
    let m = Moto::new(url, &unique("rtb-q")).await;
    let root = tempfile::tempdir().expect("tmp");
    let mut spec = m.spec(root.path());
    spec.env.insert("TEST_RUN".into(), unique("content"));
    let want = spec.build("tester", "b1").expect("build");
    // Someone registers another image under the name this spec's definition gets.
    let batch = aws_sdk_batch::Client::new(&m.config);
    let imposter = batch
        .register_job_definition()
        .job_definition_name(&want.name)
        .r#type(aws_sdk_batch::types::JobDefinitionType::Container)
        .container_properties(
            aws_sdk_batch::types::ContainerProperties::builder()
                .image("someone-else/image:latest")
                .resource_requirements(
                    aws_sdk_batch::types::ResourceRequirement::builder()
                        .r#type(aws_sdk_batch::types::ResourceType::Vcpu)
                        .value("1")
                        .build(),
                )
                .resource_requirements(
                    aws_sdk_batch::types::ResourceRequirement::builder()
                        .r#type(aws_sdk_batch::types::ResourceType::Memory)
                        .value("1024")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("register the other definition");
    let got = m.engine.definition(&spec, "b1").await.expect("definition");
    assert!(!got.reused, "reused another content: {got:?}");
    assert_eq!(got.replaced, Some("the image"), "{got:?}");
    assert_ne!(Some(got.arn.as_str()), imposter.job_definition_arn());
    let described = batch
        .describe_job_definitions()
        .job_definitions(&got.arn)
        .send()
        .await
        .expect("describe");
    let image = described.job_definitions()[0]
        .container_properties()
        .and_then(|c| c.image());
    assert_eq!(image, Some(want.image.as_str()));
    // The matching revision is found from now on.
    let again = m.engine.definition(&spec, "b2").await.expect("again");
    assert!(again.reused, "{again:?}");
    assert_eq!(again.arn, got.arn);
    m.assert_no_denials(false);
}

#[tokio::test]
async fn a_batch_runs_as_real_containers_with_one_matlab_error() {
    let Some(url) = moto() else { return };
    let queue = unique("rtb-q");
    let m = Moto::new(url, &queue).await;
    let setup = m.setup_spec(&queue).await;
    m.admin.setup(&setup, false).await.expect("setup");
    let root = tempfile::tempdir().expect("tmp");
    let spec = m.spec(root.path());
    let bucket = m.bucket().await;
    let records = S3Url::new(&bucket, "_rtb-batch/").expect("url");
    let def = m
        .engine
        .definition(&spec, "render")
        .await
        .expect("definition");

    let p = m
        .engine
        .preflight(
            &queue,
            Size {
                vcpus: 1,
                memory_mib: 1024,
            },
            None,
        )
        .await
        .expect("preflight");
    assert!(p.problems.is_empty(), "{p:?}");

    let write = |n: u32| {
        format!("fid = fopen('/output-scratch/frame.txt', 'w'); fprintf(fid, '%d', {n}); fclose(fid); disp('row {n} done')")
    };
    let jobs = vec![
        job("scene-0", &write(10), &bucket),
        job("scene-1", &write(11), &bucket),
        job(
            "scene-2",
            "error('rtb:test', 'the lamp is missing')",
            &bucket,
        ),
        job("scene-3", &write(13), &bucket),
    ];
    let submitted = m
        .engine
        .submit("render", "r1", &jobs, &queue, &def, &records)
        .await
        .expect("submit");
    // One call for the whole batch, the rows in one manifest.
    assert_eq!(
        (
            submitted.calls,
            submitted.arrays.len(),
            submitted.manifests.len()
        ),
        (1, 1, 1)
    );
    assert!(m
        .get(&bucket, "_rtb-batch/render/manifest.json")
        .await
        .is_some());

    let done = m.until_done(&submitted, Duration::from_secs(180)).await;
    for (j, want) in done.iter().zip([0, 0, 1, 0]) {
        let s = j.status.as_ref().expect("status");
        assert_eq!(s.exit_code, Some(want), "{j:?}");
        let state = if want == 0 {
            JobState::Succeeded
        } else {
            JobState::Failed
        };
        assert_eq!(s.state, state, "{j:?}");
    }
    for (id, n) in [("scene-0", "10"), ("scene-1", "11"), ("scene-3", "13")] {
        let frame = m.get(&bucket, &format!("out/{id}/frame.txt")).await;
        assert_eq!(frame.as_deref(), Some(n.as_bytes()), "{id}");
    }
    let failed: JobResult = serde_json::from_slice(
        &m.get(&bucket, "out/scene-2/_rtb-job/scene-2/result.json")
            .await
            .expect("result of the failed row"),
    )
    .expect("result parses");
    assert_eq!(failed.outcome, Outcome::Failed);
    let log = String::from_utf8_lossy(
        &m.get(&bucket, "out/scene-2/matlab.log")
            .await
            .unwrap_or_default(),
    )
    .into_owned();
    assert!(log.contains("the lamp is missing"), "{log}");

    // A batch of one goes as a plain job, with no manifest.
    let one = m
        .engine
        .submit(
            "single",
            "r1",
            &[job("solo", &write(7), &bucket)],
            &queue,
            &def,
            &records,
        )
        .await
        .expect("submit one");
    assert!(one.arrays.is_empty() && one.manifests.is_empty(), "{one:?}");
    let done = m.until_done(&one, Duration::from_secs(120)).await;
    assert_eq!(
        done[0].status.as_ref().map(|s| s.state),
        Some(JobState::Succeeded),
        "{done:?}"
    );
    assert_eq!(
        m.get(&bucket, "out/solo/frame.txt").await.as_deref(),
        Some(&b"7"[..])
    );

    m.assert_no_denials(true);
    m.admin.teardown(&setup, false).await.expect("teardown");
}

#[tokio::test]
async fn stop_ends_every_running_job_of_the_batch() {
    let Some(url) = moto() else { return };
    let queue = unique("rtb-q");
    let m = Moto::new(url, &queue).await;
    let setup = m.setup_spec(&queue).await;
    m.admin.setup(&setup, false).await.expect("setup");
    let root = tempfile::tempdir().expect("tmp");
    let bucket = m.bucket().await;
    let records = S3Url::new(&bucket, "_rtb-batch/").expect("url");
    let def = m
        .engine
        .definition(&m.spec(root.path()), "long")
        .await
        .expect("definition");
    let jobs: Vec<SubmitJob> = ["a", "b"]
        .iter()
        .map(|id| job(id, "pause(300)", &bucket))
        .collect();
    let array = m
        .engine
        .submit("long", "r1", &jobs, &queue, &def, &records)
        .await
        .expect("submit");
    let single = m
        .engine
        .submit("long", "r2", &jobs[..1], &queue, &def, &records)
        .await
        .expect("submit one");

    let start = Instant::now();
    loop {
        let a = m.engine.states(&array).await.expect("states");
        let s = m.engine.states(&single).await.expect("states");
        if a.iter().chain(&s).all(|j| {
            j.status
                .as_ref()
                .is_some_and(|s| s.state == JobState::Running)
        }) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not running: {a:?} {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let stopped = m
        .engine
        .stop(&queue, "long", "run-render stop --batch long")
        .await
        .expect("stop");
    // One call for the array (AWS Batch passes it on to the children), one for the job.
    let mut ended = stopped.terminated.clone();
    ended.sort();
    let mut want = vec![
        array.arrays[0].0.clone(),
        single.jobs[0].batch_job_id.clone(),
    ];
    want.sort();
    assert_eq!(ended, want, "{stopped:?}");
    assert!(
        stopped.children_ended.is_empty() && stopped.still_live.is_empty(),
        "{stopped:?}"
    );
    for submitted in [&array, &single] {
        for j in m.until_done(submitted, Duration::from_secs(60)).await {
            let s = j.status.expect("status");
            // Stopped as ECS stops a task: SIGTERM, then SIGKILL 30 s later. A container that
            // ends on the first exits 143; one still there at the second, 137.
            assert!(
                s.state == JobState::Failed && matches!(s.exit_code, Some(137 | 143)),
                "{}: {:?} {:?}",
                j.job_id,
                s.state,
                s.exit_code
            );
            assert_eq!(s.reason.as_deref(), Some("run-render stop --batch long"));
        }
    }
    // Nothing left to stop.
    let again = m
        .engine
        .stop(&queue, "long", "again")
        .await
        .expect("stop again");
    assert!(again.terminated.is_empty(), "{again:?}");
    // The jobs may be stopped before their runner calls anything: the client's calls count.
    m.assert_no_denials(false);
    m.admin.teardown(&setup, false).await.expect("teardown");
}

#[tokio::test]
async fn setup_and_teardown_are_idempotent_and_dry_runs_change_nothing() {
    let Some(url) = moto() else { return };
    let queue = unique("rtb-q");
    let m = Moto::new(url, &queue).await;
    let spec = m.setup_spec(&queue).await;
    let plan = m.admin.setup(&spec, true).await.expect("dry run");
    assert!(
        plan.iter().any(|s| matches!(s, Step::CreateQueue { .. })),
        "{plan:?}"
    );
    let p = m
        .engine
        .preflight(
            &queue,
            Size {
                vcpus: 1,
                memory_mib: 512,
            },
            None,
        )
        .await
        .expect("preflight");
    assert!(
        p.problems[0].contains("does not exist"),
        "dry run created the queue: {p:?}"
    );

    let first = m.admin.setup(&spec, false).await.expect("setup");
    assert_eq!(first, plan);
    let second = m.admin.setup(&spec, false).await.expect("setup again");
    assert!(
        second
            .iter()
            .all(|s| matches!(s, Step::PutRolePolicies { .. })),
        "{second:?}"
    );
    let p = m
        .engine
        .preflight(
            &queue,
            Size {
                vcpus: 1,
                memory_mib: 512,
            },
            None,
        )
        .await
        .expect("preflight");
    assert!(p.problems.is_empty(), "{p:?}");
    let p = m
        .engine
        .preflight(
            &queue,
            Size {
                vcpus: 4,
                memory_mib: 512,
            },
            None,
        )
        .await
        .expect("preflight");
    assert!(p.problems[0].contains("no instance type"), "{p:?}");
    // A job's `ami` is checked against the compute environment's: AWS Batch launches it.
    let size = Size {
        vcpus: 1,
        memory_mib: 512,
    };
    let same = m
        .engine
        .preflight(&queue, size, Some("ami-12345678"))
        .await
        .expect("preflight");
    assert!(same.problems.is_empty(), "{same:?}");
    let other = m
        .engine
        .preflight(&queue, size, Some("ami-0fedcba987654321"))
        .await
        .expect("preflight");
    assert!(
        other.problems[0].contains("ami ami-0fedcba987654321")
            && other.problems[0].contains("ami-12345678"),
        "{other:?}"
    );

    let dry = m
        .admin
        .teardown(&spec, true)
        .await
        .expect("teardown dry run");
    assert!(!dry.is_empty());
    assert!(m
        .engine
        .preflight(
            &queue,
            Size {
                vcpus: 1,
                memory_mib: 512
            },
            None,
        )
        .await
        .expect("preflight")
        .problems
        .is_empty());
    let down = m.admin.teardown(&spec, false).await.expect("teardown");
    assert_eq!(down, dry);
    assert!(m
        .admin
        .teardown(&spec, false)
        .await
        .expect("teardown again")
        .is_empty());
    m.assert_no_denials(false);
}
