//! The test world enforces the shipped IAM policies: the evaluator's table tests, then the
//! real client, the instances' runner and plain SDK calls through the IAM-enforcing proxy
//! (tests/world/iam.py) in front of MiniStack, each principal with its own keys.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{support_image, unique, Watched, World};

/// tests/world/test_iam.py (the evaluator and the request contexts, table-tested against
/// AWS's documented evaluation logic and the shipped policies), in the fault proxy's venv.
#[test]
fn evaluator_table_tests_pass() {
    let root = env!("CARGO_MANIFEST_DIR");
    let python = std::env::var("RTB_WORLD_MITMDUMP")
        .ok()
        .map(|m| std::path::PathBuf::from(m).with_file_name("python"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| format!("{root}/.world/faults-venv/bin/python").into());
    assert!(
        python.is_file(),
        "{} missing: run tests/world/setup.sh && source .world/env",
        python.display()
    );
    let out = Command::new(&python)
        .args(["-m", "unittest", "-v", "test_iam"])
        .current_dir(format!("{root}/tests/world"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run python -m unittest");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "test_iam.py failed:\n{text}");
    assert!(text.contains("\nOK"), "{text}");
}

/// A real container job (Octave in the support image): the client under client-policy.json,
/// the runner under the instance role. It succeeds with no refused call, and both principals'
/// calls were really evaluated.
#[tokio::test]
async fn a_real_job_runs_under_the_shipped_policies_without_a_denial() {
    let w = World::enforced().await;
    let ami = w.test_ami().await;
    let inb = w.input_bucket("iam-in").await;
    let outb = w.output_bucket("iam-out").await;
    w.put(&inb, "scene/size.txt", "640 480").await;
    let job_id = unique("iamok");
    let image = support_image();
    let (input, output) = (format!("s3://{inb}/scene"), format!("s3://{outb}/r"));
    let command = "s = load(fullfile(getenv('INPUT_SCRATCH'), 'size.txt')); disp(prod(s)); \
        fid = fopen(fullfile(getenv('OUTPUT_SCRATCH'), 'render.txt'), 'w'); fprintf(fid, '%d', prod(s)); fclose(fid);";
    let done = Watched::spawn(w.run_render(&[
        "--ami",
        &ami,
        "--job-id",
        &job_id,
        "--image",
        &image,
        "--interpreter",
        "octave-cli",
        "--instance-type",
        "t3.micro",
        "--agent-timeout",
        "60s",
        "--input",
        &input,
        "--output",
        &output,
        "--command",
        command,
    ]))
    .finish(Duration::from_secs(180));
    assert_eq!(done.code, Some(0), "{}", done.all());
    assert_eq!(
        w.get(&outb, "r/render.txt").await.as_deref(),
        Some(&b"307200"[..])
    );
    let scope = w.scope();
    assert_eq!(scope.instances().len(), 1, "the launch bound its instance");
    assert!(
        scope.evaluated("instance") > 0,
        "the runner's S3 calls were evaluated as the instance role"
    );
    w.assert_no_denials();
}

/// The pool's retag today: CreateTags on a running instance by the client. The shipped
/// policy allows CreateTags only inside RunInstances (`ec2:CreateAction`): refused with EC2's
/// UnauthorizedOperation, and the instance keeps its tags. Terminating it (tagged
/// rtb:tool=run-render) is allowed.
#[tokio::test]
async fn the_client_cannot_retag_an_instance_after_launch() {
    let w = World::enforced().await;
    let ami = w.test_ami().await;
    let job_id = unique("iamtag");
    let done = Watched::spawn(w.run_render(&[
        "--ami", &ami, "--job-id", &job_id, "--shell", "true", "--keep",
    ]))
    .finish(Duration::from_secs(60));
    assert_eq!(done.code, Some(0), "{}", done.all());
    let id = w.instances_of(&job_id).await[0].0.clone();

    let (ec2, _, _) = w.client_sdk().await;
    let err = ec2
        .create_tags()
        .resources(&id)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("rtb:job-id")
                .value("the-next-job")
                .build(),
        )
        .send()
        .await
        .expect_err("the retag is refused");
    let code = aws_sdk_ec2::error::ProvideErrorMetadata::code(&err).unwrap_or_default();
    let message = aws_sdk_ec2::error::ProvideErrorMetadata::message(&err).unwrap_or_default();
    assert_eq!(code, "UnauthorizedOperation", "{message}");
    assert!(
        message.contains("Encoded authorization failure message"),
        "{message}"
    );
    assert_eq!(
        w.instances_of(&job_id).await.len(),
        1,
        "the instance keeps its first job's tag"
    );
    assert!(w
        .instances_tagged("rtb:job-id", "the-next-job")
        .await
        .is_empty());
    let denials = w.scope().take_denials();
    assert_eq!(denials.len(), 1, "{denials:?}");
    assert_eq!(denials[0].principal, "client");
    assert_eq!(denials[0].action, "ec2:CreateTags");
    assert!(denials[0].resource.ends_with(&format!("instance/{id}")));
    assert!(
        denials[0].reason.contains("ec2:CreateAction"),
        "names the missing condition: {}",
        denials[0].reason
    );

    ec2.terminate_instances()
        .instance_ids(&id)
        .send()
        .await
        .expect("terminating our own tagged instance is allowed");
    w.assert_no_denials();
}

/// An instance without `rtb:tool=run-render` (someone else's): the client may neither
/// terminate it (EC2 UnauthorizedOperation) nor command it (SSM AccessDeniedException), and
/// may not read the input bucket's objects (S3 AccessDenied). The world's own key (`test`)
/// is not a registered principal: its calls pass unevaluated.
#[tokio::test]
async fn calls_on_what_is_not_ours_are_refused_in_each_services_own_shape() {
    let w = World::enforced().await;
    let ami = w.test_ami().await;
    let inb = w.input_bucket("iam-in").await;
    w.put(&inb, "scene/a.txt", "a").await;
    let stranger = w
        .ec2
        .run_instances()
        .image_id(&ami)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .expect("launch")
        .instances()[0]
        .instance_id()
        .unwrap()
        .to_string();
    let (ec2, ssm, s3) = w.client_sdk().await;
    use aws_sdk_ec2::error::ProvideErrorMetadata;

    let err = ec2
        .terminate_instances()
        .instance_ids(&stranger)
        .send()
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Some("UnauthorizedOperation"), "{err:?}");
    assert_eq!(w.state_of(&stranger).await, "running");

    let err = ssm
        .send_command()
        .instance_ids(&stranger)
        .document_name("AWS-RunShellScript")
        .parameters("commands", vec!["true".to_string()])
        .send()
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Some("AccessDeniedException"), "{err:?}");

    let err = s3
        .get_object()
        .bucket(&inb)
        .key("scene/a.txt")
        .send()
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Some("AccessDenied"), "{err:?}");
    // Listing the input bucket is allowed (preflight checks it).
    s3.list_objects_v2()
        .bucket(&inb)
        .send()
        .await
        .expect("ListBucket on the input bucket is allowed");

    let denials = w.scope().take_denials();
    let seen: Vec<(&str, &str)> = denials
        .iter()
        .map(|d| (d.call.as_str(), d.action.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("TerminateInstances", "ec2:TerminateInstances"),
            ("SendCommand", "ssm:SendCommand"),
            ("GetObject", "s3:GetObject"),
        ],
        "{denials:?}"
    );
    assert!(denials.iter().all(|d| d.principal == "client"));

    // The world's own key is not a principal: the same termination passes unevaluated.
    w.terminate(&stranger).await;
    assert_eq!(w.state_of(&stranger).await, "terminated");
    w.assert_no_denials();
}

/// The instance role reads only its input buckets: a job whose input is in its *output*
/// bucket (which the role may list and write, not read: the AWS Batch manifest's case) fails
/// with S3 AccessDenied on GetObject, and still uploads its log and result.
#[tokio::test]
async fn the_instance_cannot_read_an_object_outside_its_input_buckets() {
    let w = World::enforced().await;
    let ami = w.test_ami().await;
    let _inb = w.input_bucket("iam-in").await;
    let outb = w.output_bucket("iam-out").await;
    w.put(&outb, "scene/size.txt", "640 480").await;
    let job_id = unique("iamin");
    let image = support_image();
    let (input, output) = (format!("s3://{outb}/scene"), format!("s3://{outb}/r"));
    let done = Watched::spawn(w.run_render(&[
        "--ami",
        &ami,
        "--job-id",
        &job_id,
        "--image",
        &image,
        "--interpreter",
        "octave-cli",
        "--instance-type",
        "t3.micro",
        "--agent-timeout",
        "60s",
        "--input",
        &input,
        "--output",
        &output,
        "--command",
        "disp('never runs')",
        "--json",
    ]))
    .finish(Duration::from_secs(180));
    assert_eq!(
        done.code,
        Some(rtb_model::exit::runner::INPUT_FAILED),
        "{}",
        done.all()
    );
    assert!(
        w.get(&outb, &format!("r/_rtb-job/{job_id}/result.json"))
            .await
            .is_some(),
        "the result record is still written"
    );
    let denials = w.scope().take_denials();
    assert!(!denials.is_empty(), "the read was refused by the proxy");
    assert!(
        denials.iter().all(|d| d.principal == "instance"
            && d.action == "s3:GetObject"
            && d.resource
                .starts_with(&format!("arn:aws:s3:::{outb}/scene/"))),
        "{denials:?}"
    );
    w.assert_no_denials();
}

async fn sdk_config(key_id: &str, secret: &str, endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            key_id, secret, None, None, "test",
        ))
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .load()
        .await
}

fn s3_of(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(true)
            .build(),
    )
}

/// In front of moto: the client under client-batch-policy.json (SubmitJob only to its queue)
/// and an AWS Batch job, with the scope's job key (what `RUN_RENDER_TEST_JOB_CREDENTIALS`
/// gives jobs), under the compute environment's instance role: it writes the output bucket but
/// cannot read it (the batch manifest's case), and reads the input bucket.
#[tokio::test]
async fn aws_batch_calls_and_jobs_are_enforced_in_front_of_moto() {
    use aws_sdk_s3::error::ProvideErrorMetadata;
    use aws_sdk_s3::primitives::ByteStream;
    use rtb_testkit::{IamScope, ScopeSetup};

    let moto = std::env::var("RTB_WORLD_MOTO_URL").expect("RTB_WORLD_MOTO_URL: source .world/env");
    let world = s3_of(&sdk_config("test", "test", &moto).await);
    let (inb, outb) = (unique("iam-bin"), unique("iam-bout"));
    for b in [&inb, &outb] {
        world
            .create_bucket()
            .bucket(b)
            .send()
            .await
            .expect("bucket");
    }
    world
        .put_object()
        .bucket(&inb)
        .key("scene/a.txt")
        .body(ByteStream::from_static(b"a"))
        .send()
        .await
        .expect("put");
    let queue = unique("rtbq");
    let scope = IamScope::with(ScopeSetup {
        queue: queue.clone(),
        input_buckets: vec![inb.clone()],
        output_buckets: vec![outb.clone()],
        ..ScopeSetup::default()
    });
    let endpoint = scope
        .moto_endpoint()
        .expect("the world has a moto IAM proxy");

    let creds = scope.batch_job_credentials();
    let (key, secret) = creds.split_once(':').expect("KEYID:SECRET");
    let job = s3_of(&sdk_config(key, secret, &endpoint).await);
    job.put_object()
        .bucket(&outb)
        .key("rows/1/out.txt")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .expect("a job writes its output bucket");
    job.get_object()
        .bucket(&inb)
        .key("scene/a.txt")
        .send()
        .await
        .expect("a job reads its input bucket");
    let err = job
        .get_object()
        .bucket(&outb)
        .key("rows/1/out.txt")
        .send()
        .await
        .expect_err("a job cannot read its output bucket");
    assert_eq!(err.code(), Some("AccessDenied"), "{err:?}");

    let client = scope.client();
    let config = sdk_config(&client.key_id, &client.secret, &endpoint).await;
    let batch = aws_sdk_batch::Client::new(&config);
    batch
        .describe_job_queues()
        .send()
        .await
        .expect("DescribeJobQueues is allowed");
    let err = batch
        .submit_job()
        .job_name("b-1")
        .job_queue("someone-elses-queue")
        .job_definition("run-render-x")
        .send()
        .await
        .expect_err("another queue is refused");
    assert_eq!(err.code(), Some("AccessDeniedException"), "{err:?}");
    // Its own queue is allowed: moto answers (the queue does not exist there).
    let err = batch
        .submit_job()
        .job_name("b-1")
        .job_queue(&queue)
        .job_definition("run-render-x")
        .send()
        .await
        .expect_err("no such queue in moto");
    assert_ne!(err.code(), Some("AccessDeniedException"), "{err:?}");

    let denials = scope.take_denials();
    let seen: Vec<(&str, &str)> = denials
        .iter()
        .map(|d| (d.principal.as_str(), d.action.as_str()))
        .collect();
    assert_eq!(
        seen,
        [("batch-job", "s3:GetObject"), ("client", "batch:SubmitJob")],
        "{denials:?}"
    );
    assert!(scope.evaluated("batch-job") >= 3 && scope.evaluated("client") >= 3);
    scope.assert_no_denials();
}
