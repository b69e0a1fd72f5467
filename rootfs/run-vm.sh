#!/bin/bash
# Boots the image that rootfs/build.sh made in a qemu microVM, with the
# serial console on this terminal (ctrl-a x quits qemu, ctrl-a c switches to
# the qemu monitor). `make vm` runs it with no options.
#
# Options (vm-test.sh uses them; a person rarely needs them):
#   --disk [FILE]     boot from an ext4 disk image on NVMe (default
#                     build/vm/disk.ext4) instead of the initramfs
#   --initrd FILE     boot this initramfs (default build/vm/initramfs.cpio.gz)
#   --append WORDS    more kernel command-line words; KEY=value words reach
#                     the init as environment variables (IRIS_LOG=debug)
#   --monitor SOCK    qemu monitor on a unix socket (for sendkey, quit, ...)
#   --test            non-interactive: no stdin, and a reboot ends qemu
#                     (-no-reboot) instead of booting again
#   --timeout SECS    kill qemu after SECS (exit 124)
#   --qemu ARG        one more qemu argument, as is (repeat for more; the
#                     snapshot test adds a serial port and -incoming)
#   --verbose         all kernel messages (no `quiet`)
# Environment: IRIS_VM_MEM (MiB, default 256), IRIS_VM_CPUS (default 1),
# IRIS_VM_ACCEL (kvm or tcg, default: kvm when usable).
#
# Exit status: qemu's. A poweroff of the guest exits 0, and so does a guest
# reboot under --test. A kernel panic exits 0 too (panic=-1 plus
# -no-reboot), so tests must read the console, not only the status.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out="$here/../build/vm"

disk=""
initrd="$out/initramfs.cpio.gz"
append=""
monitor=""
test_mode=0
timeout_s=""
quiet="quiet"
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
    --disk)
        disk="$out/disk.ext4"
        if [ $# -gt 1 ] && [ "${2#--}" = "$2" ]; then disk=$2; shift; fi
        ;;
    --initrd) initrd=$2; shift ;;
    --append) append="$append $2"; shift ;;
    --monitor) monitor=$2; shift ;;
    --test) test_mode=1 ;;
    --timeout) timeout_s=$2; shift ;;
    --qemu) extra+=("$2"); shift ;;
    --verbose) quiet="" ;;
    -h | --help) sed -n '2,/^set /p' "$0" | sed '$d'; exit 0 ;;
    *) echo "run-vm.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

kernel="$out/kernel/vmlinuz"
[ -f "$kernel" ] || { echo "run-vm.sh: no $kernel; run rootfs/build.sh" >&2; exit 1; }
command -v qemu-system-x86_64 >/dev/null ||
    { echo "run-vm.sh: qemu-system-x86_64 missing; run rootfs/setup.sh" >&2; exit 1; }

# KVM only when it is usable by a stock guest kernel: /dev/kvm backed by
# kvm_pvm (a nested software backend) needs a special guest and hangs a
# stock one silently.
accel=${IRIS_VM_ACCEL:-}
if [ -z "$accel" ]; then
    accel=tcg
    if [ -r /dev/kvm ] && [ -w /dev/kvm ] && [ ! -d /sys/module/kvm_pvm ]; then
        accel=kvm
    fi
fi
echo "accel: $accel"

cmdline="console=ttyS0 panic=-1 $quiet"
args=(-M microvm -m "${IRIS_VM_MEM:-256}" -smp "${IRIS_VM_CPUS:-1}" -nographic -nic none)
if [ "$accel" = kvm ]; then
    args+=(-accel kvm -cpu host)
else
    args+=(-accel tcg)
    # Under TCG the guest sometimes fails to calibrate its TSC on microvm
    # and hangs silently; telling it the host's TSC rate avoids that.
    khz=$(awk -F: '/^cpu MHz/ { printf "%d", $2 * 1000; exit }' /proc/cpuinfo)
    [ -n "$khz" ] && cmdline="$cmdline tsc_early_khz=$khz"
fi
# An i8042 keyboard controller: ctrl-alt-del (monitor `sendkey
# ctrl-alt-delete`) reaches the kernel, which turns it into SIGINT for the
# init.
args+=(-device i8042)
if [ -n "$disk" ]; then
    [ -f "$disk" ] || { echo "run-vm.sh: no disk $disk" >&2; exit 1; }
    # NVMe is built into the cloud kernel (virtio-blk is a module): the disk
    # is the root with no initramfs at all. PCIe is needed for NVMe.
    args[1]="microvm,pcie=on"
    args+=(-drive "file=$disk,if=none,id=root,format=raw,cache=writeback"
        -device nvme,drive=root,serial=iris-root)
    cmdline="$cmdline root=/dev/nvme0n1 rootfstype=ext4 rootwait rw init=/sbin/init"
else
    [ -f "$initrd" ] || { echo "run-vm.sh: no $initrd; run rootfs/build.sh" >&2; exit 1; }
    args+=(-initrd "$initrd")
    cmdline="$cmdline rdinit=/sbin/init"
fi
args+=(-kernel "$kernel" -append "$cmdline$append")
[ -n "$monitor" ] && args+=(-monitor "unix:$monitor,server,nowait")
args+=(${extra[@]+"${extra[@]}"})

if [ "$test_mode" = 1 ]; then
    args+=(-no-reboot)
    exec </dev/null
else
    echo "serial console follows; ctrl-a x quits qemu, 'poweroff' in the guest powers it off"
fi
if [ -n "$timeout_s" ]; then
    exec timeout --foreground -k 5 "$timeout_s" qemu-system-x86_64 "${args[@]}"
fi
exec qemu-system-x86_64 "${args[@]}"
