# Object storage (issue 12): a throw-away single-node Ceph RADOS Gateway (scripts/ceph-rgw.sh) serves the
# S3 and Swift APIs for the storage driver suites, the multi-node tests and the S3 bench.
# Sourced by .ci/run (bash, set -euo pipefail).
ceph_missing=""
for t in radosgw ceph-mon ceph-osd ceph radosgw-admin; do
  command -v "$t" >/dev/null 2>&1 || ceph_missing=1
done
if [ -n "$ceph_missing" ]; then
  echo "== installing ceph (radosgw ceph-mon ceph-osd ceph-common)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends radosgw ceph-mon ceph-osd ceph-common >/dev/null
fi
unset ceph_missing t
