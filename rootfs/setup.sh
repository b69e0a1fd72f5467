#!/bin/sh
# Installs what building and booting the microVM image needs, on a fresh
# Debian machine (run as root). Idempotent: quiet when everything is there.
#
# Kernel: Debian's linux-image-cloud-amd64 (6.1 on bookworm), the Debian
# x86 kernel for virtual machines: few drivers, and what a microVM needs is
# built in (8250 serial console, devtmpfs, ext4, NVMe, cgroup2, namespaces,
# an i8042 keyboard for ctrl-alt-del), so it boots
# under `qemu -M microvm` with no modules and no initrd of its own. It is
# also the fastest: under TCG, qemu start to guest poweroff with a trivial
# init took 2.0-2.9 s with it and 4.6-5.7 s with the generic
# linux-image-amd64 of the same version (measured on a 2-core host). It is NOT
# installed into /boot: build.sh fetches its .deb with `apt-get download`
# and extracts only the vmlinuz into build/vm/kernel/ (no host initramfs
# hooks, the host's boot setup stays untouched). This script only makes sure
# the apt lists know the package. socat talks to the qemu monitor in
# vm-test.sh (ctrl-alt-del, quit). crun, skopeo and umoci are copied into
# the test image (with their libraries) for the container service checks.
set -eu

PKGS="qemu-system-x86 busybox-static cpio e2fsprogs gzip socat crun skopeo umoci"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

# apt-get download of the kernel needs the package lists.
need_update=0
[ -n "$missing" ] && need_update=1
if ! apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1; then
    need_update=1
fi

if [ "$need_update" = 1 ]; then
    echo "setup: apt-get update"
    apt-get update -qq
fi
if [ -n "$missing" ]; then
    echo "setup: installing$missing"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
