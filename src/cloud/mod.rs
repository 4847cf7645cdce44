//! The seam between the job lifecycle and AWS: one [`Cloud`] holding the SDK clients, and
//! small operations over them (one file per service) that return plain values and
//! [`CloudError`]s. The lifecycle code above reads as the state machine it is.

pub mod actions;
mod ec2;
mod iam;
pub mod pricing;
pub mod rate;
mod s3;
mod ssm;

use std::time::Duration;

pub use ec2::{
    ImageInfo, InstanceState, LaunchError, Lifecycle, Pool, Select, TaggedInstance,
    LAUNCH_TOKEN_TAG,
};
pub use ssm::{Invocation, InvocationStatus, MAX_EXECUTION_SECS};

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_smithy_types::timeout::TimeoutConfig;

/// The SDK clients for one region and account.
#[derive(Clone)]
pub struct Cloud {
    ec2: aws_sdk_ec2::Client,
    ssm: aws_sdk_ssm::Client,
    s3: aws_sdk_s3::Client,
    iam: aws_sdk_iam::Client,
    region: Option<String>,
    config: aws_config::SdkConfig,
    /// The client's budget of calls, shared by every clone (rate.rs).
    budget: std::sync::Arc<rate::Budget>,
}

/// Where to connect: the flags, then the usual AWS variables and files.
#[derive(Debug, Clone, Default)]
pub struct Connect {
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
    /// How long one call (all its attempts) may take; [`CALL_LIMIT`] when not given.
    pub call_limit: Option<Duration>,
}

/// How long one AWS call may take, all the SDK's attempts included. An API that stops
/// answering must not hold the client forever: each call ends within this, and the lifecycle
/// gives up after a bounded run of failed calls.
pub const CALL_LIMIT: Duration = Duration::from_secs(60);
/// A TCP connect that takes longer than this is not going to work.
const CONNECT_LIMIT: Duration = Duration::from_secs(5);

impl Cloud {
    /// Build clients from the default chain (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL, SSO,
    /// instance roles...), with the flags taking precedence.
    pub async fn connect(c: &Connect) -> Cloud {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .timeout_config(timeouts(c.call_limit.unwrap_or(CALL_LIMIT)));
        if let Some(r) = &c.region {
            loader = loader.region(aws_config::Region::new(r.clone()));
        }
        if let Some(p) = &c.profile {
            loader = loader.profile_name(p);
        }
        if let Some(e) = &c.endpoint_url {
            loader = loader.endpoint_url(e);
        }
        Cloud::from_config(loader.load().await)
    }

    /// Clients from a ready `SdkConfig` (tests build one over a replay HTTP client).
    pub fn from_config(config: aws_config::SdkConfig) -> Cloud {
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
            budget: std::sync::Arc::default(),
        }
    }

    /// The configuration the clients were built from (another engine builds its own from it).
    pub fn config(&self) -> &aws_config::SdkConfig {
        &self.config
    }

    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// The client's budget of calls (what it made and waited, per family).
    pub fn budget(&self) -> &rate::Budget {
        &self.budget
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
            .map_err(|e| {
                format!(
                    "AWS credentials do not resolve: {}",
                    rtb_model::errors::chain(&e)
                )
            })
    }
}

/// Per-attempt and per-call limits: the SDK makes up to 3 attempts inside one call.
fn timeouts(call: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_LIMIT.min(call))
        .operation_attempt_timeout(call / 3)
        .operation_timeout(call)
        .build()
}

/// How a call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The service answered with an error (its HTTP status).
    Refused { status: u16 },
    /// No usable answer: no connection, a timeout, an answer cut off. The request may or may
    /// not have taken effect.
    NoAnswer,
}

/// A failed AWS call: which one, and what the service said.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{op} failed: {}{message}", code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default())]
pub struct CloudError {
    pub op: &'static str,
    pub code: Option<String>,
    pub message: String,
    pub failure: Failure,
}

/// Error codes that mean "slow down", whatever the service.
const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "SlowDown",
    "RequestThrottled",
];

/// Error codes that mean the credentials stopped working (they may come back, e.g. after an
/// SSO login in another terminal).
const CREDENTIALS: &[&str] = &[
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "AuthFailure",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
];

impl CloudError {
    pub fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    pub fn code_starts_with(&self, prefix: &str) -> bool {
        self.code.as_deref().is_some_and(|c| c.starts_with(prefix))
    }

    pub fn is_throttling(&self) -> bool {
        self.code
            .as_deref()
            .is_some_and(|c| THROTTLING.contains(&c))
    }

    pub fn is_credentials(&self) -> bool {
        self.code
            .as_deref()
            .is_some_and(|c| CREDENTIALS.contains(&c))
    }

    /// Worth asking again: no answer, throttling, or a fault on the service's side.
    pub fn is_transient(&self) -> bool {
        match self.failure {
            Failure::NoAnswer => true,
            Failure::Refused { status } => status >= 500 || self.is_throttling(),
        }
    }

    /// The request may have been carried out although no success came back: no answer, or
    /// a fault on the service's side (throttled requests are refused before they run).
    pub fn may_have_run(&self) -> bool {
        match self.failure {
            Failure::NoAnswer => true,
            Failure::Refused { status } => status >= 500 && !self.is_throttling(),
        }
    }

    /// A call that got no answer (or was not made because AWS had stopped answering).
    pub(crate) fn no_answer(op: &'static str, message: impl Into<String>) -> CloudError {
        CloudError {
            op,
            code: None,
            message: message.into(),
            failure: Failure::NoAnswer,
        }
    }

    pub(crate) fn local(op: &'static str, message: impl Into<String>) -> CloudError {
        CloudError {
            op,
            code: None,
            message: message.into(),
            failure: Failure::Refused { status: 0 },
        }
    }
}

/// Keep the service's code and message; never a Debug dump.
pub(crate) fn cloud_error<E, R>(
    op: &'static str,
    err: aws_sdk_ec2::error::SdkError<E, R>,
) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + HttpStatus + 'static,
{
    use aws_sdk_ec2::error::SdkError;
    let code = err.code().map(str::to_string);
    let (failure, message) = match &err {
        SdkError::ServiceError(s) => (
            Failure::Refused {
                status: s.raw().status(),
            },
            err.message()
                .map(str::to_string)
                .unwrap_or_else(|| format!("HTTP {}", s.raw().status())),
        ),
        SdkError::TimeoutError(_) => (Failure::NoAnswer, "AWS did not answer in time".to_string()),
        SdkError::DispatchFailure(d) => (
            Failure::NoAnswer,
            format!(
                "no answer from AWS ({})",
                d.as_connector_error()
                    .map(|c| rtb_model::errors::chain(c))
                    .unwrap_or_else(|| rtb_model::errors::chain(&err))
            ),
        ),
        SdkError::ResponseError(_) => (
            Failure::NoAnswer,
            format!(
                "the answer from AWS was cut off or unreadable ({})",
                rtb_model::errors::chain(&err)
            ),
        ),
        // Building the request failed before anything was sent (e.g. no credentials).
        _ => (
            Failure::Refused { status: 0 },
            rtb_model::errors::chain(&err),
        ),
    };
    CloudError {
        op,
        code,
        message,
        failure,
    }
}

/// The HTTP status of a raw response, over the SDK's response type.
pub(crate) trait HttpStatus {
    fn status(&self) -> u16;
}

impl HttpStatus for aws_smithy_runtime_api::http::Response {
    fn status(&self) -> u16 {
        self.status().as_u16()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(code: &str, failure: Failure) -> CloudError {
        CloudError {
            op: "X",
            code: Some(code.into()),
            message: "m".into(),
            failure,
        }
    }

    #[test]
    fn errors_are_classified() {
        let table = [
            // (code, failure, transient, may have run)
            (
                "RequestLimitExceeded",
                Failure::Refused { status: 503 },
                true,
                false,
            ),
            (
                "ThrottlingException",
                Failure::Refused { status: 400 },
                true,
                false,
            ),
            (
                "InternalError",
                Failure::Refused { status: 500 },
                true,
                true,
            ),
            ("Unavailable", Failure::Refused { status: 503 }, true, true),
            (
                "InvalidParameterValue",
                Failure::Refused { status: 400 },
                false,
                false,
            ),
            (
                "ExpiredToken",
                Failure::Refused { status: 400 },
                false,
                false,
            ),
            ("", Failure::NoAnswer, true, true),
        ];
        for (code, failure, transient, ran) in table {
            let e = err(code, failure);
            assert_eq!(e.is_transient(), transient, "{code}");
            assert_eq!(e.may_have_run(), ran, "{code}");
        }
        assert!(err("ExpiredToken", Failure::Refused { status: 400 }).is_credentials());
    }
}
