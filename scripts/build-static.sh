#!/usr/bin/env bash
# Builds the static, stripped iris-init and irisctl the VM image ships (it
# has no libc), prints their sizes on stderr and their directory on stdout.
#
# The musl target when rustup has it (`make setup` adds it): static musl
# adds about 60 KB to the binary, static glibc about 840 KB (its dynamic
# loader, locale, iconv and stdio come along). Without it, the gnu target
# with crt-static (also a static-pie). IRIS_STATIC_TARGET picks one.
# Relative relocations are packed (DT_RELR, which the static-pie start code
# of musl >= 1.2.4 and glibc >= 2.36 applies): 31 KB less than RELA, and the
# binary stays position-independent (ASLR).
# Usage: scripts/build-static.sh [--quiet]
set -euo pipefail
cd "$(dirname "$0")/.."
musl=x86_64-unknown-linux-musl
target=${IRIS_STATIC_TARGET:-}
if [ -z "$target" ]; then
    if rustup target list --installed 2>/dev/null | grep -qx "$musl"; then
        target=$musl
    else
        target=x86_64-unknown-linux-gnu
        echo "build-static: no $musl target (rustup target add $musl): static glibc, about 0.8 MB larger" >&2
    fi
fi
RUSTFLAGS='-C target-feature=+crt-static -C link-arg=-Wl,-z,pack-relative-relocs' \
    ${CARGO:-cargo} build --release "$@" --target "$target" --bin iris-init --bin irisctl >&2
dir=$(cd "${CARGO_TARGET_DIR:-target}/$target/release" && pwd)
for bin in iris-init irisctl; do
    bytes=$(stat -c %s "$dir/$bin")
    awk -v b="$bytes" -v f="$dir/$bin" 'BEGIN { printf "%s: %d bytes (%.2f MiB), static, stripped\n", f, b, b / 1048576 }' >&2
done
# The size goal for the image's init, on musl (static glibc cannot meet it).
budget=1572864
if [ "$target" = "$musl" ] && [ "$(stat -c %s "$dir/iris-init")" -gt "$budget" ]; then
    echo "build-static: iris-init is over its budget of $budget bytes (1.5 MiB)" >&2
fi
echo "$dir"
