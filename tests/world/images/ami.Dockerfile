# rtb-world/ami:test: the test "AMI". Register it in MiniStack with
# ImageLocation=rtb-world/ami:test; each instance is then a container of this image.
# - /usr/bin/docker is a wrapper that ties every `docker run` peer to the instance's PID
#   namespace, so peers die with the instance as they would on AWS (ami/docker-wrapper.sh);
#   the real CLI is /usr/bin/docker.real.
# - /usr/local/sbin/rtb-deadline EPOCH stops the instance at EPOCH (ami/rtb-deadline.sh).
# No ENTRYPOINT on purpose: MiniStack then appends `sleep infinity` to keep the box up.
ARG BASE_IMAGE=rtb-world/base:bookworm
FROM ${BASE_IMAGE}
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8
COPY docker /usr/bin/docker.real
COPY docker-wrapper.sh /usr/bin/docker
COPY rtb-deadline.sh /usr/local/sbin/rtb-deadline
