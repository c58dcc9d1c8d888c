#!/usr/bin/env bash
# make bench: spawn-to-ready time of a cell through the session root beside
# the bare tool starting the same binary, in one run, printed as ratios. As
# root it runs the benchmarks as the unprivileged test user, as make test
# does (run make test once first: it sets up that user's rootless Podman).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
benchtime=${2:-20x}
user=${CELL_TEST_USER:-celltest}
cd "$repo"
stage=$(mktemp -d /tmp/cell-bench.XXXXXX)
trap 'rm -rf "$stage"' EXIT
chmod 755 "$stage"
go build -o "$stage/bin/" ./cmd/cellroot ./cmd/cellroot-podman ./test/bench/plainroot ./test/integration/cells/testcell
go test -c -o "$stage/bench.test" ./test/bench
chmod -R a+rX "$stage"
if [ "$(id -u)" = 0 ]; then
	home=$(getent passwd "$user" | cut -d: -f6)
	as_user() { runuser -u "$user" -- env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$home" USER="$user" TMPDIR=/tmp "$@"; }
else
	as_user() { "$@"; }
fi
(cd "$stage" && as_user CELL_TEST_BIN="$stage/bin" "$stage/bench.test" -test.run '^$' -test.bench . \
	-test.benchtime "$benchtime" -test.count 1) | tee "$stage/bench.out"
awk '
/^Benchmark/ { name = $1; sub(/-[0-9]+$/, "", name); sub(/^Benchmark/, "", name); ns[name] = $3
	for (i = 5; i < NF; i += 2) m[name, $(i+1)] = $i }
END {
	printf "\n%-34s %10s %10s %7s\n", "spawn to ready", "root ms", "tool ms", "ratio"
	if (ns["RootPodman"] && ns["CLIPodmanRun"])
		printf "%-34s %10.1f %10.1f %7.2f\n", "podman: root vs podman run -d", ns["RootPodman"]/1e6, ns["CLIPodmanRun"]/1e6, ns["RootPodman"]/ns["CLIPodmanRun"]
	if (ns["RootBwrap"] && ns["CLIBwrap"])
		printf "%-34s %10.1f %10.1f %7.2f\n", "bwrap: root vs bwrap run to exit", ns["RootBwrap"]/1e6, ns["CLIBwrap"]/1e6, ns["RootBwrap"]/ns["CLIBwrap"]
	if (ns["RootBwrap"] && ns["CLIBwrapReady"])
		printf "%-34s %10.1f %10.1f %7.2f\n", "bwrap: root vs bwrap to accepting", ns["RootBwrap"]/1e6, ns["CLIBwrapReady"]/1e6, ns["RootBwrap"]/ns["CLIBwrapReady"]
	if (m["RootColdStart", "ratio"]) {
		printf "\n%-34s %10s %10s %7s\n", "the root", "root", "baseline", "ratio"
		printf "%-34s %10.1f %10.1f %7.2f\n", "cold start ms (vs plain Go binary)", m["RootColdStart", "root-ms"], m["RootColdStart", "plain-ms"], m["RootColdStart", "ratio"]
		printf "%-34s %10.1f %10.1f %7.2f\n", "idle RSS MiB (vs plain Go binary)", m["RootColdStart", "root-rss-MiB"], m["RootColdStart", "plain-rss-MiB"], m["RootColdStart", "root-rss-MiB"]/m["RootColdStart", "plain-rss-MiB"]
	}
	if (m["RootTeardown50", "ratio"])
		printf "%-34s %10.1f %10.1f %7.2f\n", "50-cell teardown ms (vs bare bwrap)", m["RootTeardown50", "root-ms"], m["RootTeardown50", "bwrap-ms"], m["RootTeardown50", "ratio"]
}' "$stage/bench.out"
# The synapse figures (synapse_test.go): each subject beside its baseline.
awk '
/^BenchmarkSynapse/ { b = $1; sub(/-[0-9]+$/, "", b); sub(/^BenchmarkSynapse/, "", b)
	for (i = 3; i < NF; i += 2) m[b, $(i+1)] = $i }
function row(label, b, x, base, unit, scale) {
	if (m[b, x "-" unit] && m[b, base "-" unit])
		printf "%-44s %12.2f %12.2f %7.2fx\n", label, m[b, x "-" unit]/scale, m[b, base "-" unit]/scale, m[b, x "-" unit]/m[b, base "-" unit]
}
END {
	printf "\n%-44s %12s %12s %8s\n", "synapse (64 B bodies unless noted)", "subject", "baseline", "ratio"
	row("RTT us: sdk vs raw UDS ping-pong", "RTT", "sdk", "raw", "ns/op", 1e3)
	row("RTT us: sdk MaxConcurrent=1, recycling vs raw", "RTT", "quick", "raw", "ns/op", 1e3)
	row("RTT us: gRPC over UDS vs raw UDS", "RTT", "grpc", "raw", "ns/op", 1e3)
	row("pipelined kmsg/s, 64 in flight: sdk vs raw", "Pipelined", "sdk", "raw", "msg/s", 1e3)
	row("pipelined kmsg/s, 64 in flight: sdk vs gRPC", "Pipelined", "sdk", "grpc", "msg/s", 1e3)
	row("bulk MB/s, 4 KiB: sdk vs raw UDS", "Bulk4K", "sdk", "raw", "MB/s", 1)
	row("bulk MB/s, 4 KiB: sdk vs gRPC", "Bulk4K", "sdk", "grpc", "MB/s", 1)
	row("bulk MB/s, 4 KiB: sdk recycling vs raw UDS", "Bulk4KRecycled", "recycle", "raw", "MB/s", 1)
	row("bulk MB/s, 1 MiB: sdk vs raw UDS", "Bulk1M", "sdk", "raw", "MB/s", 1)
	row("bulk MB/s, 1 MiB: sdk vs gRPC", "Bulk1M", "sdk", "grpc", "MB/s", 1)
	row("bulk MB/s, 1 MiB: sdk recycling vs raw UDS", "Bulk1MRecycled", "recycle", "raw", "MB/s", 1)
	row("junction RTT us: sdk vs raw ring ping-pong", "JunctionRTT", "junction", "rawring", "ns/op", 1e3)
	row("junction one way Mmsg/s: sdk vs raw ring", "JunctionOneWay", "junction", "rawring", "msg/s", 1e6)
}' "$stage/bench.out"
