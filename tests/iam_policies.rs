//! The shipped IAM policies parse, and the client's policy allows every action the client
//! calls (the list lives in one place: `run_render::cloud::actions::ACTIONS`).

use run_render::cloud::actions::ACTIONS;
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

#[test]
fn wildcard_matching() {
    assert!(matches("s3:Get*", "s3:GetObject"));
    assert!(matches("EC2:describe*", "ec2:DescribeImages"));
    assert!(!matches("s3:Get*", "s3:PutObject"));
}
