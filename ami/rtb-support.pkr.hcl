# The private AMI that run-render launches: Ubuntu 24.04 LTS + Docker + the SSM agent + the lab's
# MATLAB + the rtb-support image + the deadline tooling. See ami/README.md.
#
#   packer init ami/
#   packer build -var region=us-east-1 -var matlab_release=R2024b \
#       -var matlab_installer_s3=s3://my-lab-artifacts/matlab/R2024b.tar.gz \
#       -var matlab_license_server=27000@license.example.edu \
#       -var rtb_support_image=s3://my-lab-artifacts/images/rtb-support-0.1.0.tar.gz \
#       -var build_instance_profile=rtb-ami-builder ami/
#
# Why Ubuntu 24.04 LTS (and not Amazon Linux 2023): MATLAB runs inside the rtb-support container,
# so the host needs only Docker, the SSM agent and systemd, which both offer. Ubuntu wins on the
# rest: Canonical's AMIs ship the SSM agent (snap) and cloud-init, Docker comes from Ubuntu's own
# archive, it is a MathWorks-supported MATLAB platform (a lab can still run MATLAB on the host to
# debug), NVIDIA's drivers and container toolkit document it first for GPU renderers, and the
# labs' original AMI was Ubuntu. Canonical publishes its AMIs under owner 099720109477.

# Only functions that Packer 1.6 already had are used (no regex/can/tostring), so ami/check.sh can
# validate this file with Debian's packer package as well as with a current Packer.
packer {
  required_version = ">= 1.9.0"
  required_plugins {
    amazon = {
      version = ">= 1.3.0"
      source  = "github.com/hashicorp/amazon"
    }
  }
}

variable "region" {
  type        = string
  description = "AWS region to build in (the AMI is private to this region; copy it for others)."
  default     = "us-east-1"
}

variable "instance_type" {
  type        = string
  description = "Build instance type. The MATLAB installer wants >= 8 GiB of memory."
  default     = "m6i.xlarge"
}

variable "subnet_id" {
  type        = string
  description = "Subnet for the build instance; empty: the default VPC. It needs a route to S3, the SSM endpoints and, for the smoke test, the license server."
  default     = ""
}

variable "ssh_interface" {
  type        = string
  description = "How Packer reaches the build instance: empty (public IP if any, else private), public_ip, private_ip or session_manager (needs the session-manager-plugin where Packer runs)."
  default     = ""
}

variable "build_instance_profile" {
  type        = string
  description = "Instance profile of the build instance: must read the installer, license and image objects in S3 (and pull from ECR if the image is there). Empty: none."
  default     = ""
}

variable "volume_size_gb" {
  type        = number
  description = "Root volume of the AMI, GiB. MATLAB with toolboxes is 20-35 GB, and the installer is staged on the same disk."
  default     = 100
}

variable "matlab_installer_s3" {
  type        = string
  description = "s3:// URL of the lab's MATLAB: a tar(.gz) of an installed tree, or an installer as .zip, .iso, tar(.gz) or a folder ending in /."

  validation {
    condition     = substr(var.matlab_installer_s3, 0, 5) == "s3://" && length(split("/", var.matlab_installer_s3)) >= 4
    error_message = "The matlab_installer_s3 value must be an s3://bucket/key URL."
  }
}

variable "matlab_release" {
  type        = string
  description = "MATLAB release, like R2024b: installs to /usr/local/MATLAB/<release>."

  validation {
    condition     = length(var.matlab_release) == 6 && substr(var.matlab_release, 0, 3) == "R20" && contains(["a", "b"], substr(var.matlab_release, 5, 1))
    error_message = "The matlab_release value must look like R2024b."
  }
}

variable "matlab_license_server" {
  type        = string
  description = "Network license manager as port@host (writes licenses/network.lic). Empty when matlab_license_file_s3 is used or the tree holds its license."
  default     = ""
}

variable "matlab_license_file_s3" {
  type        = string
  description = "s3:// URL of a license file (licenses/license.lic). Empty: use matlab_license_server."
  default     = ""
}

variable "matlab_file_installation_key" {
  type        = string
  description = "File installation key, needed when matlab_installer_s3 is an installer."
  default     = ""
  sensitive   = true
}

variable "matlab_products" {
  type        = string
  description = "Installer products, space separated (MathWorks' names, e.g. \"MATLAB Image_Processing_Toolbox\"). Empty: every product the key allows."
  default     = ""
}

variable "matlab_smoke_test" {
  type        = bool
  description = "Start the installed MATLAB once in the rtb-support image (needs the license server reachable from subnet_id)."
  default     = true
}

variable "rtb_support_image" {
  type        = string
  description = "The rtb-support image: an s3:// URL of a `docker save` tar(.gz) to docker load, or an image reference to docker pull (ECR works with build_instance_profile)."
}

variable "max_lifetime_hours" {
  type        = number
  description = "Instances power off (terminate) this many hours after boot unless their rtb:deadline tag says otherwise."
  default     = 48

  validation {
    condition     = var.max_lifetime_hours >= 1 && floor(var.max_lifetime_hours) == var.max_lifetime_hours
    error_message = "The max_lifetime_hours value must be a whole number of hours, at least 1."
  }
}

variable "ecs_ready" {
  type        = bool
  description = "The AWS Batch variant: also install the Amazon ECS agent (and rely on Batch, not the lifetime cap, to end instances). Names the AMI <prefix>-ecs-... See docs/engines.md."
  default     = false
}

variable "ami_name_prefix" {
  type        = string
  description = "AMI names are <prefix>-<matlab_release>-<UTC timestamp>."
  default     = "rtb-support"
}

variable "ami_users" {
  type        = list(string)
  description = "Other AWS account ids allowed to launch the AMI (it stays private)."
  default     = []
}

variable "tags" {
  type        = map(string)
  description = "Extra tags for the AMI and its snapshot."
  default     = {}
}

locals {
  timestamp = formatdate("YYYYMMDD-hhmmss", timestamp())
  ami_name  = "${var.ami_name_prefix}${var.ecs_ready ? "-ecs" : ""}-${var.matlab_release}-${local.timestamp}"
  ami_tags = merge({
    Name                     = local.ami_name
    "rtb:ami"                = "rtb-support"
    "rtb:matlab-release"     = var.matlab_release
    "rtb:max-lifetime-hours" = "${var.max_lifetime_hours}"
    "rtb:ecs-ready"          = "${var.ecs_ready}"
    "rtb:source-ami"         = "{{ .SourceAMI }}"
  }, var.tags)
}

source "amazon-ebs" "rtb_support" {
  region                 = var.region
  instance_type          = var.instance_type
  subnet_id              = var.subnet_id
  iam_instance_profile   = var.build_instance_profile
  ssh_username           = "ubuntu"
  ssh_interface          = var.ssh_interface
  ssh_timeout            = "15m"
  ami_name               = local.ami_name
  ami_description        = "run-render rtb-support: Ubuntu 24.04, Docker, SSM agent, MATLAB ${var.matlab_release}, rtb-support image, deadline tooling"
  ami_users              = var.ami_users
  tags                   = local.ami_tags
  snapshot_tags          = local.ami_tags
  shutdown_behavior      = "terminate"
  ena_support            = true
  sriov_support          = true
  aws_polling {
    delay_seconds = 30
    max_attempts  = 120
  }

  source_ami_filter {
    filters = {
      name                = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"
      root-device-type    = "ebs"
      virtualization-type = "hvm"
    }
    owners      = ["099720109477"]
    most_recent = true
  }

  launch_block_device_mappings {
    device_name           = "/dev/sda1"
    volume_size           = var.volume_size_gb
    volume_type           = "gp3"
    iops                  = 3000
    throughput            = 125
    delete_on_termination = true
  }

  # The build instance itself: IMDSv2 only.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  # The builder is not a run-render instance: no rtb:tool tag, so `run-render cleanup` leaves it.
  run_tags = {
    Name = "packer-build-${local.ami_name}"
  }
}

build {
  name    = "rtb-support"
  sources = ["source.amazon-ebs.rtb_support"]

  provisioner "shell" {
    inline = ["mkdir -p /tmp/rtb-ami"]
  }

  provisioner "file" {
    sources = [
      "${path.root}/scripts/rtb-deadline",
      "${path.root}/scripts/rtb-max-lifetime",
      "${path.root}/scripts/rtb-max-lifetime.service",
      "${path.root}/README.md",
    ]
    destination = "/tmp/rtb-ami/"
  }

  provisioner "shell" {
    # Variables go through a file Packer deletes afterwards, not the command line (the key).
    use_env_var_file = true
    execute_command  = "chmod +x {{ .Path }}; sudo bash -c '. {{ .EnvVarFile }} && bash {{ .Path }}'"
    environment_vars = [
      "AWS_REGION=${var.region}",
      "RTB_AMI_FILES=/tmp/rtb-ami",
      "RTB_SUPPORT_IMAGE=${var.rtb_support_image}",
      "MATLAB_INSTALLER_S3=${var.matlab_installer_s3}",
      "MATLAB_RELEASE=${var.matlab_release}",
      "MATLAB_LICENSE_SERVER=${var.matlab_license_server}",
      "MATLAB_LICENSE_FILE_S3=${var.matlab_license_file_s3}",
      "MATLAB_FILE_INSTALLATION_KEY=${var.matlab_file_installation_key}",
      "MATLAB_PRODUCTS=${var.matlab_products}",
      "MATLAB_SMOKE_TEST=${var.matlab_smoke_test}",
      "RTB_MAX_LIFETIME_HOURS=${var.max_lifetime_hours}",
      "RTB_ECS_READY=${var.ecs_ready}",
    ]
    scripts = [
      "${path.root}/scripts/10-base.sh",
      "${path.root}/scripts/20-docker.sh",
      "${path.root}/scripts/30-ssm-agent.sh",
      "${path.root}/scripts/40-rtb-image.sh",
      "${path.root}/scripts/50-matlab.sh",
      "${path.root}/scripts/60-deadline.sh",
      "${path.root}/scripts/70-ecs-agent.sh",
      "${path.root}/scripts/90-cleanup.sh",
    ]
  }

  post-processor "manifest" {
    output     = "${path.root}/packer-manifest.json"
    strip_path = true
    custom_data = {
      matlab_release     = var.matlab_release
      rtb_support_image  = var.rtb_support_image
      max_lifetime_hours = "${var.max_lifetime_hours}"
      ecs_ready          = "${var.ecs_ready}"
    }
  }
}
