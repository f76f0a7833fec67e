# shellcheck shell=bash
# bench-lib.sh: helpers shared by the benchmark scripts (sourced, not run).
#
# Expects: set -euo pipefail, $ROOT (the checkout), $WORK (a scratch
# directory) and a die() function. Every process started here is recorded
# in BL_PIDS so that the caller's EXIT trap can call bl_stop_all. Sourcing
# only defines; callers source it first, so the option parsing can use it.

BL_PIDS=()

# bl_usage: the caller's header comment (after the #! line) as its --help.
bl_usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

bl_is_uint() { [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -gt 0 ]; }

# The options every load benchmark takes, their defaults, and their checks.
# A script's loop: `if bl_opt "$@"; then shift 2; continue; fi`, its own
# options in a case whose last branch is `*) bl_opt_other PROG "$1" ;;`,
# then bl_check_opts.

# shellcheck disable=SC2034 # the variables are the caller's
bl_opt_defaults() {
	DURATION=10
	WARMUP=2
	CLIENTS=64
	VSIZE=256
	KEYS=10000
	OUT=""
}

# shellcheck disable=SC2034 # the variables are the caller's
# bl_opt OPTION VALUE: an option every load benchmark takes, into DURATION,
# WARMUP, CLIENTS, VSIZE, KEYS or OUT (the caller then shifts 2); returns 1
# for any other option, without reading VALUE.
bl_opt() {
	case "$1" in
	--duration) DURATION=$2 ;;
	--warmup) WARMUP=$2 ;;
	--clients) CLIENTS=$2 ;;
	--value-size) VSIZE=$2 ;;
	--keys) KEYS=$2 ;;
	--out) OUT=$2 ;;
	*) return 1 ;;
	esac
}

# bl_opt_other PROG OPTION: none of the script's options: -h/--help prints
# the usage and exits 0; anything else is bad usage (exit 2).
bl_opt_other() {
	case "$2" in
	-h | --help) bl_usage; exit 0 ;;
	*) echo "$1: unknown option $2" >&2; bl_usage >&2; exit 2 ;;
	esac
}

# bl_check_opts PROG STYLE: exit 2 unless DURATION, CLIENTS, VSIZE and KEYS
# are positive integers and WARMUP an integer. A bad value is named as an
# option (STYLE opt: "--keys") or by its variable (STYLE var: "KEYS"), as
# each script always has, so that their messages stay as they were.
bl_check_opts() {
	local prog=$1 style=$2 v name
	for v in DURATION CLIENTS VSIZE KEYS; do
		name=$v
		[ "$style" = opt ] && name=--${v,,}
		bl_is_uint "${!v}" || { echo "$prog: $name must be a positive integer" >&2; exit 2; }
	done
	[[ "$WARMUP" =~ ^[0-9]+$ ]] || { echo "$prog: --warmup must be an integer" >&2; exit 2; }
}

# bl_stop_pid PID: SIGTERM, then SIGKILL after 5 s.
bl_stop_pid() {
	local p=$1 t
	kill -TERM "$p" 2>/dev/null || return 0
	for t in $(seq 1 100); do
		kill -0 "$p" 2>/dev/null || return 0
		sleep 0.05
	done
	kill -KILL "$p" 2>/dev/null || true
}

bl_stop_all() {
	local p
	for p in "${BL_PIDS[@]}"; do bl_stop_pid "$p"; done
	BL_PIDS=()
}

# bl_finish PROG DIR...: for the EXIT trap: copy $WORK into $OUT when --out
# asked for it (a failure to is reported, not fatal), then remove the DIRs
# ("" skipped). Always returns 0, so that the trap's exit status stays.
bl_finish() {
	local prog=$1 d
	shift
	if [ -n "$OUT" ] && [ -n "$WORK" ] && [ -d "$WORK" ]; then
		{ mkdir -p "$OUT" && cp -r "$WORK"/. "$OUT"/; } 2>/dev/null || echo "$prog: cannot keep results in $OUT" >&2
	fi
	for d in "$@"; do
		[ -n "$d" ] && rm -rf -- "$d"
	done
	return 0
}

bl_port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

bl_check_ports() {
	local p
	for p in "$@"; do bl_port_free "$p" || die "port $p is in use: another run?"; done
}

# bl_cpu PID...: CPU seconds (user + system) of the processes, from /proc.
bl_cpu() {
	local hz t=0 p s
	hz=$(getconf CLK_TCK)
	for p in "$@"; do
		s=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}')
		t=$((t + ${s:-0}))
	done
	awk -v t="$t" -v hz="$hz" 'BEGIN { printf "%.3f", t / hz }'
}

# bl_host_busy: busy CPU seconds of the whole machine (all cores).
bl_host_busy() {
	awk -v hz="$(getconf CLK_TCK)" '$1 == "cpu" { printf "%.3f", ($2 + $3 + $4 + $7 + $8 + $9) / hz; exit }' /proc/stat
}

# bl_cm_leader SERVERS CTL: the address of group 1's leader once 3 nodes answer.
bl_cm_leader() {
	local servers=$1 ctl=$2 t out
	for t in $(seq 1 100); do
		out=$("$ctl" -s "$servers" -t 1000 status 2>/dev/null || true)
		# one heading per server ("ADDR  node N"); member lines say "node N voter"
		if [ "$(grep -cE '^[0-9.:]+ +node [0-9]+$' <<<"$out")" = 3 ] &&
			awk '/^[0-9]/ { a = $1 } $2 == "/" && $3 == "leader" { print a; f = 1 } END { exit !f }' <<<"$out"; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}

# bl_etcd_certs DIR: a CA and one certificate for every etcd member, with
# certtool (ECDSA P-256, as scripts/mkcerts), for bl_etcd_up with BL_ETCD_TLS:
# DIR/ca.pem, DIR/member.{pem,key} (IP SAN 127.0.0.1, CN etcd-member; TLS
# web server and client usage: the same certificate serves clients and
# dials and answers peers) and DIR/client.{pem,key} for etcdctl.
bl_etcd_certs() {
	local d=$1 who
	mkdir -p "$d"
	certtool --generate-privkey --key-type ecdsa --curve secp256r1 --outfile "$d/ca.key" 2>/dev/null
	printf 'cn = "bench etcd CA"\nca\ncert_signing_key\nexpiration_days = 2\n' >"$d/ca.tmpl"
	certtool --generate-self-signed --load-privkey "$d/ca.key" --template "$d/ca.tmpl" \
		--outfile "$d/ca.pem" 2>/dev/null
	for who in member client; do
		certtool --generate-privkey --key-type ecdsa --curve secp256r1 --outfile "$d/$who.key" 2>/dev/null
		printf 'cn = "etcd-%s"\nip_address = "127.0.0.1"\ndns_name = "localhost"\ntls_www_server\ntls_www_client\nsigning_key\nexpiration_days = 2\n' \
			"$who" >"$d/$who.tmpl"
		certtool --generate-certificate --load-privkey "$d/$who.key" --load-ca-certificate "$d/ca.pem" \
			--load-ca-privkey "$d/ca.key" --template "$d/$who.tmpl" --outfile "$d/$who.pem" 2>/dev/null
	done
	chmod 600 "$d"/*.key
}

# bl_etcdctl ARGS...: etcdctl, with BL_ETCD_TLS's CA and client certificate
# when set.
bl_etcdctl() {
	if [ -n "${BL_ETCD_TLS:-}" ]; then
		etcdctl --cacert "$BL_ETCD_TLS/ca.pem" --cert "$BL_ETCD_TLS/client.pem" \
			--key "$BL_ETCD_TLS/client.key" "$@"
	else
		etcdctl "$@"
	fi
}

# shellcheck disable=SC2034 # BL_ETCD_* are for the caller
# bl_etcd_up DIR CLIENT_PORT PEER_PORT [TOKEN]: a 3-node etcd (member i on
# CLIENT_PORT+i-1, PEER_PORT+i-1; cluster token TOKEN, default cm-bench);
# sets BL_ETCD_PIDS, BL_ETCD_LEADER and BL_ETCD_FOLLOWER (host:port of the
# client URLs). With BL_ETCD_TLS=DIR (bl_etcd_certs DIR): TLS on the client
# URLs (server-authenticated: wrk presents no certificate, as it presents
# none to confman-api's HTTPS) and mutual TLS between members
# (--peer-client-cert-auth), the URLs https.
bl_etcd_up() {
	local dir=$1 cport=$2 pport=$3 token=${4:-cm-bench} i cluster="" eps="" st t url purl
	local sch=http tls=()
	if [ -n "${BL_ETCD_TLS:-}" ]; then
		sch=https
		tls=(--cert-file "$BL_ETCD_TLS/member.pem" --key-file "$BL_ETCD_TLS/member.key"
			--peer-cert-file "$BL_ETCD_TLS/member.pem" --peer-key-file "$BL_ETCD_TLS/member.key"
			--peer-trusted-ca-file "$BL_ETCD_TLS/ca.pem" --peer-client-cert-auth)
	fi
	BL_ETCD_PIDS=()
	for i in 1 2 3; do
		bl_check_ports "$((cport + i - 1))" "$((pport + i - 1))"
		cluster+="${cluster:+,}e$i=$sch://127.0.0.1:$((pport + i - 1))"
		eps+="${eps:+,}$sch://127.0.0.1:$((cport + i - 1))"
	done
	mkdir -p "$dir"
	for i in 1 2 3; do
		url=$sch://127.0.0.1:$((cport + i - 1))
		purl=$sch://127.0.0.1:$((pport + i - 1))
		setsid etcd --name "e$i" --data-dir "$dir/e$i" \
			--listen-client-urls "$url" --advertise-client-urls "$url" \
			--listen-peer-urls "$purl" --initial-advertise-peer-urls "$purl" \
			--initial-cluster "$cluster" --initial-cluster-token "$token" \
			--initial-cluster-state new --logger zap --log-level warn "${tls[@]}" \
			>"$WORK/etcd-e$i.log" 2>&1 </dev/null &
		BL_ETCD_PIDS+=($!)
		BL_PIDS+=($!)
	done
	BL_ETCD_LEADER=""
	for t in $(seq 1 150); do
		st=$(bl_etcdctl --endpoints="$eps" endpoint status -w simple 2>/dev/null || true)
		BL_ETCD_LEADER=$(awk -F', ' '$5 == "true" { sub(/^https?:\/\//, "", $1); print $1 }' <<<"$st")
		[ "$(grep -c . <<<"$st")" = 3 ] && [ -n "$BL_ETCD_LEADER" ] && break
		sleep 0.1
	done
	[ -n "$BL_ETCD_LEADER" ] || die "etcd: no leader elected (see $WORK/etcd-e*.log)"
	BL_ETCD_FOLLOWER=$(awk -F', ' '$5 == "false" { sub(/^https?:\/\//, "", $1); print $1; exit }' <<<"$st")
}

# bl_etcd_preload ENDPOINT KEYS VSIZE: /cm-load/k%08d, 100 puts per txn.
bl_etcd_preload() {
	local ep=$1 keys=$2 vsize=$3 b k v n
	[ -n "${BL_ETCD_TLS:-}" ] && ep=https://$ep
	v=$(head -c "$vsize" /dev/zero | tr '\0' 'v')
	for ((b = 0; b < keys; b += 100)); do
		{
			echo
			for ((k = b; k < b + 100 && k < keys; k++)); do printf 'put /cm-load/k%08d %s\n' "$k" "$v"; done
			echo
			echo
		} | bl_etcdctl --endpoints="$ep" txn >/dev/null || die "etcd: preload failed"
	done
	n=$(bl_etcdctl --endpoints="$ep" get --prefix /cm-load/ --limit=1 -w json | jq -r .count)
	[ "$n" = "$keys" ] || die "etcd: preload wrote $n keys, not $keys"
}

# bl_wrk OUT SERVER_PIDS GW_PIDS URL LUA ARGS...: warmup, then a measured
# wrk run (-t2, $BL_CONNS connections, $BL_DURATION s); OUT gets one JSON
# object with the Lua script's fields plus errors_total, server_cpu_pct and
# gw_cpu_pct (CPU of the comma-separated pids, in % of one core; GW_PIDS
# may be ""). Returns 1 if the run failed.
bl_wrk() {
	local out=$1 pids=$2 gw=$3 url=$4 lua=$5 c0 c1 g0 g1 rc=0
	shift 5
	local args=(-t2 -c"$BL_CONNS" -s "$lua")
	# BL_WRK_HEADER: one request header more (a gateway's bearer token)
	[ -n "${BL_WRK_HEADER:-}" ] && args+=(-H "$BL_WRK_HEADER")
	args+=("$url" -- "$@")
	[ "$BL_WARMUP" -gt 0 ] && { wrk -d"${BL_WARMUP}s" "${args[@]}" >/dev/null 2>&1 || true; }
	# shellcheck disable=SC2086
	c0=$(bl_cpu ${pids//,/ }) g0=$(bl_cpu ${gw//,/ })
	wrk -d"${BL_DURATION}s" "${args[@]}" >"$out.txt" 2>&1 || rc=$?
	# shellcheck disable=SC2086
	c1=$(bl_cpu ${pids//,/ }) g1=$(bl_cpu ${gw//,/ })
	if [ $rc != 0 ] || ! grep '^{"tool":"wrk"' "$out.txt" >"$out.raw"; then
		return 1
	fi
	jq -c --argjson s "$(awk -v a="$c0" -v b="$c1" 'BEGIN{print b-a}')" \
		--argjson g "$(awk -v a="$g0" -v b="$g1" 'BEGIN{print b-a}')" \
		'. + {errors_total: (.errors.connect + .errors.read + .errors.write + .errors.status + .errors.timeout),
		      server_cpu_pct: (100 * $s / .window_s), gw_cpu_pct: (100 * $g / .window_s)}' \
		"$out.raw" >"$out"
}
