#!/usr/bin/env bash
# The demo: a render job end to end on the local emulator, no AWS account needed.
# Sets up the world (tests/world/setup.sh: packages, MiniStack, images), registers the test
# AMI, uploads a small scene to S3, and runs `run-render`: it launches an "instance", runs the
# rtb-support container through SSM (GNU Octave standing in for MATLAB), streams the job's log
# live, saves the rendered image to S3 and terminates the instance. Then it shows the outputs
# and the instance's final state, runs a small batch of four renders (examples/demo.toml) and
# prints where the batch's page is, on disk and in S3.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(git -C "$here" rev-parse --show-toplevel 2>/dev/null || (cd "$here/../.." && pwd))
cd "$REPO"

bash tests/world/setup.sh
# setup.sh built the whole workspace; this is a no-op unless the sources changed since.
cargo build --quiet --workspace --bins
# shellcheck source=/dev/null
. .world/env

aws() { command aws --endpoint-url "$AWS_ENDPOINT_URL" "$@"; }

# The "private AMI": a local image registered in the emulator (once).
ami=$(aws ec2 describe-images --filters Name=name,Values=rtb-demo-ami \
    --query 'Images[0].ImageId' --output text)
if [[ $ami == None || -z $ami ]]; then
    ami=$(aws ec2 register-image --name rtb-demo-ami --image-location "$RTB_WORLD_AMI_IMAGE" \
        --query ImageId --output text)
fi
aws iam create-instance-profile --instance-profile-name run-render-instance >/dev/null 2>&1 || true
for b in rtb-demo-scenes rtb-demo-renders; do
    aws s3api create-bucket --bucket "$b" >/dev/null 2>&1 || true
done

# A tiny "scene": the image size and a light position for the renderer below.
scene=$(mktemp -d)
trap 'rm -rf "$scene"' EXIT
printf '96 64\n0.3 0.4\n' >"$scene/scene.txt"
aws s3 cp --quiet "$scene/scene.txt" s3://rtb-demo-scenes/scene-1/scene.txt

run="s3://rtb-demo-renders/run-$(date -u +%Y%m%dT%H%M%SZ)"
# The "render": shade a sphere row block by row block, printing progress as it goes, and write
# the image as a PPM file into OUTPUT_SCRATCH (copied to --output when the job ends).
read -r -d '' render <<'MATLAB' || true
s = load(fullfile(getenv('INPUT_SCRATCH'), 'scene.txt'));
w = s(1,1); h = s(1,2); light = [s(2,1) s(2,2) 1]; light = light / norm(light);
img = zeros(h, w, 3);
for block = 1:4
  for y = (block-1)*h/4+1 : block*h/4
    for x = 1:w
      px = (x - w/2) / (h/2.2); py = (y - h/2) / (h/2.2); r2 = px^2 + py^2;
      if r2 < 1
        n = [px -py sqrt(1 - r2)]; v = max(0, dot(n, light));
        img(y, x, :) = [0.2 + 0.8*v, 0.3 + 0.5*v, 0.9*v];
      end
    end
  end
  printf('rendered rows %d-%d of %d\n', (block-1)*h/4+1, block*h/4, h); fflush(stdout);
  pause(1);
end
fid = fopen(fullfile(getenv('OUTPUT_SCRATCH'), 'sphere.ppm'), 'w');
fprintf(fid, 'P6\n%d %d\n255\n', w, h);
fwrite(fid, uint8(255 * permute(img, [3 2 1])), 'uint8'); fclose(fid);
disp('wrote sphere.ppm');
MATLAB

echo
echo "demo: target/debug/run-render --ami $ami --image $RTB_WORLD_SUPPORT_IMAGE --interpreter octave-cli \\"
echo "          --input s3://rtb-demo-scenes/scene-1 --output $run --command '<the render above>'"
echo
status=0
target/debug/run-render --ami "$ami" --image "$RTB_WORLD_SUPPORT_IMAGE" --interpreter octave-cli \
    --instance-type t3.large --input s3://rtb-demo-scenes/scene-1 --output "$run" \
    --command "$render" --timeout 10m || status=$?

echo
echo "demo: outputs in $run:"
aws s3 ls --recursive "$run/"
echo
echo "demo: the demo's instances, as EC2 reports them:"
# shellcheck disable=SC2016 # a JMESPath literal, not a shell expansion
aws ec2 describe-instances --filters Name=tag:rtb:tool,Values=run-render Name=image-id,Values="$ami" \
    --query 'Reservations[].Instances[].[InstanceId,State.Name,Tags[?Key==`rtb:job-id`]|[0].Value]' \
    --output text | tail -n 5
echo
echo "demo: run-render exited with $status"
[[ $status == 0 ]] || exit "$status"

# A small batch: four renders of the sphere, one per row of examples/demo.csv (each its own
# light and colour), on a pool of two instances. Every run of the demo runs it again (--rerun).
echo
echo "demo: target/debug/run-render batch examples/demo.toml --ami $ami --image $RTB_WORLD_SUPPORT_IMAGE --rerun"
echo
batch_status=0
target/debug/run-render batch examples/demo.toml --ami "$ami" --image "$RTB_WORLD_SUPPORT_IMAGE" \
    --rerun || batch_status=$?
page="run-render-logs/demo/report.html"
page_s3="s3://rtb-demo-renders/demo-batch/_rtb-batch/demo/report.html"
echo
echo "demo: the batch's page (every job's picture, the instances' timeline, the durations):"
echo "  $REPO/$page"
aws s3 ls "$page_s3" >/dev/null && echo "  its copy in S3: $page_s3"
echo "demo: run-render batch exited with $batch_status"
exit "$batch_status"
