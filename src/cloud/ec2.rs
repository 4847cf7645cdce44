//! EC2: the AMI, launching one tagged instance, its state, terminating it.

use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, HttpTokensState, IamInstanceProfileSpecification,
    InstanceMetadataEndpointState, InstanceMetadataOptionsRequest, InstanceMetadataTagsState,
    InstanceType, ResourceType, ShutdownBehavior, Tag, TagSpecification, VolumeType,
};

use super::{cloud_error, Cloud, CloudError};
use crate::plan::Launch;

/// What preflight learns about the AMI.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    pub state: String,
    pub name: String,
    pub root_device: Option<String>,
}

/// An instance's lifecycle state, as EC2 names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceState {
    pub name: String,
    /// Why it changed state (e.g. "Client.InstanceInitiatedShutdown"), when EC2 says.
    pub reason: Option<String>,
}

impl InstanceState {
    pub fn is_gone(&self) -> bool {
        matches!(self.name.as_str(), "terminated" | "shutting-down")
    }
}

/// Why a launch failed, classified so the caller can explain and decide.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("no capacity for this instance type here: {0}; list more types in --instance-type (a,b,c) or try another --subnet (zone)")]
    Capacity(CloudError),
    #[error("an account limit stops the launch: {0}; ask for a quota increase or use a smaller --instance-type")]
    Quota(CloudError),
    #[error("{0}")]
    Other(CloudError),
}

impl Cloud {
    pub async fn describe_image(&self, ami: &str) -> Result<Option<ImageInfo>, CloudError> {
        let out = self.ec2.describe_images().image_ids(ami).send().await;
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                let e = cloud_error("EC2 DescribeImages", e);
                if e.code_starts_with("InvalidAMIID") {
                    return Ok(None);
                }
                return Err(e);
            }
        };
        Ok(out.images().first().map(|i| ImageInfo {
            state: i
                .state()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            name: i.name().unwrap_or_default().to_string(),
            root_device: i.root_device_name().map(str::to_string),
        }))
    }

    /// Launch one instance. Tags are applied at launch, so the instance is never untagged.
    pub async fn run_instance(
        &self,
        launch: &Launch,
        variant: usize,
        user_data: Option<&str>,
        root_device: Option<&str>,
    ) -> Result<String, LaunchError> {
        let tags: Vec<Tag> = launch
            .tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        let tag_spec = |rt: ResourceType| {
            TagSpecification::builder()
                .resource_type(rt)
                .set_tags(Some(tags.clone()))
                .build()
        };
        let profile = if launch.iam_profile.starts_with("arn:") {
            IamInstanceProfileSpecification::builder().arn(&launch.iam_profile)
        } else {
            IamInstanceProfileSpecification::builder().name(&launch.iam_profile)
        }
        .build();
        let mut req = self
            .ec2
            .run_instances()
            .image_id(&launch.ami)
            .instance_type(InstanceType::from(
                launch
                    .instance_types
                    .get(variant)
                    .map_or("", String::as_str),
            ))
            .min_count(1)
            .max_count(1)
            .client_token(launch.token(variant))
            .iam_instance_profile(profile)
            .instance_initiated_shutdown_behavior(ShutdownBehavior::Terminate)
            .metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .http_tokens(HttpTokensState::Required)
                    .http_endpoint(InstanceMetadataEndpointState::Enabled)
                    // The job's container uses the host network: one hop reaches IMDS.
                    .http_put_response_hop_limit(1)
                    // The AMI's boot service reads the rtb:deadline tag from IMDS.
                    .instance_metadata_tags(InstanceMetadataTagsState::Enabled)
                    .build(),
            )
            .tag_specifications(tag_spec(ResourceType::Instance))
            .tag_specifications(tag_spec(ResourceType::Volume))
            .tag_specifications(tag_spec(ResourceType::NetworkInterface));
        if let Some(root) = root_device {
            let mut ebs = EbsBlockDevice::builder()
                .encrypted(true)
                .delete_on_termination(true)
                .volume_type(VolumeType::Gp3);
            if let Some(gb) = launch.disk_gb {
                ebs = ebs.volume_size(gb as i32);
            }
            req = req.block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name(root)
                    .ebs(ebs.build())
                    .build(),
            );
        }
        if let Some(subnet) = &launch.subnet {
            req = req.subnet_id(subnet);
        }
        for sg in &launch.security_groups {
            req = req.security_group_ids(sg);
        }
        if let Some(ud) = user_data {
            req = req.user_data(base64(ud.as_bytes()));
        }
        let out = req
            .send()
            .await
            .map_err(|e| classify_launch(cloud_error("EC2 RunInstances", e)))?;
        out.instances()
            .first()
            .and_then(|i| i.instance_id())
            .map(str::to_string)
            .ok_or_else(|| {
                LaunchError::Other(CloudError {
                    op: "EC2 RunInstances",
                    code: None,
                    message: "the answer named no instance".into(),
                })
            })
    }

    /// The instance's state; None when EC2 does not (yet) know the id, which happens for
    /// about a second after launch.
    pub async fn instance_state(&self, id: &str) -> Result<Option<InstanceState>, CloudError> {
        let out = self.ec2.describe_instances().instance_ids(id).send().await;
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                let e = cloud_error("EC2 DescribeInstances", e);
                if e.is("InvalidInstanceID.NotFound") {
                    return Ok(None);
                }
                return Err(e);
            }
        };
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(id))
            .map(|i| InstanceState {
                name: i
                    .state()
                    .and_then(|s| s.name())
                    .map(|n| n.as_str().to_string())
                    .unwrap_or_default(),
                reason: i
                    .state_reason()
                    .and_then(|r| r.message().or(r.code()))
                    .map(str::to_string),
            }))
    }

    pub async fn terminate(&self, id: &str) -> Result<(), CloudError> {
        self.ec2
            .terminate_instances()
            .instance_ids(id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| cloud_error("EC2 TerminateInstances", e))
    }

    /// Ids of live instances carrying `rtb:job-id=<job_id>`, to find a launch whose answer was
    /// lost.
    pub async fn instances_of_job(&self, job_id: &str) -> Result<Vec<String>, CloudError> {
        let out = self
            .ec2
            .describe_instances()
            .filters(
                Filter::builder()
                    .name("tag:rtb:job-id")
                    .values(job_id)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| cloud_error("EC2 DescribeInstances", e))?;
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter(|i| {
                !matches!(
                    i.state().and_then(|s| s.name()).map(|n| n.as_str()),
                    Some("terminated")
                )
            })
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect())
    }
}

fn classify_launch(e: CloudError) -> LaunchError {
    match e.code.as_deref() {
        Some("InsufficientInstanceCapacity" | "InsufficientCapacity" | "Unsupported") => {
            LaunchError::Capacity(e)
        }
        Some("InstanceLimitExceeded" | "VcpuLimitExceeded" | "MaxSpotInstanceCountExceeded") => {
            LaunchError::Quota(e)
        }
        _ => LaunchError::Other(e),
    }
}

/// Standard base64, for user data (the SDK expects it encoded).
fn base64(data: &[u8]) -> String {
    aws_smithy_types::base64::encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(code: &str) -> CloudError {
        CloudError {
            op: "EC2 RunInstances",
            code: Some(code.into()),
            message: "m".into(),
        }
    }

    #[test]
    fn launch_errors_are_classified_by_code() {
        assert!(matches!(
            classify_launch(err("InsufficientInstanceCapacity")),
            LaunchError::Capacity(_)
        ));
        assert!(matches!(
            classify_launch(err("VcpuLimitExceeded")),
            LaunchError::Quota(_)
        ));
        // Configuration errors are not capacity: trying another type would not help.
        for code in [
            "InvalidAMIID.NotFound",
            "InvalidParameterValue",
            "UnauthorizedOperation",
        ] {
            assert!(
                matches!(classify_launch(err(code)), LaunchError::Other(_)),
                "{code}"
            );
        }
    }
}
