#!/usr/bin/env bash
# The property-based API test: Schemathesis generates requests from
# src/api/openapi.json and checks every answer of a running plain supervisor
# against the document (no 5xx, declared status, content type, headers and
# schema, invalid input refused, valid input accepted, undocumented methods
# 405 with a true Allow header, a created service there and a deleted one
# gone); then the server must still be up. Exits non-zero on any failure.
#
# The init runs in a private temp dir (its working directory too: generated
# commands run as root) without CAP_SYS_TIME, so a generated restore `time`
# cannot move this machine's clock. Schemathesis speaks TCP; socat bridges
# 127.0.0.1:PORT to the unix socket. Every process is ended at the end.
#
# Not generated (see scripts/schemathesis_hooks.py and the end of this file):
# poweroff and reboot end the server, so they are checked once by hand at
# the end; the events stream and `follow=true` logs never end, so events are
# read for a bounded time by hand and `follow` is never generated.
#
# Knobs: IRIS_INIT (binary), SCHEMATHESIS (program), API_SCHEMA_EXAMPLES
# (generated requests per operation and phase), API_SCHEMA_SEED,
# API_SCHEMA_ARGS (more schemathesis options, e.g. --phases examples).
# The report and the init's log of the last run stay in build/api-schema/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin=${IRIS_INIT:-$root/target/debug/iris-init}
st=${SCHEMATHESIS:-$root/build/schemathesis/bin/schemathesis}
examples=${API_SCHEMA_EXAMPLES:-300}
seed=${API_SCHEMA_SEED:-16}
[ -x "$bin" ] || { echo "api-schema: no $bin (cargo build first)" >&2; exit 1; }
[ -x "$st" ] || { echo "api-schema: no $st (make setup installs it)" >&2; exit 1; }
command -v socat >/dev/null || { echo "api-schema: socat missing (make setup)" >&2; exit 1; }
command -v setpriv >/dev/null || { echo "api-schema: setpriv missing (make setup)" >&2; exit 1; }

# The document's own examples and the example drop-ins first.
"$(dirname "$st")/python" scripts/check-api-examples.py

tmp=$(mktemp -d "${TMPDIR:-/tmp}/iris-api-schema.XXXXXX")
sock=$tmp/run/services.sock
mkdir -p "$tmp/init.d" "$tmp/cwd" "$tmp/report"
init_pid='' socat_pid='' cgroup=''
started=$(date +%s)

api() { curl -sS --max-time 10 --unix-socket "$sock" "$@"; }

cleanup() {
  set +e
  [ -n "$socat_pid" ] && kill "$socat_pid" 2>/dev/null && wait "$socat_pid" 2>/dev/null
  if [ -n "$init_pid" ] && kill -0 "$init_pid" 2>/dev/null; then
    kill -KILL -- "-$init_pid" 2>/dev/null
    wait "$init_pid" 2>/dev/null
  fi
  # Services live in their own process groups and cgroups: end what is left.
  # A plain supervisor leaves its (empty) cgroup behind: remove it too.
  if [ -n "$cgroup" ] && [ -d "$cgroup" ]; then
    find "$cgroup" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -KILL 2>/dev/null
    for _ in $(seq 50); do
      find "$cgroup" -depth -type d -exec rmdir {} + 2>/dev/null
      [ -d "$cgroup" ] || break
      sleep 0.1
    done
  fi
  # What a failure needs for a look: the report and the init's log.
  mkdir -p "$root/build/api-schema"
  cp "$tmp"/report/*.ndjson "$root/build/api-schema/report.ndjson" 2>/dev/null
  cp "$tmp/init.log" "$root/build/api-schema/init.log" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

# The init, in its own session (process group = its pid), in the temp dir.
(
  cd "$tmp/cwd"
  exec setsid setpriv --bounding-set -sys_time --inh-caps -sys_time \
    "$bin" --socket "$sock" --services-dir "$tmp/init.d" \
    --state-file "$tmp/state/state.json" --log-dir "$tmp/logs"
) >"$tmp/init.log" 2>&1 &
init_pid=$!
for _ in $(seq 200); do
  [ -S "$sock" ] && api -o /dev/null http://localhost/v1/system && break
  kill -0 "$init_pid" 2>/dev/null || { cat "$tmp/init.log" >&2; exit 1; }
  sleep 0.05
done
cgroup=$(api http://localhost/v1/system | python3 -c 'import json,sys; print(json.load(sys.stdin).get("cgroups") or "")')

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
socat "TCP-LISTEN:$port,bind=127.0.0.1,fork,reuseaddr" "UNIX-CONNECT:$sock" &
socat_pid=$!
for _ in $(seq 100); do
  curl -s -o /dev/null "http://127.0.0.1:$port/v1/system" && break
  sleep 0.05
done

# The events stream never ends: checked by hand below, not generated.
exclude_events=''
grep -q '"/v1/events"' src/api/openapi.json && exclude_events='--exclude-operation-id events'

echo "api-schema: Schemathesis $("$st" --version | awk '{print $NF}'), $examples examples per operation, seed $seed"
status=0
# From the temp dir: Schemathesis and Hypothesis keep caches in the cwd.
(cd "$tmp" && SCHEMATHESIS_HOOKS=$root/scripts/schemathesis_hooks.py "$st" run "$root/src/api/openapi.json" \
  --url "http://127.0.0.1:$port" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection,positive_data_acceptance,unsupported_method,allow_header_conformance,response_headers_conformance,missing_required_header,use_after_free,ensure_resource_availability,exec_prints_its_arguments \
  --exclude-operation-id poweroff --exclude-operation-id reboot $exclude_events \
  --max-examples "$examples" --seed "$seed" --request-timeout 20 --workers 1 \
  --generation-database none --no-color --continue-on-failure \
  --report ndjson --report-dir "$tmp/report" ${API_SCHEMA_ARGS:-}) || status=$?

requests=$(python3 - "$tmp/report" <<'EOF'
import json, pathlib, sys
n = 0
for f in pathlib.Path(sys.argv[1]).glob("*.ndjson"):
    for line in f.open():
        n += line.count('"request":')
print(n)
EOF
)

fail() { echo "api-schema: $*" >&2; status=1; }

# Still up, and not one process more than before once the services are gone.
api -o /dev/null -f http://localhost/v1/system || fail "the init stopped answering"
for n in $(api http://localhost/v1/services | python3 -c 'import json,sys; print(" ".join(s["name"] for s in json.load(sys.stdin)))'); do
  api -o /dev/null -X DELETE "http://localhost/v1/services/$n" || fail "DELETE $n failed"
done
[ "$(api http://localhost/v1/services)" = "[]" ] || fail "services left after deleting them all"

# The events stream never ends: read for a bounded time, it must be
# text/event-stream and start with a snapshot, as the document says.
if grep -q '"/v1/events"' src/api/openapi.json; then
  ev=$(curl -s --max-time 2 --unix-socket "$sock" -D "$tmp/ev.head" http://localhost/v1/events || true)
  grep -qi '^content-type: text/event-stream' "$tmp/ev.head" || fail "GET /v1/events is not text/event-stream"
  grep -q '^event: snapshot' <<<"$ev" || fail "GET /v1/events did not start with a snapshot"
  # Its documented errors answer at once, as JSON.
  for probe in "400 GET /v1/events?since=abc" "400 GET /v1/events?services=..%2Fx" "405 POST /v1/events"; do
    read -r want method path <<<"$probe"
    got=$(api -o /dev/null -w '%{http_code} %{content_type}' -X "$method" "http://localhost$path")
    [ "$got" = "$want application/json" ] || fail "$method $path answered $got, not $want JSON"
  done
fi

# Poweroff by hand: 202 as the document says, then a plain supervisor exits 0.
code=$(api -o "$tmp/off.json" -w '%{http_code}' -X POST http://localhost/v1/system/poweroff)
[ "$code" = 202 ] || fail "poweroff answered $code"
for _ in $(seq 200); do kill -0 "$init_pid" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$init_pid" 2>/dev/null; then
  fail "the init did not exit after poweroff"
else
  wait "$init_pid" || fail "the init exited $? after poweroff"
  init_pid=''
fi

echo "api-schema: $requests requests sent in $(($(date +%s) - started)) s; $([ $status = 0 ] && echo passed || echo FAILED)"
exit "$status"
