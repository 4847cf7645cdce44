#!/bin/bash
# AMI build step 2: Docker engine, from Ubuntu's own archive (docker.io: no third-party apt
# repository or key to maintain). The rtb-support container runs on it, and renderers it starts
# run beside it through /var/run/docker.sock.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

apt-get install -y --no-install-recommends docker.io

# Bounded container logs: the runner streams its log to S3, these are only a local copy.
install -d -m 0755 /etc/docker
cat > /etc/docker/daemon.json <<'JSON'
{
  "log-driver": "json-file",
  "log-opts": { "max-size": "50m", "max-file": "3" }
}
JSON

systemctl enable docker.service containerd.service
systemctl restart docker.service
docker info --format 'docker {{.ServerVersion}}, storage {{.Driver}}, cgroup {{.CgroupVersion}}'
