//! SSM Run Command: agent status, sending the job script, reading its invocation.

use aws_sdk_ssm::types::InstanceInformationStringFilter;

use super::rate::{Family, Need};
use super::{cloud_error, Cloud, CloudError};

/// The document our scripts run with.
const DOCUMENT: &str = "AWS-RunShellScript";
/// AWS-RunShellScript's executionTimeout cap (48 h).
pub const MAX_EXECUTION_SECS: u64 = 172_800;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvocationStatus {
    Pending,
    Running,
    Success,
    Failed,
    Cancelled,
    TimedOut,
}

impl InvocationStatus {
    pub fn is_done(self) -> bool {
        !matches!(self, Self::Pending | Self::Running)
    }
}

/// One command's result on one instance.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub status: InvocationStatus,
    /// The script's exit code once it ended (-1 before).
    pub response_code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Cloud {
    /// Whether the instance's SSM agent reports Online.
    pub async fn agent_online(&self, id: &str) -> Result<bool, CloudError> {
        let mut pages = self
            .ssm
            .describe_instance_information()
            .filters(
                InstanceInformationStringFilter::builder()
                    .key("InstanceIds")
                    .values(id)
                    .build()
                    .map_err(|e| {
                        CloudError::local("SSM DescribeInstanceInformation", e.to_string())
                    })?,
            )
            .into_paginator()
            .send();
        // Every page: an endpoint that ignores the filter (or a future one that pages
        // anyway) must not hide the instance behind the first page.
        while let Some(page) = {
            self.budget.take(Family::SsmRead, Need::Poll).await;
            pages.next().await
        } {
            let page = page.map_err(|e| cloud_error("SSM DescribeInstanceInformation", e))?;
            if page.instance_information_list().iter().any(|i| {
                i.instance_id() == Some(id) && i.ping_status().map(|p| p.as_str()) == Some("Online")
            }) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Send a shell script; returns the command id. `execution_secs` bounds how long the
    /// script may run on the instance (capped at AWS's 48 h).
    pub async fn send_script(
        &self,
        id: &str,
        script: &str,
        execution_secs: u64,
        comment: &str,
    ) -> Result<String, CloudError> {
        let secs = execution_secs.clamp(1, MAX_EXECUTION_SECS).to_string();
        let comment: String = comment.chars().take(100).collect();
        self.budget.take(Family::SsmWrite, Need::Must).await;
        let out = self
            .ssm
            .send_command()
            .instance_ids(id)
            .document_name(DOCUMENT)
            .parameters("commands", vec![script.to_string()])
            .parameters("executionTimeout", vec![secs])
            .comment(comment)
            .send()
            .await
            .map_err(|e| cloud_error("SSM SendCommand", e))?;
        out.command()
            .and_then(|c| c.command_id())
            .map(str::to_string)
            .ok_or_else(|| CloudError::local("SSM SendCommand", "the answer named no command id"))
    }

    /// The invocation, or None while SSM does not know it yet (just after SendCommand).
    pub async fn invocation(
        &self,
        command: &str,
        id: &str,
    ) -> Result<Option<Invocation>, CloudError> {
        self.budget.take(Family::SsmRead, Need::Poll).await;
        let out = self
            .ssm
            .get_command_invocation()
            .command_id(command)
            .instance_id(id)
            .send()
            .await;
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                let e = cloud_error("SSM GetCommandInvocation", e);
                if e.is("InvocationDoesNotExist") {
                    return Ok(None);
                }
                return Err(e);
            }
        };
        use aws_sdk_ssm::types::CommandInvocationStatus as S;
        let status = match out.status() {
            Some(S::Success) => InvocationStatus::Success,
            Some(S::Failed) => InvocationStatus::Failed,
            Some(S::Cancelled) => InvocationStatus::Cancelled,
            Some(S::TimedOut) => InvocationStatus::TimedOut,
            Some(S::InProgress | S::Cancelling) => InvocationStatus::Running,
            _ => InvocationStatus::Pending,
        };
        Ok(Some(Invocation {
            status,
            response_code: out.response_code(),
            stdout: out
                .standard_output_content()
                .unwrap_or_default()
                .to_string(),
            stderr: out.standard_error_content().unwrap_or_default().to_string(),
        }))
    }

    /// How the commands `wanted` stand, from SSM's list of the commands sent since `since`
    /// (ListCommands, newest first, paged only until every one wanted is found): one call
    /// answers for a whole batch. A command missing from the answer is left out.
    pub async fn command_statuses(
        &self,
        since: std::time::SystemTime,
        wanted: &[&str],
    ) -> Result<std::collections::BTreeMap<String, InvocationStatus>, CloudError> {
        use aws_sdk_ssm::types::{CommandFilter, CommandFilterKey, CommandStatus as S};
        let filter = CommandFilter::builder()
            .key(CommandFilterKey::InvokedAfter)
            .value(humantime::format_rfc3339_seconds(since).to_string())
            .build()
            .map_err(|e| CloudError::local("SSM ListCommands", e.to_string()))?;
        let mut found = std::collections::BTreeMap::new();
        let mut pages = self
            .ssm
            .list_commands()
            .filters(filter)
            // The largest page SSM gives (its default is 50 too; said, not assumed).
            .max_results(50)
            .into_paginator()
            .send();
        while let Some(page) = {
            self.budget.take(Family::SsmRead, Need::Poll).await;
            pages.next().await
        } {
            let page = page.map_err(|e| cloud_error("SSM ListCommands", e))?;
            for c in page.commands() {
                let Some(cid) = c.command_id().filter(|c| wanted.contains(c)) else {
                    continue;
                };
                let status = match c.status() {
                    Some(S::Success) => InvocationStatus::Success,
                    Some(S::Failed) => InvocationStatus::Failed,
                    Some(S::Cancelled) => InvocationStatus::Cancelled,
                    Some(S::TimedOut) => InvocationStatus::TimedOut,
                    Some(S::InProgress | S::Cancelling) => InvocationStatus::Running,
                    _ => InvocationStatus::Pending,
                };
                found.insert(cid.to_string(), status);
            }
            if found.len() == wanted.len() {
                break;
            }
        }
        Ok(found)
    }

    pub async fn cancel(&self, command: &str, id: &str) -> Result<(), CloudError> {
        self.budget.take(Family::SsmWrite, Need::Must).await;
        self.ssm
            .cancel_command()
            .command_id(command)
            .instance_ids(id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| cloud_error("SSM CancelCommand", e))
    }
}
