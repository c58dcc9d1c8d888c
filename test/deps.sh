#!/usr/bin/env bash
# Makes sure what Cell needs at run time is installed: as root it installs the
# missing Debian packages; otherwise it prints the exact command and fails.
set -euo pipefail

missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
command -v runuser >/dev/null 2>&1 || missing+=(util-linux)
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
