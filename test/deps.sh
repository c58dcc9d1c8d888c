#!/usr/bin/env bash
# Makes sure what Cell needs at run time is installed: as root it installs the
# missing Debian packages; otherwise it prints the exact command and fails.
set -euo pipefail

missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
command -v runuser >/dev/null 2>&1 || missing+=(util-linux)
# Rootless Podman: runc, because crun fails on hybrid cgroup hierarchies;
# newuidmap for the user namespace; slirp4netns for cells granted network.
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
command -v newuidmap >/dev/null 2>&1 || missing+=(uidmap)
command -v slirp4netns >/dev/null 2>&1 || missing+=(slirp4netns)
if ! command -v go >/dev/null 2>&1; then
	echo "Go is not on PATH: install Go 1.26 or newer (https://go.dev/doc/install) and retry." >&2
	exit 1
fi
if [ "${#missing[@]}" -eq 0 ]; then
	exit 0
fi
if [ "$(id -u)" = 0 ]; then
	echo "== installing ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
else
	echo "Missing packages. Install them with:" >&2
	echo "  sudo apt-get install -y ${missing[*]}" >&2
	exit 1
fi
