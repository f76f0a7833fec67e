#!/usr/bin/env bash
# run.sh: the run command. Installs missing Debian packages, builds build/,
# and starts a local 3-node Confman cluster on loopback (scripts/cluster),
# with its data in run/cluster. Stop it with `scripts/cluster down`.
# The FUSE mount (confman-fs) comes with issue 5; until then the cluster is
# used through confmanctl.
set -euo pipefail

cd "$(dirname "$0")/.."
. scripts/deps.sh

echo "==> dependencies"
cm_deps_install
echo "==> configure build/"
cm_setup build --buildtype=debugoptimized
echo "==> build"
ninja -C build

echo "==> start a 3-node cluster"
scripts/cluster up
servers=$(scripts/cluster env | cut -d= -f2)
# Wait until the group has a leader, so the first command works.
for _ in $(seq 1 100); do
	if build/client/confmanctl --servers "$servers" --timeout 500 status 2>/dev/null |
		grep -q leader; then
		break
	fi
	sleep 0.1
done
build/client/confmanctl --servers "$servers" status
cat <<MSG

Confman is running. Try:
  export CONFMAN_SERVERS=$servers
  build/client/confmanctl put /app/db/host db1.example
  build/client/confmanctl get /app/db/host
  build/client/confmanctl watch /app        # in another terminal
  scripts/cluster kill 1                     # the cluster goes on
  scripts/cluster down                       # stop it (data stays in run/cluster)
MSG
