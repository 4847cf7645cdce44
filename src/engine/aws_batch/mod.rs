//! The AWS Batch engine: the same jobs, queued, placed and retried by AWS Batch on a managed
//! compute environment, with no client needed once they are submitted.
//!
//! Pure parts, table-tested without AWS:
//! - [`definition`]: the job definition from a [`DefinitionSpec`], its content-hash name
//! - [`sizes`]: vCPUs and memory from an instance type, and what fits where
//! - [`state`]: AWS Batch's statuses as [`JobState`]s, an array parent from its children
//! - [`diagnose`]: why a job stays RUNNABLE
//! - [`plan`]: how a batch is submitted (array + manifest, or one job per row), setup's steps
//!
//! Operations over the SDK, on [`AwsBatch`] (which owns its clients):
//! - [`AwsBatch::definition`] register, or reuse the ACTIVE one of the same spec
//! - [`AwsBatch::submit`] (idempotent: a lost answer is looked up before asking again)
//! - [`AwsBatch::states`] to follow; [`AwsBatch::batch_jobs`] / [`AwsBatch::live_jobs`]: a
//!   batch's jobs on a shared queue, by owner; [`AwsBatch::stop`] (one call per array)
//! - [`AwsBatch::attempts`] each job's attempts (times, container instance) and
//!   [`AwsBatch::container_hosts`] the EC2 instance of each container instance, for the cost
//! - [`AwsBatch::preflight`] before submitting
//! - [`AwsBatch::setup`] / [`AwsBatch::teardown`]: compute environment, queue, IAM roles

pub mod attempts;
pub mod definition;
pub mod diagnose;
mod follow;
pub mod plan;
mod preflight;
mod register;
mod setup;
pub mod sizes;
pub mod state;
mod stop;
mod submit;

pub use attempts::{AttemptRan, JobAttempts};
pub use definition::{DefinitionSpec, JobDefinition};
pub use follow::JobOfBatch;
pub use plan::{SubmitPlan, ARRAY_MAX, ARRAY_MIN};
pub use preflight::Preflight;
pub use register::Registered;
pub use setup::{
    job_role_arn, job_role_name, plan_setup, plan_teardown, role_policies, Current, SetupSpec, Step,
};
pub use sizes::Size;
pub use state::{JobState, JobStatus};
pub use stop::{to_stop, Stopped, TopJob};
pub use submit::{adopt, Partial, SubmitJob, Submitted, SubmittedJob};

use crate::cloud::{cloud_error, CloudError};

/// The clients the engine works through, and whose jobs these are (the `rtb:owner` tag).
#[derive(Clone)]
pub struct AwsBatch {
    batch: aws_sdk_batch::Client,
    s3: aws_sdk_s3::Client,
    iam: aws_sdk_iam::Client,
    /// Which EC2 instance a job's container instance is (for its cost).
    ecs: aws_sdk_ecs::Client,
    owner: String,
}

impl AwsBatch {
    /// Clients from a ready `SdkConfig` (the CLI's, or a test's pointing at moto).
    pub fn new(config: &aws_config::SdkConfig, owner: &str) -> AwsBatch {
        let s3_conf = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(config.endpoint_url().is_some())
            .build();
        AwsBatch {
            batch: aws_sdk_batch::Client::new(config),
            s3: aws_sdk_s3::Client::from_conf(s3_conf),
            iam: aws_sdk_iam::Client::new(config),
            ecs: aws_sdk_ecs::Client::new(config),
            owner: owner.to_string(),
        }
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// DescribeJobs of `ids`, as many calls as its limit needs ([`DESCRIBE_MAX`] a call); jobs
    /// AWS Batch no longer knows are left out.
    async fn describe_jobs<S: AsRef<str>>(
        &self,
        ids: &[S],
    ) -> Result<Vec<aws_sdk_batch::types::JobDetail>, BatchError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(DESCRIBE_MAX) {
            let page = self
                .batch
                .describe_jobs()
                .set_jobs(Some(chunk.iter().map(|s| s.as_ref().to_string()).collect()))
                .send()
                .await
                .map_err(|e| sdk("Batch DescribeJobs", e))?;
            out.extend(page.jobs().iter().cloned());
        }
        Ok(out)
    }
}

/// DescribeJobs (and ECS's DescribeContainerInstances) take at most this many ids a call.
const DESCRIBE_MAX: usize = 100;

/// What went wrong, each with what to do.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(transparent)]
    Cloud(#[from] CloudError),
    #[error("job definition: {0}")]
    Definition(#[from] definition::DefinitionError),
    #[error("nothing to submit: the batch has no jobs")]
    NoJobs,
    #[error("job queue {queue} {problem}")]
    Queue { queue: String, problem: String },
    #[error("{0}")]
    Preflight(String),
    #[error("{what} did not become {want} within {secs} s (it is {now}): check it in the AWS Batch console")]
    Wait {
        what: String,
        want: &'static str,
        now: String,
        secs: u64,
    },
    #[error("{0}")]
    Setup(String),
}

/// The SDK's error for one Batch/IAM/S3 call, as ours (code and message kept).
pub(crate) fn sdk<E, R>(op: &'static str, e: aws_sdk_batch::error::SdkError<E, R>) -> BatchError
where
    E: aws_sdk_batch::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + crate::cloud::HttpStatus + 'static,
{
    BatchError::Cloud(cloud_error(op, e))
}
