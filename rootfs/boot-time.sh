#!/bin/bash
# Boots the test image N times (default 5) and prints, per boot and as the
# median: the init's own "boot complete" figures (milliseconds from the
# init's start until every autostart service runs, and the kernel's uptime
# then) and the host's wall time from starting qemu until it exited after
# the guest powered off. Needs rootfs/build.sh first.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=$(cd "$here/../build/vm" && pwd)
n=${1:-5}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

init_ms=()
kernel_s=()
wall_ms=()
for i in $(seq "$n"); do
    t0=$(date +%s%N)
    bash "$here/run-vm.sh" --test --timeout 120 --initrd "$out/test-initramfs.cpio.gz" \
        --append "vmcheck=quick" >"$log" 2>&1 || { echo "boot $i failed:"; cat "$log"; exit 1; }
    t1=$(date +%s%N)
    line=$(grep -o -E 'boot complete: .*' "$log" | head -n 1)
    [ -n "$line" ] || { echo "boot $i: no 'boot complete' line:"; cat "$log"; exit 1; }
    a=$(printf '%s' "$line" | sed -n 's/.* \([0-9][0-9]*\) ms after init start.*/\1/p')
    b=$(printf '%s' "$line" | sed -n 's/.*kernel uptime \([0-9.]*\) s.*/\1/p')
    w=$(((t1 - t0) / 1000000))
    echo "boot $i: ready ${a} ms after the init started, kernel uptime ${b} s; qemu ran ${w} ms in all"
    init_ms+=("$a")
    kernel_s+=("$b")
    wall_ms+=("$w")
done
echo "median of $n: ready $(printf '%s\n' "${init_ms[@]}" | median) ms after the init started," \
    "kernel uptime $(printf '%s\n' "${kernel_s[@]}" | median) s;" \
    "qemu start to exit $(printf '%s\n' "${wall_ms[@]}" | median) ms ($(head -n 1 "$log"))"
