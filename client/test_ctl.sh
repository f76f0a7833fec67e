#!/usr/bin/env bash
# test_ctl.sh CONFMANCTL: confmanctl's usage, argument checks and exit codes
# that need no server (127.0.0.1:1 refuses connections).
set -u
ctl=$1
fails=0
out=$(mktemp)
err=$(mktemp)
trap 'rm -f -- "$out" "$err"' EXIT

# expect CODE ARGS...: run confmanctl, check the exit code.
expect() {
	local want=$1 got
	shift
	"$ctl" "$@" >"$out" 2>"$err" </dev/null
	got=$?
	if [ "$got" -ne "$want" ]; then
		echo "FAIL: confmanctl $* exited $got, want $want" >&2
		sed 's/^/  stderr: /' "$err" >&2
		fails=$((fails + 1))
	fi
}

# expect_err PATTERN: the last stderr matches PATTERN (extended regex).
expect_err() {
	if ! grep -Eq -- "$1" "$err"; then
		echo "FAIL: stderr does not match '$1':" >&2
		sed 's/^/  stderr: /' "$err" >&2
		fails=$((fails + 1))
	fi
}

down=(--servers 127.0.0.1:1 --timeout 300)

expect 0 help
grep -q '^Exit codes' "$out" || { echo "FAIL: help lists no exit codes" >&2; fails=$((fails + 1)); }
expect 0 --help
expect 2
expect 2 frobnicate
expect 2 get
expect 2 get /a /b
expect 2 --timeout abc get /a
expect 2 --consistency eventual get /a
expect 2 --servers 'no-port' get /a
expect 2 put --if-version x /a v
expect 2 rm -z /a
expect 5 "${down[@]}" get /a
expect_err '^confmanctl: /a: .* \(ECONNREFUSED\)$'
expect 5 "${down[@]}" put /a v
expect 6 "${down[@]}" get relative/path
expect_err '^confmanctl: relative/path: .* \(EINVAL\)$'
expect 6 "${down[@]}" put /a/../b v
expect 6 "${down[@]}" ls "/$(printf 'x%.0s' {1..300})"
expect_err '\(ENAMETOOLONG\)$'
# A value from stdin over the 4 MiB limit fails before any connection.
head -c $((4 * 1024 * 1024 + 1)) /dev/zero | "$ctl" "${down[@]}" put /big - >"$out" 2>"$err"
got=$?
[ "$got" -eq 6 ] || { echo "FAIL: oversized stdin value exited $got, want 6" >&2; fails=$((fails + 1)); }
expect_err '\(EFBIG\)$'
# shards, shard add
expect 0 help
grep -q '^  shards ' "$out" || { echo "FAIL: help lacks shards" >&2; fails=$((fails + 1)); }
grep -q '^  shard add --replicas' "$out" || { echo "FAIL: help lacks shard add" >&2; fails=$((fails + 1)); }
expect 2 shards extra
expect 2 shard
expect 2 shard frob /a
expect 2 shard add
expect 2 shard add /a
expect_err 'replicas is required'
expect 2 shard add --replicas 1 /a /b
expect 2 shard add --replicas x /a
expect 2 shard add --replicas 1,,2 /a
expect 2 shard add --replicas -1 /a
expect 2 shard add --replicas '' /a
expect 6 shard add --replicas 1,2,3,4,5,6,7,8,9,10,11,12,13 /a
expect 6 "${down[@]}" shard add --replicas 1 /
expect_err '^confmanctl: /: .* \(EINVAL\)$'
expect 6 "${down[@]}" shard add --replicas 1 relative
expect 6 "${down[@]}" shard add --replicas 1,1 /a
expect 6 "${down[@]}" shard add --replicas 0 /a
expect 5 "${down[@]}" shards
expect_err '^confmanctl: shards: .* \(ECONNREFUSED\)$'
expect 5 "${down[@]}" --json shards
expect 5 "${down[@]}" shard add --replicas 1,2,3 /a
expect_err '\(ECONNREFUSED\)$'
expect 5 "${down[@]}" status
grep -q 'unreachable' "$out" || { echo "FAIL: status does not say unreachable" >&2; fails=$((fails + 1)); }
expect 5 "${down[@]}" --json status
grep -q '"reachable":false' "$out" || { echo "FAIL: status --json: $(cat "$out")" >&2; fails=$((fails + 1)); }

# node, shard move: usage checked before any connection
expect 0 help
for want in '^  shard move PREFIX' '^  node list' '^  node add ID' '^  node remove ID'; do
	grep -q "$want" "$out" || { echo "FAIL: help lacks '$want'" >&2; fails=$((fails + 1)); }
done
expect 2 node
expect 2 node frob
expect 2 node list extra
expect 2 node add
expect 2 node add 4
expect_err 'address is required'
expect 2 node add 0 --address h:1
expect 2 node add x --address h:1
expect 2 node add 4 5 --address h:1
expect 2 node add --timeout x 4 --address h:1
expect 2 node remove
expect 2 node remove 0
expect 2 node remove 3 --to x
expect 2 node remove 3 --to 4,,5
expect 2 node remove 3 --replicas 4
expect 2 shard move /a
expect_err 'replicas is required'
expect 2 shard move --replicas 1,2
expect 2 shard move --replicas 1,x /a
expect 2 shard move --replicas 1,2,3,4,5,6,7,8,9,10,11,12,13 /a
expect 2 shard move --replicas 1 --timeout 0 /a
expect 2 shard move --replicas 1 --to 2 /a
expect 2 shard move --replicas 1 /a /b
expect 5 "${down[@]}" shard move --replicas 1,2 /a
expect_err '\(ECONNREFUSED\)$'
expect 5 "${down[@]}" node list
expect 5 "${down[@]}" node add 4 --address 10.0.0.4:7001 --timeout 1
expect 5 "${down[@]}" node remove 3 --to 4

# leases, locks, elections: arguments (durations: 500ms, 10s, 2m; 1s..30d)
expect 2 lease
expect 2 lease frob 1
expect 2 lease grant
expect 2 lease grant 10x
expect 2 lease grant -5s
expect 2 lease grant 1.5s
expect 6 lease grant 0
expect_err 'TTL must be 1s to 30d'
expect 6 lease grant 999ms
expect 6 lease grant 31d
expect 5 "${down[@]}" lease grant 1500ms
expect 5 "${down[@]}" lease grant 30d --path /a --json
expect 2 lease keepalive 0
expect 2 lease keepalive abc
expect 2 lease revoke 9223372036854775808
expect 2 lease ttl 1 2
expect 2 lease list extra
expect 5 "${down[@]}" lease ttl 9223372036854775807 --keys
expect 5 "${down[@]}" lease keepalive 7 --once
expect 2 put --lease x /a v
expect 2 put --lease 9223372036854775808 /a v
expect 5 "${down[@]}" put --lease 7 /a v
expect 2 lock /l
expect_err 'the command goes after --'
expect 2 lock /l --
expect 2 lock -- true
expect 2 lock /a /b -- true
expect 2 lock /l --timeout xx -- true
expect 6 lock /l --ttl 0 -- true
expect 2 lock /l --watch -- true
expect 5 "${down[@]}" lock /l --ttl 2s --timeout 1s -- true
expect 2 elect /l -- true
expect 2 elect /l v --shared -- true
expect 2 elect --watch
expect 2 elect --watch /l -- true
grep -q '^  124' <("$ctl" help) || { echo "FAIL: help lacks lock's exit codes" >&2; fails=$((fails + 1)); }

if [ "$fails" -ne 0 ]; then
	echo "$fails check(s) failed" >&2
	exit 1
fi
echo "all confmanctl checks passed"
