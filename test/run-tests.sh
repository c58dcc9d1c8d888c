#!/usr/bin/env bash
# The project's test run (make test): unit and integration tests against real
# bubblewrap, as a non-root user, then short fuzzing of every decoder.
#
# As root it installs what is missing and creates the unprivileged user
# $CELL_TEST_USER (default celltest), builds every test binary and runs them
# as that user: rootless behaviour is only proven by a rootless run. As a
# normal user it runs the same binaries as that user.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
user=${CELL_TEST_USER:-celltest}
fuzztime=${CELL_FUZZTIME:-10s}
export CGO_ENABLED=0
# The Podman bindings build pure Go only with these tags (see the Makefile).
GO_TAGS=${GO_TAGS:-remote,containers_image_openpgp,exclude_graphdriver_btrfs,exclude_graphdriver_devicemapper,btrfs_noversion}
goflags=""
for f in $(go env GOFLAGS); do
	case $f in -tags=*) ;; *) goflags="$goflags $f" ;; esac
done
# The integration tag adds test/integration, whose tests need the binaries
# this script builds (plain `go test ./...` leaves them out).
export GOFLAGS="${goflags# } -tags=$GO_TAGS,integration"

bash "$repo/test/deps.sh" test

if [ "$(id -u)" = 0 ]; then
	if ! id "$user" >/dev/null 2>&1; then
		echo "== creating the unprivileged test user $user"
		useradd --create-home --shell /bin/bash "$user"
	fi
	as_user() { runuser -u "$user" -- "$@"; }
	user_home=$(getent passwd "$user" | cut -d: -f6)
	user_uid=$(id -u "$user")
else
	user=$(id -un)
	as_user() { "$@"; }
	user_home=$HOME
	user_uid=$(id -u)
fi

# Rootless Podman for the test user: runc (crun fails on hybrid cgroup
# hierarchies), in the user's containers.conf. Podman pins its run dirs in
# its database at first use, so the first use is here, with no
# XDG_RUNTIME_DIR, rather than in a test's throwaway runtime dir.
if [ "$(id -u)" = 0 ]; then
	if ! grep -q "^$user:" /etc/subuid || ! grep -q "^$user:" /etc/subgid; then
		echo "== giving $user subordinate ids for rootless Podman"
		usermod --add-subuids 200000-265535 --add-subgids 200000-265535 "$user"
	fi
	conf_dir="$user_home/.config/containers"
	runuser -u "$user" -- mkdir -p "$conf_dir"
	printf '# Written by test/run-tests.sh: crun fails on hybrid cgroups.\n[engine]\nruntime = "runc"\n' |
		runuser -u "$user" -- tee "$conf_dir/containers.conf" >/dev/null
fi
podman_ok=1
if ! (cd / && as_user env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$user_home" USER="$user" \
	podman info --format 'podman {{.Version.Version}}, runtime {{.Host.OCIRuntime.Name}}, cgroups {{.Host.CgroupsVersion}}'); then
	podman_ok=0
	echo "rootless podman does not work for $user: the podman tests will fail (runtime = \"runc\" under [engine] in ~/.config/containers/containers.conf is needed on hybrid cgroups)" >&2
fi

# Everything the test user runs lives in a staging dir it can read, apart
# from the checkout, whose permissions are not ours to change.
stage=$(mktemp -d /tmp/cell-tests.XXXXXX)
trap 'rm -rf "$stage"' EXIT
chmod 755 "$stage"
mkdir -p "$stage/bin" "$stage/tests" "$stage/src"

echo "== building binaries"
go build -o "$stage/bin/" ./cmd/cellroot ./cmd/cellroot-podman ./examples/... ./test/integration/cells/...

echo "== building test binaries"
# CELL_TEST_PKGS (go package patterns, default ./...) narrows the run, for
# a developer's quick loop; make test and CI run everything.
pkgs=$(go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' ${CELL_TEST_PKGS:-./...})
for p in $pkgs; do
	rel=${p#github.com/cellproject/cell}
	rel=${rel#/}
	go test -c -o "$stage/tests/$(echo "$rel" | tr / _).test" "./$rel"
done
# Tests read their testdata relative to their package dir.
tar -C "$repo" --exclude=.git --exclude=./bin -cf - . | tar -C "$stage/src" -xf -
chmod -R a+rX "$stage"

echo "== running tests as $user (uid $user_uid)"
log="$stage/test.log"
failed_pkgs=()
for p in $pkgs; do
	rel=${p#github.com/cellproject/cell}
	rel=${rel#/}
	bin="$stage/tests/$(echo "$rel" | tr / _).test"
	echo "--- package ./$rel"
	if ! (cd "$stage/src/$rel" && as_user env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$user_home" \
		USER="$user" CELL_TEST_BIN="$stage/bin" TMPDIR=/tmp ${CELL_CRASHPOINTS:+CELL_CRASHPOINTS=$CELL_CRASHPOINTS} ${CELL_CRASHPOINT_SEED:+CELL_CRASHPOINT_SEED=$CELL_CRASHPOINT_SEED} \
		"$bin" -test.v -test.timeout "${CELL_TEST_TIMEOUT:-10m}" ${CELL_TEST_RUN:+-test.run "$CELL_TEST_RUN"}) 2>&1 | tee -a "$log"; then
		failed_pkgs+=("./$rel")
	fi
done

# Nothing of any session may be left in Podman: containers are looked for,
# not assumed gone.
container_leaks=0
if [ "$podman_ok" = 1 ]; then
	left=$(cd / && as_user env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$user_home" USER="$user" \
		podman ps --all --filter label=cell.session --format '{{.Names}} {{.Labels}}' 2>/dev/null || true)
	if [ -n "$left" ]; then
		echo "containers of cell sessions left after the tests:" >&2
		echo "$left" >&2
		container_leaks=1
	fi
fi

echo "== fuzzing each decoder for $fuzztime"
fuzz_failed=0
for p in $pkgs; do
	rel=./${p#github.com/cellproject/cell/}
	for f in $(go test -list '^Fuzz' "$rel" | grep '^Fuzz' || true); do
		echo "--- $rel $f"
		out="$stage/fuzz.out"
		if go test -run '^$' -fuzz "^$f\$" -fuzztime "$fuzztime" "$rel" 2>&1 | tee "$out"; [ "${PIPESTATUS[0]}" = 0 ]; then
			continue
		fi
		# On a loaded machine Go's fuzz coordinator can give up on a slow
		# worker ("context deadline exceeded") without any failing input:
		# that is the engine, not a finding, and gets one more run. A real
		# finding (a "Failing input" line) is never retried.
		if grep -q 'context deadline exceeded' "$out" && ! grep -q 'Failing input' "$out"; then
			echo "--- $rel $f: the fuzz engine timed out without a failing input; running it once more"
			if go test -run '^$' -fuzz "^$f\$" -fuzztime "$fuzztime" "$rel"; then
				continue
			fi
		fi
		fuzz_failed=$((fuzz_failed + 1))
	done
done

passed=$(grep -cE '^--- PASS' "$log" || true)
failed=$(grep -cE '^--- FAIL' "$log" || true)
skipped=$(grep -cE '^--- SKIP' "$log" || true)
echo
if [ "${#failed_pkgs[@]}" -gt 0 ]; then
	echo "failing packages: ${failed_pkgs[*]}"
fi
[ "$fuzz_failed" -gt 0 ] && echo "failing fuzz targets: $fuzz_failed"
[ "$container_leaks" -gt 0 ] && echo "containers of cell sessions were left behind"
echo "tests: $passed passed, $failed failed, $skipped skipped"
# A skip is not a pass here: every test needs what this script installs.
if [ "${#failed_pkgs[@]}" -gt 0 ] || [ "$failed" -gt 0 ] || [ "$skipped" -gt 0 ] || [ "$fuzz_failed" -gt 0 ] || [ "$container_leaks" -gt 0 ] || [ "$passed" -eq 0 ]; then
	exit 1
fi
