#!/bin/sh
# The guest half of rootfs/vm-test.sh, run by iris-init as the service
# `vm-check` once the example services run. Prints `VMCHECK ok WHAT` or
# `VMCHECK FAIL WHAT` lines on the console, then its own totals,
# `VMCHECK done N passed M failed` (the host requires M = 0 and N at least
# its minimum: a FAIL line mangled on the shared console still counts).
# The mode comes from the kernel command line (`vmcheck=MODE`):
#   full (default)  every check, then `irisctl poweroff`
#   quick           no checks, `irisctl poweroff` (boot time measurements)
#   cad             no checks, wait for ctrl-alt-del from the host
#   checkpoint      (disk) define, start and stop services over the API,
#                   checkpoint, print `VMCHECK checkpointed`; the host then
#                   kills the VM hard
#   restored        (the same disk, booted again) check that the same
#                   services run and the boot restore report, then wait
#                   for ctrl-alt-del
exec </dev/null >/dev/console 2>&1
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
SOCK=/run/services.sock
fails=0
passes=0
ok() {
    echo "VMCHECK ok $*"
    passes=$((passes + 1))
}
fail() {
    echo "VMCHECK FAIL $*"
    fails=$((fails + 1))
}

mode=full
for w in $(cat /proc/cmdline); do
    case "$w" in vmcheck=*) mode=${w#vmcheck=} ;; esac
done

# get JSON KEY: the value of the first top-level-looking "KEY": in a
# compact one-object JSON text (enough for the service object's scalars).
get() {
    printf '%s\n' "$1" | tr ',' '\n' |
        sed -n "s/^[{]*\"$2\":\"*\([^\"}]*\)\"*}*\$/\1/p" | head -n 1
}
# needs JSON: the names in its "needs" array, one per line.
needs_of() {
    printf '%s\n' "$1" | sed -n 's/.*"needs":\[\([^]]*\)\].*/\1/p' | tr ',' '\n' | tr -d '"' |
        sed '/^$/d'
}
# start time of a process in clock ticks since boot (field 22 of stat; the
# command name in field 2 holds no spaces here).
starttime() { cut -d' ' -f22 "/proc/$1/stat" 2>/dev/null; }
uptime_ms() { awk '{ printf "%d", $1 * 1000 }' /proc/uptime; }
zombies() {
    for s in /proc/[0-9]*/stat; do
        [ "$(cut -d' ' -f3 "$s" 2>/dev/null)" = Z ] && echo "${s%/stat}"
    done
}

if [ "$mode" = cad ]; then
    echo "VMCHECK waiting for ctrl-alt-del"
    exec sleep 3600
fi
if [ "$mode" = quick ]; then
    echo "VMCHECK done 0 passed 0 failed"
    irisctl poweroff >/dev/null
    exit 0
fi

# has WORD LIST: LIST (words) holds WORD.
has() {
    case " $2 " in *" $1 "*) return 0 ;; esac
    return 1
}
# names JSON KEY: the strings of the array KEY in a compact JSON text.
names() {
    printf '%s\n' "$1" | sed -n "s/.*\"$2\":\[\([^]]*\)\].*/\1/p" | tr ',' ' ' | tr -d '"'
}

# --- checkpoint (issue 4), first boot from the disk --------------------------
# Services defined and started over the API (and the container service
# t-box), one of them stopped again, then a checkpoint. The host then kills
# the VM hard and boots the same disk with vmcheck=restored.
if [ "$mode" = checkpoint ]; then
    mkdir -p /tmp/ck
    cat >/tmp/ck/ck-a.toml <<'EOF2'
cmd = "sleep"
args = ["3600"]
EOF2
    cat >/tmp/ck/ck-b.toml <<'EOF2'
cmd = "busybox"
args = ["httpd", "-f", "-p", "127.0.0.1:8090", "-h", "/"]
needs = ["ck-a"]
health_port = 8090
EOF2
    cat >/tmp/ck/ck-c.toml <<'EOF2'
cmd = "sleep"
args = ["3602"]
EOF2
    irisctl apply /tmp/ck/ck-a.toml /tmp/ck/ck-b.toml /tmp/ck/ck-c.toml >/dev/null &&
        ok "ck-a, ck-b, ck-c defined over the API" || fail "irisctl apply"
    for n in ck-b ck-c t-box; do
        irisctl start "$n" >/dev/null && ok "started $n" || fail "start $n"
    done
    irisctl stop ck-c >/dev/null && ok "stopped ck-c" || fail "stop ck-c"
    js=$(irisctl checkpoint --json)
    running=$(names "$js" running_services)
    missing=""
    for n in ck-a ck-b t-box cache web worker; do
        has "$n" "$running" || missing="$missing $n"
    done
    if [ -n "$missing" ]; then
        fail "checkpoint: not in running_services:$missing: $js"
    elif has ck-c "$running"; then
        fail "checkpoint: the stopped ck-c is in running_services: $js"
    else
        ok "checkpoint: running_services: $running"
    fi
    echo "VMCHECK checkpointed $passes passed $fails failed"
    exec sleep 3600
fi

# --- after the hard kill: the same services, the boot restore report ---------
if [ "$mode" = restored ]; then
    deadline=$(($(uptime_ms) + 60000))
    report=""
    while :; do
        report=$(irisctl restore --last --json)
        [ "$(get "$report" trigger)" = boot ] && break
        [ "$(uptime_ms)" -ge "$deadline" ] && break
        sleep 0.1
    done
    started=$(names "$report" started_services)
    [ "$(get "$report" trigger)" = boot ] && ok "boot restore report: started $started" ||
        fail "no boot restore report: $report"
    for n in ck-a ck-b t-box cache web worker; do
        has "$n" "$started" && ok "report: $n started at boot" ||
            fail "report: $n not in started_services: $report"
        st=$(get "$(irisctl status "$n" --json)" status)
        [ "$st" = running ] && ok "$n is running again" || fail "$n is $st after the restart"
    done
    has ck-c "$started" && fail "report: the stopped ck-c was started: $report"
    case "$report" in
    *'"failed_services":[]'*) ok "report: no failed service" ;;
    *) fail "report has failures: $report" ;;
    esac
    js=$(irisctl status ck-c --json)
    if [ "$(get "$js" status)" = stopped ] && [ "$(get "$js" wanted)" = down ] &&
        [ "$(get "$js" source)" = api ]; then
        ok "ck-c (API-defined, stopped before the checkpoint) is back and stays stopped"
    else
        fail "ck-c after the restart: $js"
    fi
    page=$(wget -q -O - http://127.0.0.1:8081/ 2>&1)
    [ "$page" = "hello from the busybox image" ] && ok "the container t-box answers again" ||
        fail "t-box on 127.0.0.1:8081 answered: $page"
    echo "VMCHECK done $passes passed $fails failed"
    echo "VMCHECK waiting for ctrl-alt-del"
    exec sleep 3600
fi

# --- the init is PID 1 -------------------------------------------------------
exe=$(readlink /proc/1/exe)
if [ "$exe" = /sbin/init ] && /sbin/init --version 2>&1 | grep -q iris-init; then
    ok "pid 1 is iris-init ($exe)"
else
    fail "pid 1 is $exe ($(/sbin/init --version 2>&1 | head -n 1))"
fi

# --- the API answers on /run/services.sock -----------------------------------
sys=$(irisctl --socket "$SOCK" system --json)
if [ -S "$SOCK" ] && [ "$(get "$sys" pid)" = 1 ]; then
    ok "api answers on $SOCK (system pid 1)"
else
    fail "api on $SOCK: system says: $sys"
fi
perm=$(stat -c %a "$SOCK" 2>/dev/null)
[ "$perm" = 600 ] && ok "socket mode 0600" || fail "socket mode is $perm, not 600"

# --- mounts of PID 1 ---------------------------------------------------------
for m in /proc /sys /dev /dev/pts /dev/shm /run /sys/fs/cgroup; do
    if awk -v m="$m" '$5 == m { found = 1 } END { exit !found }' /proc/self/mountinfo; then
        ok "mounted $m"
    else
        fail "not mounted: $m"
    fi
done
grep -q ' /sys/fs/cgroup .* - cgroup2 ' /proc/self/mountinfo && ok "cgroup2 on /sys/fs/cgroup" ||
    fail "no cgroup2 on /sys/fs/cgroup"
[ "$(hostname)" = "$(cat /etc/hostname)" ] && ok "hostname $(hostname)" ||
    fail "hostname $(hostname), /etc/hostname says $(cat /etc/hostname)"
ip link show lo | grep -q '[<,]UP[,>]' && ok "loopback up" || fail "loopback down: $(ip link show lo)"

# --- the example services run, started in needs order ------------------------
examples=""
for f in /etc/init.d/*.toml; do
    n=$(basename "$f" .toml)
    case "$n" in vm-check | t-*) continue ;; esac
    examples="$examples $n"
done
[ -n "$examples" ] || fail "no example drop-ins in /etc/init.d"
for n in $examples; do
    js=$(irisctl status "$n" --json)
    st=$(get "$js" status)
    pid=$(get "$js" pid)
    if [ "$st" = running ] && [ -d "/proc/$pid" ]; then
        ok "service $n running (pid $pid)"
    else
        fail "service $n is $st (pid $pid): $js"
        continue
    fi
    for need in $(needs_of "$js"); do
        npid=$(get "$(irisctl status "$need" --json)" pid)
        a=$(starttime "$npid")
        b=$(starttime "$pid")
        if [ -n "$a" ] && [ -n "$b" ] && [ "$a" -le "$b" ]; then
            ok "need $need (pid $npid, t=$a) started before $n (pid $pid, t=$b)"
        else
            fail "need $need (pid $npid, t=$a) not started before $n (pid $pid, t=$b)"
        fi
    done
done

# --- a double-forking service leaves no zombie -------------------------------
reaped0=$(get "$(irisctl system --json)" zombies_reaped)
if irisctl start t-orphans >/dev/null; then
    deadline=$(($(uptime_ms) + 10000))
    while [ "$(ls /run/t-orphans.* 2>/dev/null | wc -l)" -lt 5 ] && [ "$(uptime_ms)" -lt "$deadline" ]; do
        sleep 0.1
    done
    if [ "$(ls /run/t-orphans.* 2>/dev/null | wc -l)" -lt 5 ]; then
        fail "t-orphans: its daemons did not run"
    else
        # The daemons exit right after their marker; give the init a moment
        # (not a fixed sleep: poll until no zombie or the deadline).
        deadline=$(($(uptime_ms) + 3000))
        while [ -n "$(zombies)" ] && [ "$(uptime_ms)" -lt "$deadline" ]; do sleep 0.05; done
        z=$(zombies)
        reaped1=$(get "$(irisctl system --json)" zombies_reaped)
        if [ -z "$z" ]; then
            ok "no zombie after double-forked daemons exited (zombies_reaped $reaped0 -> $reaped1)"
        else
            fail "zombies left: $z"
        fi
        if [ -n "$reaped1" ] && [ -n "$reaped0" ] && [ "$reaped1" -ge $((reaped0 + 5)) ]; then
            ok "zombies_reaped counted the 5 orphans"
        else
            fail "zombies_reaped went from $reaped0 to $reaped1 (expected +5)"
        fi
    fi
    irisctl stop t-orphans >/dev/null || fail "stop t-orphans"
else
    fail "start t-orphans"
fi

# --- a stopped service's whole tree is gone ----------------------------------
# pids of t-tree's sleeps (busybox-static has no pgrep).
tree_pids() {
    for d in /proc/[0-9]*; do
        case "$(tr '\0' ' ' <"$d/cmdline" 2>/dev/null)" in
        "sleep 360"[1-4]*) printf '%s ' "${d#/proc/}" ;;
        esac
    done
}
if irisctl start t-tree >/dev/null; then
    pid=$(get "$(irisctl status t-tree --json)" pid)
    deadline=$(($(uptime_ms) + 10000))
    while [ "$(tree_pids | wc -w)" -lt 4 ] && [ "$(uptime_ms)" -lt "$deadline" ]; do sleep 0.1; done
    before=$(tree_pids)
    cg=$(sed -n 's/^0:://p' "/proc/$pid/cgroup" 2>/dev/null)
    cgdir=/sys/fs/cgroup$cg
    if [ "$(echo "$before" | wc -w)" -ge 4 ]; then
        ok "t-tree runs its tree: $before(cgroup $cg)"
    else
        fail "t-tree tree incomplete: $before"
    fi
    if [ -n "$cg" ] && [ "$cg" != / ] && [ -f "$cgdir/cgroup.procs" ] &&
        [ "$(wc -l <"$cgdir/cgroup.procs")" -ge 4 ]; then
        ok "t-tree has its own cgroup $cg with $(wc -l <"$cgdir/cgroup.procs") processes"
    else
        fail "t-tree has no cgroup of its own (cgroup '$cg')"
    fi
    if irisctl stop t-tree >/dev/null; then
        # The stop answers once the processes are gone: check at once.
        after=$(tree_pids)
        st=$(get "$(irisctl status t-tree --json)" status)
        if [ -z "$after" ]; then
            ok "stop t-tree ended the whole tree, grandchildren included (status $st)"
        else
            fail "after stop t-tree these remain: $after"
        fi
        # cgroupfs files have size 0 whatever they hold: read them.
        if [ ! -e "$cgdir" ]; then
            ok "t-tree's cgroup $cg is gone after stop"
        elif [ -z "$(cat "$cgdir/cgroup.procs")" ] &&
            grep -q '^populated 0$' "$cgdir/cgroup.events"; then
            ok "t-tree's cgroup is empty after stop (populated 0)"
        else
            fail "t-tree's cgroup still holds: $(tr '\n' ' ' <"$cgdir/cgroup.procs"), $(grep populated "$cgdir/cgroup.events")"
        fi
    else
        fail "stop t-tree"
    fi
else
    fail "start t-tree"
fi

# --- a container service (issue 6) ------------------------------------------
# t-box runs busybox httpd from an OCI layout in the image (skopeo copies it
# into the store, umoci unpacks it, crun runs it); t-box-client is a plain
# service that needs it and fetches its page when it starts.
CRUN_ROOT=/run/iris/crun
box_procs() { # pids whose command line is t-box's httpd
    for d in /proc/[0-9]*; do
        case "$(tr '\0' ' ' <"$d/cmdline" 2>/dev/null)" in
        "httpd -f -p 127.0.0.1:8081"*) printf '%s ' "${d#/proc/}" ;;
        esac
    done
}
t0=$(uptime_ms)
if out=$(irisctl start t-box-client 2>&1); then
    box=$(irisctl status t-box --json)
    cpid=$(get "$box" container_pid)
    ok "container service t-box started with t-box-client in $(($(uptime_ms) - t0)) ms (container pid $cpid)"
    [ "$(get "$box" status)" = running ] && ok "t-box is running" ||
        fail "t-box is $(get "$box" status): $box"
    case "$box" in
    *'"container":true'*'"image_digest":"sha256:'*) ok "t-box shows container, image $(get "$box" image), digest $(get "$box" image_digest | cut -c1-19)..." ;;
    *) fail "t-box's object lacks container/image_digest: $box" ;;
    esac
    page=$(wget -q -O - http://127.0.0.1:8081/ 2>&1)
    [ "$page" = "hello from the busybox image" ] && ok "t-box answers on 127.0.0.1:8081 (health_port)" ||
        fail "t-box on 127.0.0.1:8081 answered: $page"
    # The client fetched the page as it started: t-box ran before it.
    [ "$(cat /run/t-box-client.page 2>/dev/null)" = "hello from the busybox image" ] &&
        ok "t-box-client, which needs t-box, started after it (it got the page at start)" ||
        fail "t-box-client did not get t-box's page at its start: $(cat /run/t-box-client.page 2>&1)"
    a=$(starttime "$cpid")
    b=$(starttime "$(get "$(irisctl status t-box-client --json)" pid)")
    if [ -n "$a" ] && [ -n "$b" ] && [ "$a" -le "$b" ]; then
        ok "t-box's container process (t=$a) started before t-box-client (t=$b)"
    else
        fail "t-box's container (t=$a) not started before t-box-client (t=$b)"
    fi
    # exec inside the container: its rootfs, hostname, env; output and status.
    rc=0
    out=$(irisctl exec t-box -- sh -c 'echo "$(hostname) $BOX_VAR $IMAGE_VAR $(cat /www/index.html)"; test ! -e /usr/libexec/vm-check.sh && exit 7') || rc=$?
    if [ "$out" = "t-box from-service from-image hello from the busybox image" ] && [ "$rc" = 7 ]; then
        ok "exec in t-box: stdout and exit code 7 from inside the container"
    else
        fail "exec in t-box: exit $rc, stdout: $out"
    fi
    [ -n "$(box_procs)" ] && ok "t-box's httpd runs: pid $(box_procs)" || fail "no httpd of t-box"
    irisctl stop t-box-client >/dev/null || fail "stop t-box-client"
    t0=$(uptime_ms)
    if irisctl stop t-box >/dev/null; then
        t1=$(uptime_ms)
        st=$(get "$(irisctl status t-box --json)" status)
        # A crun error is a failure, not an empty list: the header line
        # (NAME PID STATUS ...) must be there and nothing after it.
        if listing=$(crun --root "$CRUN_ROOT" list 2>&1); then
            left=$(printf '%s\n' "$listing" | tail -n +2)
            if [ "$(printf '%s\n' "$listing" | head -n 1 | cut -d' ' -f1)" != NAME ]; then
                fail "crun list after stop t-box printed no header: $listing"
            elif [ -z "$left" ]; then
                ok "stop t-box ($st in $((t1 - t0)) ms): crun list is empty"
            else
                fail "crun list after stop t-box: $left"
            fi
        else
            fail "crun list after stop t-box failed: $listing"
        fi
        [ -z "$(box_procs)" ] && ok "no httpd of t-box left" || fail "t-box processes left: $(box_procs)"
        [ -n "$cpid" ] && [ ! -d "/proc/$cpid" ] && ok "the container's pid $cpid is gone" ||
            fail "the container's pid '$cpid' is still there"
        mnt=$(grep -c 'bundles/t-box' /proc/self/mountinfo)
        [ "$mnt" = 0 ] && ok "no mount of t-box's bundle left" || fail "$mnt mounts of t-box's bundle left"
        cg=/sys/fs/cgroup/t-box.service
        if [ ! -e "$cg/cgroup.events" ] || grep -q '^populated 0' "$cg/cgroup.events"; then
            ok "t-box's cgroup is empty"
        else
            fail "t-box's cgroup is still populated"
        fi
    else
        fail "stop t-box"
    fi
else
    fail "start t-box-client (and t-box): $out"
    irisctl logs t-box -n 20 2>&1 | sed 's/^/VMCHECK log t-box: /'
fi

# --- oom_killed (issue 3) ----------------------------------------------------
# The init enables +memory in the root cgroup; a limit on t-oom's cgroup
# (there is no memory field in a definition) makes the kernel kill it.
rm -f /run/t-oom.go
grep -q -w memory /sys/fs/cgroup/cgroup.subtree_control &&
    ok "memory controller enabled for the services: $(cat /sys/fs/cgroup/cgroup.subtree_control)" ||
    fail "no memory controller in /sys/fs/cgroup/cgroup.subtree_control: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
if irisctl start t-oom >/dev/null; then
    cg=/sys/fs/cgroup/t-oom.service
    if echo 16M >"$cg/memory.max" 2>/dev/null; then
        ok "memory.max of t-oom's cgroup set to $(cat "$cg/memory.max")"
    else
        fail "cannot write $cg/memory.max (controllers: $(cat /sys/fs/cgroup/cgroup.subtree_control))"
    fi
    touch /run/t-oom.go
    deadline=$(($(uptime_ms) + 30000))
    while [ "$(get "$(irisctl status t-oom --json)" status)" = running ] && [ "$(uptime_ms)" -lt "$deadline" ]; do
        sleep 0.1
    done
    js=$(irisctl status t-oom --json)
    case "$js" in
    *'"oom_killed":true'*) ok "t-oom reports oom_killed true (status $(get "$js" status), exit_code $(get "$js" exit_code), oom_kills $(get "$js" oom_kills))" ;;
    *) fail "t-oom after its allocation: $js; memory.events: $(tr '\n' ' ' <"$cg/memory.events" 2>&1)" ;;
    esac
    case "$js" in
    *'"exit_code":137'*) ok "t-oom's exit_code is 137 (SIGKILL)" ;;
    *) fail "t-oom's exit_code is $(get "$js" exit_code), not 137" ;;
    esac
    js=$(irisctl status cache --json)
    case "$js" in
    *'"oom_killed":false'*) ok "cache reports oom_killed false" ;;
    *) fail "cache's object: $js" ;;
    esac
else
    fail "start t-oom"
fi

. /usr/libexec/vm-check-limits.sh # resource limits (issue 14)

z=$(zombies)
[ -z "$z" ] && ok "no zombie at the end" || fail "zombies at the end: $z"

echo "VMCHECK done $passes passed $fails failed"
irisctl poweroff >/dev/null || fail "irisctl poweroff"
