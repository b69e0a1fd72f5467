#!/usr/bin/env bash
# Installs the Debian packages the examples, tests, microVM and container
# services need. Idempotent; quiet when everything is there.
set -euo pipefail
pkgs=(busybox-static python3 util-linux iproute2 procps
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
