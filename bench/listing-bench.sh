#!/usr/bin/env bash
# listing-bench.sh: directory listings through confman-fs against tmpfs.
#
# Usage: bench/listing-bench.sh [options]
#   --files N     files in the directory (default 20000)
#   --runs N      timed runs of each command, median reported (default 5)
#   --compare BIN a second confman-fs binary (say, an older build) mounted
#                 on the same cluster and measured the same way
#   -h, --help    this text
#
# In one run on this machine:
#  1. builds build/ if needed; a 3-node Confman cluster (plain TCP, data
#     under /var/tmp) on ports 28450-28452;
#  2. N files of 0-99 bytes in a directory on tmpfs (/dev/shm), the same
#     tree imported into the cluster (confmanctl import) and mounted with
#     confman-fs' default options (1 s kernel caches);
#  3. on each target: `ls DIR`, `ls -l DIR` and `find DIR -newer DIR/f00000`,
#     each "cold" (right after dropping the kernel's dentries and inodes:
#     echo 2 > /proc/sys/vm/drop_caches) and "warm" (the median of --runs
#     runs in a row, the kernel's caches as the previous run left them;
#     on the mount, runs more than 1 s apart revalidate);
#  4. one table, the ratios to tmpfs, ls -l / ls on each target, and the
#     mount's requests per command (user.confman.status: gets, lists).
# Every process, mount and directory made is removed on exit, also on
# failure or Ctrl-C. Exit status: 0 ok, 1 a step failed, 2 usage.

# shellcheck disable=SC2317 # cleanup runs from the EXIT trap
# shellcheck disable=SC1091 # scripts/deps.sh, sourced by its absolute path
set -euo pipefail

FILES=20000
RUNS=5
COMPARE=""
CM_PORT=28450

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
die() { echo "listing-bench: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
	case "$1" in
	--files) FILES=$2; shift 2 ;;
	--runs) RUNS=$2; shift 2 ;;
	--compare) COMPARE=$2; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "listing-bench: unknown option $1" >&2; usage >&2; exit 2 ;;
	esac
done
for v in FILES RUNS; do
	if ! [[ "${!v}" =~ ^[0-9]+$ ]] || [ "${!v}" -eq 0 ]; then
		echo "listing-bench: $v must be a positive integer" >&2
		exit 2
	fi
done
[ -z "$COMPARE" ] || [ -x "$COMPARE" ] || die "--compare $COMPARE: not an executable"

cd "$(dirname "$0")/.."
ROOT=$PWD
CTL=$ROOT/build/client/confmanctl
FSBIN=$ROOT/build/fs/confman-fs

WORK=""
SHM=""
CM_UP=0
MOUNTS=()
FS_PIDS=()

cleanup() {
	local rc=$? m p
	trap - EXIT INT TERM
	for m in "${MOUNTS[@]}"; do
		if mountpoint -q "$m"; then
			fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
		fi
	done
	for p in "${FS_PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	if [ "$CM_UP" = 1 ]; then
		"$ROOT/scripts/cluster" -d "$WORK/cm" -p "$CM_PORT" -b "$ROOT/build" down --wipe \
			>/dev/null 2>&1 || true
	fi
	for d in "$SHM" "$WORK"; do
		[ -n "$d" ] && rm -rf -- "$d"
	done
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$ROOT/scripts/deps.sh"
if [ ! -f build/build.ninja ]; then
	cm_deps_install
	meson setup build >/dev/null
fi
ninja -C build >/dev/null || die "build failed"
[ -e /dev/fuse ] || die "/dev/fuse missing"
[ -w /proc/sys/vm/drop_caches ] || die "needs root (drop_caches)"

WORK=$(mktemp -d /var/tmp/confman-listing-bench.XXXXXX)
SHM=$(mktemp -d /dev/shm/confman-listing-bench.XXXXXX)

for p in "$CM_PORT" "$((CM_PORT + 1))" "$((CM_PORT + 2))"; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
		die "port $p is in use"
	fi
done
CM_UP=1
"$ROOT/scripts/cluster" -d "$WORK/cm" -p "$CM_PORT" -b "$ROOT/build" --insecure up \
	>"$WORK/cluster.txt" || die "cluster did not start: $(cat "$WORK/cluster.txt")"
SERVERS="127.0.0.1:$CM_PORT,127.0.0.1:$((CM_PORT + 1)),127.0.0.1:$((CM_PORT + 2))"
for _ in $(seq 1 100); do
	"$CTL" --servers "$SERVERS" put /ping x >/dev/null 2>&1 && break
	sleep 0.1
done

echo "==> $FILES files on tmpfs and in the cluster"
mkdir "$SHM/d"
python3 - "$SHM/d" "$FILES" <<'EOF'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with open(os.path.join(d, "f%05d" % i), "wb") as f:
        f.write(b"v" * (i % 100))
EOF
tar -C "$SHM" -cf "$WORK/d.tar" d
"$CTL" --servers "$SERVERS" --timeout 60000 import "$WORK/d.tar" / >/dev/null 2>"$WORK/import.txt" ||
	die "import failed: $(cat "$WORK/import.txt")"
# Every file's mtime is older than f00000's on both sides.
touch "$SHM/d/f00000"

mount_one() { # BIN DIR
	mkdir -p "$2"
	MOUNTS+=("$2")
	setsid "$1" -f -o "cache=none" "$SERVERS" "$2" >"$2.log" 2>&1 </dev/null &
	FS_PIDS+=($!)
	for _ in $(seq 1 100); do
		mountpoint -q "$2" && return 0
		sleep 0.05
	done
	die "confman-fs did not mount $2: $(cat "$2.log")"
}
mount_one "$FSBIN" "$WORK/m"
touch "$WORK/m/d/f00000"
TARGETS=("tmpfs:$SHM/d" "mount:$WORK/m/d")
if [ -n "$COMPARE" ]; then
	mount_one "$COMPARE" "$WORK/old"
	TARGETS+=("compare:$WORK/old/d")
fi
sleep 1 # the mounts' watches see the imports and the touch

# requests MOUNT_ROOT: "gets lists" so far (none: a build without the counters)
requests() {
	python3 - "$1" <<'EOF'
import os, sys
try:
    s = dict(l.split(" ", 1) for l in os.getxattr(sys.argv[1], "user.confman.status").decode().splitlines())
    print(s.get("gets", "-"), s.get("lists", "-"))
except OSError:
    print("- -")
EOF
}

# timed CMD...: seconds of wall time, 4 decimals
timed() {
	local t0 t1
	t0=$(date +%s%N)
	"$@" >/dev/null
	t1=$(date +%s%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", (b - a) / 1e9 }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

declare -A R
CMDS=("ls" "ls -l" "find -newer")
run_cmd() { # NAME DIR
	case "$1" in
	"ls") ls "$2" ;;
	"ls -l") ls -l "$2" ;;
	"find -newer") find "$2" -newer "$2/f00000" ;;
	esac
}
for t in "${TARGETS[@]}"; do
	name=${t%%:*}
	dir=${t#*:}
	root=$(dirname "$dir")
	for c in "${CMDS[@]}"; do
		run_cmd "$c" "$dir" >/dev/null # warm-up: the first LIST, the value of nothing
		sync
		echo 2 >/proc/sys/vm/drop_caches
		read -r g0 l0 < <(requests "$root")
		R["$name|$c|cold"]=$(timed run_cmd "$c" "$dir")
		read -r g1 l1 < <(requests "$root")
		if [ "$g0" != - ]; then
			R["$name|$c|req"]="$((g1 - g0)) GET, $((l1 - l0)) LIST"
		else
			R["$name|$c|req"]="-"
		fi
		R["$name|$c|warm"]=$(for _ in $(seq 1 "$RUNS"); do timed run_cmd "$c" "$dir"; echo; done |
			median)
	done
	if [ "$name" = tmpfs ]; then
		n=$(find "$dir" -newer "$dir/f00000" | wc -l)
		[ "$n" = 0 ] || die "find -newer on tmpfs found $n files (expected 0)"
	else
		n=$(find "$dir" -newer "$dir/f00000" | wc -l)
		[ "$n" = 0 ] || die "find -newer on $name found $n files (expected 0)"
		n=$(ls "$dir" | wc -l)
		[ "$n" = "$FILES" ] || die "ls on $name listed $n files (expected $FILES)"
	fi
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f", a / b; else print "-" }'; }

echo
echo "listing of $FILES files; seconds (cold: after drop_caches; warm: median of $RUNS)"
printf "%-12s %-8s %10s %10s %10s  %s\n" command target cold warm "x tmpfs" "requests (cold)"
for c in "${CMDS[@]}"; do
	for t in "${TARGETS[@]}"; do
		name=${t%%:*}
		printf "%-12s %-8s %10s %10s %10s  %s\n" "$c" "$name" "${R[$name|$c|cold]}" \
			"${R[$name|$c|warm]}" \
			"$(ratio "${R[$name|$c|cold]}" "${R[tmpfs|$c|cold]}")/$(ratio \
				"${R[$name|$c|warm]}" "${R[tmpfs|$c|warm]}")" "${R[$name|$c|req]:-}"
	done
done
echo
for t in "${TARGETS[@]}"; do
	name=${t%%:*}
	echo "$name: ls -l / ls = $(ratio "${R[$name|ls -l|cold]}" "${R[$name|ls|cold]}") cold," \
		"$(ratio "${R[$name|ls -l|warm]}" "${R[$name|ls|warm]}") warm;" \
		"find -newer ${R[$name|find -newer|cold]} s cold, ${R[$name|find -newer|warm]} s warm"
done
