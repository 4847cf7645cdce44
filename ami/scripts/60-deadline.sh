#!/bin/bash
# AMI build step 6: the deadline tooling run-render relies on (ami/README.md, "Deadline contract"):
#   /usr/local/sbin/rtb-deadline EPOCH    (re)arm a one-shot power-off (= termination)
#   rtb-max-lifetime.service              at every boot: tag rtb:deadline, else boot + max lifetime
#   user data                             cloud-init runs the client's #!/bin/sh user data
# The files were uploaded to RTB_AMI_FILES by Packer's file provisioner.
set -euo pipefail

: "${RTB_AMI_FILES:=/tmp/rtb-ami}"
: "${RTB_MAX_LIFETIME_HOURS:?RTB_MAX_LIFETIME_HOURS (packer variable max_lifetime_hours) is required}"
case "${RTB_MAX_LIFETIME_HOURS}" in
    '' | *[!0-9]* | 0) echo "RTB_MAX_LIFETIME_HOURS must be a positive integer" >&2; exit 1 ;;
esac

install -m 0755 "${RTB_AMI_FILES}/rtb-deadline" /usr/local/sbin/rtb-deadline
install -m 0755 "${RTB_AMI_FILES}/rtb-max-lifetime" /usr/local/sbin/rtb-max-lifetime
install -m 0644 "${RTB_AMI_FILES}/rtb-max-lifetime.service" /etc/systemd/system/rtb-max-lifetime.service
install -d -m 0755 /etc/rtb-support
cat > /etc/rtb-support/max-lifetime.env <<ENV
# Written by the rtb-support AMI build. Hours after boot at which an instance of this AMI powers
# off (terminates) unless its rtb:deadline tag says otherwise. Read by rtb-max-lifetime.service.
RTB_MAX_LIFETIME_HOURS=${RTB_MAX_LIFETIME_HOURS}
ENV
echo "RTB_MAX_LIFETIME_HOURS=${RTB_MAX_LIFETIME_HOURS}" >> /etc/rtb-support/ami.env

systemctl daemon-reload
systemd-analyze verify /etc/systemd/system/rtb-max-lifetime.service
systemctl enable rtb-max-lifetime.service

# Self-test on the build instance: arm an hour ahead, look, disarm (a deadline left armed would
# power off this build instance).
# (Each deadline is a timer of its own, rtb-deadline-EPOCH-NONCE.timer: hence the pattern.)
/usr/local/sbin/rtb-deadline "$(($(date +%s) + 3600))"
systemctl is-active --quiet 'rtb-deadline*.timer'
/usr/local/sbin/rtb-deadline --status
/usr/local/sbin/rtb-deadline --cancel
if systemctl is-active --quiet 'rtb-deadline*.timer'; then
    echo "rtb-deadline --cancel left the timer armed" >&2
    exit 1
fi
RTB_DRY_RUN=1 /usr/local/sbin/rtb-max-lifetime

# The user data is a #!/bin/sh script run once per instance by cloud-init (scripts_user, in
# cloud-final). Refuse an image where that module is off.
if ! grep -Rqs 'scripts[-_]user' /etc/cloud/cloud.cfg /etc/cloud/cloud.cfg.d/; then
    echo "cloud-init's scripts_user module is not enabled: user data would not run" >&2
    exit 1
fi

# On the instance, for people: what the AMI holds and how its deadline works.
install -d -m 0755 /usr/local/share/doc/rtb-support
if [ -f "${RTB_AMI_FILES}/README.md" ]; then
    install -m 0644 "${RTB_AMI_FILES}/README.md" /usr/local/share/doc/rtb-support/README.md
fi
