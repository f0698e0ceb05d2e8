#!/usr/bin/env bash
# A throw-away single-node Ceph cluster (one mon, one OSD on memstore, no mgr) with a RADOS Gateway on
# 127.0.0.1, for the object-storage tests, the bench and local trials of the S3 and Swift drivers.
#
#   scripts/ceph-rgw.sh up [DIR]   start it in DIR (default: a new temp dir); prints the settings as
#                                  KEY=value lines and writes them to DIR/env
#                                  (`set -a; . DIR/env; set +a` exports them)
#   scripts/ceph-rgw.sh down DIR   stop what `up` started in DIR (by recorded pid) and remove DIR
#
# Settings printed: CEPH_RGW_DIR, S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY, S3_REGION,
# SWIFT_AUTH_URL (auth v1), SWIFT_USER, SWIFT_KEY.
# Env for `up`: RGW_PORT (default: a free port), S3_ACCESS_KEY / S3_SECRET_KEY / SWIFT_KEY (default:
# random), OBJECTSTORE=memstore|bluestore (default memstore; bluestore keeps data in a file in DIR),
# MEMSTORE_BYTES (default 4G: memstore keeps objects in RAM, so this bounds what the tests may store).
# Needs root and Debian's radosgw ceph-mon ceph-osd ceph-common (.ci/setup.d/20-ceph.sh installs them).
set -Eeuo pipefail
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }

free_port() { # a port nobody listens on now (the kernel picks it)
  python3 -c 'import socket,sys;s=socket.socket();s.bind(("127.0.0.1",int(sys.argv[1])));print(s.getsockname()[1])' "${1:-0}"
}
rand_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

# A pid still counts as ours only while its command line names our ceph.conf (guards against pid reuse).
ours() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF "$2/ceph.conf"; }

cmd_down() {
  local dir=${1:-${CEPH_RGW_DIR:-}}
  [ -n "$dir" ] || { echo "ceph-rgw.sh down: give the DIR that up printed (CEPH_RGW_DIR)" >&2; exit 2; }
  dir=$(realpath -m "$dir")
  [ -f "$dir/ceph.conf" ] || { echo "ceph-rgw.sh down: $dir holds no cluster started by up" >&2; exit 1; }
  if [ -f "$dir/pids" ]; then
    # reverse start order (rgw, osd, mon): TERM, wait up to 5 s, then KILL
    tac "$dir/pids" | while read -r pid name; do
      ours "$pid" "$dir" || continue
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do ours "$pid" "$dir" || break; sleep 0.1; done
      if ours "$pid" "$dir"; then kill -KILL "$pid" 2>/dev/null || true; fi
    done
  fi
  [ -n "${KEEP_DIR:-}" ] || rm -rf "$dir"
}

cmd_up() {
  for tool in ceph-mon ceph-osd radosgw radosgw-admin ceph ceph-authtool monmaptool python3; do
    command -v "$tool" >/dev/null 2>&1 || {
      echo "ceph-rgw.sh: $tool is missing (apt-get install radosgw ceph-mon ceph-osd ceph-common)" >&2; exit 1; }
  done
  local dir=${1:-$(mktemp -d -t ceph-rgw.XXXXXX)}
  dir=$(realpath -m "$dir")
  [ ! -e "$dir/ceph.conf" ] || { echo "ceph-rgw.sh: $dir already holds a cluster" >&2; exit 1; }
  mkdir -p "$dir"/{run,log,mon.a,osd.0}
  local objectstore=${OBJECTSTORE:-memstore}
  local mon_port rgw_port want=${RGW_PORT:-0}
  mon_port=$(free_port)
  rgw_port=$(free_port "$want" 2>/dev/null) || { echo "ceph-rgw.sh: RGW_PORT $want is in use" >&2; exit 1; }
  local access=${S3_ACCESS_KEY:-$(rand_hex 10 | tr a-f A-F)}
  local secret=${S3_SECRET_KEY:-$(rand_hex 20)}
  local swift_key=${SWIFT_KEY:-$(rand_hex 20)}
  local fsid; fsid=$(cat /proc/sys/kernel/random/uuid)
  local conf=$dir/ceph.conf
  # Why these settings (measured on Ceph 16.2): cephx off needs `ms mon client mode = crc` or radosgw
  # cannot authenticate to the mon; beast without tcp_nodelay adds ~45 ms to every response with a
  # body; a short paxos interval brings the start from ~13 s to ~2 s; gc min wait 0 lets memstore
  # free deleted data soon. One replica, few PGs: it is one OSD.
  cat >"$conf" <<CONF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$mon_port]
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
ms bind ipv6 = false
ms mon client mode = crc
auth cluster required = none
auth service required = none
auth client required = none
keyring = $dir/keyring
run dir = $dir/run
admin socket = $dir/run/\$name.asok
pid file = $dir/run/\$name.pid
log file = $dir/log/\$name.log
crash dir = $dir/log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon max pg per osd = 1000
mon warn on pool no redundancy = false
mon data avail warn = 2
mon data avail crit = 1
paxos propose interval = 0.05
[mon]
mon data = $dir/mon.\$id
[osd]
osd data = $dir/osd.\$id
osd objectstore = $objectstore
memstore device bytes = ${MEMSTORE_BYTES:-4G}
bluestore block size = 20G
bluestore block create = true
bluestore fsck on mount = false
osd memory target = 1G
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$rgw_port tcp_nodelay=1
rgw thread pool size = 64
rgw gc obj min wait = 0
rgw gc processor period = 5
rgw gc processor max time = 5
CONF
  local pids=$dir/pids
  : >"$pids"
  local c=(-c "$conf")
  start() { local n=$1; shift; "$@" </dev/null >"$dir/log/$n.out" 2>&1 & echo "$! $n" >>"$pids"; }
  fail() {
    echo "ceph-rgw.sh: $*" >&2
    for f in "$dir"/log/*; do [ -f "$f" ] && { echo "== $f" >&2; tail -n 15 "$f" >&2; }; done
    KEEP_DIR=1 cmd_down "$dir" >&2 || true
    exit 1
  }
  wait_for() { # seconds what cmd...  (fails as soon as one of our daemons has died)
    local t=$1 what=$2 pid name end; shift 2
    end=$((SECONDS + t))
    until "$@" >/dev/null 2>&1; do
      while read -r pid name; do kill -0 "$pid" 2>/dev/null || fail "$name exited"; done <"$pids"
      ((SECONDS < end)) || fail "timed out waiting for $what"
      sleep 0.2
    done
  }
  trap 'fail "command failed at line $LINENO"' ERR

  ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool "$dir/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' >/dev/null
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" "$dir/monmap" >/dev/null
  ceph-mon "${c[@]}" -i a --mkfs --monmap "$dir/monmap" --keyring "$dir/keyring" >"$dir/log/mon-mkfs.out" 2>&1 || fail "mon mkfs"
  start mon.a ceph-mon "${c[@]}" -i a -f
  wait_for 60 "the monitor" timeout 5 ceph "${c[@]}" mon stat

  local osd_uuid id
  osd_uuid=$(cat /proc/sys/kernel/random/uuid)
  id=$(ceph "${c[@]}" osd new "$osd_uuid")
  [ "$id" = 0 ] || fail "unexpected osd id $id"
  ceph-osd "${c[@]}" -i 0 --mkfs --osd-uuid "$osd_uuid" >"$dir/log/osd-mkfs.out" 2>&1 || fail "osd mkfs"
  start osd.0 ceph-osd "${c[@]}" -i 0 -f
  wait_for 90 "the OSD" sh -c "ceph -c '$conf' osd dump --format=json | grep -q '\"up\":1'"

  start rgw.a radosgw "${c[@]}" -n client.rgw.a -f
  wait_for 120 "radosgw" curl -fsS -o /dev/null "http://127.0.0.1:$rgw_port/"

  # One user with an S3 key, and a Swift subuser of it with a Swift key (auth v1 at /auth/1.0).
  radosgw-admin "${c[@]}" user create --uid=registry --display-name=registry \
    --access-key="$access" --secret-key="$secret" >"$dir/log/user.out" 2>&1 || fail "user create"
  radosgw-admin "${c[@]}" subuser create --uid=registry --subuser=registry:swift --access=full \
    >>"$dir/log/user.out" 2>&1 || fail "subuser create"
  radosgw-admin "${c[@]}" key create --subuser=registry:swift --key-type=swift --secret-key="$swift_key" \
    >>"$dir/log/user.out" 2>&1 || fail "swift key create"
  trap - ERR

  cat >"$dir/env" <<ENV
CEPH_RGW_DIR=$dir
S3_ENDPOINT=http://127.0.0.1:$rgw_port
S3_ACCESS_KEY=$access
S3_SECRET_KEY=$secret
S3_REGION=us-east-1
SWIFT_AUTH_URL=http://127.0.0.1:$rgw_port/auth/1.0
SWIFT_USER=registry:swift
SWIFT_KEY=$swift_key
ENV
  cat "$dir/env"
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
