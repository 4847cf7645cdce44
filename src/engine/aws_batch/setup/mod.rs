//! `aws-batch setup` / `teardown`: the IAM roles (from `ami/iam/`), a managed EC2 compute
//! environment from the lab's AMI, and the job queue, created or brought in line idempotently.
//! Fetch, then decide: [`plan_setup`] and [`plan_teardown`] are pure over what
//! [`AwsBatch::current`](super::AwsBatch::current) found; `apply` makes each step.

mod apply;
mod policies;

use std::fmt;

use serde::Serialize;

use super::diagnose::{EnvironmentFacts, QueueFacts};

/// What `setup` makes. Every other name derives from `queue`, so the setup policy can limit
/// itself to `QUEUE_NAME-*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetupSpec {
    pub queue: String,
    /// The ECS-ready AMI (ami/README.md); `None`: AWS's ECS-optimized default.
    pub ami: Option<String>,
    pub instance_types: Vec<String>,
    pub max_vcpus: u32,
    pub spot: bool,
    /// e.g. SPOT_CAPACITY_OPTIMIZED (default for Spot), BEST_FIT_PROGRESSIVE (on-demand).
    pub allocation_strategy: Option<String>,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    /// Buckets the jobs read and write (the instance role's S3 policy).
    pub input_buckets: Vec<String>,
    pub output_buckets: Vec<String>,
}

impl SetupSpec {
    pub fn compute_environment(&self) -> String {
        format!("{}-ce", self.queue)
    }
    pub fn service_role(&self) -> String {
        format!("{}-batch-service", self.queue)
    }
    /// The role the jobs' containers act as (the job definitions' `jobRoleArn`).
    pub fn job_role(&self) -> String {
        job_role_name(&self.queue)
    }
    /// The instance role and its instance profile (same name).
    pub fn instance_role(&self) -> String {
        format!("{}-instance", self.queue)
    }
    fn strategy(&self) -> String {
        self.allocation_strategy.clone().unwrap_or_else(|| {
            if self.spot {
                "SPOT_CAPACITY_OPTIMIZED"
            } else {
                "BEST_FIT_PROGRESSIVE"
            }
            .to_string()
        })
    }
}

/// The job role of a queue `aws-batch setup` made.
pub fn job_role_name(queue: &str) -> String {
    format!("{queue}-job")
}

/// The ARN of the job role of queue `queue`, whose ARN is `queue_arn` (same partition and
/// account).
pub fn job_role_arn(queue_arn: &str, queue: &str) -> Option<String> {
    let parts: Vec<&str> = queue_arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", partition, "batch", _, account, _] if !account.is_empty() => Some(format!(
            "arn:{partition}:iam::{account}:role/{}",
            job_role_name(queue)
        )),
        _ => None,
    }
}

/// The inline policies (name, document) `setup` puts on `role`, one of `spec`'s roles, in
/// `account`: the shipped files of `ami/iam/` with their placeholders filled.
pub fn role_policies(spec: &SetupSpec, role: &str, account: &str) -> Vec<(&'static str, String)> {
    policies::for_role(spec, role, account)
}

/// What exists now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Current {
    pub service_role: bool,
    pub instance_role: bool,
    pub job_role: bool,
    /// The instance profile exists / has the role in it.
    pub instance_profile: bool,
    pub profile_has_role: bool,
    pub environment: Option<EnvironmentFacts>,
    pub queue: Option<QueueFacts>,
    /// The queue's compute environments, by name.
    pub queue_environments: Vec<String>,
}

/// One change, in the order it is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Step {
    CreateRole { name: String, trusts: &'static str },
    PutRolePolicies { role: String },
    CreateInstanceProfile { name: String },
    AddRoleToProfile { profile: String },
    CreateComputeEnvironment { name: String, detail: String },
    UpdateComputeEnvironment { name: String, detail: String },
    CreateQueue { name: String, environment: String },
    UpdateQueue { name: String, detail: String },
    DisableQueue { name: String },
    DeleteQueue { name: String },
    DisableComputeEnvironment { name: String },
    DeleteComputeEnvironment { name: String },
    DeleteInstanceProfile { name: String },
    DeleteRole { name: String },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::CreateRole { name, trusts } => {
                write!(f, "create IAM role {name} (trusted by {trusts})")
            }
            Step::PutRolePolicies { role } => write!(f, "put the ami/iam policies on role {role}"),
            Step::CreateInstanceProfile { name } => write!(f, "create instance profile {name}"),
            Step::AddRoleToProfile { profile } => {
                write!(f, "add role {profile} to instance profile {profile}")
            }
            Step::CreateComputeEnvironment { name, detail } => {
                write!(f, "create compute environment {name}: {detail}")
            }
            Step::UpdateComputeEnvironment { name, detail } => {
                write!(f, "update compute environment {name}: {detail}")
            }
            Step::CreateQueue { name, environment } => {
                write!(f, "create job queue {name} on {environment}")
            }
            Step::UpdateQueue { name, detail } => write!(f, "update job queue {name}: {detail}"),
            Step::DisableQueue { name } => write!(f, "disable job queue {name}"),
            Step::DeleteQueue { name } => write!(f, "delete job queue {name}"),
            Step::DisableComputeEnvironment { name } => {
                write!(f, "disable compute environment {name}")
            }
            Step::DeleteComputeEnvironment { name } => {
                write!(f, "delete compute environment {name}")
            }
            Step::DeleteInstanceProfile { name } => write!(f, "delete instance profile {name}"),
            Step::DeleteRole { name } => {
                write!(f, "delete IAM role {name} and its inline policies")
            }
        }
    }
}

/// What setup must do, given what exists. Empty: everything is in place.
pub fn plan_setup(spec: &SetupSpec, now: &Current) -> Vec<Step> {
    let mut steps = Vec::new();
    let ce = spec.compute_environment();
    if !now.service_role {
        steps.push(Step::CreateRole {
            name: spec.service_role(),
            trusts: policies::BATCH_SERVICE,
        });
    }
    // Policies are put every run: PutRolePolicy replaces, so a changed ami/iam file or bucket
    // list takes effect.
    steps.push(Step::PutRolePolicies {
        role: spec.service_role(),
    });
    if !now.instance_role {
        steps.push(Step::CreateRole {
            name: spec.instance_role(),
            trusts: policies::EC2_SERVICE,
        });
    }
    steps.push(Step::PutRolePolicies {
        role: spec.instance_role(),
    });
    if !now.job_role {
        steps.push(Step::CreateRole {
            name: spec.job_role(),
            trusts: policies::ECS_TASKS_SERVICE,
        });
    }
    steps.push(Step::PutRolePolicies {
        role: spec.job_role(),
    });
    if !now.instance_profile {
        steps.push(Step::CreateInstanceProfile {
            name: spec.instance_role(),
        });
    }
    if !now.profile_has_role {
        steps.push(Step::AddRoleToProfile {
            profile: spec.instance_role(),
        });
    }
    match &now.environment {
        None => steps.push(Step::CreateComputeEnvironment {
            name: ce.clone(),
            detail: format!(
                "{} {}, {} (min 0, max {} vCPUs), AMI {}, {} subnet(s)",
                if spec.spot { "SPOT" } else { "EC2" },
                spec.strategy(),
                spec.instance_types.join(","),
                spec.max_vcpus,
                spec.ami.as_deref().unwrap_or("ECS-optimized default"),
                spec.subnets.len()
            ),
        }),
        Some(e) => {
            let mut changes = Vec::new();
            if !e.enabled {
                changes.push("enable".to_string());
            }
            if e.max_vcpus != Some(spec.max_vcpus) {
                changes.push(format!(
                    "max vCPUs {} -> {}",
                    e.max_vcpus.map_or("?".into(), |m| m.to_string()),
                    spec.max_vcpus
                ));
            }
            if !changes.is_empty() {
                steps.push(Step::UpdateComputeEnvironment {
                    name: ce.clone(),
                    detail: changes.join(", "),
                });
            }
        }
    }
    match &now.queue {
        None => steps.push(Step::CreateQueue {
            name: spec.queue.clone(),
            environment: ce.clone(),
        }),
        Some(q) => {
            let mut changes = Vec::new();
            if !q.enabled {
                changes.push("enable".to_string());
            }
            if !now.queue_environments.contains(&ce) {
                changes.push(format!("compute environments -> {ce}"));
            }
            if !changes.is_empty() {
                steps.push(Step::UpdateQueue {
                    name: spec.queue.clone(),
                    detail: changes.join(", "),
                });
            }
        }
    }
    steps
}

/// What teardown must do: the queue before its compute environment (AWS refuses otherwise),
/// each disabled before it is deleted, then the roles.
pub fn plan_teardown(spec: &SetupSpec, now: &Current) -> Vec<Step> {
    let mut steps = Vec::new();
    if let Some(q) = &now.queue {
        if q.enabled {
            steps.push(Step::DisableQueue {
                name: spec.queue.clone(),
            });
        }
        steps.push(Step::DeleteQueue {
            name: spec.queue.clone(),
        });
    }
    if let Some(e) = &now.environment {
        if e.enabled {
            steps.push(Step::DisableComputeEnvironment {
                name: e.name.clone(),
            });
        }
        steps.push(Step::DeleteComputeEnvironment {
            name: e.name.clone(),
        });
    }
    if now.instance_profile {
        steps.push(Step::DeleteInstanceProfile {
            name: spec.instance_role(),
        });
    }
    if now.instance_role {
        steps.push(Step::DeleteRole {
            name: spec.instance_role(),
        });
    }
    if now.job_role {
        steps.push(Step::DeleteRole {
            name: spec.job_role(),
        });
    }
    if now.service_role {
        steps.push(Step::DeleteRole {
            name: spec.service_role(),
        });
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SetupSpec {
        SetupSpec {
            queue: "rtb-renders".into(),
            ami: Some("ami-123".into()),
            instance_types: vec!["m5.xlarge".into()],
            max_vcpus: 64,
            spot: true,
            allocation_strategy: None,
            subnets: vec!["subnet-1".into()],
            security_groups: vec!["sg-1".into()],
            input_buckets: vec!["scenes".into()],
            output_buckets: vec!["renders".into(), "renders2".into()],
        }
    }

    fn all_there(s: &SetupSpec) -> Current {
        Current {
            service_role: true,
            instance_role: true,
            job_role: true,
            instance_profile: true,
            profile_has_role: true,
            environment: Some(EnvironmentFacts {
                name: s.compute_environment(),
                enabled: true,
                valid: true,
                max_vcpus: Some(64),
                ..Default::default()
            }),
            queue: Some(QueueFacts {
                name: s.queue.clone(),
                enabled: true,
                valid: true,
                status_reason: None,
                arn: None,
            }),
            queue_environments: vec![s.compute_environment()],
        }
    }

    fn kinds(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map(|s| {
                format!("{s:?}")
                    .split([' ', '{'])
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn the_job_role_is_the_queues_in_its_account_and_partition() {
        assert_eq!(
            job_role_arn(
                "arn:aws:batch:eu-west-1:123456789012:job-queue/rtb-renders",
                "rtb-renders"
            )
            .as_deref(),
            Some("arn:aws:iam::123456789012:role/rtb-renders-job")
        );
        assert_eq!(
            job_role_arn("arn:aws-cn:batch:cn-north-1:1:job-queue/q", "q").as_deref(),
            Some("arn:aws-cn:iam::1:role/q-job")
        );
        assert_eq!(job_role_arn("rtb-renders", "rtb-renders"), None);
    }

    #[test]
    fn from_nothing_setup_makes_everything_in_order() {
        let s = spec();
        let steps = plan_setup(&s, &Current::default());
        assert_eq!(
            kinds(&steps),
            [
                "CreateRole",
                "PutRolePolicies",
                "CreateRole",
                "PutRolePolicies",
                "CreateRole",
                "PutRolePolicies",
                "CreateInstanceProfile",
                "AddRoleToProfile",
                "CreateComputeEnvironment",
                "CreateQueue"
            ]
        );
        assert_eq!(
            steps[4].to_string(),
            "create IAM role rtb-renders-job (trusted by ecs-tasks.amazonaws.com)"
        );
        assert!(
            steps[8].to_string().contains(
                "SPOT SPOT_CAPACITY_OPTIMIZED, m5.xlarge (min 0, max 64 vCPUs), AMI ami-123"
            ),
            "{}",
            steps[8]
        );
    }

    #[test]
    fn a_second_setup_only_refreshes_policies_and_fixes_drift() {
        let s = spec();
        let now = all_there(&s);
        assert_eq!(
            kinds(&plan_setup(&s, &now)),
            ["PutRolePolicies", "PutRolePolicies", "PutRolePolicies"]
        );
        let mut drift = now.clone();
        drift.environment.as_mut().unwrap().max_vcpus = Some(16);
        drift.queue.as_mut().unwrap().enabled = false;
        let steps = plan_setup(&s, &drift);
        assert_eq!(
            kinds(&steps)[3..],
            ["UpdateComputeEnvironment", "UpdateQueue"]
        );
        assert!(steps[3].to_string().contains("max vCPUs 16 -> 64"));
    }

    #[test]
    fn teardown_goes_queue_first_and_does_nothing_when_nothing_is_there() {
        let s = spec();
        assert_eq!(
            kinds(&plan_teardown(&s, &all_there(&s))),
            [
                "DisableQueue",
                "DeleteQueue",
                "DisableComputeEnvironment",
                "DeleteComputeEnvironment",
                "DeleteInstanceProfile",
                "DeleteRole",
                "DeleteRole",
                "DeleteRole"
            ]
        );
        assert!(plan_teardown(&s, &Current::default()).is_empty());
    }
}
