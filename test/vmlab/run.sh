#!/usr/bin/env bash
# run.sh: the integration lab. Boots a Debian VM (systemd, cgroup v2,
# rootless Podman) under QEMU and runs the project's vmlab-tagged
# integration test binaries in it as an unprivileged lingering user with a
# systemd user session. Fails when a test fails, when the VM does not boot
# or report, or when the run exceeds its time box. See usage() below and
# the README's section on the integration lab.
set -euo pipefail
# mkfs.ext4 and friends live in /usr/sbin, which a normal user's PATH lacks.
PATH=$PATH:/usr/sbin:/sbin
# All of it in one block, parsed before any of it runs: editing this file
# during a run cannot change the run.
{

usage() {
	cat <<'EOF'
usage: test/vmlab/run.sh [OPTIONS] [--] [TEST-ARGS...]

Builds (or reuses from the cache) the lab's Debian VM image, compiles the
vmlab test packages into static test binaries, puts them on a fresh test
disk, boots the VM, runs every binary as the VM's user and prints its
output and exit status. TEST-ARGS go to every test binary (e.g. -test.count=1).

options:
  --run REGEXP   run only the tests matching REGEXP (-test.run)
  --cmd 'CMD'    instead of the tests, run the shell command CMD in the VM as
                 the user (test binaries are still on the disk under
                 $CELL_VMLAB_DISK/bin) and show its output and status
  --clean        empty the cache folder first (forces an image build)
  --rebuild      rebuild the image even if the cache has it
  -h, --help     this text

environment:
  VMLAB_PACKAGES   Go package paths (space-separated, no ... patterns) to
                   compile and run (default: every package under
                   test/integration with test files that carry the vmlab
                   tag; of a package that also has host tests, only the
                   tests in its vmlab files run)
  VMLAB_EXTRA      a folder copied onto the test disk as extra/ (the tests
                   see it as $CELL_VMLAB_EXTRA), e.g. static cell binaries
  CELL_VMLAB_CACHE the cache folder (default /var/cache/cell-vmlab as root,
                   ${XDG_CACHE_HOME:-~/.cache}/cell-vmlab otherwise)
  VMLAB_TIMEOUT    time box in seconds for boot plus tests (default 1800)
  VMLAB_BUILD_TIMEOUT time box in seconds for an image build (default 1800)
  VMLAB_TEST_TIMEOUT  -test.timeout for each binary (default 20m)
  VMLAB_MIRROR     Debian mirror (default: from the host's apt sources)
  VMLAB_SUITE      Debian suite (default trixie)
  VMLAB_KERNEL     kernel package (default linux-image-cloud-amd64)
  VMLAB_APPEND     kernel arguments instead of the quiet default, to debug a
                   boot (e.g. 'systemd.log_level=debug')
EOF
}

die() { printf 'vmlab: error: %s\n' "$*" >&2; exit 1; }
say() { printf 'vmlab: %s\n' "$*"; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

go_tags="remote containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper btrfs_noversion vmlab"
suite=${VMLAB_SUITE:-trixie}
kernel_pkg=${VMLAB_KERNEL:-linux-image-cloud-amd64}
time_box=${VMLAB_TIMEOUT:-1800}
build_time_box=${VMLAB_BUILD_TIMEOUT:-1800}
test_timeout=${VMLAB_TEST_TIMEOUT:-20m}
if [[ $(id -u) -eq 0 ]]; then
	cache=${CELL_VMLAB_CACHE:-/var/cache/cell-vmlab}
else
	cache=${CELL_VMLAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cell-vmlab}
fi

mode=tests cmd="" clean=0 rebuild=0 test_args=()
while [[ $# -gt 0 ]]; do
	case $1 in
	--run)
		[[ $# -ge 2 ]] || die "--run needs a test name pattern"
		test_args+=("-test.run=$2")
		shift 2
		;;
	--run=*) test_args+=("-test.run=${1#--run=}"); shift ;;
	--cmd)
		[[ $# -ge 2 ]] || die "--cmd needs a shell command"
		mode=cmd cmd=$2
		shift 2
		;;
	--cmd=*) mode=cmd cmd=${1#--cmd=}; shift ;;
	--clean) clean=1; shift ;;
	--rebuild) rebuild=1; shift ;;
	-h | --help) usage; exit 0 ;;
	--) shift; test_args+=("$@"); break ;;
	-test.*) test_args+=("$1"); shift ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done
[[ $time_box =~ ^[0-9]+$ && $time_box -gt 0 ]] || die "VMLAB_TIMEOUT must be a number of seconds, got '$time_box'"
[[ $build_time_box =~ ^[0-9]+$ && $build_time_box -gt 0 ]] || die "VMLAB_BUILD_TIMEOUT must be a number of seconds, got '$build_time_box'"

# calibrate_ms prints the best of three timings, in milliseconds, of a fixed
# CPU-bound job (hashing 32 MiB of zeros). guest.sh runs the same and
# divides: the ratio is how slow this emulation runs on this host now.
calibrate_ms() {
	local best="" t0 t1 ms
	for _ in 1 2 3; do
		t0=$(date +%s%N)
		head -c 32M /dev/zero | sha256sum >/dev/null
		t1=$(date +%s%N)
		ms=$(((t1 - t0) / 1000000))
		[[ -z $best || $ms -lt $best ]] && best=$ms
	done
	echo "$((best > 0 ? best : 1))"
}

# ---------------------------------------------------------------- host needs
need_host_packages() {
	local missing=()
	command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
	command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs)
	command -v go >/dev/null || die "the Go toolchain (go) is not on PATH: it compiles the test binaries"
	if [[ $(id -u) -eq 0 ]]; then
		command -v debootstrap >/dev/null || missing+=(debootstrap)
	fi
	[[ ${#missing[@]} -eq 0 ]] && return 0
	mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
	if [[ $(id -u) -ne 0 ]]; then
		die "missing host tools; install them with:
  sudo apt-get install -y --no-install-recommends ${missing[*]}
  (to build the image without root, mmdebstrap and uidmap too)"
	fi
	local log
	log=$(mktemp /tmp/cell-vmlab-apt.XXXXXX.log)
	export DEBIAN_FRONTEND=noninteractive
	if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
		tail -n 30 "$log" >&2
		die "apt-get install ${missing[*]} failed (log: $log)"
	fi
	say "installed host packages: ${missing[*]} (apt log: $log)"
}

# The Debian mirror the host's apt uses: the first 'deb' entry of a main
# archive (not security, updates or backports) with the main component, from
# /etc/apt/sources.list, sources.list.d/*.list and sources.list.d/*.sources.
apt_entries() {
	local f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[[ -r $f ]] || continue
		sed -e 's/#.*//' "$f" | awk '$1 == "deb" {
			i = 2
			if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ }
			uri = $i; suite = $(i + 1); comps = ""
			for (j = i + 2; j <= NF; j++) comps = comps " " $j
			print uri, suite, comps
		}'
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[[ -r $f ]] || continue
		awk '
		function flush(  n, m, i, j, U, S) {
			if (types ~ /(^|[ \t])deb([ \t]|$)/ && tolower(enabled) != "no") {
				n = split(uris, U, /[ \t]+/); m = split(suites, S, /[ \t]+/)
				for (i = 1; i <= n; i++) for (j = 1; j <= m; j++)
					if (U[i] != "" && S[j] != "") print U[i], S[j], comps
			}
			types = uris = suites = comps = key = ""; enabled = "yes"
		}
		BEGIN { enabled = "yes" }
		/^#/ { next }
		/^[ \t]*$/ { flush(); next }
		/^[ \t]/ {
			v = $0; sub(/^[ \t]+/, "", v)
			if (key == "uris") uris = uris " " v
			else if (key == "suites") suites = suites " " v
			else if (key == "components") comps = comps " " v
			next
		}
		{
			k = $0; sub(/:.*/, "", k); k = tolower(k)
			v = $0; sub(/^[^:]*:[ \t]*/, "", v)
			key = k
			if (k == "types") types = v
			else if (k == "uris") uris = v
			else if (k == "suites") suites = v
			else if (k == "components") comps = v
			else if (k == "enabled") enabled = v
		}
		END { flush() }' "$f"
	done
}
host_mirror() {
	local uri suite comps
	while read -r uri suite comps; do
		[[ $suite == */* || $suite =~ -(security|updates|backports|proposed-updates)$ ]] && continue
		[[ $uri == *security* ]] && continue
		[[ " $comps " == *" main "* ]] || continue
		[[ ${uri%/} == */debian ]] || continue
		echo "${uri%/}"
		return 0
	done < <(apt_entries)
	return 1
}

# ------------------------------------------------------------------- helpers
now() { date +%s; }
fmt_secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

tmp=""
qemu_pid=""
cleanup() {
	if [[ -n $qemu_pid ]] && kill -0 "$qemu_pid" 2>/dev/null; then
		kill "$qemu_pid" 2>/dev/null || true
		sleep 1
		kill -9 "$qemu_pid" 2>/dev/null || true
	fi
	[[ -n $tmp ]] && rm -rf "$tmp"
	return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- the image
image_key() {
	{
		echo "suite=$suite"
		echo "mirror=$mirror"
		echo "kernel=$kernel_pkg"
		echo "--- packages.txt"
		sed -e 's/#.*//' -e 's/[[:space:]]//g' "$here/packages.txt" | grep -v '^$'
		echo "--- image.sh"
		cat "$here/image.sh"
	} | sha256sum | cut -c1-16
}

build_image() {
	local dir=$1
	if [[ $(id -u) -ne 0 ]] && ! command -v mmdebstrap >/dev/null; then
		die "the image $(basename "$dir") is not in the cache $cache.
  As a user it is built with mmdebstrap in a user namespace:
    sudo apt-get install -y --no-install-recommends mmdebstrap uidmap
  (and subordinate ids for $(id -un) in /etc/subuid and /etc/subgid).
  Or build it as root into this cache folder:
    sudo CELL_VMLAB_CACHE='$cache' bash test/vmlab/run.sh --cmd true"
	fi
	say "building the VM image $(basename "$dir") ($suite from $mirror, kernel $kernel_pkg)"
	local rc=0
	timeout -k 30 "$build_time_box" bash "$here/image.sh" "$dir" "$mirror" "$suite" "$kernel_pkg" "$here/packages.txt" || rc=$?
	[[ $rc -ne 124 ]] || die "building the image exceeded its time box of ${build_time_box}s (VMLAB_BUILD_TIMEOUT)"
	[[ $rc -eq 0 ]] || die "building the image failed (status $rc)"
	# Older images are no use any more: keep the cache to one image.
	local old
	for old in "$cache"/image-*; do
		[[ $old != "$dir" && -d $old ]] && rm -rf "$old"
	done
	return 0
}

# -------------------------------------------------------------- test disk
vmlab_packages() {
	if [[ -n ${VMLAB_PACKAGES:-} ]]; then
		# shellcheck disable=SC2086 # a space-separated list, split on purpose
		printf '%s\n' $VMLAB_PACKAGES
		return
	fi
	(cd "$repo" && grep -rlE --include='*_test.go' "$vmlab_constraint" test/integration 2>/dev/null |
		xargs -r -n1 dirname | sort -u | sed 's|^|./|')
}

# A build constraint line that asks for the vmlab tag (not !vmlab).
# A file of the lab only: exactly this line (files that also build for the
# host say "integration || vmlab" and run there).
vmlab_constraint='^//go:build vmlab$'

# vm_only_run PKG prints a -test.run pattern naming the tests of PKG's
# vmlab-tagged files when PKG also has test files without the tag: those
# are host tests, which are not run in the VM.
vm_only_run() {
	local dir=$repo/${1#./} f host=0 names
	local -a tagged=()
	for f in "$dir"/*_test.go; do
		[[ -e $f ]] || continue
		if grep -qE "$vmlab_constraint" "$f"; then tagged+=("$f"); else host=1; fi
	done
	[[ $host -eq 1 && ${#tagged[@]} -gt 0 ]] || return 0
	names=$(grep -hoE '^func Test[A-Za-z0-9_]*\(' "${tagged[@]}" | sed -E 's/^func (Test[A-Za-z0-9_]*)\(/\1/' |
		grep -vx TestMain | sort -u | paste -sd'|' -)
	[[ -n $names ]] && printf '^(%s)$' "$names"
	return 0
}

build_test_disk() {
	local disk=$1 root=$tmp/disk pkg name filter n=0
	mkdir -p "$root/bin"
	local -a pkgs
	mapfile -t pkgs < <(vmlab_packages)
	[[ ${#pkgs[@]} -gt 0 ]] || die "no test packages: none under test/integration has the vmlab build tag and VMLAB_PACKAGES is empty"
	for pkg in "${pkgs[@]}"; do
		pkg=${pkg%/}
		[[ $pkg != *...* ]] || die "VMLAB_PACKAGES takes package paths, not patterns: $pkg"
		name=$(printf '%s' "${pkg#./}" | sed -e 's|^test/integration/||' -e 's|[/.]|-|g' -e 's|^-*||')
		[[ -n $name ]] || name=root
		say "compiling $pkg"
		(cd "$repo" && CGO_ENABLED=0 go test -c -tags "$go_tags" -o "$root/bin/$name.test" "$pkg") ||
			die "compiling $pkg failed"
		if [[ -e $root/bin/$name.test ]]; then
			n=$((n + 1))
			filter=$(vm_only_run "$pkg")
			if [[ -n $filter ]]; then
				say "$pkg also has host tests: in the VM only its vmlab-tagged ones run, $filter (unless --run)"
				printf '%s\n' "$filter" >"$root/bin/$name.run"
			fi
		else
			say "warning: $pkg has no test files for the vmlab tag; nothing to run from it"
		fi
	done
	[[ $n -gt 0 ]] || die "none of the packages produced a test binary"
	install -m 0755 "$here/guest.sh" "$root/guest.sh"
	echo "$mode" >"$root/mode"
	echo "$test_timeout" >"$root/test-timeout"
	# The guest times the same fixed work and stretches the tests' waits
	# by how much slower it ran (see calibrate_ms in guest.sh).
	calibrate_ms >"$root/host-calibration-ms"
	if [[ ${#test_args[@]} -gt 0 ]]; then
		printf '%s\0' "${test_args[@]}" >"$root/args"
	else
		: >"$root/args"
	fi
	if [[ $mode == cmd ]]; then
		printf '%s\n' "$cmd" >"$root/cmd.sh"
	fi
	mkdir -p "$root/extra"
	if [[ -n ${VMLAB_EXTRA:-} ]]; then
		[[ -d $VMLAB_EXTRA ]] || die "VMLAB_EXTRA=$VMLAB_EXTRA is not a folder"
		cp -a "$VMLAB_EXTRA/." "$root/extra/"
	fi
	chmod -R a+rX "$root"
	local kib
	kib=$(du -sk "$root" | cut -f1)
	truncate -s "$(((kib * 5 / 4 + 32 * 1024) / 1024))M" "$disk"
	mkfs.ext4 -q -F -L cellvmlab -d "$root" "$disk" || die "making the test disk failed"
}

# -------------------------------------------------------------------- boot
# show_console prints the serial console as it comes: the lines between the
# markers as they are, boot messages prefixed. (A shell loop, because awk
# implementations buffer their input from a pipe.) Once the end marker is
# out, the VM gets a grace period to power off, then it is stopped.
show_console() {
	local line inside=0 reaper=""
	while IFS= read -r line || [[ -n $line ]]; do
		line=${line%$'\r'}
		case $line in
		*@@CELL-VMLAB-BEGIN*) inside=1; echo "---- vm output ----" ;;
		*@@CELL-VMLAB-END*)
			inside=0
			echo "---- end of vm output ----"
			if [[ -z $reaper ]]; then
				(
					trap 'kill "$nap" 2>/dev/null; exit 0' TERM
					sleep 90 &
					nap=$!
					wait "$nap" && kill "$qemu_pid" 2>/dev/null
				) &
				reaper=$!
			fi
			;;
		*) if [[ $inside -eq 1 ]]; then printf '%s\n' "$line"; else printf 'console| %s\n' "$line"; fi ;;
		esac
	done
	if [[ -n $reaper ]]; then
		kill "$reaper" 2>/dev/null || true
	fi
	return 0
}

boot_and_run() {
	local image=$1 disk=$2 log=$3
	local -a qemu=(
		qemu-system-x86_64
		# One host thread for both vCPUs: multi-threaded TCG was seen to
		# crash the guest kernel (an int3 Oops in the scheduler while the
		# kernel patched its own code) under load.
		-accel tcg,thread=single -m 2048 -smp 2
		-nodefaults -display none -no-reboot
		-serial "file:$log"
		-kernel "$image/vmlinuz" -initrd "$image/initrd.img"
		-append "console=ttyS0 root=/dev/vda rw panic=-1 ${VMLAB_APPEND:-quiet loglevel=3 systemd.show_status=false}"
		-drive "file=$image/root.img,format=raw,if=virtio,snapshot=on"
		-drive "file=$disk,format=raw,if=virtio,snapshot=on"
	)
	: >"$log"
	# TMPDIR: where QEMU keeps the snapshot overlays of the two disks.
	TMPDIR=$tmp timeout -k 15 "$time_box" "${qemu[@]}" </dev/null >"$tmp/qemu.out" 2>&1 &
	qemu_pid=$!
	# Show the console as it comes: the markers' contents as they are, boot
	# messages prefixed.
	tail -n +1 -F --pid="$qemu_pid" "$log" 2>/dev/null | show_console
	local rc=0
	wait "$qemu_pid" || rc=$?
	qemu_pid=""
	return "$rc"
}

# ---------------------------------------------------------------------- main
t_start=$(now)
need_host_packages

mirror=${VMLAB_MIRROR:-}
if [[ -z $mirror ]]; then
	mirror=$(host_mirror) || die "no Debian mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d/ (set VMLAB_MIRROR)"
fi

# The cache lock: exclusive to clean or build, shared while a VM runs from
# the image (so runs may overlap, but nobody removes an image in use).
mkdir -p "$cache"
exec 9>"$cache/lock"
flock -x -w 3600 9 || die "timed out waiting for the cache lock $cache/lock"
if [[ $clean -eq 1 ]]; then
	say "clearing the cache $cache"
	find "$cache" -mindepth 1 -maxdepth 1 ! -name lock -exec rm -rf {} +
fi

key=$(image_key)
image=$cache/image-$key
image_note="cached"
t0=$(now)
if [[ $rebuild -eq 1 && -d $image ]]; then
	rm -rf "$image"
fi
if [[ ! -f $image/root.img || ! -f $image/info ]]; then
	rm -rf "$image"
	build_image "$image"
	image_note="built"
else
	say "image $key from the cache ($image)"
fi
t_image=$(($(now) - t0))
flock -s 9
sed 's/^/vmlab: image /' "$image/info"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cell-vmlab.XXXXXX")
t0=$(now)
build_test_disk "$tmp/test.img"
t_disk=$(($(now) - t0))

say "booting (TCG emulation, 2 CPUs on one host thread, 2 GiB; time box ${time_box}s)"
console=$tmp/console.log
t0=$(now)
# A guest kernel panic before the end marker is a fault of the emulator, not
# a result of the tests: boot once more, and say so. Anything else counts.
for attempt in 1 2; do
	qemu_rc=0
	boot_and_run "$image" "$tmp/test.img" "$console" || qemu_rc=$?
	if [[ $attempt -eq 1 ]] && grep -aq 'Kernel panic - not syncing' "$console" && ! grep -aq '@@CELL-VMLAB-END' "$console"; then
		mkdir -p "$cache/last-run"
		tr -d '\r' <"$console" >"$cache/last-run/panic-console.log"
		say "the guest kernel panicked (an emulator fault, not a test result; its console: $cache/last-run/panic-console.log): booting again"
		continue
	fi
	break
done
t_vm=$(($(now) - t0))

# Keep the last run's console for a look afterwards.
mkdir -p "$cache/last-run"
tr -d '\r' <"$console" >"$cache/last-run/console.log"
awk '/@@CELL-VMLAB-BEGIN/ { inside = 1; next } /@@CELL-VMLAB-END/ { inside = 0 } inside' \
	"$cache/last-run/console.log" >"$cache/last-run/output.log"

begin=$(grep -m1 -a -o '@@CELL-VMLAB-BEGIN[^@]*@@' "$cache/last-run/console.log" || true)
end=$(grep -m1 -a -o '@@CELL-VMLAB-END status=[0-9]* [^@]*@@' "$cache/last-run/console.log" || true)
boot_secs="" run_secs=""
if [[ $begin =~ uptime=([0-9]+) ]]; then
	boot_secs=${BASH_REMATCH[1]}
	if [[ $end =~ uptime=([0-9]+) ]]; then
		run_secs=$((BASH_REMATCH[1] - boot_secs))
	fi
fi

status=""
fail=""
if [[ $qemu_rc -eq 124 || $qemu_rc -eq 137 ]]; then
	fail="the VM exceeded its time box of ${time_box}s (VMLAB_TIMEOUT)"
elif [[ -z $begin ]]; then
	fail="the VM never reported (no start marker on the console): it did not boot or the runner did not start"
elif [[ ! $end =~ status=([0-9]+) ]]; then
	fail="the VM's output has no end marker: the run was cut short"
else
	status=${BASH_REMATCH[1]}
	[[ $status -eq 0 ]] || fail="the run in the VM failed with status $status"
fi
if [[ -z $fail && $qemu_rc -ne 0 ]]; then
	fail="qemu exited with status $qemu_rc"
fi
if [[ -n $fail && -s $tmp/qemu.out ]]; then
	sed 's/^/qemu| /' "$tmp/qemu.out" >&2
fi

echo
vm_detail=""
if [[ -n $run_secs ]]; then
	vm_detail=" (boot $(fmt_secs "$boot_secs"), tests $(fmt_secs "$run_secs"), shutdown $(fmt_secs $((t_vm - boot_secs - run_secs > 0 ? t_vm - boot_secs - run_secs : 0))))"
elif [[ -n $boot_secs ]]; then
	vm_detail=" (boot $(fmt_secs "$boot_secs"))"
fi
say "phase times: image $(fmt_secs "$t_image") ($image_note), test disk $(fmt_secs "$t_disk"), VM $(fmt_secs "$t_vm")$vm_detail, total $(fmt_secs $(($(now) - t_start)))"
say "console log: $cache/last-run/console.log"
if [[ -n $fail ]]; then
	say "FAIL: $fail"
	grep -a -m1 '^vmlab: [0-9]* passed, [0-9]* failed' "$cache/last-run/output.log" || true
	# --cmd hands back the command's own status.
	if [[ $mode == cmd && -n $status && $status -gt 0 && $status -lt 256 ]]; then
		exit "$status"
	fi
	exit 1
fi
say "PASS"
# The closing line: the tests' count, as the guest reported it.
grep -a -m1 '^vmlab: [0-9]* passed, [0-9]* failed' "$cache/last-run/output.log" || true
exit
}
