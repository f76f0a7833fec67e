#!/usr/bin/env bash
# run.sh: the run command. Installs missing Debian packages, builds build/,
# starts a local 3-node Confman cluster on loopback (scripts/cluster, data in
# run/cluster), mounts it at run/mnt with confman-fs and starts the HTTP
# gateway confman-api on 127.0.0.1:8080 (logs and pid in run/).
#
# Usage: scripts/run.sh          start (again: what already runs is kept)
#        scripts/run.sh stop     unmount, stop the gateway and the cluster
# Exit status: 0 ok, 1 a step failed, 2 bad usage.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
MNT=$ROOT/run/mnt
API_ADDR=127.0.0.1:8080
API_PID=$ROOT/run/api.pid

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; }

api_alive() { [ -f "$API_PID" ] && kill -0 "$(cat "$API_PID")" 2>/dev/null; }

stop() {
	if mountpoint -q "$MNT"; then
		echo "==> unmount $MNT"
		fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT"
	fi
	if api_alive; then
		echo "==> stop confman-api"
		kill "$(cat "$API_PID")"
	fi
	rm -f "$API_PID"
	scripts/cluster down
}

case "${1:-}" in
"") ;;
stop) stop; exit 0 ;;
-h | --help) usage; exit 0 ;;
*) echo "run.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
esac

. scripts/deps.sh
echo "==> dependencies"
cm_deps_install
echo "==> configure build/"
cm_setup build --buildtype=debugoptimized
echo "==> build"
ninja -C build

echo "==> start a 3-node cluster"
scripts/cluster up
eval "$(scripts/cluster env | sed "s/^/export /")"
servers=$CONFMAN_SERVERS
# Wait until the group has a leader, so the first command works.
for _ in $(seq 1 100); do
	if build/client/confmanctl --servers "$servers" --timeout 500 status 2>/dev/null |
		grep -q leader; then
		break
	fi
	sleep 0.1
done
build/client/confmanctl --servers "$servers" status

if mountpoint -q "$MNT"; then
	echo "==> $MNT is mounted already"
else
	# A mount whose daemon died leaves "Transport endpoint is not connected".
	umount -l "$MNT" 2>/dev/null || true
	mkdir -p "$MNT"
	echo "==> mount $MNT"
	tlsopts=()
	if [ -n "${CONFMAN_CA:-}" ]; then
		tlsopts=(-o "ca=$CONFMAN_CA,cert=$CONFMAN_CERT,key=$CONFMAN_KEY")
	fi
	build/fs/confman-fs "${tlsopts[@]}" "$servers" "$MNT"
fi

if api_alive; then
	echo "==> confman-api runs already (pid $(cat "$API_PID"))"
else
	echo "==> start confman-api on $API_ADDR"
	apiopts=()
	if [ -n "${CONFMAN_CA:-}" ]; then
		# HTTPS; callers bring a client certificate or a bearer token, and
		# the gateway forwards their identities as a trusted proxy.
		certs=$(dirname "$CONFMAN_CA")
		apiopts=(--server-cert "$certs/confman-gw.pem" --server-key "$certs/confman-gw.key"
			--https-cert "$certs/gateway.pem" --https-key "$certs/gateway.key"
			--https-ca "$CONFMAN_CA")
	fi
	setsid build/api/confman-api --listen "$API_ADDR" --servers "$servers" "${apiopts[@]}" \
		>"$ROOT/run/api.log" 2>&1 </dev/null &
	echo $! >"$API_PID"
	for _ in $(seq 1 50); do
		grep -q listening "$ROOT/run/api.log" 2>/dev/null && break
		api_alive || { cat "$ROOT/run/api.log" >&2; exit 1; }
		sleep 0.1
	done
fi

cat <<MSG

Confman is running, mounted at run/mnt, with its HTTP gateway on $API_ADDR. Try:
  echo db1.example > run/mnt/db-host && cat run/mnt/db-host
  export $(scripts/cluster env | tr '\n' ' ')
  build/client/confmanctl get /db-host
  curl -s --cacert \$CONFMAN_CA --cert \$CONFMAN_CERT --key \$CONFMAN_KEY \\
       https://$API_ADDR/v1/kv/db-host         # (--insecure cluster: http://, no flags)
  build/client/confmanctl watch /            # in another terminal
  scripts/cluster kill 1                     # the cluster goes on
  scripts/run.sh stop                        # unmount and stop (data stays in run/cluster)
MSG
