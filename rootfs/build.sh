#!/bin/bash
# Builds the microVM images from the project, under build/vm/:
#
#   kernel/vmlinuz         Debian's cloud kernel (see setup.sh for why)
#   root/                  the staged root: busybox, iris-init, irisctl, /etc
#   base.cpio.gz           that root as an initramfs archive
#   console.cpio.gz        overlay: the console login shell (rootfs/console/)
#   test.cpio.gz           overlay: the end-to-end check (rootfs/test/),
#                          plus crun, skopeo and umoci with their libraries
#                          and a busybox OCI layout (container services)
#   initramfs.cpio.gz      base + console, booted by run-vm.sh
#   test-initramfs.cpio.gz base + test, booted by vm-test.sh
#   disk.ext4              base + console as an ext4 disk image (boots as
#                          root from NVMe, see run-vm.sh --disk)
#   test-disk.ext4         base + test as an ext4 disk image (vm-test.sh)
#
# The kernel unpacks concatenated cpio archives one after the other, so an
# overlay is simply appended to the base archive.
#
# Environment:
#   IRIS_VM_KERNEL   use this vmlinuz instead of fetching Debian's
#   IRIS_VM_INIT     use this file as /sbin/init instead of the built
#                    iris-init (for debugging the VM plumbing); cargo is
#                    then not run, and irisctl is taken from IRIS_VM_IRISCTL
#                    if set
#   IRIS_VM_DISK_MB  size of the disk images (default 256)
#
# Needs (rootfs/setup.sh installs them): busybox-static, cpio, gzip,
# e2fsprogs, apt-get (to fetch the kernel), cargo; for the test overlay
# crun, skopeo and umoci.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
project=$(cd "$here/.." && pwd)
out="$project/build/vm"
mkdir -p "$out"

log() { echo "build.sh: $*"; }
die() { echo "build.sh: error: $*" >&2; exit 1; }

# --- kernel -------------------------------------------------------------------
kernel="$out/kernel/vmlinuz"
if [ -n "${IRIS_VM_KERNEL:-}" ]; then
    [ -f "$IRIS_VM_KERNEL" ] || die "IRIS_VM_KERNEL=$IRIS_VM_KERNEL does not exist"
    mkdir -p "$out/kernel"
    cp "$IRIS_VM_KERNEL" "$kernel"
elif [ ! -s "$kernel" ]; then
    # Fetch the .deb of the ABI package the meta package points at and take
    # only the vmlinuz: no install into /boot, no host initramfs hooks.
    command -v apt-get >/dev/null || die "apt-get not found; set IRIS_VM_KERNEL"
    # An unknown package is reported just below, with what to do.
    abi=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
        awk '/Depends: linux-image-[0-9]/ && !found { print $2; found = 1 }') || true
    [ -n "$abi" ] || die "linux-image-cloud-amd64 unknown to apt; run rootfs/setup.sh"
    log "fetching kernel $abi"
    dl="$out/kernel/dl"
    rm -rf "$dl"
    mkdir -p "$dl"
    # apt drops privileges to _apt for downloads when it can; a folder it may
    # write avoids its warning.
    chmod 777 "$dl"
    (cd "$dl" && apt-get download -qq "$abi") || die "apt-get download $abi failed"
    deb=$(ls "$dl"/*.deb)
    (cd "$dl" && dpkg-deb --fsys-tarfile "$deb" | tar -x ./boot)
    cp "$dl"/boot/vmlinuz-* "$kernel.tmp"
    cp "$dl"/boot/config-* "$out/kernel/config"
    echo "$abi" >"$out/kernel/version"
    mv "$kernel.tmp" "$kernel"
    rm -rf "$dl"
fi

# --- the init and irisctl -----------------------------------------------------
if [ -n "${IRIS_VM_INIT:-}" ]; then
    init_bin=$IRIS_VM_INIT
    irisctl_bin=${IRIS_VM_IRISCTL:-}
else
    log "cargo build (static)"
    # Static binaries: the image has no libc. musl when rustup has the
    # target, else crt-static on the gnu target (scripts/build-static.sh).
    rel=$(bash "$project/scripts/build-static.sh" --quiet) || die "cargo build failed"
    init_bin="$rel/iris-init"
    irisctl_bin="$rel/irisctl"
fi
[ -f "$init_bin" ] || die "init binary $init_bin missing"

# --- staged root --------------------------------------------------------------
busybox=$(command -v busybox || true)
[ -n "$busybox" ] || die "busybox not found; run rootfs/setup.sh"

root="$out/root"
rm -rf "$root"
mkdir -p "$root"
cd "$root"
mkdir -p bin sbin usr/bin usr/sbin usr/libexec etc/init.d dev proc sys run tmp \
    root var/lib/iris var/log mnt
chmod 1777 tmp
chmod 700 root
cp "$busybox" bin/busybox
# One symlink per applet, except those whose meaning belongs to the init:
# init/linuxrc (iris-init is the init), and halt/poweroff/reboot, which in
# busybox signal PID 1 with sysvinit's meanings (rootfs/files/sbin has
# wrappers that ask iris-init through irisctl).
for applet in $(bin/busybox --list-full); do
    case "$applet" in
    sbin/init | linuxrc | sbin/halt | sbin/poweroff | sbin/reboot) continue ;;
    esac
    [ -e "$applet" ] && continue
    mkdir -p "$(dirname "$applet")"
    ln -s /bin/busybox "$applet"
done
cp -R "$here/files/." .
cp "$init_bin" sbin/init
chmod 755 sbin/init
if [ -n "$irisctl_bin" ] && [ -f "$irisctl_bin" ]; then
    cp "$irisctl_bin" usr/bin/irisctl
    chmod 755 usr/bin/irisctl
fi
# The project's example drop-ins.
for f in "$project"/init.d/*; do
    [ -f "$f" ] && cp "$f" etc/init.d/
done
# The kernel opens /dev/console for the init before anything is mounted; in
# an initramfs the node must be in the archive (devtmpfs, mounted later by
# the init, hides it).
if [ "$(id -u)" = 0 ]; then
    mknod -m 600 dev/console c 5 1
    mknod -m 666 dev/null c 1 3
else
    log "warning: not root, no /dev/console node: the init starts without a console until it mounts /dev"
fi

# --- archives -----------------------------------------------------------------
# newc with every file owned by root, whoever builds it.
mkcpio() { # DIR OUT
    (cd "$1" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 | gzip -6 -n) >"$2.tmp"
    mv "$2.tmp" "$2"
}
# The test overlay: rootfs/test plus what container services need in the
# guest: the tools the init drives (skopeo, umoci, the OCI runtime crun) with
# their shared libraries and loader (the base image has no libc), and a
# small busybox OCI layout (tests/support/oci.sh) to run, referenced as
# oci:/usr/share/iris/oci/busybox:1.
test_root="$out/test-root"
rm -rf "$test_root"
mkdir -p "$test_root"
cp -R "$here/test/." "$test_root/"
for tool in crun skopeo umoci; do
    bin=$(command -v "$tool" || true)
    [ -n "$bin" ] || die "$tool not found; run scripts/setup.sh (make setup)"
    mkdir -p "$test_root/usr/bin"
    cp -L "$bin" "$test_root/usr/bin/$tool"
    # Every library ldd resolves, at the same path, plus the loader.
    for lib in $(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
        [ -e "$test_root$lib" ] && continue
        mkdir -p "$test_root$(dirname "$lib")"
        cp -L "$lib" "$test_root$lib"
    done
done
bash "$project/tests/support/oci.sh" image "$test_root/usr/share/iris/oci/busybox" 1 ||
    die "building the busybox OCI image failed"

mkcpio "$root" "$out/base.cpio.gz"
mkcpio "$here/console" "$out/console.cpio.gz"
mkcpio "$test_root" "$out/test.cpio.gz"
cat "$out/base.cpio.gz" "$out/console.cpio.gz" >"$out/initramfs.cpio.gz"
cat "$out/base.cpio.gz" "$out/test.cpio.gz" >"$out/test-initramfs.cpio.gz"

# --- disks --------------------------------------------------------------------
# mkfs.ext4 -d fills the file system from a folder: no loop mount, no root
# needed beyond owning the files. disk.ext4 gets the console overlay (for a
# person), test-disk.ext4 the test overlay (for vm-test's checkpoint boots).
mkdisk() { # OVERLAY OUT
    disk_root="$out/disk-root"
    rm -rf "$disk_root"
    cp -a "$root" "$disk_root"
    cp -R "$1/." "$disk_root/"
    rm -f "$2.tmp"
    mkfs.ext4 -q -F -L iris-root -E root_owner=0:0 -d "$disk_root" \
        "$2.tmp" "${IRIS_VM_DISK_MB:-256}M" >/dev/null || die "mkfs.ext4 failed"
    mv "$2.tmp" "$2"
    rm -rf "$disk_root"
}
mkdisk "$here/console" "$out/disk.ext4"
mkdisk "$test_root" "$out/test-disk.ext4"

log "images in $out: $(cd "$out" && ls -1 ./*.cpio.gz ./*.ext4 kernel/vmlinuz | tr '\n' ' ')"
