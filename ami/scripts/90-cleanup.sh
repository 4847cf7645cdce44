#!/bin/bash
# AMI build step 7 (last): leave nothing instance-specific or secret in the image.
# - cloud-init state, so every instance is a first boot (user data runs, host keys are new)
# - SSH host keys and every authorized_keys (Packer's temporary key included): run-render uses
#   SSM only; a lab that wants SSH passes a key pair at launch and cloud-init installs it
# - machine-id (systemd makes a new one at first boot), shell history, caches, build files
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

apt-get -y autoremove --purge
apt-get clean
rm -rf /var/lib/apt/lists/*

rm -rf /tmp/rtb-ami /var/tmp/matlab-install /var/tmp/rtb-support-image.tar*
rm -rf /root/.aws /root/.docker /root/.cache

# SSM agent: stop it so it writes nothing more; its logs and per-instance state go.
systemctl stop snap.amazon-ssm-agent.amazon-ssm-agent.service 2>/dev/null || true
rm -rf /var/log/amazon/ssm/* /var/lib/amazon/ssm/ipc 2>/dev/null || true

cloud-init clean --logs --seed
rm -f /etc/ssh/ssh_host_*
find /root /home -name authorized_keys -path '*/.ssh/*' -print -delete
find /root /home -maxdepth 2 -name '.*_history' -delete

truncate -s 0 /etc/machine-id
if [ -d /var/lib/dbus ]; then
    ln -sfn /etc/machine-id /var/lib/dbus/machine-id
fi

journalctl --rotate >/dev/null 2>&1 || true
journalctl --vacuum-time=1s >/dev/null 2>&1 || true
find /var/log -type f \( -name '*.gz' -o -name '*.[0-9]' \) -delete
find /var/log -type f -exec truncate -s 0 {} +

echo "== cleanup: /etc/rtb-support/ami.env"
cat /etc/rtb-support/ami.env
sync
