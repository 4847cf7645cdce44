#!/bin/bash
# AMI build step 7 (the AWS Batch variant, packer variable ecs_ready=true; see docs/engines.md):
# the Amazon ECS agent, so AWS Batch can place jobs on instances of this AMI. Batch's managed
# compute environment writes ECS_CLUSTER through user data at launch (cloud-init), so nothing
# here names a cluster. With ecs_ready=false this step does nothing.
set -euo pipefail

: "${RTB_ECS_READY:?RTB_ECS_READY (packer variable ecs_ready) is required}"
: "${AWS_REGION:?AWS_REGION is required}"
if [ "${RTB_ECS_READY}" != "true" ]; then
    echo "ecs_ready=${RTB_ECS_READY}: no ECS agent (the EC2 engine's AMI)"
    exit 0
fi

# amazon-ecs-init, AWS's package for non-Amazon-Linux hosts, from the region's agent bucket.
deb=/tmp/amazon-ecs-init.deb
curl -fsSL --retry 5 -o "${deb}" \
    "https://s3.${AWS_REGION}.amazonaws.com/amazon-ecs-agent-${AWS_REGION}/amazon-ecs-init-latest.amd64.deb"
apt-get install -y -q "${deb}"
rm -f "${deb}"

install -d -m 0755 /etc/ecs
cat > /etc/ecs/ecs.config <<'CONFIG'
# Written by the rtb-support AMI build (ecs_ready=true). ECS_CLUSTER comes from AWS Batch's
# user data at launch.
# The rtb-support image is preloaded: use it, never pull it (no registry needed).
ECS_IMAGE_PULL_BEHAVIOR=prefer-cached
# Host volumes (MATLAB, the Docker socket, the batch file's volumes) are the job's; keep the
# preloaded image when the agent cleans up.
ECS_EXCLUDE_UNTRACKED_IMAGE=rtb-support:ami
ECS_ENABLE_CONTAINER_METADATA=true
# A job's AWS access is its job role's (the job definition's jobRoleArn; aws-batch setup makes
# <queue>-job), served by the agent to the job's container, whatever its network mode. The
# instance role itself has no S3 access.
ECS_ENABLE_TASK_IAM_ROLE=true
ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST=true
ECS_LOGLEVEL=info
CONFIG

# Batch scales its instances in itself, and a job may run longer than the EC2 engine's lifetime
# cap: that cap (rtb-max-lifetime, step 6) would end it. ECS-ready instances rely on Batch and
# the job definition's timeout instead.
systemctl disable rtb-max-lifetime.service
systemctl enable ecs.service
echo "RTB_ECS_READY=true" >> /etc/rtb-support/ami.env
echo "ECS agent installed: $(dpkg-query -W -f='${Version}' amazon-ecs-init)"
