#!/usr/bin/env bash
# test.sh: THE test command. Installs missing Debian packages, builds build/
# (debugoptimized) and build-asan/ (ASan + UBSan), runs the whole meson test
# suite in both, then builds build-fuzz/ (clang, -Dfuzz=true) and runs its
# fuzz suite (each libFuzzer target briefly, from its seed corpus), and ends
# with one line "N passed, N failed".
#
# Usage: scripts/test.sh [--quick] [--soak]
#   --quick  skip the sanitizer and fuzz builds
#   --soak   export CONFMAN_SOAK=1 so long tests run their long variant
#            (and give meson test a 10x timeout multiplier)
set -euo pipefail

usage() {
	sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
}

quick=0
soak=0
for arg in "$@"; do
	case "$arg" in
	--quick) quick=1 ;;
	--soak) soak=1 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "test.sh: unknown option '$arg'" >&2; usage >&2; exit 2 ;;
	esac
done

cd "$(dirname "$0")/.."
. scripts/deps.sh

passed=0
failed=0
suite_failed=0
logdir=$(mktemp -d)
trap 'rm -rf -- "$logdir"' EXIT

test_args=(--print-errorlogs)
if [ $soak -eq 1 ]; then
	export CONFMAN_SOAK=1
	test_args+=(--timeout-multiplier 10)
	echo "==> soak mode: CONFMAN_SOAK=1"
fi

# count_results LOG - add meson test's summary counts in LOG to the totals.
# Failures are Fail + Unexpected Pass + Timeout; passes are Ok + Expected Fail.
count_results() {
	local log=$1 ok xfail fail xpass timeout
	field() { awk -v k="$1:" 'index($0, k) == 1 { n = $NF } END { print n + 0 }' "$log"; }
	ok=$(field "Ok")
	xfail=$(field "Expected Fail")
	fail=$(field "Fail")
	xpass=$(field "Unexpected Pass")
	timeout=$(field "Timeout")
	suite_failed=$((fail + xpass + timeout))
	passed=$((passed + ok + xfail))
	failed=$((failed + suite_failed))
}

# run_suite NAME DIR SETUP_ARGS... [-- TEST_ARGS...] - configure, build and
# test one build dir; TEST_ARGS go to meson test (e.g. --suite fuzz).
# A configure or build failure counts as one failed test (its log is shown).
run_suite() {
	local name=$1 dir=$2 log="$logdir/$1.log" rc=0
	local setup=() extra=()
	shift 2
	while [ $# -gt 0 ] && [ "$1" != "--" ]; do
		setup+=("$1")
		shift
	done
	[ $# -gt 0 ] && shift
	extra=("$@")
	echo "==> [$name] configure $dir"
	if ! cm_setup "$dir" "${setup[@]}"; then
		echo "!!! [$name] meson setup failed" >&2
		failed=$((failed + 1))
		return 0
	fi
	echo "==> [$name] build"
	if ! ninja -C "$dir"; then
		echo "!!! [$name] build failed" >&2
		failed=$((failed + 1))
		return 0
	fi
	echo "==> [$name] meson test -C $dir ${test_args[*]} ${extra[*]}"
	meson test -C "$dir" "${test_args[@]}" "${extra[@]}" 2>&1 | tee "$log" || rc=$?
	if ! grep -q '^Ok:' "$log" && ! grep -q 'No tests defined' "$log"; then
		echo "!!! [$name] meson test printed no summary (exit $rc)" >&2
		failed=$((failed + 1))
		return 0
	fi
	count_results "$log"
	if [ "$rc" -ne 0 ] && [ "$suite_failed" -eq 0 ]; then
		# meson test failed without counting a failed test (e.g. it could
		# not start one): that is a failure too.
		echo "!!! [$name] meson test exited $rc" >&2
		failed=$((failed + 1))
	fi
	echo "==> [$name] done: $passed passed, $failed failed so far"
}

echo "==> dependencies"
cm_deps_install

run_suite debugoptimized build --buildtype=debugoptimized

if [ $quick -eq 0 ]; then
	export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
	export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
	# debugoptimized: -O2 keeps the simulator fast; ASan recommends -O1+.
	# Suite 'slow' (long chaos runs) only in the plain build: see README, Tests.
	run_suite sanitize build-asan --buildtype=debugoptimized \
		-Db_sanitize=address,undefined -Db_lundef=false -- --no-suite slow
	# The libFuzzer targets need clang. The rest of the tree is built with
	# it too, warnings as errors like the gcc builds: clang's warnings
	# (-Wformat-nonliteral, -Wimplicit-int-conversion) are held as well.
	CC=clang run_suite fuzz build-fuzz --buildtype=debugoptimized -Dfuzz=true -Dwerror=true \
		-- --suite fuzz
else
	echo "==> --quick: sanitizer and fuzz builds skipped"
fi

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
