//! Checks made before spending money: each failure is one line and nothing is launched.

use crate::cloud::Cloud;
use crate::plan::{Plan, Work};

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("{0}")]
    Credentials(String),
    #[error("AMI {ami} was not found in {region}: check --ami, --region, and that the AMI is shared with this account")]
    NoAmi { ami: String, region: String },
    #[error("AMI {ami} is {state}, not available; wait for it or pick another")]
    AmiNotAvailable { ami: String, state: String },
    #[error("instance profile '{0}' does not exist: create it (see ami/iam/README.md) or pass --iam-profile")]
    NoProfile(String),
    #[error("{flag}: {message}")]
    Bucket { flag: &'static str, message: String },
    #[error("--job-id {job_id}: {records} already holds records of an earlier run; pick another --job-id (or let run-render make one)")]
    JobIdUsed { job_id: String, records: String },
    #[error("{0}")]
    Cloud(#[from] crate::cloud::CloudError),
}

/// What preflight learned that the launch needs.
#[derive(Debug, Clone)]
pub struct Checked {
    pub root_device: Option<String>,
}

pub async fn check(plan: &Plan, cloud: &Cloud) -> Result<Checked, PreflightError> {
    cloud
        .check_credentials()
        .await
        .map_err(PreflightError::Credentials)?;
    let region = cloud
        .region()
        .unwrap_or("the configured region")
        .to_string();

    let image = cloud
        .describe_image(&plan.launch.ami)
        .await?
        .ok_or_else(|| PreflightError::NoAmi {
            ami: plan.launch.ami.clone(),
            region: region.clone(),
        })?;
    if image.state != "available" && !image.state.is_empty() {
        return Err(PreflightError::AmiNotAvailable {
            ami: plan.launch.ami.clone(),
            state: image.state,
        });
    }

    if !cloud
        .instance_profile_exists(&plan.launch.iam_profile)
        .await?
    {
        return Err(PreflightError::NoProfile(plan.launch.iam_profile.clone()));
    }

    if let Work::Container(c) = &plan.work {
        for (flag, url) in [("--input", &plan.input), ("--output", &plan.output)] {
            if let Some(url) = url {
                cloud
                    .check_bucket(url.bucket())
                    .await
                    .map_err(|e| PreflightError::Bucket {
                        flag,
                        message: format!("{url}: {}", e.message),
                    })?;
            }
        }
        // A second run under the same id would mix its log with the first one's.
        if let Some(records) = &c.records {
            let earlier = cloud
                .keys_after(records.bucket(), &records.root().dir_prefix(), None)
                .await?;
            if !earlier.is_empty() {
                return Err(PreflightError::JobIdUsed {
                    job_id: plan.job_id.clone(),
                    records: records.root().to_string(),
                });
            }
        }
    }
    Ok(Checked {
        root_device: image.root_device,
    })
}
