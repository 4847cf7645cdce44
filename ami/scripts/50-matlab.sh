#!/bin/bash
# AMI build step 5: MATLAB, from the lab's own copy in S3, into /usr/local/MATLAB/<release>
# (linked as /usr/local/MATLAB/current). run-render mounts that folder into the rtb-support
# container at /usr/local/MATLAB/from-host.
#
# MATLAB_INSTALLER_S3 may be
#   s3://.../matlab.tar.gz|.tgz|.tar  an installed MATLAB tree (tar of a folder holding bin/matlab),
#                                     or an installer folder (holding `install`), packed with tar
#   s3://.../matlab.zip               an installer (MathWorks' "download without installing" zip)
#   s3://.../matlab.iso               an installer DVD image (loop-mounted)
#   s3://.../folder/                  an installer folder, copied recursively
# An installer runs non-interactively with an input file (MathWorks' installer_input.txt format:
# destinationFolder, fileInstallationKey, agreeToLicense, licensePath, outputFile, product.*).
# It runs inside the rtb-support image, which carries MATLAB's libraries, so the host stays bare.
#
# Licensing (one of):
#   MATLAB_LICENSE_SERVER   port@host of the lab's network license manager -> licenses/network.lic
#   MATLAB_LICENSE_FILE_S3  s3:// URL of a license file -> licenses/license.lic
#   (or a tree that already holds licenses/*.lic)
# Instances get new host ids (MAC addresses) each launch, so a network license is the one that
# works for short-lived instances; a node-locked license.lic will not.
set -euo pipefail

: "${MATLAB_INSTALLER_S3:?MATLAB_INSTALLER_S3 (packer variable matlab_installer_s3) is required}"
: "${MATLAB_RELEASE:?MATLAB_RELEASE (packer variable matlab_release) is required}"
MATLAB_LICENSE_SERVER=${MATLAB_LICENSE_SERVER:-}
MATLAB_LICENSE_FILE_S3=${MATLAB_LICENSE_FILE_S3:-}
MATLAB_FILE_INSTALLATION_KEY=${MATLAB_FILE_INSTALLATION_KEY:-}
MATLAB_PRODUCTS=${MATLAB_PRODUCTS:-}
MATLAB_SMOKE_TEST=${MATLAB_SMOKE_TEST:-true}

if ! [[ "${MATLAB_RELEASE}" =~ ^R(20[0-9]{2})([ab])$ ]]; then
    echo "MATLAB_RELEASE='${MATLAB_RELEASE}' is not like R2024b" >&2
    exit 1
fi
release_year=${BASH_REMATCH[1]}

# shellcheck source=/dev/null
. /etc/rtb-support/ami.env
image=${RTB_SUPPORT_LOCAL_IMAGE:-rtb-support:ami}

matlab_parent=/usr/local/MATLAB
matlab_root=${matlab_parent}/${MATLAB_RELEASE}
work=/var/tmp/matlab-install
iso_mount=""

cleanup() {
    if [ -n "${iso_mount}" ] && mountpoint -q "${iso_mount}"; then
        umount "${iso_mount}" || true
    fi
    rm -rf "${work}"
}
trap cleanup EXIT

rm -rf "${work}"
install -d -m 0700 "${work}" "${work}/src"
install -d -m 0755 "${matlab_parent}"

# The folder (under $1) that holds bin/matlab (an installed tree) or install (an installer).
find_dir_with() {
    find "$1" -maxdepth 4 -path "*/$2" -type f -print 2>/dev/null | awk '{ print length, $0 }' \
        | sort -n | head -n 1 | cut -d' ' -f2- | sed "s|/$2\$||"
}

echo "== matlab: fetching ${MATLAB_INSTALLER_S3}"
src=""
case "${MATLAB_INSTALLER_S3}" in
    s3://*/)
        aws s3 cp --only-show-errors --recursive "${MATLAB_INSTALLER_S3}" "${work}/src"
        src=${work}/src
        ;;
    s3://*.iso)
        aws s3 cp --only-show-errors "${MATLAB_INSTALLER_S3}" "${work}/matlab.iso"
        iso_mount=${work}/iso
        install -d "${iso_mount}"
        mount -o loop,ro "${work}/matlab.iso" "${iso_mount}"
        src=${iso_mount}
        ;;
    s3://*.zip)
        aws s3 cp --only-show-errors "${MATLAB_INSTALLER_S3}" "${work}/matlab.zip"
        unzip -q "${work}/matlab.zip" -d "${work}/src"
        rm -f "${work}/matlab.zip"
        src=${work}/src
        ;;
    s3://*.tar.gz | s3://*.tgz | s3://*.tar)
        # Streamed: no second copy of a 20-30 GB archive on the disk.
        tar_flags=(-x -C "${work}/src")
        case "${MATLAB_INSTALLER_S3}" in *.tar) ;; *) tar_flags+=(-z) ;; esac
        aws s3 cp --only-show-errors "${MATLAB_INSTALLER_S3}" - | tar "${tar_flags[@]}"
        src=${work}/src
        ;;
    *)
        echo "MATLAB_INSTALLER_S3 must be an s3:// .tar.gz/.tgz/.tar/.zip/.iso or a folder ending in /" >&2
        exit 1
        ;;
esac

tree=$(find_dir_with "${src}" bin/matlab)
installer=""
[ -n "${tree}" ] || installer=$(find_dir_with "${src}" install)

license_dir=${work}/license
install -d -m 0700 "${license_dir}"
license_file=""
if [ -n "${MATLAB_LICENSE_FILE_S3}" ]; then
    aws s3 cp --only-show-errors "${MATLAB_LICENSE_FILE_S3}" "${license_dir}/license.lic"
    license_file=${license_dir}/license.lic
elif [ -n "${MATLAB_LICENSE_SERVER}" ]; then
    if ! [[ "${MATLAB_LICENSE_SERVER}" =~ ^([0-9]+)@([A-Za-z0-9.-]+)$ ]]; then
        echo "MATLAB_LICENSE_SERVER='${MATLAB_LICENSE_SERVER}' is not port@host" >&2
        exit 1
    fi
    printf 'SERVER %s ANY %s\nUSE_SERVER\n' "${BASH_REMATCH[2]}" "${BASH_REMATCH[1]}" \
        > "${license_dir}/network.lic"
    license_file=${license_dir}/network.lic
fi

if [ -d "${matlab_root}" ]; then
    echo "${matlab_root} exists already: replacing it" >&2
    rm -rf "${matlab_root}"
fi

if [ -n "${tree}" ]; then
    echo "== matlab: installed tree found at ${tree#"${src}"/}; moving it to ${matlab_root}"
    if [ -n "${iso_mount}" ]; then
        cp -a "${tree}" "${matlab_root}"
    else
        mv "${tree}" "${matlab_root}"
    fi
elif [ -n "${installer}" ]; then
    : "${MATLAB_FILE_INSTALLATION_KEY:?an installer needs MATLAB_FILE_INSTALLATION_KEY (packer variable matlab_file_installation_key)}"
    echo "== matlab: running the installer non-interactively (in ${image})"
    input=${work}/installer_input.txt
    (
        umask 077
        {
            echo "destinationFolder=${matlab_root}"
            echo "fileInstallationKey=${MATLAB_FILE_INSTALLATION_KEY}"
            echo "agreeToLicense=yes"
            echo "outputFile=${work}/install.log"
            if [ "${release_year}" -lt 2020 ]; then echo "mode=silent"; fi
            if [ -n "${license_file}" ]; then echo "licensePath=${license_file}"; fi
            for product in ${MATLAB_PRODUCTS}; do echo "product.${product}"; done
        } > "${input}"
    )
    status=0
    docker run --rm --network none \
        -v "${installer}:/installer:ro" \
        -v "${work}:${work}" \
        -v "${matlab_parent}:${matlab_parent}" \
        --entrypoint /installer/install \
        "${image}" -inputFile "${input}" || status=$?
    rm -f "${input}"
    tail -n 20 "${work}/install.log" 2>/dev/null || true
    if [ "${status}" -ne 0 ] || [ ! -x "${matlab_root}/bin/matlab" ]; then
        echo "MATLAB installer failed (exit ${status}); its log is above" >&2
        exit 1
    fi
else
    echo "neither bin/matlab nor an installer (install) found in ${MATLAB_INSTALLER_S3}" >&2
    exit 1
fi

install -d -m 0755 "${matlab_root}/licenses"
if [ -n "${license_file}" ]; then
    install -m 0644 "${license_file}" "${matlab_root}/licenses/$(basename "${license_file}")"
fi
if ! ls "${matlab_root}"/licenses/*.lic >/dev/null 2>&1; then
    echo "no license in ${matlab_root}/licenses: set matlab_license_server or matlab_license_file_s3" >&2
    exit 1
fi

ln -sfn "${MATLAB_RELEASE}" "${matlab_parent}/current"
{
    echo "MATLAB_RELEASE='${MATLAB_RELEASE}'"
    echo "MATLAB_ROOT='${matlab_root}'"
    echo "MATLAB_HOST_DIR='${matlab_parent}/current'"
} >> /etc/rtb-support/ami.env

if [ "${MATLAB_SMOKE_TEST}" = true ]; then
    echo "== matlab: smoke test in ${image} (needs the license server reachable from this subnet)"
    if [ "${release_year}" -ge 2019 ]; then
        args=(-batch "disp(version); exit(0)")
    else
        args=(-nodisplay -nosplash -r "disp(version); exit(0)")
    fi
    docker run --rm --network host \
        -v "${matlab_root}:/usr/local/MATLAB/from-host:ro" \
        -e LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libstdc++.so.6 \
        --entrypoint /usr/local/MATLAB/from-host/bin/matlab \
        "${image}" "${args[@]}"
fi
echo "== matlab: ${MATLAB_RELEASE} at ${matlab_root}"
