//! A world whose client and instances act under the shipped IAM policies: the test's
//! principals registered with the world's IAM-enforcing proxy (tests/world/iam.py), the
//! client run with the scope's keys through it, and the instance profile holding the instance
//! role, so launching passes it (iam:PassRole) as on AWS.

use std::process::Command;

use rtb_testkit::IamScope;

use super::{run_render, World, PROFILE};

const INSTANCE_TRUST: &str = include_str!("../../ami/iam/instance-role-trust.json");

impl World {
    /// A world with a scope of its own at the IAM proxy: buckets made with
    /// [`World::input_bucket`] / [`World::output_bucket`] are the policies' INPUT_BUCKET /
    /// OUTPUT_BUCKET, and [`World::run_render`] runs the client as the scope's client.
    pub async fn enforced() -> World {
        let mut w = World::new().await;
        // The profile's role is what RunInstances passes (iam:PassRole, PassedToService
        // ec2.amazonaws.com); both calls fail harmlessly when another test made them first.
        let _ = w
            .iam
            .create_role()
            .role_name(PROFILE)
            .assume_role_policy_document(INSTANCE_TRUST)
            .send()
            .await;
        let _ = w
            .iam
            .add_role_to_instance_profile()
            .instance_profile_name(PROFILE)
            .role_name(PROFILE)
            .send()
            .await;
        w.enforcement = Some(IamScope::new());
        w
    }

    /// The test's principals at the IAM proxy (panics on a world that is not enforced).
    pub fn scope(&self) -> &IamScope {
        self.enforcement
            .as_ref()
            .expect("World::enforced() makes the IAM scope")
    }

    /// The client binary; as the scope's client principal when the world is enforced.
    pub fn run_render(&self, args: &[&str]) -> Command {
        let mut cmd = run_render(args);
        if let Some(scope) = &self.enforcement {
            scope.apply(&mut cmd);
        }
        cmd
    }

    /// The environment that makes a client command the scope's client principal (none for a
    /// world that is not enforced).
    pub fn client_env(&self) -> Vec<(&'static str, String)> {
        self.enforcement
            .as_ref()
            .map(IamScope::client_env)
            .unwrap_or_default()
    }

    /// A fault proxy in front of the endpoint the client uses: the IAM proxy when the world is
    /// enforced, so what the client sends is both faulted and evaluated.
    pub fn fault_proxy(&self) -> rtb_testkit::FaultProxy {
        match &self.enforcement {
            Some(scope) => rtb_testkit::FaultProxy::start_for(&scope.endpoint()),
            None => rtb_testkit::FaultProxy::start(),
        }
    }

    /// A fresh bucket the instance role reads from (and the client may list).
    pub async fn input_bucket(&self, prefix: &str) -> String {
        let b = self.bucket(prefix).await;
        if let Some(scope) = &self.enforcement {
            scope.allow_input_bucket(&b);
        }
        b
    }

    /// A fresh bucket the instance role writes to and the client reads logs and results from.
    pub async fn output_bucket(&self, prefix: &str) -> String {
        let b = self.bucket(prefix).await;
        if let Some(scope) = &self.enforcement {
            scope.allow_output_bucket(&b);
        }
        b
    }

    /// The client really went through enforcement, and nothing it or its instances did was
    /// refused.
    pub fn assert_no_denials(&self) {
        let scope = self.scope();
        assert!(
            scope.evaluated("client") > 0,
            "no call of the client was evaluated: it did not go through the IAM proxy"
        );
        scope.assert_no_denials();
    }

    /// SDK clients (EC2, SSM, S3) signing as the scope's client, through the IAM proxy.
    pub async fn client_sdk(
        &self,
    ) -> (aws_sdk_ec2::Client, aws_sdk_ssm::Client, aws_sdk_s3::Client) {
        let scope = self.scope();
        let creds = aws_sdk_ec2::config::Credentials::new(
            scope.client().key_id.clone(),
            scope.client().secret.clone(),
            None,
            None,
            "rtb-iam-scope",
        );
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .credentials_provider(creds)
            .endpoint_url(scope.endpoint())
            .region(aws_config::Region::new("us-east-1"))
            .load()
            .await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .force_path_style(true)
                .build(),
        );
        (
            aws_sdk_ec2::Client::new(&config),
            aws_sdk_ssm::Client::new(&config),
            s3,
        )
    }
}
