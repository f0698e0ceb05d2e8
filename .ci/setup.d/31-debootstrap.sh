# debootstrap (and runc) for test/e2e/container.test.ts: the Dockerfile is built with podman on a
# stand-in for the official node:20-bookworm-slim base (scripts/container-base.sh: a Debian root
# filesystem from debootstrap plus the node binary in use), cached in /var/cache/legacy-registry-test
# so only the first run pays for debootstrap (~4 minutes). Sourced by .ci/run.
need=""
command -v debootstrap >/dev/null 2>&1 || need="$need debootstrap"
[ -x /usr/sbin/runc ] || need="$need runc"
command -v podman >/dev/null 2>&1 || need="$need podman"
if [ -n "$need" ]; then
  echo "== installing$need (container test)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
export CONTAINER_BASE_CACHE="${CONTAINER_BASE_CACHE:-/var/cache/legacy-registry-test}"
echo "== container base image (scripts/container-base.sh)"
BASE_CACHE="$CONTAINER_BASE_CACHE" scripts/container-base.sh
