#!/bin/sh
# soak.sh: nemesis runs, one after another, until the time asked is spent.
#
#   tests/chaos/soak.sh [MINUTES] [BUILD_DIR]     (default 30 minutes, build/)
#
# Alternates 3-node runs (with the FUSE worker) and 5-node runs, each with
# $CONFMAN_CHAOS_SECONDS (default 120) seconds of faults and a fresh seed,
# printing each run's figures as it ends. Stops at the first run with an
# anomaly (its histories and node logs are kept; the path is printed) and
# exits 1, or with CONFMAN_SOAK_KEEP_GOING=1 counts it and goes on; exits 0
# when the time is up with no anomaly. CONFMAN_CHAOS_COMBINED=1 passes
# --combined (faults sometimes overlap); CONFMAN_CHAOS_MEMBERSHIP=1 makes every
# run split, merge and (5 nodes) move shards during the faults (--members).
# Needs root (network namespaces).
set -eu
minutes=${1:-30}
here=$(cd "$(dirname "$0")" && pwd)
export CONFMAN_BUILD=$(cd "${2:-$here/../../build}" && pwd)
secs=${CONFMAN_CHAOS_SECONDS:-120}
end=$(( $(date +%s) + minutes * 60 ))
combined=
[ "${CONFMAN_CHAOS_COMBINED:-0}" = 1 ] && combined=--combined
run=0
bad=0
while [ "$(date +%s)" -lt "$end" ]; do
	run=$((run + 1))
	nodes=3
	[ $((run % 2)) -eq 0 ] && nodes=5
	echo "== soak run $run: $nodes nodes, ${secs}s of faults${combined:+, combined} ($(( (end - $(date +%s)) / 60 )) min left)"
	if ! python3 "$here/test_nemesis.py" --nodes "$nodes" --seconds "$secs" $combined; then
		echo "== soak: anomaly in run $run"
		bad=$((bad + 1))
		[ "${CONFMAN_SOAK_KEEP_GOING:-0}" = 1 ] || exit 1
	fi
done
echo "== soak: $run runs, $bad with anomalies"
[ "$bad" -eq 0 ]
