# Resource limits (issue 14): sourced by vm-check.sh, whose ok, fail, get
# and uptime_ms it uses. The services are /etc/init.d/t-lim-*.toml; the
# init runs as PID 1 in the root cgroup, so its service cgroups sit at
# /sys/fs/cgroup/NAME.service with every controller the kernel has.

# lim_num JSON KEY: the number after "KEY": (empty when null or absent).
lim_num() {
    printf '%s\n' "$1" | sed -n "s/.*\"$2\":\([0-9][0-9.]*\).*/\1/p" | head -n 1
}
# lim_wait MS CMD...: runs CMD until it succeeds; 1 after MS milliseconds.
lim_wait() {
    lim_end=$(($(uptime_ms) + $1))
    shift
    until "$@"; do
        [ "$(uptime_ms)" -ge "$lim_end" ] && return 1
        sleep 0.05
    done
}
lim_not_running() { [ "$(get "$(irisctl status "$1" --json)" status)" != running ]; }
lim_log_has() { irisctl logs "$1" 2>/dev/null | grep -q -- "$2"; }
# lim_metric TEXT NAME SERVICE: the value of NAME{service="SERVICE"}.
lim_metric() {
    printf '%s\n' "$1" | sed -n "s/^$2{service=\"$3\"} //p" | head -n 1
}

# --- memory_max: an OOM kill takes the whole service, a forked child too ---
if irisctl start t-lim-mem >/dev/null; then
    js=$(irisctl status t-lim-mem --json)
    pid=$(get "$js" pid)
    cg=/sys/fs/cgroup/t-lim-mem.service
    if [ "$(cat "$cg/memory.max")" = 33554432 ] && [ "$(cat "$cg/memory.oom.group")" = 1 ]; then
        ok "t-lim-mem: memory.max 33554432 (32M) and memory.oom.group 1 in its cgroup"
    else
        fail "t-lim-mem: memory.max $(cat "$cg/memory.max"), memory.oom.group $(cat "$cg/memory.oom.group")"
    fi
    lim_wait 10000 test -s /run/t-lim-mem.child
    child=$(cat /run/t-lim-mem.child)
    touch /run/t-lim-mem.go
    lim_wait 30000 lim_not_running t-lim-mem
    js=$(irisctl status t-lim-mem --json)
    kills=$(lim_num "$js" oom_kills)
    err=$(printf '%s\n' "$js" | sed -n 's/.*"error":"\([^"]*\)".*/\1/p')
    case "$(get "$js" status) $err" in
    "failed "*"OOM killer"*) ok "t-lim-mem failed: $err" ;;
    *) fail "t-lim-mem after its hog: $js" ;;
    esac
    [ "${kills:-0}" -ge 1 ] && ok "t-lim-mem: oom_kills $kills" || fail "t-lim-mem: oom_kills '$kills'"
    if [ ! -d "/proc/$pid" ] && [ -n "$child" ] && [ ! -d "/proc/$child" ] &&
        grep -q '^populated 0' "$cg/cgroup.events"; then
        ok "t-lim-mem: the main process ($pid) and its forked child ($child) are gone, the cgroup is empty"
    else
        fail "t-lim-mem: left behind: $(tr '\n' ' ' <"$cg/cgroup.procs")(main $pid, child $child)"
    fi
    lim_log_has t-lim-mem survived && fail "t-lim-mem: its main shell survived the OOM kill"
    [ "$(get "$js" exit_code)" = 137 ] && ok "t-lim-mem: exit_code 137 (SIGKILL)" ||
        fail "t-lim-mem: exit_code $(get "$js" exit_code)"
else
    fail "start t-lim-mem"
fi

# --- pids_max: a fork loop stops at it -------------------------------------
if irisctl start t-lim-pids >/dev/null; then
    cg=/sys/fs/cgroup/t-lim-pids.service
    most=0
    lim_pids_sample() {
        n=$(cat "$cg/pids.current")
        [ "$n" -gt "$most" ] && most=$n
        lim_log_has t-lim-pids "fork loop stopped"
    }
    lim_wait 30000 lim_pids_sample || fail "t-lim-pids: the fork loop never stopped"
    max=$(cat "$cg/pids.max")
    hits=$(sed -n 's/^max //p' "$cg/pids.events")
    [ "$max" = 16 ] && [ "$most" -le 16 ] && [ "${hits:-0}" -ge 1 ] &&
        ok "t-lim-pids: pids.max 16, pids.current at most $most, $hits forks refused (pids.events)" ||
        fail "t-lim-pids: pids.max $max, pids.current up to $most, pids.events max '$hits'"
    lim_log_has t-lim-pids "Resource temporarily unavailable" &&
        ok "t-lim-pids: the loop saw EAGAIN" ||
        fail "t-lim-pids: no EAGAIN in its log: $(irisctl logs t-lim-pids 2>&1 | tail -n 3)"
    used=$(lim_num "$(irisctl status t-lim-pids --json)" pids)
    [ "$used" = "$(cat "$cg/pids.current")" ] && ok "t-lim-pids: usage.pids $used" ||
        fail "t-lim-pids: usage.pids '$used', pids.current $(cat "$cg/pids.current")"
    irisctl stop t-lim-pids >/dev/null || fail "stop t-lim-pids"
else
    fail "start t-lim-pids"
fi

# --- cpu_max 0.2: a busy loop gets about a fifth of a core ------------------
if irisctl start t-lim-cpu >/dev/null; then
    cg=/sys/fs/cgroup/t-lim-cpu.service
    [ "$(cat "$cg/cpu.max")" = "20000 100000" ] && [ "$(cat "$cg/cpu.weight")" = 50 ] &&
        ok "t-lim-cpu: cpu.max '20000 100000', cpu.weight 50" ||
        fail "t-lim-cpu: cpu.max '$(cat "$cg/cpu.max")', cpu.weight $(cat "$cg/cpu.weight")"
    u0=$(lim_num "$(irisctl status t-lim-cpu --json)" cpu_usec)
    t0=$(uptime_ms)
    sleep 2
    js=$(irisctl status t-lim-cpu --json)
    u1=$(lim_num "$js" cpu_usec)
    t1=$(uptime_ms)
    # CPU microseconds per wall millisecond: thousandths of a core.
    share=$(((${u1:-0} - ${u0:-0}) / (t1 - t0)))
    [ "$share" -ge 100 ] && [ "$share" -le 300 ] &&
        ok "t-lim-cpu: used $share/1000 of a core over $((t1 - t0)) ms (usage.cpu_usec $u0 -> $u1)" ||
        fail "t-lim-cpu: used $share/1000 of a core over $((t1 - t0)) ms (usage.cpu_usec '$u0' -> '$u1')"
    mem=$(lim_num "$js" memory_bytes)
    peak=$(lim_num "$js" memory_peak_bytes)
    [ "${mem:-0}" -gt 0 ] && [ "${peak:-0}" -ge "${mem:-0}" ] && [ "$(lim_num "$js" pids)" = 1 ] &&
        ok "t-lim-cpu: usage memory_bytes $mem, memory_peak_bytes $peak, pids 1" ||
        fail "t-lim-cpu: usage in $js"
    m=$(irisctl metrics 2>&1)
    secs=$(lim_metric "$m" iris_service_cpu_seconds_total t-lim-cpu)
    up=$(lim_metric "$m" iris_service_up t-lim-cpu)
    ooms=$(lim_metric "$m" iris_service_oom_kills_total t-lim-mem)
    mbytes=$(lim_metric "$m" iris_service_memory_bytes t-lim-cpu)
    case "$secs" in [0-9]*.[0-9]*) secs_ok=1 ;; *) secs_ok=0 ;; esac
    if [ "$secs_ok" = 1 ] && [ "$up" = 1 ] && [ "${ooms:-0}" -ge 1 ] && [ "${mbytes:-0}" -gt 0 ]; then
        ok "metrics: t-lim-cpu up 1, cpu ${secs}s, memory $mbytes bytes; t-lim-mem oom_kills $ooms"
    else
        fail "metrics: cpu '$secs' up '$up' memory '$mbytes' oom_kills '$ooms' in: $(printf '%s' "$m" | grep -v '^#' | tr '\n' ' ' | cut -c1-400)"
    fi
    irisctl stop t-lim-cpu >/dev/null || fail "stop t-lim-cpu"
else
    fail "start t-lim-cpu"
fi

# --- a container service gets the same limits -------------------------------
mkdir -p /tmp/lim
cat >/tmp/lim/t-lim-box.toml <<'EOF2'
cmd = "httpd"
args = ["-f", "-p", "127.0.0.1:8082", "-h", "/www"]
container = true
image = "oci:/usr/share/iris/oci/busybox:1"
health_port = 8082
restart = "never"
stop_timeout_secs = 3
limits = { memory_max = "48M", pids_max = 24, cpu_max = 0.5 }
EOF2
if irisctl apply /tmp/lim/t-lim-box.toml >/dev/null && irisctl start t-lim-box >/dev/null; then
    cg=/sys/fs/cgroup/t-lim-box.service
    cpid=$(get "$(irisctl status t-lim-box --json)" container_pid)
    ccg=$(sed -n 's/^0:://p' "/proc/$cpid/cgroup" 2>/dev/null)
    case "$ccg" in
    /t-lim-box.service | /t-lim-box.service/*) ok "t-lim-box: the container ($cpid) runs in $ccg" ;;
    *) fail "t-lim-box: the container ($cpid) runs in '$ccg'" ;;
    esac
    got="$(cat "$cg/memory.max") $(cat "$cg/memory.oom.group") $(cat "$cg/pids.max") $(cat "$cg/cpu.max")"
    [ "$got" = "50331648 1 24 50000 100000" ] &&
        ok "t-lim-box: memory.max, memory.oom.group, pids.max, cpu.max: $got" ||
        fail "t-lim-box: memory.max, memory.oom.group, pids.max, cpu.max: $got"
    irisctl delete t-lim-box >/dev/null || fail "delete t-lim-box"
else
    fail "apply and start t-lim-box"
fi
