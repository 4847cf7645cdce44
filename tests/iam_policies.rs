//! The shipped IAM policies parse, and the client's policy allows every action the client
//! calls (the list lives in one place: `run_render::cloud::actions::ACTIONS`).

use run_render::cloud::actions::{ACTIONS, BATCH_ACTIONS, BATCH_SETUP_ACTIONS};
use run_render::engine::aws_batch::plan::{manifest_url, manifests_folder};
use run_render::engine::aws_batch::{role_policies, SetupSpec};
use serde_json::Value;

fn policy(name: &str) -> Value {
    let path = format!("{}/ami/iam/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

fn as_list(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => vec![],
    }
}

/// IAM action matching: case-insensitive, `*` and `?` wildcards.
fn matches(pattern: &str, action: &str) -> bool {
    fn go(p: &[u8], a: &[u8]) -> bool {
        match (p.first(), a.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], a) || (!a.is_empty() && go(p, &a[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &a[1..]),
            (Some(x), Some(y)) if x.eq_ignore_ascii_case(y) => go(&p[1..], &a[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), action.as_bytes())
}

fn allowed_actions(doc: &Value) -> Vec<String> {
    doc["Statement"]
        .as_array()
        .expect("Statement list")
        .iter()
        .filter(|s| s["Effect"] == "Allow")
        .flat_map(|s| as_list(&s["Action"]))
        .collect()
}

#[test]
fn every_policy_parses_with_statements() {
    for name in [
        "client-policy.json",
        "instance-role-policy.json",
        "instance-role-trust.json",
        "client-batch-policy.json",
        "batch-setup-policy.json",
        "batch-service-role-trust.json",
        "batch-service-role-policy.json",
        "batch-instance-role-policy.json",
        "batch-job-role-trust.json",
        "batch-job-role-policy.json",
    ] {
        let doc = policy(name);
        assert_eq!(doc["Version"], "2012-10-17", "{name}");
        assert!(
            !doc["Statement"].as_array().expect("statements").is_empty(),
            "{name}"
        );
    }
}

#[test]
fn client_policy_covers_every_action_the_client_calls() {
    let allowed = allowed_actions(&policy("client-policy.json"));
    let missing: Vec<&&str> = ACTIONS
        .iter()
        .filter(|a| !allowed.iter().any(|p| matches(p, a)))
        .collect();
    assert!(
        missing.is_empty(),
        "client-policy.json does not allow {missing:?}"
    );
    // Least privilege: nothing broader than the client needs.
    for p in &allowed {
        assert!(!p.contains('*'), "wildcard action {p} in the client policy");
        assert!(
            ACTIONS.contains(&p.as_str()),
            "{p} is allowed but the client never calls it"
        );
    }
}

/// The client writes one kind of object: a batch's page (and its model) in a `_rtb-batch/`
/// folder of the output bucket; never the jobs' outputs or records.
#[test]
fn instance_role_reads_inputs_writes_outputs_and_trusts_ec2() {
    let allowed = allowed_actions(&policy("instance-role-policy.json"));
    for a in [
        "s3:GetObject",
        "s3:ListBucket",
        "s3:PutObject",
        "s3:AbortMultipartUpload",
    ] {
        assert!(
            allowed.iter().any(|p| matches(p, a)),
            "instance role lacks {a}"
        );
    }
    assert!(
        !allowed
            .iter()
            .any(|p| p == "*" || p == "s3:*" || p.starts_with("ec2:")),
        "{allowed:?}"
    );
    let trust = policy("instance-role-trust.json").to_string();
    assert!(trust.contains("ec2.amazonaws.com"), "{trust}");
}

/// A retry restores an earlier attempt's checkpoint: the instance reads its job records'
/// checkpoint objects back, and nothing else of the output bucket.
#[test]
fn instance_role_reads_back_only_checkpoints_of_the_output_bucket() {
    let p = policy("instance-role-policy.json");
    let reads: Vec<String> = p["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .filter(|s| s["Action"].to_string().contains("s3:GetObject"))
        .flat_map(|s| {
            s["Resource"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|r| r.as_str().map(str::to_string))
        })
        .collect();
    let output: Vec<&String> = reads
        .iter()
        .filter(|r| r.contains("OUTPUT_BUCKET"))
        .collect();
    assert_eq!(
        output,
        ["arn:aws:s3:::OUTPUT_BUCKET/*_rtb-job/*/checkpoint/*"],
        "{reads:?}"
    );
    // The layout the runner reads from matches it, a single run's and a batch attempt's.
    let job =
        rtb_model::JobRecords::under_output(&"s3://lab-renders/renders/1".parse().unwrap(), "j1");
    for key in [
        job.checkpoint_manifest_key(),
        job.attempt("r1", 2)
            .checkpoint_files()
            .join("frames/f01.png")
            .key()
            .to_string(),
    ] {
        let pattern = output[0].trim_start_matches("arn:aws:s3:::OUTPUT_BUCKET/");
        assert!(matches(pattern, &key), "{key}");
    }
}

/// A policy allows every action of `actions`, and no action beyond them, with no wildcard.
fn allows_exactly(policy_name: &str, actions: &[&str]) {
    let allowed = allowed_actions(&policy(policy_name));
    let missing: Vec<&&str> = actions
        .iter()
        .filter(|a| !allowed.iter().any(|p| matches(p, a)))
        .collect();
    assert!(
        missing.is_empty(),
        "{policy_name} does not allow {missing:?}"
    );
    for p in &allowed {
        assert!(!p.contains('*'), "wildcard action {p} in {policy_name}");
        assert!(
            actions.contains(&p.as_str()),
            "{p} is allowed by {policy_name} but never called"
        );
    }
}

#[test]
fn batch_policies_cover_exactly_what_the_engine_and_setup_call() {
    allows_exactly("client-batch-policy.json", BATCH_ACTIONS);
    allows_exactly("batch-setup-policy.json", BATCH_SETUP_ACTIONS);
    // The daily user cannot create roles or compute environments; only setup can. The one
    // IAM right is passing the queue's job role to the definitions it registers.
    let client_doc = policy("client-batch-policy.json");
    let client = allowed_actions(&client_doc);
    assert!(
        !client
            .iter()
            .any(|a| (a.starts_with("iam:") && a != "iam:PassRole") || a.contains("Create")),
        "{client:?}"
    );
    for s in client_doc["Statement"].as_array().expect("statements") {
        if as_list(&s["Action"]).iter().any(|a| a == "iam:PassRole") {
            assert_eq!(
                as_list(&s["Resource"]),
                ["arn:aws:iam::ACCOUNT_ID:role/QUEUE_NAME-job"]
            );
        }
    }
    // Setup's IAM rights are limited to the queue's own roles.
    let setup = policy("batch-setup-policy.json").to_string();
    assert!(
        setup.contains("role/QUEUE_NAME-*") && !setup.contains("role/*"),
        "{setup}"
    );
}

/// A job's cost on AWS Batch needs the instance it ran on: the client may describe the
/// container instances of clusters AWS Batch made for compute environments
/// (`<environment>_Batch_<uuid>`), no other cluster's, and read that instance and its price
/// with the client policy's EC2 and Price List rights.
#[test]
fn the_batch_client_may_find_and_price_the_instance_a_job_ran_on() {
    let docs = [
        policy("client-batch-policy.json").to_string(),
        policy("client-policy.json").to_string(),
    ];
    let ci = |cluster: &str| {
        format!("arn:aws:ecs:us-east-1:ACCOUNT_ID:container-instance/{cluster}/0f1e2d3c4b5a")
    };
    let cases = [
        (
            "ecs:DescribeContainerInstances",
            ci("q-ce_Batch_6a1c3e2f-0b7d"),
            true,
        ),
        ("ecs:DescribeContainerInstances", ci("web-cluster"), false),
        (
            "ecs:DescribeContainerInstances",
            "arn:aws:ecs:us-east-1:999999999999:container-instance/q-ce_Batch_1/0f".to_string(),
            false,
        ),
        ("ecs:DescribeClusters", ci("q-ce_Batch_1"), false),
        ("ec2:DescribeInstances", "*".to_string(), true),
        ("pricing:GetProducts", "*".to_string(), true),
        ("ec2:DescribeSpotPriceHistory", "*".to_string(), true),
    ];
    for (action, resource, want) in cases {
        assert_eq!(
            allows(&docs, action, &resource),
            want,
            "{action} on {resource}"
        );
    }
}

#[test]
fn batch_roles_trust_their_service_and_the_instance_role_only_runs_the_agent() {
    let trust = policy("batch-service-role-trust.json").to_string();
    assert!(trust.contains("batch.amazonaws.com"), "{trust}");
    let trust = policy("batch-job-role-trust.json").to_string();
    assert!(trust.contains("ecs-tasks.amazonaws.com"), "{trust}");
    let agent = allowed_actions(&policy("batch-instance-role-policy.json"));
    for a in [
        "ecs:RegisterContainerInstance",
        "ecs:Poll",
        "ecs:SubmitTaskStateChange",
        "logs:PutLogEvents",
    ] {
        assert!(
            agent.iter().any(|p| matches(p, a)),
            "instance role lacks {a}"
        );
    }
    assert!(
        !agent.iter().any(|p| p == "*"
            || p.starts_with("s3:")
            || p.starts_with("iam:")
            || p.starts_with("ec2:")),
        "{agent:?}"
    );
    // The service role may pass only the instance role, only to EC2.
    let service = policy("batch-service-role-policy.json");
    let pass: Vec<&serde_json::Value> = service["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .filter(|s| as_list(&s["Action"]).iter().any(|a| a == "iam:PassRole"))
        .collect();
    assert_eq!(pass.len(), 1);
    assert_eq!(
        pass[0]["Resource"],
        "arn:aws:iam::ACCOUNT_ID:role/INSTANCE_ROLE_NAME"
    );
    assert!(pass[0]["Condition"]
        .to_string()
        .contains("ec2.amazonaws.com"));
}

#[test]
fn wildcard_matching() {
    assert!(matches("s3:Get*", "s3:GetObject"));
    assert!(matches("EC2:describe*", "ec2:DescribeImages"));
    assert!(!matches("s3:Get*", "s3:PutObject"));
}

/// IAM resource matching: `*` and `?` wildcards, case-sensitive.
fn resource_matches(pattern: &str, resource: &str) -> bool {
    fn go(p: &[u8], a: &[u8]) -> bool {
        match (p.first(), a.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], a) || (!a.is_empty() && go(p, &a[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &a[1..]),
            (Some(x), Some(y)) if x == y => go(&p[1..], &a[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), resource.as_bytes())
}

/// Whether any of `docs` allows `action` on `resource` by a statement without conditions
/// (the S3 statements these checks are about have none), and none denies it.
fn allows(docs: &[String], action: &str, resource: &str) -> bool {
    let mut allowed = false;
    for doc in docs {
        let doc: Value = serde_json::from_str(doc).expect("a policy document");
        for s in doc["Statement"].as_array().expect("statements") {
            let hit = as_list(&s["Action"]).iter().any(|a| matches(a, action))
                && as_list(&s["Resource"])
                    .iter()
                    .any(|r| resource_matches(r, resource));
            if !hit {
                continue;
            }
            if s["Effect"] == "Deny" {
                return false;
            }
            allowed |= s.get("Condition").is_none();
        }
    }
    allowed
}

fn lab_setup() -> SetupSpec {
    SetupSpec {
        queue: "rtb-renders".into(),
        ami: None,
        instance_types: vec!["m5.xlarge".into()],
        max_vcpus: 16,
        spot: false,
        allocation_strategy: None,
        subnets: vec!["subnet-1".into()],
        security_groups: vec!["sg-1".into()],
        input_buckets: vec!["lab-scenes".into()],
        output_buckets: vec!["lab-renders".into()],
    }
}

/// The shipped roles as `aws-batch setup` puts them: an array child reads its row of the
/// manifest the client wrote (where the client writes it), and the runner reads inputs and
/// writes outputs, as on the EC2 engine; it reads nothing else of the output bucket.
#[test]
fn a_batch_job_reads_its_manifest_under_the_roles_setup_makes() {
    let spec = lab_setup();
    let docs: Vec<String> = role_policies(&spec, &spec.job_role(), "123456789012")
        .into_iter()
        .map(|(_, d)| d)
        .collect();
    let folder = manifests_folder("lab-renders", "r20261201T101500").expect("folder");
    for (k, arrays) in [(0, 1), (1, 2)] {
        let url = manifest_url(&folder, "vwcc2", k, arrays);
        let arn = format!("arn:aws:s3:::{}/{}", url.bucket(), url.key());
        assert!(
            allows(&docs, "s3:GetObject", &arn),
            "the job role cannot read {arn}: {docs:#?}"
        );
    }
    for (action, arn) in [
        ("s3:GetObject", "arn:aws:s3:::lab-scenes/scene1/lamp.pbrt"),
        ("s3:PutObject", "arn:aws:s3:::lab-renders/vwcc2/3/frame.exr"),
        ("s3:ListBucket", "arn:aws:s3:::lab-renders"),
    ] {
        assert!(allows(&docs, action, arn), "{action} {arn}: {docs:#?}");
    }
    assert!(
        !allows(
            &docs,
            "s3:GetObject",
            "arn:aws:s3:::lab-renders/vwcc2/3/frame.exr"
        ),
        "a job can read other jobs' outputs: {docs:#?}"
    );
    // The client writes the manifest there, and only there, of the output bucket.
    let client = policy("client-batch-policy.json")
        .to_string()
        .replace("OUTPUT_BUCKET", "lab-renders")
        .replace("ACCOUNT_ID", "123456789012")
        .replace("QUEUE_NAME", "rtb-renders");
    let url = manifest_url(&folder, "vwcc2", 0, 1);
    let client = vec![client];
    assert!(allows(
        &client,
        "s3:PutObject",
        &format!("arn:aws:s3:::{}/{}", url.bucket(), url.key())
    ));
    assert!(!allows(
        &client,
        "s3:PutObject",
        "arn:aws:s3:::lab-renders/vwcc2/3/frame.exr"
    ));
}

/// On AWS Batch the instance role runs the ECS agent only: the jobs' S3 access is the job
/// role's, so nothing on the instance can read or write the lab's buckets with its role.
#[test]
fn the_batch_instance_role_has_no_s3_access() {
    let spec = lab_setup();
    let docs: Vec<String> = role_policies(&spec, &spec.instance_role(), "123456789012")
        .into_iter()
        .map(|(_, d)| d)
        .collect();
    assert!(!docs.is_empty());
    for d in &docs {
        assert!(!d.contains("s3:"), "{d}");
    }
}

/// The client never retags: CreateTags only inside RunInstances. And the only objects it
/// writes are the batch's own records (`_rtb-batch/`, `_rtb-job/`), never outputs.
#[test]
fn the_client_tags_only_while_launching_and_writes_only_its_records() {
    let doc = policy("client-policy.json");
    let statements = doc["Statement"].as_array().expect("statements");
    let with = |action: &str| -> Vec<&Value> {
        statements
            .iter()
            .filter(|s| s["Effect"] == "Allow" && as_list(&s["Action"]).iter().any(|a| a == action))
            .collect()
    };
    let tagging = with("ec2:CreateTags");
    assert!(!tagging.is_empty());
    for s in tagging {
        assert_eq!(
            s["Condition"]["StringEquals"]["ec2:CreateAction"], "RunInstances",
            "{s}"
        );
    }
    let writing = with("s3:PutObject");
    assert!(!writing.is_empty());
    for s in writing {
        for r in as_list(&s["Resource"]) {
            assert!(
                r.ends_with("/_rtb-batch/*") || r.ends_with("/_rtb-job/*"),
                "the client may write only its records, not {r}"
            );
        }
    }
}
