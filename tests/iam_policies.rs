//! The shipped IAM policies parse, and the client's policy allows every action the client
//! calls (the list lives in one place: `run_render::cloud::actions::ACTIONS`).

use run_render::cloud::actions::{ACTIONS, BATCH_ACTIONS, BATCH_SETUP_ACTIONS};
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
fn the_client_writes_only_batch_pages() {
    let doc = policy("client-policy.json");
    let puts: Vec<&Value> = doc["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .filter(|s| {
            as_list(&s["Action"])
                .iter()
                .any(|a| matches(a, "s3:PutObject"))
        })
        .collect();
    assert_eq!(puts.len(), 1, "one statement allows s3:PutObject");
    let resources = as_list(&puts[0]["Resource"]);
    assert!(!resources.is_empty());
    for r in &resources {
        assert!(
            r.starts_with("arn:aws:s3:::OUTPUT_BUCKET/") && r.ends_with("_rtb-batch/*"),
            "{r}"
        );
    }
}

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
    // The daily user cannot create roles or compute environments; only setup can.
    let client = allowed_actions(&policy("client-batch-policy.json"));
    assert!(
        !client
            .iter()
            .any(|a| a.starts_with("iam:") || a.contains("Create")),
        "{client:?}"
    );
    // Setup's IAM rights are limited to the queue's own roles.
    let setup = policy("batch-setup-policy.json").to_string();
    assert!(
        setup.contains("role/QUEUE_NAME-*") && !setup.contains("role/*"),
        "{setup}"
    );
}

#[test]
fn batch_roles_trust_their_service_and_the_instance_role_only_runs_the_agent() {
    let trust = policy("batch-service-role-trust.json").to_string();
    assert!(trust.contains("batch.amazonaws.com"), "{trust}");
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
