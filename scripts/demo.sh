#!/usr/bin/env bash
# make demo: runs the example app (brain -> eye -> retina -> cone, plus a
# spawn the allowlist denies) on the best backend this machine has, shows
# `cellroot ps` while it runs and checks that nothing is left afterwards.
set -euo pipefail
bin=$(cd "${1:-bin}" && pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/cell-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT

# The demo's allowlist: the template with this checkout's binaries and
# backend "auto", so the root picks the strongest backend available.
sed -e "s|@BIN@|$bin|g" -e "s|@BACKEND@|${CELL_DEMO_BACKEND:-auto}|g" \
	"$repo/examples/allowlist.toml.in" >"$work/allowlist.toml"
echo "== cellroot doctor"
"$bin/cellroot" doctor --allowlist "$work/allowlist.toml" || true
echo
echo "== running the example app (allowlist: $work/allowlist.toml)"
"$bin/brain" -cellroot "$bin/cellroot" -allowlist "$work/allowlist.toml" -hold 3s \
	>"$work/brain.out" 2>"$work/brain.err" &
brain=$!

# Show the session while the app holds it.
for _ in $(seq 1 100); do
	if "$bin/cellroot" ps | grep -q cone; then
		break
	fi
	sleep 0.1
done
echo "== cellroot ps, while the app runs"
"$bin/cellroot" ps | tee "$work/ps.out"
session=$(awk '/^session / {print $2; exit}' "$work/ps.out")
if [ -z "$session" ]; then
	echo "the app's session never showed in cellroot ps" >&2
	kill "$brain" 2>/dev/null || true
	cat "$work/brain.err" >&2
	exit 1
fi

status=0
wait "$brain" || status=$?
echo
echo "== what the app printed"
cat "$work/brain.out"
echo
echo "== the audit: every spawn decision"
grep -E '"?audit' "$work/brain.err" | grep -E 'spawn' || true
if [ "$status" -ne 0 ]; then
	echo "the example app failed (exit $status); its log:" >&2
	cat "$work/brain.err" >&2
	exit 1
fi

echo
echo "== after the app exited"
sleep 0.5
"$bin/cellroot" ps
runtime_base=${XDG_RUNTIME_DIR:-/tmp}/cell
[ -n "${XDG_RUNTIME_DIR:-}" ] || runtime_base=/tmp/cell-$(id -u)
left=$(find "$runtime_base" -mindepth 1 -maxdepth 1 -name "$session*" 2>/dev/null | wc -l)
procs=$(pgrep -u "$(id -u)" -f "$session" | wc -l || true)
echo "session $session: files left in $runtime_base: $left; processes left: $procs"
if [ "$left" -ne 0 ] || [ "$procs" -ne 0 ]; then
	echo "the session left something behind" >&2
	exit 1
fi
echo "demo ok: nothing of the session is left"
