#!/usr/bin/env bash
# run.sh: run the libFuzzer targets of tests/fuzz.
#
# Usage: tests/fuzz/run.sh TARGET|all [SECONDS] [--merge]
#        tests/fuzz/run.sh seeds          regenerate corpus/ with the encoders
#        tests/fuzz/run.sh list           print the target names
#   SECONDS  per target (default 60)
#   --merge  afterwards, add the new inputs that reach new code to corpus/
# Env: FUZZ_BUILD  the build's tests/fuzz dir (default build-fuzz/tests/fuzz;
#                  configure it with CC=clang meson setup build-fuzz -Dfuzz=true)
#      FUZZ_RUNS   also stop a target after this many inputs
#      FUZZ_JOBS   parallel fuzzing processes per target (default 1)
# New inputs go to $FUZZ_BUILD/work/TARGET, crashes to $FUZZ_BUILD/crash-*:
# a crash input that is then fixed belongs in corpus/TARGET as a regression seed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=${FUZZ_BUILD:-$here/../../build-fuzz/tests/fuzz}
targets=(decode framer raft path kv_cmd kv_snap cluster_file gateway tls acl)

usage() {
	sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
}

run_one() {
	local t=$1 secs=$2 bin="$build/fuzz_$1" work="$build/work/$1"
	local args=(-max_total_time="$secs" -timeout=10 -print_final_stats=1
		-artifact_prefix="$build/crash-$t-")
	[ -x "$bin" ] || { echo "run.sh: $bin missing (build with -Dfuzz=true)" >&2; return 1; }
	[ -n "${FUZZ_RUNS:-}" ] && args+=(-runs="$FUZZ_RUNS")
	[ -n "${FUZZ_JOBS:-}" ] && args+=(-jobs="$FUZZ_JOBS" -workers="$FUZZ_JOBS")
	mkdir -p "$work"
	echo "==> fuzz_$t for ${secs}s (corpus: $here/corpus/$t)"
	# The work dir comes first: libFuzzer writes what it finds there.
	"$bin" "${args[@]}" "$work" "$here/corpus/$t"
	if [ "$merge" -eq 1 ]; then
		"$bin" -merge=1 "$here/corpus/$t" "$work"
	fi
}

[ $# -ge 1 ] || { usage >&2; exit 2; }
merge=0
pos=()
for a in "$@"; do
	case "$a" in
	--merge) merge=1 ;;
	-h | --help) usage; exit 0 ;;
	*) pos+=("$a") ;;
	esac
done
what=${pos[0]}
secs=${pos[1]:-60}
case "$what" in
list) printf '%s\n' "${targets[@]}" ;;
seeds) "$build/fuzz-gen-seeds" "$here/corpus" ;;
all) for t in "${targets[@]}"; do run_one "$t" "$secs"; done ;;
*)
	if [[ " ${targets[*]} " != *" $what "* ]]; then
		echo "run.sh: unknown target '$what' (try: list)" >&2
		exit 2
	fi
	run_one "$what" "$secs"
	;;
esac
