# rtb-world/octave:bookworm: GNU Octave on the locally bootstrapped Debian base (no registry
# needed). Stands in for MATLAB in tests. Built once by tests/world/setup.sh (~1 min); the
# build is redone only when this file changes.
ARG BASE_IMAGE=rtb-world/base:bookworm
FROM ${BASE_IMAGE}
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends octave ca-certificates \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*
