//! Register the job definition, or reuse the ACTIVE one whose name (the spec's hash) matches.

use aws_sdk_batch::types::{
    ContainerProperties, EvaluateOnExit, Host, JobTimeout, KeyValuePair, MountPoint,
    ResourceRequirement, ResourceType, RetryAction, RetryStrategy, Volume,
};
use serde::Serialize;

use super::definition::{Action, DefinitionSpec, JobDefinition, OnExit};
use super::{sdk, AwsBatch, BatchError};

/// The definition jobs are submitted with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Registered {
    pub name: String,
    pub arn: String,
    pub revision: i32,
    /// An existing ACTIVE definition of the same spec was found: nothing was registered.
    pub reused: bool,
}

impl AwsBatch {
    /// The definition for `spec`: the newest ACTIVE revision of its name, or a new one.
    pub async fn definition(
        &self,
        spec: &DefinitionSpec,
        batch: &str,
    ) -> Result<Registered, BatchError> {
        let def = spec.build(&self.owner, batch)?;
        if let Some(found) = self.find_definition(&def.name).await? {
            return Ok(found);
        }
        self.register(&def).await
    }

    /// The newest ACTIVE revision named `name`, if any.
    pub async fn find_definition(&self, name: &str) -> Result<Option<Registered>, BatchError> {
        let mut pages = self
            .batch
            .describe_job_definitions()
            .job_definition_name(name)
            .status("ACTIVE")
            .into_paginator()
            .send();
        let mut best: Option<Registered> = None;
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| sdk("Batch DescribeJobDefinitions", e))?;
            for d in page.job_definitions() {
                if d.job_definition_name() != Some(name) || d.status() != Some("ACTIVE") {
                    continue;
                }
                let revision = d.revision().unwrap_or(0);
                if best.as_ref().is_none_or(|b| b.revision < revision) {
                    best = Some(Registered {
                        name: name.to_string(),
                        arn: d.job_definition_arn().unwrap_or_default().to_string(),
                        revision,
                        reused: true,
                    });
                }
            }
        }
        Ok(best)
    }

    async fn register(&self, def: &JobDefinition) -> Result<Registered, BatchError> {
        let out = self
            .batch
            .register_job_definition()
            .job_definition_name(&def.name)
            .r#type(aws_sdk_batch::types::JobDefinitionType::Container)
            .container_properties(container(def))
            .retry_strategy(retry(def))
            .set_timeout(def.attempt_duration_secs.map(|s| {
                JobTimeout::builder()
                    .attempt_duration_seconds(s.min(i32::MAX as u64) as i32)
                    .build()
            }))
            .set_tags(Some(def.tags.clone().into_iter().collect()))
            // Jobs carry the definition's tags too (rtb:tool, rtb:owner).
            .propagate_tags(true)
            .send()
            .await
            .map_err(|e| sdk("Batch RegisterJobDefinition", e))?;
        Ok(Registered {
            name: out.job_definition_name().unwrap_or(&def.name).to_string(),
            arn: out.job_definition_arn().unwrap_or_default().to_string(),
            revision: out.revision().unwrap_or(0),
            reused: false,
        })
    }
}

fn container(def: &JobDefinition) -> ContainerProperties {
    let requirement = |t, v: u32| {
        ResourceRequirement::builder()
            .r#type(t)
            .value(v.to_string())
            .build()
    };
    let mut c = ContainerProperties::builder()
        .image(&def.image)
        // Explicitly empty: the image's ENTRYPOINT (rtb-job) runs with no arguments. (moto
        // substitutes a demo command when none is given.)
        .set_command(Some(Vec::new()))
        .resource_requirements(requirement(ResourceType::Vcpu, def.vcpus))
        .resource_requirements(requirement(ResourceType::Memory, def.memory_mib))
        .set_job_role_arn(def.job_role.clone());
    for (name, value) in &def.environment {
        c = c.environment(KeyValuePair::builder().name(name).value(value).build());
    }
    for v in &def.volumes {
        c = c
            .volumes(
                Volume::builder()
                    .name(&v.name)
                    .host(Host::builder().source_path(&v.source_path).build())
                    .build(),
            )
            .mount_points(
                MountPoint::builder()
                    .source_volume(&v.name)
                    .container_path(&v.container_path)
                    .read_only(v.read_only)
                    .build(),
            );
    }
    c.build()
}

fn retry(def: &JobDefinition) -> RetryStrategy {
    let mut r = RetryStrategy::builder().attempts(def.attempts as i32);
    for rule in &def.evaluate_on_exit {
        let action = match rule.action {
            Action::Retry => RetryAction::Retry,
            Action::Exit => RetryAction::Exit,
        };
        let e = EvaluateOnExit::builder().action(action);
        let e = match &rule.on {
            OnExit::StatusReason(p) => e.on_status_reason(p),
            OnExit::Reason(p) => e.on_reason(p),
            OnExit::ExitCode(p) => e.on_exit_code(p),
        };
        r = r.evaluate_on_exit(e.build());
    }
    r.build()
}
