//! The job definition a batch's rows share, from their plans, and the fixed environment its
//! jobs get. Pure.

use std::collections::BTreeMap;

use super::super::file::Settings;
use super::super::jobs::{BatchJob, Policy};
use crate::engine::aws_batch::{sizes, DefinitionSpec};

/// The job definition every row shares, and each row's own settings. What AWS Batch runs must
/// be the same for every row (one definition): the image and the mounts.
pub fn definition_spec(
    jobs: &[BatchJob],
    run: &[usize],
    policy: &Policy,
    settings: &Settings,
) -> Result<DefinitionSpec, String> {
    let first = &jobs[run[0]];
    let container = |j: &BatchJob| match &j.plan.work {
        crate::plan::Work::Container(c) => Some(c.clone()),
        crate::plan::Work::Shell(_) => None,
    };
    let Some(c) = container(first) else {
        return Err("aws-batch runs container jobs only".into());
    };
    for &j in run {
        let other = container(&jobs[j]).ok_or("aws-batch runs container jobs only")?;
        if other.image != c.image || other.volumes != c.volumes {
            return Err(format!(
                "row {}: its image or volumes differ from row {}'s; AWS Batch runs one job definition per batch",
                jobs[j].row.number, first.row.number
            ));
        }
    }
    let matlab = rtb_model::contract::MATLAB_MOUNT_POINT;
    let volumes = c
        .volumes
        .iter()
        .filter(|(_, ctr, _)| ctr != matlab)
        .map(|(h, ctr, ro)| (h.into(), ctr.into(), *ro))
        .collect();
    let size = sizes::job_size(
        first.plan.launch.instance_types.first().map(String::as_str),
        settings.vcpus,
        settings.memory_mib,
    )
    .map_err(|e| e.to_string())?;
    Ok(DefinitionSpec {
        image: c.image.clone(),
        matlab_root: first.args.job.work.matlab_root.clone(),
        volumes,
        env: emulator_env(
            first.plan.endpoint_url.as_deref(),
            first.plan.region.as_deref(),
        ),
        retries: policy.retries,
        retry_on_job_error: policy.retry_on_job_error,
        timeout: first.plan.timeout,
        vcpus: size.vcpus,
        memory_mib: size.memory_mib,
    })
}

/// On AWS, a job's AWS access comes from its compute environment's instance role, and nothing
/// of the client's is passed on. With a custom endpoint (a local emulator, an S3-compatible
/// store) there is no such role: the jobs get the endpoint, the region and the client's own
/// static keys from its environment, as the EC2 engine's instances pass theirs to the
/// container.
fn emulator_env(endpoint: Option<&str>, region: Option<&str>) -> BTreeMap<String, String> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let Some(endpoint) = endpoint
        .map(str::to_string)
        .or_else(|| var("AWS_ENDPOINT_URL"))
    else {
        return BTreeMap::new();
    };
    let mut env = BTreeMap::from([
        ("AWS_ENDPOINT_URL".to_string(), endpoint),
        ("AWS_EC2_METADATA_DISABLED".to_string(), "true".to_string()),
    ]);
    if let Some(r) = region.map(str::to_string).or_else(|| var("AWS_REGION")) {
        env.insert("AWS_REGION".into(), r);
    }
    for k in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ] {
        if let Some(v) = var(k) {
            env.insert(k.into(), v);
        }
    }
    env
}
