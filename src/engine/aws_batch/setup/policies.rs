//! The role policies setup puts, from the files of `ami/iam/` with their placeholders filled.
//!
//! Three roles, each with only what it needs:
//! - the service role (`batch.amazonaws.com`): AWS Batch scales the compute environment;
//! - the instance role (EC2): the ECS agent joins the cluster, runs tasks, sends logs; no S3;
//! - the job role (`ecs-tasks.amazonaws.com`, the job definitions' `jobRoleArn`): what the
//!   runner in a job's container does, as the EC2 engine's instance role allows it (read the
//!   inputs, write the outputs), plus reading the batch manifests the client writes.

const SERVICE_TRUST: &str = include_str!("../../../../ami/iam/batch-service-role-trust.json");
const SERVICE_POLICY: &str = include_str!("../../../../ami/iam/batch-service-role-policy.json");
const INSTANCE_TRUST: &str = include_str!("../../../../ami/iam/instance-role-trust.json");
const INSTANCE_ECS_POLICY: &str =
    include_str!("../../../../ami/iam/batch-instance-role-policy.json");
const JOB_TRUST: &str = include_str!("../../../../ami/iam/batch-job-role-trust.json");
const RUNNER_S3_POLICY: &str = include_str!("../../../../ami/iam/instance-role-policy.json");
const JOB_MANIFESTS_POLICY: &str = include_str!("../../../../ami/iam/batch-job-role-policy.json");

use super::SetupSpec;

/// Who assumes each role.
pub const BATCH_SERVICE: &str = "batch.amazonaws.com";
pub const EC2_SERVICE: &str = "ec2.amazonaws.com";
pub const ECS_TASKS_SERVICE: &str = "ecs-tasks.amazonaws.com";

/// The trust policy of a role trusted by `service`.
pub(super) fn trust(service: &str) -> &'static str {
    match service {
        BATCH_SERVICE => SERVICE_TRUST,
        ECS_TASKS_SERVICE => JOB_TRUST,
        _ => INSTANCE_TRUST,
    }
}

/// The inline policies (name, document) of `role`, one of `spec`'s roles, in account
/// `account`; none for another role.
pub(super) fn for_role(spec: &SetupSpec, role: &str, account: &str) -> Vec<(&'static str, String)> {
    let fill = |doc: &str| {
        doc.replace("ACCOUNT_ID", account)
            .replace("INSTANCE_ROLE_NAME", &spec.instance_role())
            .replace("QUEUE_NAME", &spec.queue)
    };
    if role == spec.service_role() {
        vec![("rtb-batch-service", fill(SERVICE_POLICY))]
    } else if role == spec.instance_role() {
        vec![("rtb-batch-ecs-agent", fill(INSTANCE_ECS_POLICY))]
    } else if role == spec.job_role() {
        vec![
            (
                "rtb-render-s3",
                buckets_policy(RUNNER_S3_POLICY, &spec.input_buckets, &spec.output_buckets),
            ),
            (
                "rtb-batch-manifests",
                buckets_policy(JOB_MANIFESTS_POLICY, &[], &spec.output_buckets),
            ),
        ]
    } else {
        Vec::new()
    }
}

/// The inline policies setup once put (named `rtb-...`) that `wanted` no longer has.
pub(super) fn stale<'a>(listed: &'a [String], wanted: &[(&str, String)]) -> Vec<&'a str> {
    listed
        .iter()
        .map(String::as_str)
        .filter(|n| n.starts_with("rtb-") && !wanted.iter().any(|(w, _)| w == n))
        .collect()
}

/// An S3 policy with its INPUT_BUCKET / OUTPUT_BUCKET placeholders replaced by every bucket
/// given (one resource per bucket).
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
    fn only_our_policies_that_are_no_longer_shipped_are_stale() {
        let listed: Vec<String> = ["rtb-batch-ecs-agent", "rtb-render-s3", "lab-own-policy"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let wanted = [("rtb-batch-ecs-agent", String::new())];
        assert_eq!(stale(&listed, &wanted), ["rtb-render-s3"]);
    }

    #[test]
    fn the_s3_policy_names_every_bucket() {
        let doc = buckets_policy(
            RUNNER_S3_POLICY,
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
