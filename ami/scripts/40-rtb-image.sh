#!/bin/bash
# AMI build step 4: put the rtb-support image into the AMI's Docker, so instances start jobs
# without a registry.
#
# RTB_SUPPORT_IMAGE is either
#   s3://bucket/key.tar[.gz]  a `docker save` archive (labs without a registry): docker load
#   an image reference        docker pull (ECR references log in with the build instance's role)
# The image is also tagged rtb-support:ami, and both names are recorded in /etc/rtb-support/ami.env
# (RTB_SUPPORT_IMAGE, RTB_SUPPORT_LOCAL_IMAGE) for run-render's job script.
set -euo pipefail

: "${RTB_SUPPORT_IMAGE:?RTB_SUPPORT_IMAGE (packer variable rtb_support_image) is required}"
: "${AWS_REGION:?AWS_REGION is required}"
local_tag=rtb-support:ami

case "${RTB_SUPPORT_IMAGE}" in
    s3://*)
        archive=/var/tmp/rtb-support-image.tar
        case "${RTB_SUPPORT_IMAGE}" in
            *.gz | *.tgz) archive=${archive}.gz ;;
        esac
        echo "== rtb-support image: loading ${RTB_SUPPORT_IMAGE}"
        aws s3 cp --only-show-errors "${RTB_SUPPORT_IMAGE}" "${archive}"
        loaded=$(docker load -i "${archive}")
        echo "${loaded}"
        rm -f "${archive}"
        # "Loaded image: name:tag" (saved by name) or "Loaded image ID: sha256:..." (saved by id)
        ref=$(printf '%s\n' "${loaded}" | sed -n 's/^Loaded image: //p; s/^Loaded image ID: //p' | head -n 1)
        [ -n "${ref}" ] || { echo "docker load named no image" >&2; exit 1; }
        ;;
    *)
        ref=${RTB_SUPPORT_IMAGE}
        registry=${ref%%/*}
        if [[ "${registry}" =~ ^[0-9]{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com$ ]]; then
            ecr_region=$(printf '%s' "${registry}" | cut -d. -f4)
            aws ecr get-login-password --region "${ecr_region}" \
                | docker login --username AWS --password-stdin "${registry}"
        fi
        echo "== rtb-support image: pulling ${ref}"
        docker pull "${ref}"
        docker logout "${registry}" >/dev/null 2>&1 || true
        ;;
esac

docker tag "${ref}" "${local_tag}"
entrypoint=$(docker image inspect --format '{{json .Config.Entrypoint}}' "${local_tag}")
echo "== rtb-support image: ${ref} as ${local_tag}, entrypoint ${entrypoint}"
case "${entrypoint}" in
    *rtb-job*) ;;
    *) echo "warning: ${ref} does not have the rtb-job entrypoint" >&2 ;;
esac

{
    echo "RTB_SUPPORT_IMAGE='${ref}'"
    echo "RTB_SUPPORT_LOCAL_IMAGE='${local_tag}'"
} >> /etc/rtb-support/ami.env
rm -f /root/.docker/config.json
