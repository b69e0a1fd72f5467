#!/usr/bin/env bash
# Installs the Debian packages the examples, tests, microVM and container
# services need. Idempotent; quiet when everything is there.
set -euo pipefail
pkgs=(busybox-static python3 socat util-linux iproute2 procps
      qemu-system-x86 cpio e2fsprogs
      crun runc skopeo umoci docker-registry
      zsh fish)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ -f rootfs/setup.sh ]; then bash rootfs/setup.sh; fi

# make static (the VM image's binaries) prefers the musl target: static
# glibc makes iris-init about 0.8 MB larger (scripts/build-static.sh).
musl=x86_64-unknown-linux-musl
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$musl"; then
  echo "setup: adding the Rust target $musl"
  rustup target add "$musl" >/dev/null || echo "setup: no $musl target: make static falls back to static glibc"
fi

# The property-based API test (make api-schema): Schemathesis from PyPI,
# every version pinned, in its own virtual environment under build/.
here=$(cd "$(dirname "$0")" && pwd)
venv=$here/../build/schemathesis
reqs=$here/schemathesis-requirements.txt
if ! cmp -s "$reqs" "$venv/requirements.txt"; then
  echo "setup: installing $(grep -o '^schemathesis==.*' "$reqs") (PyPI) in build/schemathesis"
  rm -rf "$venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps -r "$reqs"
  cp "$reqs" "$venv/requirements.txt"
fi

# The metrics test scrapes GET /v1/metrics with the Prometheus project's
# own text parser (PyPI prometheus-client), for the python3 on PATH.
PROMETHEUS_CLIENT=0.26.0
if ! python3 -c "import sys, importlib.metadata as m; sys.exit(m.version('prometheus-client') != '$PROMETHEUS_CLIENT')" 2>/dev/null; then
  echo "setup: installing prometheus-client $PROMETHEUS_CLIENT (PyPI)"
  if ! python3 -m pip --version >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
  fi
  # Debian's own python3 refuses pip installs unless told (PEP 668).
  python3 -m pip install -q --disable-pip-version-check "prometheus-client==$PROMETHEUS_CLIENT" 2>/dev/null ||
    python3 -m pip install -q --disable-pip-version-check --break-system-packages "prometheus-client==$PROMETHEUS_CLIENT"
fi
