#!/bin/bash
# The microVM end-to-end test (`make vm-test`, after rootfs/build.sh).
#
# Boot 1 (test-initramfs.cpio.gz): the service `vm-check`
# (rootfs/test/usr/libexec/vm-check.sh) runs in the guest once the example
# services run, prints `VMCHECK ok|FAIL ...` lines on the console and powers
# the VM off through the API. Among its checks: a container service (crun,
# from an OCI layout in the image) and an OOM kill reported as `oom_killed`.
# The host reads the console and checks the rest: the init's start-up
# lines, the needs order of the starts, the ordered shutdown, and that qemu
# exits 0 on the poweroff.
# Boot 2: the guest waits; the host sends ctrl-alt-del through the qemu
# monitor, and the init must stop its services and reboot (which ends qemu
# under -no-reboot).
#
# The check runs inside the guest through irisctl on /run/services.sock:
# that tests the API where clients use it, with the init as PID 1, and needs
# no network device (virtio-net is a module in the cloud kernel; vsock is not
# available everywhere).
#
# Boot 5: a socket that cannot be bound: a fatal start-up error must power
# the VM off cleanly.
# Boots 3 and 4: a copy of test-disk.ext4 as the root on NVMe. Boot 3
# starts services over the API, stops one, checkpoints, and is killed hard;
# boot 4 on the same disk must run the same services (the stopped one stays
# stopped) and report them in the boot restore report, then reboot on
# ctrl-alt-del with the root file system coming out clean.
#
# Prints the boot-to-ready time from the init's own `boot complete` line.
# Consoles are kept in build/vm/test-*.log. Exits non-zero on any failure.
# Environment: IRIS_VM_TIMEOUT (seconds per boot, default 180).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
[ -d "$here/../build/vm" ] || { echo "vm-test: no build/vm; run rootfs/build.sh" >&2; exit 1; }
out=$(cd "$here/../build/vm" && pwd)
timeout_s=${IRIS_VM_TIMEOUT:-180}
image="$out/test-initramfs.cpio.gz"
[ -f "$image" ] || { echo "vm-test: no $image; run rootfs/build.sh" >&2; exit 1; }
command -v socat >/dev/null || { echo "vm-test: socat missing; run rootfs/setup.sh" >&2; exit 1; }

work=$(mktemp -d)
qemu_pid=""
cleanup() {
    if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
        kill "$qemu_pid" 2>/dev/null || true
        sleep 0.5
        kill -9 "$qemu_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

failures=0
passes=0
pass() { passes=$((passes + 1)); echo "vm-test: ok   $*"; }
fail() {
    echo "vm-test: FAIL $*"
    failures=$((failures + 1))
}

# line_of LOG REGEX: the number of the first line matching (0 if none).
line_of() { grep -n -E -m 1 -- "$2" "$1" | cut -d: -f1 || true; }
# in_order LOG WHAT REGEX...: the regexes match lines in this order.
in_order() {
    local log=$1 what=$2 prev=0 n re
    shift 2
    for re in "$@"; do
        n=$(line_of "$log" "$re")
        if [ -z "$n" ]; then
            fail "$what: no line matching '$re'"
            return
        fi
        if [ "$n" -le "$prev" ]; then
            fail "$what: '$re' (line $n) comes too early"
            return
        fi
        prev=$n
    done
    pass "$what"
}

# guest_checks LOG WHAT MIN: the guest's own totals (`VMCHECK done|checkpointed
# N passed M failed`, counted in the guest, so a line mangled on the shared
# console still counts) say 0 failed and at least MIN passed, and no
# `VMCHECK FAIL` line shows up either.
guest_checks() {
    local log=$1 what=$2 min=$3 totals npass=0 nfail=0 nok nfaillines
    totals=$(tr -d '\r' <"$log" |
        sed -n -E 's/^VMCHECK (done|checkpointed) ([0-9]+) passed ([0-9]+) failed$/\2 \3/p' | tail -n 1)
    [ -n "$totals" ] && read -r npass nfail <<<"$totals"
    nok=$(grep -c '^VMCHECK ok' "$log" || true)
    nfaillines=$(grep -c '^VMCHECK FAIL' "$log" || true)
    if [ -z "$totals" ]; then
        fail "$what: no 'VMCHECK done N passed M failed' totals from the guest ($nok ok lines seen)"
        grep '^VMCHECK FAIL' "$log" | sed 's/^/    /' || true
    elif [ "$nfail" = 0 ] && [ "$nfaillines" = 0 ] && [ "$npass" -ge "$min" ]; then
        pass "$what: guest checks: $npass passed, 0 failed"
        [ "$nok" = "$npass" ] ||
            echo "vm-test: note: $what: $nok ok lines on the console for $npass passed (console lines mixed)"
    else
        fail "$what: guest checks: $npass passed (at least $min expected), $nfail failed ($nfaillines FAIL lines):"
        grep '^VMCHECK FAIL' "$log" | sed 's/^/    /' || true
    fi
}

# boot LOG APPEND [MONITOR]: boots the test image in the background, its
# console going to LOG (and to this terminal, prefixed).
boot() {
    local log=$1 append=$2 monitor=${3:-}
    local args=(--test --timeout "$timeout_s" --initrd "$image" --append "$append")
    [ -n "$monitor" ] && args+=(--monitor "$monitor")
    : >"$log"
    bash "$here/run-vm.sh" "${args[@]}" >"$log" 2>&1 &
    qemu_pid=$!
}
# A boot that cannot succeed any more: stop waiting for it.
ABORT="Kernel panic|boot complete: .* [1-9][0-9]* failed|service 'vm-check' failed"
# wait_for LOG REGEX: waits until a line matches (0), or until qemu ended,
# the timeout passed or an ABORT line showed up (1).
wait_for() {
    local log=$1 re=$2 deadline=$((SECONDS + timeout_s))
    while ! grep -q -E -- "$re" "$log"; do
        if ! kill -0 "$qemu_pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ] ||
            grep -q -E -- "$ABORT" "$log"; then
            sleep 0.5 # the lines that follow, for the log
            grep -q -E -- "$re" "$log"
            return
        fi
        sleep 0.2
    done
}
# stop_qemu: ends a boot that went wrong.
stop_qemu() {
    kill "$qemu_pid" 2>/dev/null || true
    wait_qemu || true
}
# end_after_reboot LOG MONITOR: waits for qemu to end after the guest's
# reboot. With -no-reboot qemu exits then, but under load (TCG) it now and
# then resets the guest instead (seen with every reboot method of the
# kernel, initramfs and disk alike). The init's part is done once the kernel
# says "Restarting system"; a new boot showing up after that is stopped at
# once through the monitor, long before its kernel could mount the disk.
end_after_reboot() {
    local log=$1 monitor=$2 deadline=$((SECONDS + timeout_s)) n
    while ! grep -q 'reboot: Restarting system' "$log"; do
        if ! kill -0 "$qemu_pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
            return 0
        fi
        sleep 0.1
    done
    n=$(line_of "$log" 'reboot: Restarting system')
    deadline=$((SECONDS + 10))
    while kill -0 "$qemu_pid" 2>/dev/null; do
        if tail -n +"$((n + 1))" "$log" | grep -q -E 'Probing EDD|Linux version|^\[ +0\.' ||
            [ "$SECONDS" -ge "$deadline" ]; then
            echo "vm-test: note: qemu reset the guest instead of exiting (-no-reboot); quitting it"
            (echo quit; sleep 0.5) | socat - "UNIX-CONNECT:$monitor" >/dev/null 2>&1 || true
            return 0
        fi
        sleep 0.05
    done
}
wait_qemu() {
    local rc=0
    wait "$qemu_pid" || rc=$?
    qemu_pid=""
    return "$rc"
}

# === boot 1: the checks, then poweroff through the API ======================
log1="$out/test-boot1.log"
echo "vm-test: boot 1 (checks, poweroff through the API); console in $log1"
boot "$log1" "vmcheck=full"
tail -n +1 -f "$log1" --pid "$qemu_pid" 2>/dev/null | sed -u 's/^/  | /' &
rc=0
if wait_for "$log1" '^VMCHECK done'; then
    wait_qemu || rc=$?
else
    stop_qemu
    rc=aborted
fi
sleep 0.2
if [ "$rc" = aborted ]; then
    fail "boot 1 went wrong (see the console above); qemu stopped"
elif [ "$rc" = 124 ]; then
    fail "boot 1 timed out after ${timeout_s}s"
elif [ "$rc" != 0 ]; then
    fail "boot 1: qemu exited $rc"
else
    pass "boot 1: qemu exited 0"
fi

grep -q 'Kernel panic' "$log1" && fail "kernel panic on boot 1"
grep -q -E 'iris-init: info: .*starting as PID 1' "$log1" &&
    pass "iris-init started as PID 1" || fail "no 'starting as PID 1' line"
grep -q -E 'iris-init: .*early boot done' "$log1" &&
    pass "early boot: $(grep -o -E 'early boot done.*' "$log1" | head -n 1)" ||
    fail "no 'early boot done' line"

# The project's drop-ins: each one started after its needs (read from the
# files, so the test follows the examples as they change).
needs_pairs=""
for f in "$here"/../init.d/*.toml; do
    [ -f "$f" ] || continue
    name=$(basename "$f" .toml)
    for need in $(sed -n 's/^needs *= *\[\(.*\)\].*/\1/p' "$f" | tr -d '" ' | tr ',' ' '); do
        needs_pairs="$needs_pairs $need:$name"
        in_order "$log1" "'$need' started before '$name', which needs it" \
            "started '$need'" "started '$name'"
    done
done
[ -n "$needs_pairs" ] || fail "no drop-in in init.d has needs: nothing to check the order on"

if grep -q '^VMCHECK done' "$log1"; then
    guest_checks "$log1" "boot 1" 40
else
    fail "the guest check did not finish ($(grep -c '^VMCHECK ok' "$log1" || true) ok)"
    grep '^VMCHECK FAIL' "$log1" | sed 's/^/    /' || true
fi

# The ordered shutdown: services first (each dependent stopped before its
# needs start stopping), then the halt steps, then the kernel's power-off.
in_order "$log1" "ordered shutdown on poweroff" \
    "shutdown \(PowerOff\) requested by the API" "all services stopped" \
    "halt: SIGTERM to all processes" "halt: sync" "halt: unmounted" \
    "halt: powering off" "reboot: Power down"
shutdown1="$work/boot1-shutdown.log"
sed -n '/shutdown (PowerOff) requested by the API/,$p' "$log1" >"$shutdown1"
for pair in $needs_pairs; do
    in_order "$shutdown1" "'${pair#*:}' stopped before '${pair%%:*}', which it needs, stops" \
        "stopped '${pair#*:}'" "stopping '${pair%%:*}'"
done

ready=$(grep -o -E 'boot complete: .*' "$log1" | head -n 1 || true)
ready_ms=$(printf '%s' "$ready" | sed -n 's/.* \([0-9][0-9]*\) ms after init start.*/\1/p')
kernel_s=$(printf '%s' "$ready" | sed -n 's/.*kernel uptime \([0-9.]*\) s.*/\1/p')
ready_failed=$(printf '%s' "$ready" | sed -n 's/.* \([0-9][0-9]*\) failed.*/\1/p')
if [ -n "$ready_ms" ] && [ "${ready_failed:-0}" != 0 ]; then
    fail "boot complete with $ready_failed failed service(s): $ready"
elif [ -n "$ready_ms" ]; then
    pass "boot to ready: ${ready_ms} ms from the init's start until every autostart service runs (kernel uptime ${kernel_s} s)"
else
    fail "no 'boot complete' line from the init"
fi

# === boot 2: ctrl-alt-del reboots ===========================================
log2="$out/test-boot2.log"
mon="$work/monitor.sock"
echo "vm-test: boot 2 (ctrl-alt-del through the qemu monitor); console in $log2"
# IRIS_SOCKET on the kernel command line: the kernel hands unknown KEY=value
# words to the init as environment variables.
boot "$log2" "vmcheck=cad IRIS_SOCKET=/run/iris-cad.sock" "$mon"
tail -n +1 -f "$log2" --pid "$qemu_pid" 2>/dev/null | sed -u 's/^/  | /' &
if wait_for "$log2" 'VMCHECK waiting for ctrl-alt-del'; then
    # Keep the connection open a moment: qemu may drop a command whose
    # connection closes right after it.
    (echo 'sendkey ctrl-alt-delete'; sleep 1) | socat - "UNIX-CONNECT:$mon" >/dev/null 2>&1 ||
        fail "cannot reach the qemu monitor"
    end_after_reboot "$log2" "$mon"
    rc=0
    wait_qemu || rc=$?
    sleep 0.2
    if [ "$rc" = 0 ]; then
        pass "boot 2: qemu exited 0 after ctrl-alt-del"
    else
        fail "boot 2: qemu exited $rc"
    fi
    in_order "$log2" "ctrl-alt-del: ordered shutdown and reboot" \
        "shutdown \(Reboot\) requested by" "all services stopped" "halt: SIGTERM to all processes" \
        "halt: rebooting" "reboot: Restarting system"
else
    fail "boot 2: the guest never got ready for ctrl-alt-del"
    stop_qemu
fi
grep -q 'Kernel panic' "$log2" && fail "kernel panic on boot 2"
grep -q 'starting as PID 1 (socket /run/iris-cad.sock)' "$log2" &&
    pass "IRIS_SOCKET from the kernel command line reached the init" ||
    fail "IRIS_SOCKET=/run/iris-cad.sock on the kernel command line was not used"

# === boot 5 (quick, before the disk): a fatal start-up error ================
# A socket path that cannot be bound: the init must log it and power the VM
# off cleanly (qemu exit 0, no kernel panic from an exiting PID 1).
log5="$out/test-boot5.log"
echo "vm-test: boot 5 (fatal start-up error: unbindable socket); console in $log5"
boot "$log5" "vmcheck=cad IRIS_SOCKET=/proc/no-such-dir/services.sock"
tail -n +1 -f "$log5" --pid "$qemu_pid" 2>/dev/null | sed -u 's/^/  | /' &
rc=0
wait_qemu || rc=$?
sleep 0.2
[ "$rc" = 0 ] && pass "boot 5: qemu exited 0" || fail "boot 5: qemu exited $rc"
grep -q 'Kernel panic' "$log5" && fail "kernel panic on boot 5"
in_order "$log5" "fatal start-up error: logged, then a clean poweroff" \
    "error: fatal: .*no-such-dir" "halt: SIGTERM to all processes" "halt: powering off" \
    "reboot: Power down"

# === boots 3 and 4: checkpoint, hard kill, boot again from the disk =========
# A copy of test-disk.ext4 as the root (NVMe). Boot 3: the guest defines and
# starts services over the API (one of them a container), stops one, and
# checkpoints; then the VM is killed hard (qemu `quit` on the monitor: no
# shutdown, no unmount, as a host that snapshots and discards a VM). Boot 4
# on the same disk (the kernel replays the ext4 journal): the same services
# run, the stopped one stays stopped, and the boot restore report says so;
# then ctrl-alt-del: the root must be remounted read-only and come out
# clean.
disk="$work/disk.ext4"
cp --sparse=always "$out/test-disk.ext4" "$disk"
log3="$out/test-boot3.log"
echo "vm-test: boot 3 (disk: services over the API, checkpoint, hard kill); console in $log3"
: >"$log3"
bash "$here/run-vm.sh" --test --timeout "$timeout_s" --disk "$disk" --monitor "$mon" \
    --append "vmcheck=checkpoint" >"$log3" 2>&1 &
qemu_pid=$!
tail -n +1 -f "$log3" --pid "$qemu_pid" 2>/dev/null | sed -u 's/^/  | /' &
boot3_ok=0
if wait_for "$log3" '^VMCHECK checkpointed'; then
    (echo quit; sleep 0.5) | socat - "UNIX-CONNECT:$mon" >/dev/null 2>&1 ||
        fail "cannot reach the qemu monitor"
    rc=0
    wait_qemu || rc=$?
    sleep 0.2
    boot3_ok=1
    guest_checks "$log3" "boot 3 (checkpoint)" 6
    if grep -q -E 'shutdown \(|halt:' "$log3"; then
        fail "boot 3: the guest shut down; it should have been killed hard"
    else
        pass "boot 3: the VM was killed hard after the checkpoint (qemu quit, exit $rc, no shutdown in the guest)"
    fi
    # The disk as the hard kill left it, checked on a copy: replay the ext4
    # journal (as the kernel will on the next boot), then a full read-only
    # check must find nothing to repair.
    cp --sparse=always "$disk" "$work/fsck.ext4"
    replay=$(e2fsck -E journal_only -y "$work/fsck.ext4" 2>&1) || true
    if fsck_out=$(e2fsck -fn "$work/fsck.ext4" 2>&1); then
        pass "boot 3: after the hard kill the disk is clean once its journal is replayed$(
            printf '%s' "$replay" | grep -q -i 'recovering journal' && echo ' (it had one to replay)')"
    else
        fail "boot 3: the killed disk has errors beyond a journal replay:"
        printf '%s\n' "$replay" "$fsck_out" | sed 's/^/    /'
    fi
    rm -f "$work/fsck.ext4"
else
    fail "boot 3: the guest never checkpointed"
    grep '^VMCHECK FAIL' "$log3" | sed 's/^/    /' || true
    stop_qemu
fi

log4="$out/test-boot4.log"
if [ "$boot3_ok" = 1 ]; then
    echo "vm-test: boot 4 (the same disk again: restored services, then ctrl-alt-del); console in $log4"
    : >"$log4"
    bash "$here/run-vm.sh" --test --timeout "$timeout_s" --disk "$disk" --monitor "$mon" \
        --append "vmcheck=restored" >"$log4" 2>&1 &
    qemu_pid=$!
    tail -n +1 -f "$log4" --pid "$qemu_pid" 2>/dev/null | sed -u 's/^/  | /' &
    if wait_for "$log4" '^VMCHECK waiting for ctrl-alt-del'; then
        guest_checks "$log4" "boot 4 (restored)" 15
        (echo 'sendkey ctrl-alt-delete'; sleep 1) | socat - "UNIX-CONNECT:$mon" >/dev/null 2>&1 ||
            fail "cannot reach the qemu monitor"
        end_after_reboot "$log4" "$mon"
        rc=0
        wait_qemu || rc=$?
        sleep 0.2
        [ "$rc" = 0 ] && pass "boot 4: qemu exited 0 after ctrl-alt-del" || fail "boot 4: qemu exited $rc"
        in_order "$log4" "boot 4: disk root remounted read-only before the reboot" \
            "shutdown \(Reboot\) requested by" "halt: root remounted read-only" "halt: rebooting" \
            "reboot: Restarting system"
        if fsck_out=$(e2fsck -fn "$disk" 2>&1); then
            pass "boot 4: the disk's file system is clean after the reboot"
        else
            fail "boot 4: e2fsck finds problems:"
            printf '%s\n' "$fsck_out" | sed 's/^/    /'
        fi
    else
        fail "boot 4: the guest never got through its checks"
        grep '^VMCHECK FAIL' "$log4" | sed 's/^/    /' || true
        stop_qemu
    fi
    grep -q 'Kernel panic' "$log4" && fail "kernel panic on boot 4"
    # ck-a was defined over the API in boot 3: only the state file can
    # bring it back.
    if grep -q 'no state file' "$log4"; then
        fail "boot 4: the state file of boot 3 was not found on the disk"
    elif grep -q '^VMCHECK ok report: ck-a started at boot' "$log4"; then
        pass "boot 4: the state file of boot 3 was read (the API-defined ck-a came back)"
    else
        fail "boot 4: no sign of the state file of boot 3 (the API-defined ck-a did not come back)"
    fi
fi

echo
if [ "$failures" = 0 ]; then
    echo "vm-test: PASSED (boot to ready ${ready_ms} ms after the init started, kernel uptime ${kernel_s} s)"
    echo "vm-test: $passes passed, 0 failed"
    exit 0
fi
echo "vm-test: FAILED: $failures check(s) failed; consoles in $out/test-boot*.log"
echo "vm-test: $passes passed, $failures failed"
exit 1
