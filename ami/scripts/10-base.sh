#!/bin/bash
# AMI build step 1: base system (Ubuntu 24.04 LTS, run as root by Packer).
# - waits for cloud-init's first boot to finish (it holds the apt lock)
# - upgrades the packages of the source AMI
# - installs the few tools the later steps need: unzip (MATLAB .zip installers), the AWS CLI
#   (snap: Ubuntu 24.04 has no awscli .deb) to fetch the installer, license and image from S3
# - disables the apt timers: instances live hours, not weeks; updates come from rebuilding the
#   AMI (ami/README.md), and a background upgrade must not slow or restart a running render
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

echo "== base: waiting for cloud-init"
cloud-init status --wait >/dev/null || true

. /etc/os-release
echo "== base: ${PRETTY_NAME}"
case "${VERSION_ID}" in
    22.04 | 24.04) ;;
    *) echo "warning: built and checked on Ubuntu 22.04/24.04, this is ${VERSION_ID}" >&2 ;;
esac

apt-get update
apt-get -y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold upgrade
apt-get install -y --no-install-recommends ca-certificates curl unzip

if ! command -v aws >/dev/null 2>&1; then
    snap install aws-cli --classic
fi
aws --version

systemctl disable --now apt-daily.timer apt-daily-upgrade.timer unattended-upgrades.service 2>/dev/null || true

install -d -m 0755 /etc/rtb-support
{
    echo "# Written by the rtb-support AMI build (ami/scripts). Sourced by run-render's job script."
    echo "RTB_AMI_BUILD_TIME=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "RTB_AMI_BASE_OS='${PRETTY_NAME}'"
} > /etc/rtb-support/ami.env
chmod 0644 /etc/rtb-support/ami.env
