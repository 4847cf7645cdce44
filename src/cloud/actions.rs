//! Every AWS API action the client calls, in one list. `ami/iam/client-policy.json` must allow
//! each of them (a test checks it); `run-render --print-policy` prints that policy.

/// `service:Action` names, as IAM spells them.
pub const ACTIONS: &[&str] = &[
    // preflight
    "ec2:DescribeImages",
    "iam:GetInstanceProfile",
    "s3:ListBucket",
    // launch and terminate
    "ec2:RunInstances",
    "ec2:CreateTags",
    "iam:PassRole",
    "ec2:DescribeInstances",
    "ec2:TerminateInstances",
    // remote command
    "ssm:DescribeInstanceInformation",
    "ssm:SendCommand",
    "ssm:GetCommandInvocation",
    "ssm:CancelCommand",
    // logs and result
    "s3:GetObject",
];
