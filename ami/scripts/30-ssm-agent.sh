#!/bin/bash
# AMI build step 3: the SSM agent, through which run-render sends every command (no SSH).
# Canonical's Ubuntu AMIs ship it as a snap; install it if a source AMI lacks it, and make sure
# it starts at boot. The instance role needs AmazonSSMManagedInstanceCore (ami/iam/README.md).
set -euo pipefail

if ! snap list amazon-ssm-agent >/dev/null 2>&1; then
    snap install amazon-ssm-agent --classic
fi
systemctl enable snap.amazon-ssm-agent.amazon-ssm-agent.service
systemctl start snap.amazon-ssm-agent.amazon-ssm-agent.service || true
snap list amazon-ssm-agent
systemctl is-enabled snap.amazon-ssm-agent.amazon-ssm-agent.service
