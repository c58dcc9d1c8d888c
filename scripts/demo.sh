#!/usr/bin/env bash
# make demo: the example app as a Cell app. Its cells (eye -> retina -> cone,
# and nose, which eye may not spawn) live in examples/app/cells/NAME with a
# Cell.toml each. The demo makes a self-contained app folder of them (its own
# module, dependencies vendored), grants it with `cellroot allow`, runs it
# with `cellroot run` (cold build, autostart in dependency order), then runs
# brain as the app's owner (cached build: nothing compiled), shows
# `cellroot ps` while it runs and checks that nothing is left afterwards.
set -euo pipefail
bin=$(cd "${1:-bin}" && pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/cell-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
go=$(command -v go)
export CELL_GO=$go
# Everything of the demo in its own folder: the build cache (and so the
# binaries the allowlist grants) and the allowlist.
export XDG_CACHE_HOME=$work/cache
allowlist=$work/allowlist.toml
app=$work/app

echo "== making the app folder $app from examples/app (vendored, so it builds offline)"
mkdir -p "$app"
cp -r "$repo/examples/app/cells" "$app/cells"
goversion=$(awk '/^go /{print $2; exit}' "$repo/go.mod")
# The modules the cells import, at the versions this checkout builds with.
requires=$(cd "$repo" && go list -m -f '{{.Path}} {{.Version}}' go.uber.org/zap go.uber.org/multierr golang.org/x/sys)
{
	printf 'module example.com/eyes\n\ngo %s\n\nrequire (\n\tgithub.com/cellproject/cell v0.0.0\n' "$goversion"
	printf '%s\n' "$requires" | sed 's/^/\t/'
	printf ')\n\nreplace github.com/cellproject/cell => %s\n' "$repo"
} >"$app/go.mod"
cp "$repo/go.sum" "$app/go.sum"
# From the module cache `make build` filled: GOPROXY=off, no download.
(cd "$app" && GOFLAGS= GOPROXY=off go mod vendor)
(cd "$app" && find cells -type f | sort)

echo
echo "== cellroot allow: what the cells ask for, granted into $allowlist"
# As root, rootless Podman's keep-id is unavailable, so the demo picks bwrap
# there unless CELL_DEMO_BACKEND says otherwise.
backend=${CELL_DEMO_BACKEND:-auto}
if [ -z "${CELL_DEMO_BACKEND:-}" ] && [ "$(id -u)" = 0 ]; then
	backend=bwrap
fi
"$bin/cellroot" allow --yes --backend "$backend" --allowlist "$allowlist" "$app"

echo
echo "== cellroot run, first time: discovery, cold build, autostart in dependency order"
"$bin/cellroot" run --allowlist "$allowlist" --for 1s "$app" 2>"$work/run.err" || {
	cat "$work/run.err" >&2
	exit 1
}

echo
echo "== brain, the app's owner (app.Run: cached build, autostart), asks eye to see"
"$bin/brain" -app "$app" -cellroot "$bin/cellroot" -allowlist "$allowlist" -hold 3s \
	>"$work/brain.out" 2>"$work/brain.err" &
brain=$!

# Show the session while the app holds it.
for _ in $(seq 1 300); do
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
	cat "$work/brain.out" "$work/brain.err" >&2
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
if grep -q compiling "$work/brain.out"; then
	echo "the second start compiled something; it should have used the cache" >&2
	exit 1
fi
grep -q 'nose: denied' "$work/brain.out" || {
	echo "eye's spawn of nose was not denied" >&2
	exit 1
}
if grep -q 'cone says .* over a gap junction' "$work/brain.out"; then
	echo "retina reached cone over a gap junction (shared-memory rings in a sealed memfd)"
else
	echo "retina to cone did not use a gap junction" >&2
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
