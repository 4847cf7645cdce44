#!/bin/bash
# ami/check.sh: check the AMI build without AWS (and without network beyond PyPI and Debian).
#
#   1. scripts   every script under ami/scripts passes `bash -n`/`sh -n` and shellcheck
#   2. hcl2      ami/rtb-support.pkr.hcl parses (python-hcl2, in a throwaway venv under /tmp), and:
#                every variable is declared and used; the required ones are exactly the ones
#                without a sensible default; provisioner files exist and every file in scripts/
#                is used; every environment variable handed to the scripts is read by one, and
#                every variable a script requires (${NAME:?...}) is handed to it; the source AMI
#                is Canonical's (owner 099720109477)
#   3. packer    `packer validate` with placeholder values, in a network namespace of its own
#                (unshare -n: it cannot reach anything). With Packer >= 1.7 and the amazon plugin
#                installed (`packer init ami/`), the file is validated as it is. With Debian
#                bookworm's packer 1.6.6 (amazon builder built in, no plugin downloads), the
#                `packer {}` block and `metadata_options` (both newer than 1.6) are removed from a
#                copy first; everything else is validated by the real parser and builder.
#
# Prints one line per check ("ok", "FAIL" or "skip" first); exits non-zero if any check failed.
# Environment: RTB_HCL2_VENV (default /tmp/rtb-hcl2-venv), PACKER (default: packer on PATH).
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
template=${here}/rtb-support.pkr.hcl
venv=${RTB_HCL2_VENV:-/tmp/rtb-hcl2-venv}
packer_bin=${PACKER:-packer}
status=0

ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; status=1; }
skip() { echo "skip $*"; }

# --- 1. scripts --------------------------------------------------------------------------------
check_scripts() {
    local f shebang errors="" n=0
    for f in "${here}"/scripts/*; do
        [ -f "$f" ] || continue
        shebang=$(head -n 1 "$f")
        case "${shebang}" in
            '#!/bin/bash'* | '#!/usr/bin/env bash'*) bash -n "$f" 2>/dev/null || errors+=" $(basename "$f")(bash -n)" ;;
            '#!/bin/sh'*) sh -n "$f" 2>/dev/null || errors+=" $(basename "$f")(sh -n)" ;;
            *) continue ;;
        esac
        if [ ! -x "$f" ]; then errors+=" $(basename "$f")(not executable)"; fi
        n=$((n + 1))
    done
    if ! command -v shellcheck >/dev/null 2>&1; then
        if [ -z "${errors}" ]; then
            ok "scripts: ${n} pass bash -n/sh -n (shellcheck not installed: skipped)"
        else
            bad "scripts:${errors}"
        fi
        return
    fi
    local out files=()
    mapfile -t files < <(cd "${here}/scripts" && grep -l '^#!/bin/\(ba\)\?sh' -- *)
    if ! out=$(cd "${here}/scripts" && shellcheck -x -- "${files[@]}" 2>&1); then
        errors+=" shellcheck: $(printf '%s' "${out}" | grep -c '^In ') finding(s)"
        printf '%s\n' "${out}" >&2
    fi
    if [ -z "${errors}" ]; then
        ok "scripts: ${n} pass bash -n/sh -n and shellcheck"
    else
        bad "scripts:${errors}"
    fi
}

# --- 2. HCL2 structure ---------------------------------------------------------------------------
hcl2_python() {
    if [ -x "${venv}/bin/python" ] && "${venv}/bin/python" -c 'import hcl2' 2>/dev/null; then
        echo "${venv}/bin/python"
        return 0
    fi
    python3 -m venv "${venv}" >/dev/null 2>&1 || return 1
    "${venv}/bin/pip" install -q --disable-pip-version-check python-hcl2 >/dev/null 2>&1 || return 1
    echo "${venv}/bin/python"
}

check_hcl2() {
    local py out
    if ! py=$(hcl2_python); then
        skip "hcl2: python-hcl2 could not be installed into ${venv}"
        return
    fi
    if out=$("${py}" - "${template}" "${here}" <<'PY' 2>&1
import os, re, sys
import hcl2

template, ami = sys.argv[1], sys.argv[2]
with open(template) as f:
    doc = hcl2.load(f)

def unq(s):
    return s[1:-1] if isinstance(s, str) and len(s) >= 2 and s[0] == s[-1] == '"' else s

def strings(node, skip_keys=("__comments__",)):
    if isinstance(node, dict):
        for k, v in node.items():
            if k in skip_keys:
                continue
            yield str(k)
            yield from strings(v, skip_keys)
    elif isinstance(node, list):
        for v in node:
            yield from strings(v, skip_keys)
    elif isinstance(node, str):
        yield node

problems = []
declared = {}
for block in doc.get("variable", []):
    for name, body in block.items():
        declared[unq(name)] = body

used = set()
for key in ("locals", "source", "build"):
    for s in strings(doc.get(key, [])):
        used.update(re.findall(r"\bvar\.([A-Za-z0-9_]+)", s))

brief = {"region", "instance_type", "subnet_id", "matlab_installer_s3", "matlab_release",
         "matlab_license_server", "rtb_support_image", "max_lifetime_hours", "ami_name_prefix"}
for name in sorted(brief - declared.keys()):
    problems.append(f"variable {name} not declared")
for name in sorted(set(declared) - used):
    problems.append(f"variable {name} declared, never used")
for name in sorted(used - set(declared)):
    problems.append(f"var.{name} used, never declared")
required = sorted(n for n, b in declared.items() if "default" not in b)
if required != ["matlab_installer_s3", "matlab_release", "rtb_support_image"]:
    problems.append(f"required variables are {required}")
if str(declared.get("max_lifetime_hours", {}).get("default")) != "48":
    problems.append("max_lifetime_hours default is not 48")
for name, body in declared.items():
    if not unq(body.get("description", "")):
        problems.append(f"variable {name} has no description")

plugins = doc.get("packer", [{}])[0].get("required_plugins", [{}])
plugins = plugins[0] if isinstance(plugins, list) else plugins
if "github.com/hashicorp/amazon" not in str(plugins):
    problems.append("packer.required_plugins lacks github.com/hashicorp/amazon")

sources = [(unq(t), unq(n), b) for blk in doc.get("source", []) for t, named in blk.items()
           for n, b in named.items()]
ebs = [b for t, n, b in sources if t == "amazon-ebs"]
if len(ebs) != 1:
    problems.append(f"expected one amazon-ebs source, found {len(ebs)}")
else:
    flt = ebs[0].get("source_ami_filter", [{}])
    flt = flt[0] if isinstance(flt, list) else flt
    if [unq(o) for o in flt.get("owners", [])] != ["099720109477"]:
        problems.append("source_ami_filter.owners is not Canonical's 099720109477")
    if unq(ebs[0].get("ssh_username")) != "ubuntu":
        problems.append("ssh_username is not ubuntu")

referenced, env_passed = set(), []
for build in doc.get("build", []):
    for prov in build.get("provisioner", []):
        for kind, body in prov.items():
            paths = []
            for key in ("script", "source"):
                if key in body:
                    paths.append(body[key])
            for key in ("scripts", "sources"):
                paths.extend(body.get(key, []))
            for p in paths:
                p = unq(p).replace("${path.root}", ami)
                if "${" in p:
                    problems.append(f"provisioner {unq(kind)} path {p} is not under path.root")
                    continue
                if not os.path.exists(p):
                    problems.append(f"provisioner {unq(kind)}: {os.path.relpath(p, ami)} missing")
                referenced.add(os.path.realpath(p))
            env_passed += [unq(e).split("=", 1)[0] for e in body.get("environment_vars", [])]

scripts_dir = os.path.join(ami, "scripts")
for f in sorted(os.listdir(scripts_dir)):
    if os.path.realpath(os.path.join(scripts_dir, f)) not in referenced:
        problems.append(f"scripts/{f} is not used by any provisioner")

texts = {}
for f in sorted(os.listdir(scripts_dir)):
    with open(os.path.join(scripts_dir, f)) as fh:
        texts[f] = fh.read()
for name in env_passed:
    if not any(re.search(r"\b%s\b" % re.escape(name), t) for t in texts.values()):
        problems.append(f"environment variable {name} is passed but no script reads it")
for f, t in texts.items():
    for name in re.findall(r"\$\{([A-Z_][A-Z0-9_]*):\?", t):
        if name not in env_passed:
            problems.append(f"scripts/{f} requires {name}, which no provisioner passes")

if problems:
    print("; ".join(problems))
    sys.exit(1)
print(f"{len(declared)} variables declared and used, {len(required)} required, "
      f"{len(referenced)} provisioner files present, {len(set(env_passed))} env vars wired")
PY
    ); then
        ok "hcl2: ${out}"
    else
        bad "hcl2: ${out}"
    fi
}

# --- 3. packer validate ------------------------------------------------------------------------
strip_blocks() { # file block-head... : remove each `head {...}` block (brace-matched) in place
    python3 - "$@" <<'PY'
import sys
path, heads = sys.argv[1], sys.argv[2:]
s = open(path).read()
for head in heads:
    i = s.find(head)
    if i < 0:
        continue
    depth = 0
    for j in range(s.index("{", i), len(s)):
        depth += {"{": 1, "}": -1}.get(s[j], 0)
        if depth == 0:
            break
    s = s[:i] + s[j + 1:]
open(path, "w").write(s)
PY
}

check_packer() {
    if ! command -v "${packer_bin}" >/dev/null 2>&1; then
        skip "packer: not installed (Debian: apt-get install packer; or HashiCorp's release)"
        return
    fi
    local version dir out mode
    version=$("${packer_bin}" version 2>/dev/null | head -n 1 | sed -n 's/^Packer v\{0,1\}\([0-9][0-9.]*\).*/\1/p')
    dir=$(mktemp -d /tmp/rtb-packer-check.XXXXXX)
    cp -r "${here}/scripts" "${here}/README.md" "${template}" "${dir}/"
    case "${version}" in
        1.[0-6].*)
            strip_blocks "${dir}/rtb-support.pkr.hcl" $'\npacker {' 'metadata_options {'
            mode="packer ${version}, packer{} and metadata_options removed"
            ;;
        *)
            if ! "${packer_bin}" plugins installed 2>/dev/null | grep -q amazon; then
                skip "packer: ${version} without the amazon plugin (run \`packer init ami/\` once)"
                rm -rf "${dir}"
                return
            fi
            mode="packer ${version}"
            ;;
    esac
    local netns=(unshare -n)
    if ! unshare -n true 2>/dev/null; then
        netns=()
        mode+=", no network namespace (unshare -n unavailable)"
    fi
    if out=$(cd "${dir}" && CHECKPOINT_DISABLE=1 "${netns[@]}" "${packer_bin}" validate \
        -var matlab_installer_s3=s3://example-bucket/matlab/R2024b.tar.gz \
        -var matlab_release=R2024b \
        -var matlab_license_server=27000@license.example.org \
        -var rtb_support_image=s3://example-bucket/images/rtb-support.tar.gz \
        . 2>&1); then
        ok "packer: validate passed (${mode})"
    else
        bad "packer: validate failed (${mode}): $(printf '%s' "${out}" | tr -s '\n' ' ' | cut -c1-400)"
    fi
    rm -rf "${dir}"
}

check_scripts
check_hcl2
check_packer
exit "${status}"
