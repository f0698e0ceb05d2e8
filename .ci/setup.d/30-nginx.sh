# nginx for the scale-out tests (test/e2e/multinode.test.ts runs examples/nginx/legacy-registry.conf
# in front of two registry nodes). Sourced by .ci/run (bash, set -euo pipefail).
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  echo "== installing nginx (scale-out tests)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null
fi
# the tests start their own nginx on loopback ports; the Debian service is not needed
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then systemctl stop nginx || true; fi
export NGINX_PATH="${NGINX_PATH:-/usr/sbin/nginx}"
