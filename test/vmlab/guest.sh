#!/bin/bash
# guest.sh: runs inside the lab VM, as root, from the test disk (run.sh puts
# it there; the image's cell-vmlab.service starts it after boot). It runs
# the test binaries in bin/ (or the command in cmd.sh) as the lingering test
# user with the user's runtime dir and session bus, and prints everything
# between the markers the host looks for:
#   @@CELL-VMLAB-BEGIN uptime=SECONDS@@
#   ...output...
#   @@CELL-VMLAB-END status=N uptime=SECONDS@@
# It always exits 0: the status travels in the end marker.
# No -e: whatever fails, the end marker with the status must still go out.
set -uo pipefail

mnt=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
user=cellvm
uid=$(id -u "$user" 2>/dev/null || echo 1000)
runtime=/run/user/$uid
status=0

uptime_s() { cut -d' ' -f1 /proc/uptime; }
# A fresh line first: systemd may have written terminal control codes.
printf '\n@@CELL-VMLAB-BEGIN uptime=%s@@\n' "$(uptime_s)"
finish() {
	echo "@@CELL-VMLAB-END status=$status uptime=$(uptime_s)@@"
	exit 0
}

# The user's manager is ordered before this unit, but its session bus may
# still be coming up under emulation.
for _ in $(seq 180); do
	[[ -S $runtime/bus ]] && break
	sleep 1
done
if [[ ! -S $runtime/bus ]]; then
	echo "vmlab guest: the session bus $runtime/bus of $user never appeared"
	systemctl --no-pager status "user@$uid.service" 2>&1 | tail -n 20
	status=125
	finish
fi

# How fast this guest runs: a fixed job (hashing 32 MiB), timed here and,
# before boot, on the host (run.sh, calibrate_ms). The tests' waits were
# written for a guest that does the job in reference_guest_ms (an idle
# 2-core host here takes about 1 s under emulation); a slower guest
# stretches them by as much, never below 1. It is the guest's own time that
# counts, not its ratio to the host: a loaded host slows the host's timing
# too and would hide exactly the slowness the waits must absorb (seen: a
# 3.6 s guest on a loaded host was "11.7x", below any ratio bar, and every
# first Podman start ran out of its unscaled wait). CELL_VMLAB_SLOWDOWN, for
# throughput bars set at an idle host's speed, is the guest's time against
# the host's, or against an idle host's (reference_host_ms) when a load made
# the host's own timing slower than that: the larger, so that a busy host
# lowers the bar instead of failing it.
reference_guest_ms=1000
reference_host_ms=150
host_ms=$(cat "$mnt/host-calibration-ms" 2>/dev/null || echo 0)
t0=$(date +%s%N)
head -c 32M /dev/zero | sha256sum >/dev/null
guest_ms=$((($(date +%s%N) - t0) / 1000000))
time_scale=$(awk -v g="$guest_ms" -v r="$reference_guest_ms" 'BEGIN { s = g / r; if (s < 1) s = 1; printf "%.2f", s }')
slowdown=1
if [[ $host_ms =~ ^[0-9]+$ && $host_ms -gt 0 ]]; then
	slowdown=$(awk -v g="$guest_ms" -v h="$host_ms" -v r="$reference_host_ms" \
		'BEGIN { s = g / h; if (g / r > s) s = g / r; if (s < 1) s = 1; printf "%.2f", s }')
fi
echo "vmlab guest: calibration ${guest_ms} ms here, ${host_ms} ms on the host (slowdown ${slowdown}x); waits scaled by $time_scale"

# The user's environment: what a login session under systemd would give.
user_env=(
	HOME="/home/$user" USER="$user" LOGNAME="$user" SHELL=/bin/bash
	PATH=/usr/local/bin:/usr/bin:/bin
	LANG=C.UTF-8
	XDG_RUNTIME_DIR="$runtime"
	DBUS_SESSION_BUS_ADDRESS="unix:path=$runtime/bus"
	CELL_VMLAB=1
	CELL_VMLAB_DISK="$mnt"
	CELL_VMLAB_EXTRA="$mnt/extra"
	CELL_TIME_SCALE="$time_scale"
	CELL_VMLAB_SLOWDOWN="$slowdown"
)
as_user() { runuser -u "$user" -- env -i "${user_env[@]}" "$@"; }

mode=$(cat "$mnt/mode" 2>/dev/null || echo tests)
case $mode in
cmd)
	work=$(as_user mktemp -d "/home/$user/cmd.XXXXXX")
	(cd "$work" && as_user /bin/bash "$mnt/cmd.sh")
	status=$?
	;;
tests)
	args=()
	if [[ -s $mnt/args ]]; then
		mapfile -d '' -t args <"$mnt/args"
	fi
	timeout=$(cat "$mnt/test-timeout" 2>/dev/null || echo 20m)
	passed=0 failed=0 bins=0
	for bin in "$mnt"/bin/*.test; do
		[[ -e $bin ]] || continue
		bins=$((bins + 1))
		name=$(basename "$bin" .test)
		work=$(as_user mktemp -d "/home/$user/$name.XXXXXX")
		echo "=== vmlab: $name (uptime $(uptime_s)s)"
		log=$(mktemp)
		# A package that also holds host tests runs only its VM tests,
		# unless the caller chose the tests (--run).
		filter=()
		if [[ -s ${bin%.test}.run ]] && ! printf '%s\n' "${args[@]}" | grep -q '^-test\.run'; then
			filter=("-test.run=$(cat "${bin%.test}.run")")
		fi
		(cd "$work" && as_user "$bin" -test.v -test.timeout="$timeout" "${filter[@]}" "${args[@]}") 2>&1 | tee "$log"
		rc=${PIPESTATUS[0]}
		p=$(grep -c '^--- PASS' "$log")
		f=$(grep -c '^--- FAIL' "$log")
		rm -f "$log"
		passed=$((passed + p)) failed=$((failed + f))
		echo "=== vmlab: $name exit $rc ($p passed, $f failed; uptime $(uptime_s)s)"
		if [[ $rc -ne 0 && $status -eq 0 ]]; then
			status=$rc
		fi
	done
	if [[ $bins -eq 0 ]]; then
		echo "vmlab guest: no test binaries in $mnt/bin"
		status=125
	elif [[ $passed -eq 0 && $failed -eq 0 && $status -eq 0 ]]; then
		echo "vmlab guest: the test binaries ran no test"
		status=125
	fi
	echo "vmlab: $passed passed, $failed failed"
	;;
*)
	echo "vmlab guest: unknown mode $mode"
	status=125
	;;
esac
finish
