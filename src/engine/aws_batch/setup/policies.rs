//! The role policies setup puts, from the files of `ami/iam/` with their placeholders filled.

const SERVICE_TRUST: &str = include_str!("../../../../ami/iam/batch-service-role-trust.json");
const SERVICE_POLICY: &str = include_str!("../../../../ami/iam/batch-service-role-policy.json");
const INSTANCE_TRUST: &str = include_str!("../../../../ami/iam/instance-role-trust.json");
const INSTANCE_ECS_POLICY: &str =
    include_str!("../../../../ami/iam/batch-instance-role-policy.json");
const INSTANCE_S3_POLICY: &str = include_str!("../../../../ami/iam/instance-role-policy.json");

use super::SetupSpec;

/// The trust policy of a role trusted by `service`.
pub(super) fn trust(service: &str) -> &'static str {
    if service == "batch.amazonaws.com" {
        SERVICE_TRUST
    } else {
        INSTANCE_TRUST
    }
}

/// The inline policies (name, document) of `role`, one of `spec`'s roles, in account
/// `account`.
pub(super) fn for_role(spec: &SetupSpec, role: &str, account: &str) -> Vec<(&'static str, String)> {
    let fill = |doc: &str| {
        doc.replace("ACCOUNT_ID", account)
            .replace("INSTANCE_ROLE_NAME", &spec.instance_role())
            .replace("QUEUE_NAME", &spec.queue)
    };
    if role == spec.service_role() {
        vec![("rtb-batch-service", fill(SERVICE_POLICY))]
    } else {
        vec![
            ("rtb-batch-ecs-agent", fill(INSTANCE_ECS_POLICY)),
            (
                "rtb-render-s3",
                buckets_policy(
                    INSTANCE_S3_POLICY,
                    &spec.input_buckets,
                    &spec.output_buckets,
                ),
            ),
        ]
    }
}

/// The instance role's S3 policy (ami/iam/instance-role-policy.json) with its INPUT_BUCKET /
/// OUTPUT_BUCKET placeholders replaced by every bucket given.
fn buckets_policy(template: &str, inputs: &[String], outputs: &[String]) -> String {
    let Ok(mut doc) = serde_json::from_str::<serde_json::Value>(template) else {
        return template.to_string();
    };
    if let Some(statements) = doc["Statement"].as_array_mut() {
        for s in statements.iter_mut() {
            if let Some(resources) = s["Resource"].as_array() {
                let mut out = Vec::new();
                for r in resources.iter().filter_map(|r| r.as_str()) {
                    let (placeholder, buckets) = if r.contains("INPUT_BUCKET") {
                        ("INPUT_BUCKET", inputs)
                    } else if r.contains("OUTPUT_BUCKET") {
                        ("OUTPUT_BUCKET", outputs)
                    } else {
                        out.push(serde_json::Value::String(r.to_string()));
                        continue;
                    };
                    for b in buckets {
                        out.push(serde_json::Value::String(r.replace(placeholder, b)));
                    }
                }
                s["Resource"] = serde_json::Value::Array(out);
            }
        }
        // A statement left with no resource (no input bucket given, say) is refused by IAM:
        // it grants nothing, so it goes.
        statements.retain(|s| s["Resource"].as_array().is_none_or(|r| !r.is_empty()));
    }
    doc.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_s3_policy_names_every_bucket() {
        let doc = buckets_policy(
            INSTANCE_S3_POLICY,
            &["in1".into()],
            &["o1".into(), "o2".into()],
        );
        assert!(!doc.contains("_BUCKET"), "{doc}");
        for arn in [
            "arn:aws:s3:::in1/*",
            "arn:aws:s3:::o1/*",
            "arn:aws:s3:::o2/*",
            "arn:aws:s3:::o2\"",
        ] {
            assert!(doc.contains(arn), "{arn} in {doc}");
        }
    }
}
