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
