#!/bin/bash
# /usr/bin/docker in the test "AMI" image (rtb-world/ami:test); the real CLI is
# /usr/bin/docker.real.
#
# On AWS every container a job starts dies with the machine. In the emulator an instance is
# a container, and a container it starts through the host's Docker socket is a *peer* that
# would outlive it. To keep AWS's behaviour, every `docker run` / `docker container run` gets
# `--pid container:<this instance container>`: the peer joins the instance's PID namespace,
# and when the instance's PID 1 ends (TerminateInstances, or rtb-deadline) the kernel kills
# the peer too (exit 137). `--init` is dropped: the peer is not PID 1 of its namespace, so an
# init of its own would reap nothing. Every other command is passed through unchanged.
# In the test world, the peer's instance metadata endpoint names the instance (see below).
set -euo pipefail

real=/usr/bin/docker.real

# Id of the container this runs in. With --network host, /etc/hostname holds the host's
# name, not the short id, but it is always bind-mounted from
# /var/lib/docker/containers/<id>/hostname, which /proc/self/mountinfo shows.
instance_container() {
    local id
    id=$(sed -n 's|.*/containers/\([0-9a-f]\{64\}\)/hostname /etc/hostname .*|\1|p' \
        /proc/self/mountinfo | head -n 1)
    if [[ -z $id ]]; then
        id=$(cat /etc/hostname 2>/dev/null || true)
        [[ $id =~ ^[0-9a-f]{12}$ ]] || id=
    fi
    if [[ -z $id ]]; then
        echo "docker (rtb-world wrapper): cannot tell this instance's container id;" \
            "refusing to start a peer that would outlive the instance" >&2
        exit 125
    fi
    printf '%s\n' "$id"
}

args=("$@")
n=${#args[@]}
i=0

# Global options (docker [OPTIONS] COMMAND): skip them, with the value of those that take one.
while ((i < n)); do
    case ${args[i]} in
        --config | -c | --context | -H | --host | -l | --log-level | --tlscacert | --tlscert | --tlskey)
            i=$((i + 2)) ;;
        -*) i=$((i + 1)) ;;
        *) break ;;
    esac
done
((i < n)) || exec "$real" "$@"

if [[ ${args[i]} == run ]]; then
    i=$((i + 1))
elif [[ ${args[i]} == container && $((i + 1)) -lt $n && ${args[i + 1]} == run ]]; then
    i=$((i + 2))
else
    exec "$real" "$@"
fi

id=$(instance_container)
out=("${args[@]:0:i}" --pid "container:$id")

# The test world's IAM proxy (tests/world/iam.py) tells instances apart by the metadata
# endpoint their containers use: with RTB_WORLD_IMDS_BY_INSTANCE=<proxy>/_imds/ set (setup.sh
# does), a peer started with a bare `-e AWS_EC2_METADATA_SERVICE_ENDPOINT` gets
# <proxy>/_imds/<this instance's id>/, and the credentials it fetches there are the instance's.
if [[ -n ${RTB_WORLD_IMDS_BY_INSTANCE:-} ]]; then
    iid=$("$real" inspect -f '{{index .Config.Labels "instance_id"}}' "$id" 2>/dev/null || true)
    if [[ $iid =~ ^i-[0-9a-zA-Z]+$ ]]; then
        export AWS_EC2_METADATA_SERVICE_ENDPOINT="${RTB_WORLD_IMDS_BY_INSTANCE}${iid}/"
    fi
fi

# `run` options up to the image name: drop --init, keep everything else (and every word
# from the image on, so a command's own `--init` is left alone).
while ((i < n)); do
    a=${args[i]}
    case $a in
        --init | --init=*)
            i=$((i + 1))
            continue ;;
        --) out+=("$a"); i=$((i + 1)); break ;;
        --*=*) out+=("$a") ;;
        --detach | --interactive | --tty | --rm | --privileged | --publish-all | --read-only | \
            --no-healthcheck | --oom-kill-disable | --sig-proxy | --disable-content-trust | \
            --quiet | --help | --use-api-socket)
            out+=("$a") ;;
        --*)
            # Every other long option takes a value.
            out+=("$a")
            if ((i + 1 < n)); then i=$((i + 1)); out+=("${args[i]}"); fi ;;
        -?*)
            # Short options, possibly bundled (-it, -dit) or with an attached value (-eX=1).
            out+=("$a")
            j=1
            while ((j < ${#a})); do
                case ${a:j:1} in
                    a | c | e | h | l | m | p | u | v | w)
                        if ((j == ${#a} - 1 && i + 1 < n)); then
                            i=$((i + 1)); out+=("${args[i]}")
                        fi
                        break ;;
                esac
                j=$((j + 1))
            done ;;
        *) break ;;
    esac
    i=$((i + 1))
done
out+=("${args[@]:i}")

exec "$real" "${out[@]}"
