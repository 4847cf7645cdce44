//! Making [`Step`]s: the IAM, Batch and wait calls behind `setup` and `teardown`.

use std::time::{Duration, Instant};

use aws_sdk_batch::types::{
    CeState, CeType, ComputeEnvironmentOrder, ComputeResource, ComputeResourceUpdate,
    CrAllocationStrategy, CrType, Ec2Configuration, JqState,
};

use super::policies;
use super::{plan_setup, plan_teardown, Current, SetupSpec, Step};
use crate::engine::aws_batch::{sdk, AwsBatch, BatchError};

/// How long setup waits for a compute environment or queue to settle (VALID, or gone). AWS
/// takes seconds to a few minutes.
const SETTLE: Duration = Duration::from_secs(5 * 60);
const POLL: Duration = Duration::from_secs(2);

fn is_no_such_entity(e: &BatchError) -> bool {
    matches!(e, BatchError::Cloud(c) if c.is("NoSuchEntity"))
}
impl AwsBatch {
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
        let job_role = role_exists(spec.job_role()).await?;
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
            job_role,
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
                let trust = policies::trust(trusts);
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
                let policies = policies::for_role(spec, role, &account);
                for (name, doc) in &policies {
                    self.iam
                        .put_role_policy()
                        .role_name(role)
                        .policy_name(*name)
                        .policy_document(doc)
                        .send()
                        .await
                        .map_err(|e| sdk("IAM PutRolePolicy", e))?;
                }
                // Ours that are no longer shipped go (an older setup gave the instance role
                // the jobs' S3 access, which is the job role's now).
                let listed = self
                    .iam
                    .list_role_policies()
                    .role_name(role)
                    .send()
                    .await
                    .map_err(|e| sdk("IAM ListRolePolicies", e))?;
                for stale in policies::stale(listed.policy_names(), &policies) {
                    self.iam
                        .delete_role_policy()
                        .role_name(role)
                        .policy_name(stale)
                        .send()
                        .await
                        .map_err(|e| sdk("IAM DeleteRolePolicy", e))?;
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
