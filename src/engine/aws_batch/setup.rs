//! `aws-batch setup` / `teardown`: the IAM roles (from `ami/iam/`), a managed EC2 compute
//! environment from the lab's AMI, and the job queue, created or brought in line idempotently;
//! and the preflight a batch passes before it is submitted. Fetch, then decide: [`plan_setup`]
//! and [`plan_teardown`] are pure over what [`AwsBatch::current`] found.

use std::fmt;
use std::time::{Duration, Instant};

use aws_sdk_batch::types::{
    CeState, CeStatus, CeType, ComputeEnvironmentOrder, ComputeResource, ComputeResourceUpdate,
    CrAllocationStrategy, CrType, Ec2Configuration, JqState, JqStatus,
};
use serde::Serialize;

use super::diagnose::{EnvironmentFacts, QueueFacts};
use super::sizes::{fits, Size};
use super::{sdk, AwsBatch, BatchError};

const SERVICE_TRUST: &str = include_str!("../../../ami/iam/batch-service-role-trust.json");
const SERVICE_POLICY: &str = include_str!("../../../ami/iam/batch-service-role-policy.json");
const INSTANCE_TRUST: &str = include_str!("../../../ami/iam/instance-role-trust.json");
const INSTANCE_ECS_POLICY: &str = include_str!("../../../ami/iam/batch-instance-role-policy.json");
const INSTANCE_S3_POLICY: &str = include_str!("../../../ami/iam/instance-role-policy.json");

/// How long setup waits for a compute environment or queue to settle (VALID, or gone). AWS
/// takes seconds to a few minutes.
const SETTLE: Duration = Duration::from_secs(5 * 60);
const POLL: Duration = Duration::from_secs(2);

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

/// What exists now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Current {
    pub service_role: bool,
    pub instance_role: bool,
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
            trusts: "batch.amazonaws.com",
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
            trusts: "ec2.amazonaws.com",
        });
    }
    steps.push(Step::PutRolePolicies {
        role: spec.instance_role(),
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
    if now.service_role {
        steps.push(Step::DeleteRole {
            name: spec.service_role(),
        });
    }
    steps
}

/// What preflight found; `problems` empty means the batch can be submitted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Preflight {
    pub problems: Vec<String>,
}

fn is_no_such_entity(e: &BatchError) -> bool {
    matches!(e, BatchError::Cloud(c) if c.is("NoSuchEntity"))
}

impl AwsBatch {
    /// The queue and its compute environments, as the diagnosis and preflight want them.
    pub async fn queue_facts(
        &self,
        queue: &str,
    ) -> Result<(Option<QueueFacts>, Vec<String>, Vec<EnvironmentFacts>), BatchError> {
        let out = self
            .batch
            .describe_job_queues()
            .job_queues(queue)
            .send()
            .await
            .map_err(|e| sdk("Batch DescribeJobQueues", e))?;
        let Some(q) = out
            .job_queues()
            .iter()
            .find(|q| q.job_queue_name() == Some(queue) && q.status() != Some(&JqStatus::Deleted))
        else {
            return Ok((None, Vec::new(), Vec::new()));
        };
        let facts = QueueFacts {
            name: queue.to_string(),
            enabled: q.state() == Some(&JqState::Enabled),
            valid: q.status() == Some(&JqStatus::Valid),
            status_reason: q.status_reason().map(str::to_string),
        };
        let names: Vec<String> = q
            .compute_environment_order()
            .iter()
            .map(|o| {
                let arn = o.compute_environment().unwrap_or_default();
                arn.rsplit('/').next().unwrap_or(arn).to_string()
            })
            .collect();
        let envs = self.environment_facts(&names).await?;
        Ok((Some(facts), names, envs))
    }

    async fn environment_facts(
        &self,
        names: &[String],
    ) -> Result<Vec<EnvironmentFacts>, BatchError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let out = self
            .batch
            .describe_compute_environments()
            .set_compute_environments(Some(names.to_vec()))
            .send()
            .await
            .map_err(|e| sdk("Batch DescribeComputeEnvironments", e))?;
        Ok(out
            .compute_environments()
            .iter()
            .filter(|c| c.status() != Some(&CeStatus::Deleted))
            .map(|c| {
                let r = c.compute_resources();
                EnvironmentFacts {
                    name: c.compute_environment_name().unwrap_or_default().to_string(),
                    enabled: c.state() == Some(&CeState::Enabled),
                    valid: c.status() == Some(&CeStatus::Valid),
                    status_reason: c.status_reason().map(str::to_string),
                    instance_types: r.map(|r| r.instance_types().to_vec()).unwrap_or_default(),
                    max_vcpus: r
                        .and_then(|r| r.maxv_cpus())
                        .and_then(|v| u32::try_from(v).ok()),
                    desired_vcpus: r
                        .and_then(|r| r.desiredv_cpus())
                        .and_then(|v| u32::try_from(v).ok()),
                    spot: r.is_some_and(|r| r.r#type() == Some(&CrType::Spot)),
                    container_instances: None,
                }
            })
            .collect())
    }

    /// Before submitting: the queue exists and is VALID/ENABLED, and at least one of its enabled
    /// compute environments has an instance type that can hold a job of `size`.
    pub async fn preflight(&self, queue: &str, size: Size) -> Result<Preflight, BatchError> {
        let (q, _, envs) = self.queue_facts(queue).await?;
        let mut p = Preflight::default();
        let Some(q) = q else {
            p.problems.push(format!("job queue {queue} does not exist: run `run-render aws-batch setup --queue {queue}` or check --region"));
            return Ok(p);
        };
        if !q.enabled {
            p.problems.push(format!("job queue {queue} is DISABLED: enable it (aws batch update-job-queue --job-queue {queue} --state ENABLED)"));
        }
        if !q.valid {
            p.problems.push(format!(
                "job queue {queue} is not VALID: {}",
                q.status_reason.as_deref().unwrap_or("no reason given")
            ));
        }
        let usable: Vec<&EnvironmentFacts> = envs.iter().filter(|e| e.enabled && e.valid).collect();
        if usable.is_empty() {
            p.problems.push(format!(
                "job queue {queue} has no ENABLED, VALID compute environment"
            ));
        } else if !usable.iter().any(|e| {
            e.instance_types.is_empty()
                || e.instance_types
                    .iter()
                    .any(|t| fits(t, size) != Some(false))
        }) {
            let types: Vec<&str> = usable
                .iter()
                .flat_map(|e| e.instance_types.iter().map(String::as_str))
                .collect();
            p.problems.push(format!(
                "no instance type of the queue's compute environments ({}) can hold a job of {} vCPU / {} MiB: lower vcpus / memory-mib, or add a larger type",
                types.join(", "),
                size.vcpus,
                size.memory_mib
            ));
        }
        Ok(p)
    }

    /// What exists of `spec`'s resources.
    pub async fn current(&self, spec: &SetupSpec) -> Result<Current, BatchError> {
        let role_exists = |name: String| async move {
            match self.iam.get_role().role_name(&name).send().await {
                Ok(_) => Ok(true),
                Err(e) => {
                    let e = sdk("IAM GetRole", e);
                    if is_no_such_entity(&e) {
                        Ok(false)
                    } else {
                        Err(e)
                    }
                }
            }
        };
        let service_role = role_exists(spec.service_role()).await?;
        let instance_role = role_exists(spec.instance_role()).await?;
        let (instance_profile, profile_has_role) = match self
            .iam
            .get_instance_profile()
            .instance_profile_name(spec.instance_role())
            .send()
            .await
        {
            Ok(out) => (
                true,
                out.instance_profile().is_some_and(|p| {
                    p.roles()
                        .iter()
                        .any(|r| r.role_name() == spec.instance_role())
                }),
            ),
            Err(e) => {
                let e = sdk("IAM GetInstanceProfile", e);
                if is_no_such_entity(&e) {
                    (false, false)
                } else {
                    return Err(e);
                }
            }
        };
        let environment = self
            .environment_facts(&[spec.compute_environment()])
            .await?
            .into_iter()
            .find(|e| e.name == spec.compute_environment());
        let (queue, queue_environments, _) = self.queue_facts(&spec.queue).await?;
        Ok(Current {
            service_role,
            instance_role,
            instance_profile,
            profile_has_role,
            environment,
            queue,
            queue_environments,
        })
    }

    /// Create or update what `spec` needs; with `dry_run`, only say what would be done.
    pub async fn setup(&self, spec: &SetupSpec, dry_run: bool) -> Result<Vec<Step>, BatchError> {
        let steps = plan_setup(spec, &self.current(spec).await?);
        if !dry_run {
            for step in &steps {
                self.apply(spec, step).await?;
            }
        }
        Ok(steps)
    }

    /// Remove what `setup` made; with `dry_run`, only say what would be done.
    pub async fn teardown(&self, spec: &SetupSpec, dry_run: bool) -> Result<Vec<Step>, BatchError> {
        let steps = plan_teardown(spec, &self.current(spec).await?);
        if !dry_run {
            for step in &steps {
                self.apply(spec, step).await?;
            }
        }
        Ok(steps)
    }

    async fn role_arn(&self, name: &str) -> Result<String, BatchError> {
        let out = self
            .iam
            .get_role()
            .role_name(name)
            .send()
            .await
            .map_err(|e| sdk("IAM GetRole", e))?;
        Ok(out.role().map(|r| r.arn().to_string()).unwrap_or_default())
    }

    async fn apply(&self, spec: &SetupSpec, step: &Step) -> Result<(), BatchError> {
        match step {
            Step::CreateRole { name, trusts } => {
                let trust = if *trusts == "batch.amazonaws.com" {
                    SERVICE_TRUST
                } else {
                    INSTANCE_TRUST
                };
                self.iam
                    .create_role()
                    .role_name(name)
                    .assume_role_policy_document(trust)
                    .tags(
                        aws_sdk_iam::types::Tag::builder()
                            .key("rtb:tool")
                            .value("run-render")
                            .build()
                            .map_err(|e| BatchError::Setup(e.to_string()))?,
                    )
                    .send()
                    .await
                    .map_err(|e| sdk("IAM CreateRole", e))?;
            }
            Step::PutRolePolicies { role } => {
                let arn = self.role_arn(role).await?;
                let account = arn
                    .split(':')
                    .nth(4)
                    .filter(|a| !a.is_empty())
                    .unwrap_or("*")
                    .to_string();
                let fill = |doc: &str| {
                    doc.replace("ACCOUNT_ID", &account)
                        .replace("INSTANCE_ROLE_NAME", &spec.instance_role())
                        .replace("QUEUE_NAME", &spec.queue)
                };
                let policies: Vec<(&str, String)> = if *role == spec.service_role() {
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
                };
                for (name, doc) in policies {
                    self.iam
                        .put_role_policy()
                        .role_name(role)
                        .policy_name(name)
                        .policy_document(doc)
                        .send()
                        .await
                        .map_err(|e| sdk("IAM PutRolePolicy", e))?;
                }
            }
            Step::CreateInstanceProfile { name } => {
                self.iam
                    .create_instance_profile()
                    .instance_profile_name(name)
                    .send()
                    .await
                    .map_err(|e| sdk("IAM CreateInstanceProfile", e))?;
            }
            Step::AddRoleToProfile { profile } => {
                self.iam
                    .add_role_to_instance_profile()
                    .instance_profile_name(profile)
                    .role_name(profile)
                    .send()
                    .await
                    .map_err(|e| sdk("IAM AddRoleToInstanceProfile", e))?;
            }
            Step::CreateComputeEnvironment { name, .. } => {
                let service_role = self.role_arn(&spec.service_role()).await?;
                let account = service_role
                    .split(':')
                    .nth(4)
                    .unwrap_or_default()
                    .to_string();
                let profile = format!(
                    "arn:aws:iam::{account}:instance-profile/{}",
                    spec.instance_role()
                );
                let resources = ComputeResource::builder()
                    .r#type(if spec.spot { CrType::Spot } else { CrType::Ec2 })
                    .allocation_strategy(CrAllocationStrategy::from(spec.strategy().as_str()))
                    .minv_cpus(0)
                    .maxv_cpus(spec.max_vcpus as i32)
                    .set_instance_types(Some(spec.instance_types.clone()))
                    .set_ec2_configuration(spec.ami.as_ref().map(|ami| {
                        vec![Ec2Configuration::builder()
                            .image_type("ECS_AL2023")
                            .image_id_override(ami)
                            .build()]
                    }))
                    .set_subnets(Some(spec.subnets.clone()))
                    .set_security_group_ids(Some(spec.security_groups.clone()))
                    .instance_role(profile)
                    .tags("rtb:tool", "run-render")
                    .build();
                self.batch
                    .create_compute_environment()
                    .compute_environment_name(name)
                    .r#type(CeType::Managed)
                    .state(CeState::Enabled)
                    .compute_resources(resources)
                    .service_role(service_role)
                    .tags("rtb:tool", "run-render")
                    .send()
                    .await
                    .map_err(|e| sdk("Batch CreateComputeEnvironment", e))?;
                self.wait_environment(name, true).await?;
            }
            Step::UpdateComputeEnvironment { name, .. } => {
                self.batch
                    .update_compute_environment()
                    .compute_environment(name)
                    .state(CeState::Enabled)
                    .compute_resources(
                        ComputeResourceUpdate::builder()
                            .maxv_cpus(spec.max_vcpus as i32)
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| sdk("Batch UpdateComputeEnvironment", e))?;
                self.wait_environment(name, true).await?;
            }
            Step::CreateQueue { name, environment } => {
                self.batch
                    .create_job_queue()
                    .job_queue_name(name)
                    .state(JqState::Enabled)
                    .priority(1)
                    .compute_environment_order(
                        ComputeEnvironmentOrder::builder()
                            .order(1)
                            .compute_environment(environment)
                            .build(),
                    )
                    .tags("rtb:tool", "run-render")
                    .send()
                    .await
                    .map_err(|e| sdk("Batch CreateJobQueue", e))?;
            }
            Step::UpdateQueue { name, .. } => {
                self.batch
                    .update_job_queue()
                    .job_queue(name)
                    .state(JqState::Enabled)
                    .compute_environment_order(
                        ComputeEnvironmentOrder::builder()
                            .order(1)
                            .compute_environment(spec.compute_environment())
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| sdk("Batch UpdateJobQueue", e))?;
            }
            Step::DisableQueue { name } => {
                self.batch
                    .update_job_queue()
                    .job_queue(name)
                    .state(JqState::Disabled)
                    .send()
                    .await
                    .map_err(|e| sdk("Batch UpdateJobQueue", e))?;
            }
            Step::DeleteQueue { name } => {
                self.batch
                    .delete_job_queue()
                    .job_queue(name)
                    .send()
                    .await
                    .map_err(|e| sdk("Batch DeleteJobQueue", e))?;
                self.wait_queue_gone(name).await?;
            }
            Step::DisableComputeEnvironment { name } => {
                self.batch
                    .update_compute_environment()
                    .compute_environment(name)
                    .state(CeState::Disabled)
                    .send()
                    .await
                    .map_err(|e| sdk("Batch UpdateComputeEnvironment", e))?;
            }
            Step::DeleteComputeEnvironment { name } => {
                self.batch
                    .delete_compute_environment()
                    .compute_environment(name)
                    .send()
                    .await
                    .map_err(|e| sdk("Batch DeleteComputeEnvironment", e))?;
                self.wait_environment(name, false).await?;
            }
            Step::DeleteInstanceProfile { name } => {
                let _ = self
                    .iam
                    .remove_role_from_instance_profile()
                    .instance_profile_name(name)
                    .role_name(name)
                    .send()
                    .await;
                self.iam
                    .delete_instance_profile()
                    .instance_profile_name(name)
                    .send()
                    .await
                    .map_err(|e| sdk("IAM DeleteInstanceProfile", e))?;
            }
            Step::DeleteRole { name } => {
                let listed = self
                    .iam
                    .list_role_policies()
                    .role_name(name)
                    .send()
                    .await
                    .map_err(|e| sdk("IAM ListRolePolicies", e))?;
                for p in listed.policy_names() {
                    self.iam
                        .delete_role_policy()
                        .role_name(name)
                        .policy_name(p)
                        .send()
                        .await
                        .map_err(|e| sdk("IAM DeleteRolePolicy", e))?;
                }
                self.iam
                    .delete_role()
                    .role_name(name)
                    .send()
                    .await
                    .map_err(|e| sdk("IAM DeleteRole", e))?;
            }
        }
        Ok(())
    }

    /// Until the compute environment is VALID (`present`) or gone.
    async fn wait_environment(&self, name: &str, present: bool) -> Result<(), BatchError> {
        let start = Instant::now();
        loop {
            let now = self
                .environment_facts(&[name.to_string()])
                .await?
                .into_iter()
                .find(|e| e.name == name);
            let (done, what) = match (&now, present) {
                (Some(e), true) => (e.valid, if e.valid { "VALID" } else { "not VALID yet" }),
                (None, true) => (false, "missing"),
                (Some(_), false) => (false, "still there"),
                (None, false) => (true, "gone"),
            };
            if done {
                return Ok(());
            }
            if start.elapsed() > SETTLE {
                return Err(BatchError::Wait {
                    what: format!("compute environment {name}"),
                    want: if present { "VALID" } else { "deleted" },
                    now: what.to_string(),
                    secs: SETTLE.as_secs(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn wait_queue_gone(&self, name: &str) -> Result<(), BatchError> {
        let start = Instant::now();
        while self.queue_facts(name).await?.0.is_some() {
            if start.elapsed() > SETTLE {
                return Err(BatchError::Wait {
                    what: format!("job queue {name}"),
                    want: "deleted",
                    now: "still there".into(),
                    secs: SETTLE.as_secs(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
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
                "CreateInstanceProfile",
                "AddRoleToProfile",
                "CreateComputeEnvironment",
                "CreateQueue"
            ]
        );
        assert!(
            steps[6].to_string().contains(
                "SPOT SPOT_CAPACITY_OPTIMIZED, m5.xlarge (min 0, max 64 vCPUs), AMI ami-123"
            ),
            "{}",
            steps[6]
        );
    }

    #[test]
    fn a_second_setup_only_refreshes_policies_and_fixes_drift() {
        let s = spec();
        let now = all_there(&s);
        assert_eq!(
            kinds(&plan_setup(&s, &now)),
            ["PutRolePolicies", "PutRolePolicies"]
        );
        let mut drift = now.clone();
        drift.environment.as_mut().unwrap().max_vcpus = Some(16);
        drift.queue.as_mut().unwrap().enabled = false;
        let steps = plan_setup(&s, &drift);
        assert_eq!(
            kinds(&steps)[2..],
            ["UpdateComputeEnvironment", "UpdateQueue"]
        );
        assert!(steps[2].to_string().contains("max vCPUs 16 -> 64"));
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
                "DeleteRole"
            ]
        );
        assert!(plan_teardown(&s, &Current::default()).is_empty());
    }

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
