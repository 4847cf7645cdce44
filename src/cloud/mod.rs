//! The seam between the job lifecycle and AWS: one [`Cloud`] holding the SDK clients, and
//! small operations over them (one file per service) that return plain values and
//! [`CloudError`]s. The lifecycle code above reads as the state machine it is.

pub mod actions;
mod ec2;
mod iam;
mod s3;
mod ssm;

pub use ec2::{ImageInfo, InstanceState, LaunchError};
pub use ssm::{Invocation, InvocationStatus, MAX_EXECUTION_SECS};

use aws_sdk_ec2::error::ProvideErrorMetadata;

/// The SDK clients for one region and account.
#[derive(Clone)]
pub struct Cloud {
    ec2: aws_sdk_ec2::Client,
    ssm: aws_sdk_ssm::Client,
    s3: aws_sdk_s3::Client,
    iam: aws_sdk_iam::Client,
    region: Option<String>,
    config: aws_config::SdkConfig,
}

/// Where to connect: the flags, then the usual AWS variables and files.
#[derive(Debug, Clone, Default)]
pub struct Connect {
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
}

impl Cloud {
    /// Build clients from the default chain (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL, SSO,
    /// instance roles...), with the flags taking precedence.
    pub async fn connect(c: &Connect) -> Cloud {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(r) = &c.region {
            loader = loader.region(aws_config::Region::new(r.clone()));
        }
        if let Some(p) = &c.profile {
            loader = loader.profile_name(p);
        }
        if let Some(e) = &c.endpoint_url {
            loader = loader.endpoint_url(e);
        }
        let config = loader.load().await;
        // A custom endpoint is an emulator or an S3-compatible store: path-style addressing.
        let s3_conf = aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(config.endpoint_url().is_some())
            .build();
        Cloud {
            ec2: aws_sdk_ec2::Client::new(&config),
            ssm: aws_sdk_ssm::Client::new(&config),
            s3: aws_sdk_s3::Client::from_conf(s3_conf),
            iam: aws_sdk_iam::Client::new(&config),
            region: config.region().map(|r| r.to_string()),
            config,
        }
    }

    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// Whether credentials resolve at all (no call to AWS is made for static ones).
    pub async fn check_credentials(&self) -> Result<(), String> {
        use aws_credential_types::provider::ProvideCredentials;
        let provider = self
            .config
            .credentials_provider()
            .ok_or("no AWS credentials are configured (aws configure, AWS_PROFILE, or SSO)")?;
        provider
            .provide_credentials()
            .await
            .map(|_| ())
            .map_err(|e| format!("AWS credentials do not resolve: {e}"))
    }
}

/// A failed AWS call: which one, and what the service said.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{op} failed: {}{message}", code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default())]
pub struct CloudError {
    pub op: &'static str,
    pub code: Option<String>,
    pub message: String,
}

impl CloudError {
    pub fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    pub fn code_starts_with(&self, prefix: &str) -> bool {
        self.code.as_deref().is_some_and(|c| c.starts_with(prefix))
    }
}

/// Keep the service's code and message; never a Debug dump.
pub(crate) fn cloud_error<E, R>(
    op: &'static str,
    err: aws_sdk_ec2::error::SdkError<E, R>,
) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = err.code().map(str::to_string);
    let message = match err.message() {
        Some(m) => m.to_string(),
        None => aws_sdk_ec2::error::DisplayErrorContext(&err).to_string(),
    };
    CloudError { op, code, message }
}
