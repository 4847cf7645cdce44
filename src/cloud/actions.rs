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
    // only as part of RunInstances (its TagSpecifications): nothing is tagged after launch
    "ec2:CreateTags",
    "iam:PassRole",
    "ec2:DescribeInstances",
    "ec2:TerminateInstances",
    // remote command
    "ssm:DescribeInstanceInformation",
    "ssm:SendCommand",
    "ssm:GetCommandInvocation",
    "ssm:CancelCommand",
    // a batch's watch: how its commands stand, in one call for the batch
    "ssm:ListCommands",
    // logs and result
    "s3:GetObject",
    // what a job cost, beside its result (cost.json in its records folder), a batch's records
    // of who runs where (a pool instance's tags cannot change), and its page next to its
    // outputs (`_rtb-batch/<batch>/report.html`)
    "s3:PutObject",
    // prices: the Price List API (asked in us-east-1) and spot price history
    "pricing:GetProducts",
    "ec2:DescribeSpotPriceHistory",
];

/// The AWS Batch engine's calls while submitting, following and stopping a batch
/// (`engine::aws_batch`). `ami/iam/client-batch-policy.json` allows exactly these.
pub const BATCH_ACTIONS: &[&str] = &[
    // preflight
    "batch:DescribeJobQueues",
    "batch:DescribeComputeEnvironments",
    // the job definition, found or registered (tagged as it is registered), with the
    // queue's job role passed to it
    "batch:DescribeJobDefinitions",
    "batch:RegisterJobDefinition",
    "batch:TagResource",
    "iam:PassRole",
    // submit, with the manifest written first
    "s3:PutObject",
    "batch:SubmitJob",
    // follow and stop
    "batch:ListJobs",
    "batch:DescribeJobs",
    "batch:TerminateJob",
    // what a job cost: the EC2 instance of each attempt's ECS container instance (then
    // client-policy.json's ec2:DescribeInstances and the price APIs, as on EC2)
    "ecs:DescribeContainerInstances",
];

/// `run-render aws-batch setup` / `teardown`: an administrator's calls, once per queue.
/// `ami/iam/batch-setup-policy.json` allows exactly these.
pub const BATCH_SETUP_ACTIONS: &[&str] = &[
    "batch:DescribeComputeEnvironments",
    "batch:DescribeJobQueues",
    "batch:CreateComputeEnvironment",
    "batch:UpdateComputeEnvironment",
    "batch:DeleteComputeEnvironment",
    "batch:CreateJobQueue",
    "batch:UpdateJobQueue",
    "batch:DeleteJobQueue",
    "batch:TagResource",
    "iam:GetRole",
    "iam:GetInstanceProfile",
    "iam:CreateRole",
    "iam:TagRole",
    "iam:DeleteRole",
    "iam:PutRolePolicy",
    "iam:ListRolePolicies",
    "iam:DeleteRolePolicy",
    "iam:PassRole",
    "iam:CreateInstanceProfile",
    "iam:DeleteInstanceProfile",
    "iam:AddRoleToInstanceProfile",
    "iam:RemoveRoleFromInstanceProfile",
];
