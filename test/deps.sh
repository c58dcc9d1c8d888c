#!/usr/bin/env bash
# Makes sure what Cell needs at run time is installed: as root it installs the
# missing Debian packages (one summary line; apt's output goes to a log that
# is shown only when the install fails); otherwise it prints the exact
# command and fails.
set -euo pipefail

# Debian keeps runuser, useradd and friends in /usr/sbin, which a normal
# user's login PATH lacks: look there too rather than report them missing.
PATH=$PATH:/usr/sbin:/sbin

missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
# runuser only serves root's runs (tests and benchmarks as the test user).
if [ "$(id -u)" = 0 ]; then
	command -v runuser >/dev/null 2>&1 || missing+=(util-linux)
fi
# Rootless Podman: runc, because crun fails on hybrid cgroup hierarchies;
# newuidmap for the user namespace; slirp4netns for cells granted network.
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
command -v newuidmap >/dev/null 2>&1 || missing+=(uidmap)
command -v slirp4netns >/dev/null 2>&1 || missing+=(slirp4netns)
# The tests ("deps.sh test") prove that a static C program (glibc) runs in
# every sandbox; the demo needs no C compiler.
if [ "${1:-}" = test ]; then
	command -v gcc >/dev/null 2>&1 || missing+=(gcc)
	[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || missing+=(libc6-dev)
fi
if ! command -v go >/dev/null 2>&1; then
	echo "Go is not on PATH: install Go 1.26 or newer (https://go.dev/doc/install), put its bin dir on PATH (for example export PATH=\$PATH:/usr/local/go/bin) and retry." >&2
	exit 1
fi
if [ "${#missing[@]}" -eq 0 ]; then
	exit 0
fi
if [ "$(id -u)" = 0 ]; then
	log=$(mktemp /tmp/cell-apt.XXXXXX.log)
	if { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >"$log" 2>&1; then
		echo "== installed ${missing[*]} (apt log: $log)"
	else
		echo "installing ${missing[*]} failed; the end of apt's log ($log):" >&2
		tail -n 30 "$log" >&2
		exit 1
	fi
else
	echo "Missing packages. Install them with:" >&2
	echo "  sudo apt-get install -y ${missing[*]}" >&2
	exit 1
fi
