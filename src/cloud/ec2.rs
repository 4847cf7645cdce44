//! EC2: the AMI, launching one tagged instance, its state, terminating it.

use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, HttpTokensState, IamInstanceProfileSpecification,
    InstanceMetadataEndpointState, InstanceMetadataOptionsRequest, InstanceMetadataTagsState,
    InstanceType, ResourceType, ShutdownBehavior, Tag, TagSpecification, VolumeType,
};

use super::rate::{Family, Need};
use super::{cloud_error, Cloud, CloudError};
use crate::plan::Launch;

/// What preflight learns about the AMI.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    pub state: String,
    pub name: String,
    pub root_device: Option<String>,
}

/// An instance's lifecycle state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lifecycle {
    Pending,
    Running,
    Stopping,
    Stopped,
    ShuttingDown,
    Terminated,
    /// A name this client does not know (a newer EC2 state).
    Other(String),
}

impl Lifecycle {
    pub fn parse(name: &str) -> Lifecycle {
        match name {
            "pending" => Lifecycle::Pending,
            "running" => Lifecycle::Running,
            "stopping" => Lifecycle::Stopping,
            "stopped" => Lifecycle::Stopped,
            "shutting-down" => Lifecycle::ShuttingDown,
            "terminated" => Lifecycle::Terminated,
            other => Lifecycle::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Lifecycle::Pending => "pending",
            Lifecycle::Running => "running",
            Lifecycle::Stopping => "stopping",
            Lifecycle::Stopped => "stopped",
            Lifecycle::ShuttingDown => "shutting-down",
            Lifecycle::Terminated => "terminated",
            Lifecycle::Other(s) => s,
        }
    }
}

impl std::fmt::Display for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An instance's state, and why it changed when EC2 says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceState {
    pub name: Lifecycle,
    /// Why it changed state (e.g. "Client.InstanceInitiatedShutdown"), when EC2 says.
    pub reason: Option<String>,
}

impl InstanceState {
    /// Ended or ending for good: EC2 has accepted its termination.
    pub fn is_gone(&self) -> bool {
        matches!(self.name, Lifecycle::Terminated | Lifecycle::ShuttingDown)
    }

    /// "terminated: Client.UserInitiatedShutdown" or just "terminated".
    pub fn describe(&self) -> String {
        match &self.reason {
            Some(r) => format!("{}: {r}", self.name),
            None => self.name.to_string(),
        }
    }
}

/// The tag that carries a launch's idempotency token, so a launch whose answer was lost can
/// be found by it (and only by it: never by the job id alone, which a re-run shares).
pub const LAUNCH_TOKEN_TAG: &str = "rtb:launch-token";

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
        self.budget.take(Family::Ec2Describe, Need::Must).await;
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
        let token = launch.token(variant);
        self.budget.take(Family::Ec2Run, Need::Must).await;
        let tags: Vec<Tag> = launch
            .tags
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain([(LAUNCH_TOKEN_TAG, token.as_str())])
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
            .client_token(&token)
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
        if launch.spot {
            // The spot request is created too, and the client policy allows that only tagged
            // rtb:tool=run-render (RunInstancesOnlyTaggedAsRunRender): untagged, AWS refuses
            // the whole launch.
            req = req.tag_specifications(tag_spec(ResourceType::SpotInstancesRequest));
            // One-time: a reclaimed spot instance terminates (never stops or hibernates).
            req = req.instance_market_options(
                aws_sdk_ec2::types::InstanceMarketOptionsRequest::builder()
                    .market_type(aws_sdk_ec2::types::MarketType::Spot)
                    .spot_options(
                        aws_sdk_ec2::types::SpotMarketOptions::builder()
                            .spot_instance_type(aws_sdk_ec2::types::SpotInstanceType::OneTime)
                            .instance_interruption_behavior(
                                aws_sdk_ec2::types::InstanceInterruptionBehavior::Terminate,
                            )
                            .build(),
                    )
                    .build(),
            );
        }
        // No SDK retries here: after a lost answer the caller first looks for the instance by
        // its token, then asks again with the same token (see launch.rs).
        let out = req
            .customize()
            .config_override(
                aws_sdk_ec2::config::Builder::default()
                    .retry_config(aws_config::retry::RetryConfig::disabled()),
            )
            .send()
            .await
            .map_err(|e| classify_launch(cloud_error("EC2 RunInstances", e)))?;
        out.instances()
            .first()
            .and_then(|i| i.instance_id())
            .map(str::to_string)
            .ok_or_else(|| {
                LaunchError::Other(CloudError::local(
                    "EC2 RunInstances",
                    "the answer named no instance",
                ))
            })
    }

    /// The instance's state; None when EC2 does not (yet) know the id, which happens for
    /// about a second after launch.
    pub async fn instance_state(&self, id: &str) -> Result<Option<InstanceState>, CloudError> {
        self.budget.take(Family::Ec2Describe, Need::Poll).await;
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
            .map(state_of))
    }

    pub async fn terminate(&self, id: &str) -> Result<(), CloudError> {
        self.budget.take(Family::Ec2Mutating, Need::Must).await;
        self.ec2
            .terminate_instances()
            .instance_ids(id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| cloud_error("EC2 TerminateInstances", e))
    }

    /// Instances launched with this token (from the tag every launch carries), with their
    /// states. The tag is checked on each answer too: an endpoint that ignored the filter must
    /// not make us adopt or end someone else's instance.
    pub async fn instances_with_token(
        &self,
        token: &str,
    ) -> Result<Vec<(String, InstanceState)>, CloudError> {
        self.budget.take(Family::Ec2Describe, Need::Must).await;
        let out = self
            .ec2
            .describe_instances()
            .filters(
                Filter::builder()
                    .name(format!("tag:{LAUNCH_TOKEN_TAG}"))
                    .values(token)
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
                i.tags()
                    .iter()
                    .any(|t| t.key() == Some(LAUNCH_TOKEN_TAG) && t.value() == Some(token))
            })
            .filter_map(|i| Some((i.instance_id()?.to_string(), state_of(i))))
            .collect())
    }
}

fn state_of(i: &aws_sdk_ec2::types::Instance) -> InstanceState {
    InstanceState {
        name: Lifecycle::parse(i.state().and_then(|s| s.name()).map_or("", |n| n.as_str())),
        reason: i
            .state_reason()
            .and_then(|r| r.message().or(r.code()))
            .map(str::to_string),
    }
}

fn classify_launch(e: CloudError) -> LaunchError {
    match e.code.as_deref() {
        Some(
            "InsufficientInstanceCapacity"
            | "InsufficientCapacity"
            | "Unsupported"
            | "SpotMaxPriceTooLow"
            | "InsufficientSpotCapacity",
        ) => LaunchError::Capacity(e),
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
            failure: crate::cloud::Failure::Refused { status: 400 },
        }
    }

    #[test]
    fn instances_that_a_service_manages_are_known_by_their_tags() {
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);
        let table: &[Case] = &[
            (&[("rtb:tool", "run-render"), ("rtb:job-id", "j")], None),
            (
                &[("rtb:tool", "run-render"), ("AWSBatchServiceTag", "batch")],
                Some("AWS Batch"),
            ),
            (
                &[
                    ("aws:autoscaling:groupName", "AWSBatch-lab-ce-asg-1f2e"),
                    ("rtb:tool", "run-render"),
                ],
                Some("AWS Batch (Auto Scaling group AWSBatch-lab-ce-asg-1f2e)"),
            ),
            (
                &[
                    ("aws:autoscaling:groupName", "web"),
                    ("AWSBatchServiceTag", "batch"),
                ],
                Some("AWS Batch"),
            ),
            (&[("AmazonECSManaged", "")], Some("ECS (managed scaling)")),
            (
                &[("aws:autoscaling:groupName", "web")],
                Some("Auto Scaling group web"),
            ),
            (
                &[("aws:ec2spot:fleet-request-id", "sfr-1")],
                Some("Spot Fleet sfr-1"),
            ),
            (
                &[("aws:ec2:fleet-id", "fleet-1")],
                Some("EC2 Fleet fleet-1"),
            ),
            (
                &[("aws:batch:compute-environment", "ce")],
                Some("AWS Batch"),
            ),
        ];
        for (tags, want) in table {
            assert_eq!(
                managed_by(tags.iter().copied()).as_deref(),
                *want,
                "{tags:?}"
            );
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

/// One of the tool's instances, with what its tags say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedInstance {
    pub id: String,
    pub state: InstanceState,
    pub instance_type: String,
    pub launched: Option<std::time::SystemTime>,
    pub job_id: Option<String>,
    pub owner: Option<String>,
    /// The job's records folder (tag rtb:records); None on a pool instance.
    pub records: Option<String>,
    pub batch: Option<String>,
    /// A batch pool's instance: its run (tag rtb:run) and the run's records folder (its
    /// rtb:records), where the jobs it runs are written down. It names no job itself.
    pub pool: Option<Pool>,
    /// EC2 says it is a spot instance.
    pub spot: bool,
    pub launch_token: Option<String>,
    /// Its deadline (tag rtb:deadline).
    pub deadline: Option<std::time::SystemTime>,
    /// The service that launched and ends it (AWS Batch, ECS, an Auto Scaling group or a
    /// fleet), when its tags say so: run-render only ever calls RunInstances, so such an
    /// instance carries our tag (a compute environment's launch tags) but is not ours to end.
    pub managed_by: Option<String>,
}

/// Who manages an instance, from the tags AWS puts on the instances it launches for a
/// service: AWS Batch (`AWSBatchServiceTag`, an Auto Scaling group named `AWSBatch-...`),
/// ECS managed scaling (`AmazonECSManaged`), Auto Scaling, EC2 and Spot fleets.
pub fn managed_by<'a>(tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<String> {
    let mut found = None;
    for (k, v) in tags {
        let this = match k {
            "AWSBatchServiceTag" => "AWS Batch".to_string(),
            "aws:autoscaling:groupName" if v.starts_with("AWSBatch-") => {
                format!("AWS Batch (Auto Scaling group {v})")
            }
            "AmazonECSManaged" => "ECS (managed scaling)".to_string(),
            k if k.starts_with("aws:batch:") => "AWS Batch".to_string(),
            k if k.starts_with("aws:ecs:") => "ECS".to_string(),
            "aws:autoscaling:groupName" => format!("Auto Scaling group {v}"),
            "aws:ec2spot:fleet-request-id" => format!("Spot Fleet {v}"),
            "aws:ec2:fleet-id" => format!("EC2 Fleet {v}"),
            _ => continue,
        };
        // AWS Batch (or ECS) says the most; an Auto Scaling group or fleet only how.
        let better = found
            .as_deref()
            .is_none_or(|f: &str| !f.starts_with("AWS Batch") && !f.starts_with("ECS"));
        if better {
            found = Some(this);
        }
    }
    found
}

/// A pool instance's batch run, from its tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub run: String,
    /// The run's records folder (None when its tag was missing or too long to hold).
    pub records: Option<rtb_model::RunRecords>,
}

/// Which of the tool's instances to list.
#[derive(Debug, Clone, Default)]
pub struct Select<'a> {
    pub owner: Option<&'a str>,
    pub job_id: Option<&'a str>,
    pub batch: Option<&'a str>,
    pub launch_token: Option<&'a str>,
    pub ids: &'a [String],
}

impl Cloud {
    /// The tool's instances (tag rtb:tool=run-render) that match, in any state EC2 still
    /// lists. Every filter is checked on the answer too: an endpoint that ignores a filter
    /// must not make us act on someone else's instance.
    pub async fn tagged_instances(
        &self,
        s: &Select<'_>,
    ) -> Result<Vec<TaggedInstance>, CloudError> {
        use crate::plan::{BATCH_TAG, JOB_TAG, OWNER_TAG, TOOL_TAG};
        let mut wanted = vec![(TOOL_TAG.0, TOOL_TAG.1)];
        for (key, value) in [
            (OWNER_TAG, s.owner),
            (JOB_TAG, s.job_id),
            (BATCH_TAG, s.batch),
            (LAUNCH_TOKEN_TAG, s.launch_token),
        ] {
            if let Some(v) = value {
                wanted.push((key, v));
            }
        }
        let mut req = self.ec2.describe_instances();
        for (k, v) in &wanted {
            req = req.filters(
                Filter::builder()
                    .name(format!("tag:{k}"))
                    .values(*v)
                    .build(),
            );
        }
        if !s.ids.is_empty() {
            req = req.set_instance_ids(Some(s.ids.to_vec()));
        }
        let mut found = Vec::new();
        let mut pages = req.into_paginator().send();
        // A poll: the batch's watch asks this every few seconds.
        while let Some(page) = {
            self.budget.take(Family::Ec2Describe, Need::Poll).await;
            pages.next().await
        } {
            let page = match page {
                Ok(p) => p,
                Err(e) => {
                    let e = cloud_error("EC2 DescribeInstances", e);
                    if e.is("InvalidInstanceID.NotFound") {
                        return Ok(found);
                    }
                    return Err(e);
                }
            };
            for i in page.reservations().iter().flat_map(|r| r.instances()) {
                let tag = |key: &str| {
                    i.tags()
                        .iter()
                        .find(|t| t.key() == Some(key))
                        .and_then(|t| t.value())
                        .map(str::to_string)
                };
                if !wanted.iter().all(|(k, v)| tag(k).as_deref() == Some(*v)) {
                    continue;
                }
                let Some(id) = i.instance_id() else { continue };
                let pool = tag(crate::plan::RUN_TAG).map(|run| Pool {
                    run,
                    records: tag(crate::plan::RECORDS_TAG)
                        .and_then(|r| r.parse::<rtb_model::S3Url>().ok())
                        .map(rtb_model::RunRecords::at),
                });
                found.push(TaggedInstance {
                    id: id.to_string(),
                    state: state_of(i),
                    instance_type: i
                        .instance_type()
                        .map(|t| t.as_str().to_string())
                        .unwrap_or_default(),
                    launched: i
                        .launch_time()
                        .and_then(|t| std::time::SystemTime::try_from(*t).ok()),
                    job_id: tag(JOB_TAG),
                    owner: tag(OWNER_TAG),
                    records: pool
                        .is_none()
                        .then(|| tag(crate::plan::RECORDS_TAG))
                        .flatten(),
                    batch: tag(BATCH_TAG),
                    spot: i.instance_lifecycle()
                        == Some(&aws_sdk_ec2::types::InstanceLifecycleType::Spot),
                    pool,
                    launch_token: tag(LAUNCH_TOKEN_TAG),
                    deadline: tag(crate::plan::DEADLINE_TAG)
                        .and_then(|d| humantime::parse_rfc3339(&d).ok()),
                    managed_by: managed_by(
                        i.tags()
                            .iter()
                            .filter_map(|t| Some((t.key()?, t.value().unwrap_or_default()))),
                    ),
                });
            }
        }
        Ok(found)
    }
}
