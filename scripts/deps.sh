# deps.sh: install the Debian packages Confman builds and tests with.
#
# Sourced by scripts/test.sh and scripts/run.sh (not run on its own):
#   . scripts/deps.sh && cm_deps_install
# Installs only what dpkg says is missing, running `apt-get update` once
# before the first install. Expects root (or sudo) on Debian 12.

# Packages the build and the tests need: libjansson for the HTTP gateway,
# clang and its runtime for the libFuzzer targets, iproute2 and nftables
# for the nemesis's network partitions, inotify-tools and rsync for the mount
# tests, libxxhash (XXH3 checksums of snapshot files) and libarchive (tar
# export and import) for confmanctl, GnuTLS (every connection's TLS; certtool
# makes the local CA and certificates).
CM_DEPS_PACKAGES=(
	build-essential meson ninja-build pkg-config python3
	libuv1-dev libmsgpack-dev liblmdb-dev libfuse3-dev fuse3
	libcmocka-dev libinih-dev libmicrohttpd-dev libjansson-dev
	libxxhash-dev libarchive-dev libgnutls28-dev gnutls-bin
	clang libclang-rt-14-dev iproute2 nftables inotify-tools rsync
)
CM_DEPS_OPTIONAL=()

# cm_deps_missing PKG... - print the packages dpkg does not list as installed.
cm_deps_missing() {
	local p status
	for p in "$@"; do
		status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
		if [ "$status" != "install ok installed" ]; then
			printf '%s\n' "$p"
		fi
	done
}

# cm_deps_apt ARGS... - run apt-get as root, through sudo when not root.
cm_deps_apt() {
	if [ "$(id -u)" -eq 0 ]; then
		DEBIAN_FRONTEND=noninteractive apt-get "$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo DEBIAN_FRONTEND=noninteractive apt-get "$@"
	else
		echo "deps: need root (or sudo) to run apt-get $*" >&2
		return 1
	fi
}

# cm_deps_install - install missing required packages (failure is fatal),
# then missing optional ones (failure is only reported).
cm_deps_install() {
	if ! command -v dpkg-query >/dev/null 2>&1; then
		echo "deps: dpkg-query not found: this script expects Debian 12" >&2
		return 1
	fi
	local missing optional
	mapfile -t missing < <(cm_deps_missing "${CM_DEPS_PACKAGES[@]}")
	mapfile -t optional < <(cm_deps_missing "${CM_DEPS_OPTIONAL[@]}")
	if [ ${#missing[@]} -eq 0 ] && [ ${#optional[@]} -eq 0 ]; then
		echo "==> deps: all Debian packages present"
		return 0
	fi
	echo "==> deps: apt-get update"
	cm_deps_apt update -q
	if [ ${#missing[@]} -gt 0 ]; then
		echo "==> deps: installing ${missing[*]}"
		cm_deps_apt install -y -q --no-install-recommends "${missing[@]}"
	fi
	if [ ${#optional[@]} -gt 0 ]; then
		echo "==> deps: installing optional ${optional[*]}"
		cm_deps_apt install -y -q --no-install-recommends "${optional[@]}" ||
			echo "deps: optional packages not installed: ${optional[*]} (continuing)" >&2
	fi
}

# cm_setup DIR ARGS... - configure a meson build directory, or reconfigure it
# with ARGS when it already holds a configured build. A directory left behind
# by an interrupted first setup (no coredata) is configured afresh.
cm_setup() {
	local dir=$1
	shift
	if [ -f "$dir/meson-private/coredata.dat" ]; then
		meson setup --reconfigure "$dir" "$@"
	else
		if [ -d "$dir" ]; then
			rm -rf -- "$dir"
		fi
		meson setup "$dir" "$@"
	fi
}
