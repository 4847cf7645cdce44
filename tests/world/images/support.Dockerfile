# rtb-world/support:test: the rtb-support image as tests use it: Octave (for MATLAB), the
# docker CLI, and the job runner from this checkout (target/debug/rtb-job). Rebuilt by every
# tests/world/setup.sh run from a temp context holding the two binaries.
ARG OCTAVE_IMAGE=rtb-world/octave:bookworm
FROM ${OCTAVE_IMAGE}
COPY docker /usr/bin/docker
COPY rtb-job /usr/local/bin/rtb-job
ENTRYPOINT ["/usr/local/bin/rtb-job"]
