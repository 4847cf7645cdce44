//! Register the job definition, or reuse the newest ACTIVE revision of its name whose content
//! is the same (see [`super::definition`]).

use std::collections::BTreeMap;

use aws_sdk_batch::types::{
    ContainerProperties, EvaluateOnExit, Host, JobTimeout, KeyValuePair, LinuxParameters,
    MountPoint, ResourceRequirement, ResourceType, RetryAction, RetryStrategy, Volume,
};
use serde::Serialize;

use super::definition::{Action, Content, DefinitionSpec, JobDefinition, OnExit};
use super::{sdk, AwsBatch, BatchError};

/// The definition jobs are submitted with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Registered {
    pub name: String,
    pub arn: String,
    pub revision: i32,
    /// An existing ACTIVE definition of the same content was found: nothing was registered.
    pub reused: bool,
    /// Registered because the ACTIVE revision of this name differed in this part.
    pub replaced: Option<&'static str>,
}

impl AwsBatch {
    /// The definition for `spec`: the newest ACTIVE revision of its name with its content, or
    /// a new one.
    pub async fn definition(
        &self,
        spec: &DefinitionSpec,
        batch: &str,
    ) -> Result<Registered, BatchError> {
        let def = spec.build(&self.owner, batch)?;
        let (found, differs) = self.find_definition(&def).await?;
        if let Some(found) = found {
            return Ok(found);
        }
        let mut registered = self.register(&def).await?;
        registered.replaced = differs;
        Ok(registered)
    }

    /// The newest ACTIVE revision named as `def` whose content is `def`'s; else what the
    /// newest revision of that name differs in, if there is one.
    pub async fn find_definition(
        &self,
        def: &JobDefinition,
    ) -> Result<(Option<Registered>, Option<&'static str>), BatchError> {
        let want = def.content();
        let mut pages = self
            .batch
            .describe_job_definitions()
            .job_definition_name(&def.name)
            .status("ACTIVE")
            .into_paginator()
            .send();
        let mut best: Option<Registered> = None;
        let mut newest_other: Option<(i32, &'static str)> = None;
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| sdk("Batch DescribeJobDefinitions", e))?;
            for d in page.job_definitions() {
                if d.job_definition_name() != Some(def.name.as_str())
                    || d.status() != Some("ACTIVE")
                {
                    continue;
                }
                let revision = d.revision().unwrap_or(0);
                if let Some(what) = want.first_difference(&content_of(d)) {
                    if newest_other.is_none_or(|(r, _)| r < revision) {
                        newest_other = Some((revision, what));
                    }
                    continue;
                }
                if best.as_ref().is_none_or(|b| b.revision < revision) {
                    best = Some(Registered {
                        name: def.name.clone(),
                        arn: d.job_definition_arn().unwrap_or_default().to_string(),
                        revision,
                        reused: true,
                        replaced: None,
                    });
                }
            }
        }
        let differs = match &best {
            Some(_) => None,
            None => newest_other.map(|(_, what)| what),
        };
        Ok((best, differs))
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
            replaced: None,
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
        .set_job_role_arn(def.job_role.clone())
        // See Content::init_process.
        .linux_parameters(
            LinuxParameters::builder()
                .init_process_enabled(true)
                .build(),
        );
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

/// What a described definition runs, as [`Content`] (AWS's spellings normalized: the retry
/// action's case, the legacy vcpus/memory fields).
fn content_of(d: &aws_sdk_batch::types::JobDefinition) -> Content {
    let c = d.container_properties();
    let requirement = |t: ResourceType| {
        c.and_then(|c| {
            c.resource_requirements()
                .iter()
                .find(|r| r.r#type() == Some(&t))
                .and_then(|r| r.value())
                .and_then(|v| v.parse::<u32>().ok())
        })
    };
    #[allow(deprecated)]
    let legacy = (
        c.and_then(|c| c.vcpus())
            .and_then(|v| u32::try_from(v).ok()),
        c.and_then(|c| c.memory())
            .and_then(|v| u32::try_from(v).ok()),
    );
    let environment: BTreeMap<String, String> = c
        .map(|c| {
            c.environment()
                .iter()
                .filter_map(|kv| Some((kv.name()?.to_string(), kv.value()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let mut mounts: Vec<(String, String, bool)> = c
        .map(|c| {
            c.mount_points()
                .iter()
                .filter_map(|m| {
                    let volume = c.volumes().iter().find(|v| v.name() == m.source_volume())?;
                    Some((
                        volume.host()?.source_path()?.to_string(),
                        m.container_path()?.to_string(),
                        m.read_only().unwrap_or(false),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    mounts.sort();
    let retry = d.retry_strategy();
    Content {
        init_process: c
            .and_then(|c| c.linux_parameters())
            .and_then(|l| l.init_process_enabled())
            .unwrap_or(false),
        image: c.and_then(|c| c.image()).unwrap_or_default().to_string(),
        command: c.map(|c| c.command().to_vec()).unwrap_or_default(),
        vcpus: requirement(ResourceType::Vcpu).or(legacy.0).unwrap_or(0),
        memory_mib: requirement(ResourceType::Memory).or(legacy.1).unwrap_or(0),
        environment,
        mounts,
        attempts: retry
            .and_then(|r| r.attempts())
            .and_then(|a| u32::try_from(a).ok())
            .unwrap_or(1),
        evaluate_on_exit: retry
            .map(|r| {
                r.evaluate_on_exit()
                    .iter()
                    .map(|e| {
                        let (on, pattern) = if let Some(p) = e.on_status_reason() {
                            ("onStatusReason", p)
                        } else if let Some(p) = e.on_reason() {
                            ("onReason", p)
                        } else {
                            ("onExitCode", e.on_exit_code().unwrap_or_default())
                        };
                        let action = e
                            .action()
                            .map(|a| a.as_str().to_ascii_uppercase())
                            .unwrap_or_default();
                        (on.to_string(), pattern.to_string(), action)
                    })
                    .collect()
            })
            .unwrap_or_default(),
        attempt_duration_secs: d
            .timeout()
            .and_then(|t| t.attempt_duration_seconds())
            .and_then(|s| u64::try_from(s).ok()),
        job_role: c.and_then(|c| c.job_role_arn()).map(str::to_string),
    }
}
