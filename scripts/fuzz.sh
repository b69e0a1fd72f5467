#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for SECS seconds each (default 30), from
# the committed seeds in fuzz/seeds/T plus the growing corpus in
# fuzz/corpus/T. Installs the nightly toolchain and cargo-fuzz when missing.
# Any crash, panic, timeout or out-of-memory fails the run (exit 1); the
# input that did it is in fuzz/artifacts/T/.
set -u
cd "$(dirname "$0")/.."
SECS="${1:-30}"
TARGETS="${FUZZ_TARGETS:-http_request definition_json exec_body restore_body dropin_toml state_file}"

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked

dict_for() {
    case "$1" in
        http_request) echo fuzz/dicts/http.dict ;;
        dropin_toml) echo fuzz/dicts/toml.dict ;;
        *) echo fuzz/dicts/json.dict ;;
    esac
}

cargo +nightly fuzz build -O || exit 1
failed=""
for t in $TARGETS; do
    mkdir -p "fuzz/corpus/$t"
    echo "== fuzz $t for ${SECS}s"
    # -timeout: one input taking 10 s counts as a hang, i.e. a failure.
    if ! cargo +nightly fuzz run -O "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
        -dict="$(dict_for "$t")" -print_final_stats=1; then
        failed="$failed $t"
    fi
done
if [ -n "$failed" ]; then
    echo "fuzzing found a failure in:$failed (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzzing: no failure in $TARGETS"
