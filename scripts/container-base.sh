#!/usr/bin/env bash
# Build a stand-in for the official Node 20 base image where none can be pulled (CI, offline
# sites): a Debian bookworm root filesystem from debootstrap plus the Node 20 binary this machine
# runs, imported into podman under the official name (docker.io/library/node:20-bookworm-slim) so
# the project's Dockerfile builds unchanged with `podman build --pull=never`.
#
#   scripts/container-base.sh [--help]
#   env: DEBIAN_MIRROR (default: the first deb.debian.org-style URI of the apt sources),
#        BASE_CACHE (default /var/cache/legacy-registry-test), BASE_IMAGE (the tag to create)
#
# The debootstrap tree is cached in $BASE_CACHE/bookworm-minbase.tar (a second run takes seconds).
set -euo pipefail
if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi
BASE_CACHE="${BASE_CACHE:-/var/cache/legacy-registry-test}"
BASE_IMAGE="${BASE_IMAGE:-docker.io/library/node:20-bookworm-slim}"
if [ -z "${DEBIAN_MIRROR:-}" ]; then
  # the active sources only: `URIs:` of deb822 files and `deb` lines (not comments, not -security)
  DEBIAN_MIRROR="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
    | sed -nE 's/^(URIs:|deb)[[:space:]]+(\[[^]]*\][[:space:]]+)?(https?:\/\/[^ ]*\/debian\/?)([[:space:]].*)?$/\3/p' | head -n1 || true)"
  DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
fi
NODE_BIN="$(command -v node)"
case "$("$NODE_BIN" --version)" in v20.*) ;; *) echo "container-base: node 20 needed, found $("$NODE_BIN" --version)" >&2; exit 1 ;; esac

mkdir -p "$BASE_CACHE"
tarball="$BASE_CACHE/bookworm-minbase.tar"
if [ ! -s "$tarball" ]; then
  command -v debootstrap >/dev/null || { echo "container-base: debootstrap is not installed" >&2; exit 1; }
  work="$(mktemp -d "$BASE_CACHE/rootfs.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  echo "container-base: debootstrap bookworm from $DEBIAN_MIRROR (once; cached in $tarball)"
  debootstrap --variant=minbase bookworm "$work" "$DEBIAN_MIRROR" >"$BASE_CACHE/debootstrap.log" 2>&1 \
    || { tail -n 30 "$BASE_CACHE/debootstrap.log" >&2; exit 1; }
  # what the official slim image leaves out: apt lists and caches
  rm -rf "$work"/var/lib/apt/lists/* "$work"/var/cache/apt/*.bin "$work"/var/cache/apt/archives/*.deb
  tar -C "$work" -cf "$tarball.part" .
  mv "$tarball.part" "$tarball"
  rm -rf "$work"
  trap - EXIT
fi

# Which podman flags run a container on this machine: the defaults, else runc with lowered rlimits
# (machines with cgroup v1 "hybrid" mounts, which crun refuses, and without CAP_SYS_RESOURCE, so
# podman's default RLIMIT_NOFILE/NPROC of 1048576 cannot be set). Kept in $BASE_CACHE/podman-flags
# for the tests (test/e2e/container.test.ts) to use the same.
podman import --quiet "$tarball" localhost/legacy-registry-test/bookworm-minbase:latest >/dev/null
flags=""
for candidate in "" "--runtime runc --ulimit nofile=4096:4096 --ulimit nproc=4096:4096"; do
  # shellcheck disable=SC2086
  if podman run --rm --network=none $candidate localhost/legacy-registry-test/bookworm-minbase:latest /bin/true >/dev/null 2>"$BASE_CACHE/podman-probe.log"; then
    flags="$candidate"
    ok=1
    break
  fi
done
if [ -z "${ok:-}" ]; then
  echo "container-base: podman cannot run containers here:" >&2
  cat "$BASE_CACHE/podman-probe.log" >&2
  exit 1
fi
printf '%s\n' "$flags" >"$BASE_CACHE/podman-flags"

# The node layer: the binary in use, the official image's `node` user (uid/gid 1000) and its
# environment. Rebuilt when the binary changes.
node_id="$(sha256sum "$NODE_BIN" | cut -c1-16)"
if podman image exists "$BASE_IMAGE" && [ "$(podman image inspect --format '{{index .Labels "node-binary"}}' "$BASE_IMAGE" 2>/dev/null)" = "$node_id" ]; then
  echo "container-base: $BASE_IMAGE is current"
  exit 0
fi
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp "$NODE_BIN" "$ctx/node"
cat >"$ctx/Containerfile" <<CONTAINERFILE
FROM localhost/legacy-registry-test/bookworm-minbase:latest
COPY node /usr/local/bin/node
RUN groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node
ENV NODE_VERSION=$("$NODE_BIN" --version | cut -c2-)
LABEL node-binary=$node_id
CMD ["node"]
CONTAINERFILE
# shellcheck disable=SC2086
podman build --quiet --pull=never --network=none $flags -t "$BASE_IMAGE" "$ctx" >/dev/null
echo "container-base: $BASE_IMAGE built (node $("$NODE_BIN" --version), debootstrap bookworm)"
