#!/usr/bin/env bash
# Test helper for container services: builds a tiny busybox OCI image, runs a
# throwaway registry on loopback, and pushes images to it.
#
#   oci.sh image DIR [TAG]                build a busybox OCI layout at DIR
#                                         (tag "1"): every applet in /bin,
#                                         root/user(1000)/nobody, /www/index.html,
#                                         env PATH=/bin IMAGE_VAR=from-image, cmd sh
#   oci.sh registry DIR                   start a registry (storage in DIR) on
#                                         127.0.0.1:<free port>; prints "PORT PID"
#   oci.sh push LAYOUT:TAG HOST:PORT/NAME:TAG
#                                         copy a local layout image to a
#                                         plain-HTTP registry
#   oci.sh stop-registry PID              stop a registry started above
#
# Needs the Debian packages listed in oci-packages.txt next to this script.
# The caller owns DIR and removes it; the registry is its own process group
# with no inherited stdio, so a test that captures this script's output does
# not hang on it.
set -euo pipefail

die() {
	echo "oci.sh: $*" >&2
	exit 1
}

busybox_bin() {
	local b
	for b in /bin/busybox /usr/bin/busybox; do
		# The image must not need a dynamic loader: insist on a static binary.
		[ -x "$b" ] || continue
		# The image has no dynamic loader: refuse a dynamic busybox when we can tell.
		if command -v file >/dev/null && LC_ALL=C file -L "$b" | grep -q 'dynamically linked'; then
			continue
		fi
		if true; then
			echo "$b"
			return 0
		fi
	done
	die "no static busybox found (apt-get install busybox-static)"
}

cmd_image() {
	local dir=${1:?usage: oci.sh image DIR [TAG]}
	local tag=${2:-1}
	command -v umoci >/dev/null || die "umoci not found"
	local bb
	bb=$(busybox_bin)
	local stage
	stage=$(mktemp -d)
	# shellcheck disable=SC2064 # expand now: the trap must remove this stage.
	trap "rm -rf '$stage'" EXIT
	local root=$stage/root
	mkdir -p "$root"/{bin,etc,tmp,proc,sys,dev,root,www,home/user}
	chmod 755 "$root"
	chmod 1777 "$root/tmp"
	cp "$bb" "$root/bin/busybox"
	chmod 755 "$root/bin/busybox"
	local applet
	for applet in $("$bb" --list); do
		[ "$applet" = busybox ] && continue
		ln -sf busybox "$root/bin/$applet"
	done
	cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
user:x:1000:1000:user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
	cat >"$root/etc/group" <<'EOF'
root:x:0:
user:x:1000:
nogroup:x:65534:
EOF
	chown 1000:1000 "$root/home/user"
	echo "hello from the busybox image" >"$root/www/index.html"

	rm -rf "$dir"
	umoci init --layout "$dir" >/dev/null
	umoci new --image "$dir:$tag" >/dev/null
	umoci insert --image "$dir:$tag" "$root" / >/dev/null
	umoci config --image "$dir:$tag" \
		--config.env PATH=/bin \
		--config.env IMAGE_VAR=from-image \
		--config.workingdir / \
		--config.cmd sh >/dev/null
	# umoci keeps the old, untagged config/manifest blobs around: drop them.
	umoci gc --layout "$dir" >/dev/null
}

# Ports listening on this host, from /proc/net/tcp{,6} (hex local port, state 0A).
port_in_use() {
	local hex
	hex=$(printf '%04X' "$1")
	awk -v p=":$hex" 'NR>1 && $4=="0A" && substr($2, length($2)-4)==p {found=1} END {exit !found}' \
		/proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# GET /v2/ with bash's /dev/tcp: prints the HTTP status code, or nothing.
v2_status() {
	local port=$1
	(
		exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 0
		printf 'GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
		local line
		IFS= read -r -t 2 line <&3 || exit 0
		line=${line%$'\r'}
		echo "${line#* }" | cut -d' ' -f1
	) 2>/dev/null || true
}

cmd_registry() {
	local dir=${1:?usage: oci.sh registry DIR}
	command -v docker-registry >/dev/null || die "docker-registry not found"
	mkdir -p "$dir/storage"
	dir=$(cd "$dir" && pwd)
	local attempt port pid
	for attempt in 1 2 3 4 5 6 7 8 9 10; do
		port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
		port_in_use "$port" && continue
		cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
		# setsid + no inherited stdio: the registry must outlive this script
		# without holding the caller's pipes open.
		setsid docker-registry serve "$dir/config.yml" \
			</dev/null >"$dir/registry.log" 2>&1 &
		pid=$!
		local _
		for _ in $(seq 1 100); do
			if ! kill -0 "$pid" 2>/dev/null; then
				break # died: most likely the port was taken meanwhile
			fi
			if [ "$(v2_status "$port")" = 200 ]; then
				echo "$port $pid"
				echo "$pid" >"$dir/registry.pid"
				return 0
			fi
			sleep 0.05
		done
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		echo "oci.sh: registry attempt $attempt on port $port failed:" >&2
		cat "$dir/registry.log" >&2 || true
	done
	die "could not start a registry"
}

cmd_stop_registry() {
	local pid=${1:?usage: oci.sh stop-registry PID}
	kill "$pid" 2>/dev/null || return 0
	local _
	for _ in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.05
	done
	kill -9 "$pid" 2>/dev/null || true
}

cmd_push() {
	local src=${1:?usage: oci.sh push LAYOUT:TAG HOST:PORT/NAME:TAG}
	local dst=${2:?usage: oci.sh push LAYOUT:TAG HOST:PORT/NAME:TAG}
	command -v skopeo >/dev/null || die "skopeo not found"
	# Plain-HTTP test registry: no TLS. skopeo sends the OCI Accept headers
	# a distribution registry needs.
	skopeo copy --quiet --dest-tls-verify=false "oci:$src" "docker://$dst"
}

case "${1:-}" in
image) cmd_image "${2:-}" "${3:-}" ;;
registry) cmd_registry "${2:-}" ;;
stop-registry) cmd_stop_registry "${2:-}" ;;
push) cmd_push "${2:-}" "${3:-}" ;;
*)
	echo "usage: oci.sh image DIR [TAG] | registry DIR | push LAYOUT:TAG HOST:PORT/NAME:TAG | stop-registry PID" >&2
	exit 2
	;;
esac
