#!/usr/bin/env bash
# image.sh: the recipe of the lab's VM image (Debian, systemd, rootless
# Podman). run.sh calls it when the cache holds no image for the current key;
# the key hashes this file, so any change here rebuilds the image.
#
# usage: image.sh OUT_DIR MIRROR SUITE KERNEL_PACKAGE PACKAGES_FILE
#
# Writes OUT_DIR/root.img (ext4, the root filesystem), OUT_DIR/vmlinuz,
# OUT_DIR/initrd.img and OUT_DIR/info. OUT_DIR must not exist yet; on
# failure nothing is left behind. Two ways to build, the same result:
#   - as root: debootstrap and chroot (what CI does);
#   - as a user: mmdebstrap --mode=unshare, in a user namespace (needs the
#     mmdebstrap and uidmap packages and subordinate ids in /etc/subuid and
#     /etc/subgid for the user).
# Both end in finish() (image.sh --finish TREE OUT ...), which configures the
# tree and makes the ext4 image from it; under mmdebstrap it runs as a
# customize hook, as root of the user namespace.
set -euo pipefail
# All of it in one block, parsed before any of it runs: editing this file
# during a run cannot change the run.
{

die() { printf 'vmlab image: %s\n' "$*" >&2; exit 1; }
step() { printf 'vmlab image: [%s] %s\n' "$(date +%T)" "$*"; }

# The unprivileged user the tests run as; run.sh and the guest runner rely
# on these values.
readonly vm_user=cellvm vm_uid=1000
readonly root_size=3G

# finish TREE OUT KERNEL_PACKAGE SUITE MIRROR BACKEND: configure the
# bootstrapped TREE (kernel already installed) and write the image files
# into OUT.
finish() {
	local tree=$1 out=$2 kernel_pkg=$3 suite=$4 mirror=$5 backend=$6 f unit
	in_root() { chroot "$tree" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 "$@"; }

	step "configure the system"
	echo cellvm >"$tree/etc/hostname"
	printf '127.0.0.1\tlocalhost\n127.0.1.1\tcellvm\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$tree/etc/hosts"
	printf '/dev/vda\t/\text4\trw,errors=remount-ro\t0\t1\n' >"$tree/etc/fstab"
	in_root systemd-machine-id-setup >/dev/null

	# The test user: subordinate ids for rootless Podman, lingering so systemd
	# starts the user's manager (and session bus) at boot without a login.
	in_root useradd --create-home --uid "$vm_uid" --user-group --shell /bin/bash "$vm_user"
	for f in subuid subgid; do
		grep -q "^$vm_user:" "$tree/etc/$f" 2>/dev/null || echo "$vm_user:100000:65536" >>"$tree/etc/$f"
	done
	mkdir -p "$tree/var/lib/systemd/linger"
	touch "$tree/var/lib/systemd/linger/$vm_user"

	# A persistent journal: journald keeps per-user journal files (what
	# `journalctl --user` reads) only in persistent storage.
	mkdir -p "$tree/var/log/journal"

	# Nothing but the runner may write on the serial console, and no timer may
	# spend the emulated CPUs on housekeeping (there is no network anyway).
	for unit in serial-getty@ttyS0.service getty@tty1.service apt-daily.timer apt-daily-upgrade.timer \
		man-db.timer e2scrub_all.timer fstrim.timer dpkg-db-backup.timer systemd-tmpfiles-clean.timer; do
		ln -sf /dev/null "$tree/etc/systemd/system/$unit"
	done


	# The runner: mounts the test disk (the second virtio disk, made fresh by
	# run.sh for every run) and hands over to the script on it; whatever
	# happens, the VM powers off afterwards.
	cat >"$tree/usr/local/sbin/cell-vmlab-runner" <<'RUNNER'
#!/bin/bash
# Runs once per boot (cell-vmlab.service): mount the test disk, run its
# guest.sh, which prints the results between markers on the console.
set -uo pipefail
disk=/dev/vdb mnt=/mnt/vmlab
for _ in $(seq 120); do
	[[ -b $disk ]] && break
	sleep 1
done
mkdir -p "$mnt"
if ! mount -o ro "$disk" "$mnt" || [[ ! -f $mnt/guest.sh ]]; then
	echo "@@CELL-VMLAB-BEGIN@@"
	echo "vmlab runner: no test disk with guest.sh on $disk"
	echo "@@CELL-VMLAB-END status=125 uptime=$(cut -d' ' -f1 /proc/uptime)@@"
	exit 0
fi
exec /bin/bash "$mnt/guest.sh"
RUNNER
	chmod 0755 "$tree/usr/local/sbin/cell-vmlab-runner"

	cat >"$tree/etc/systemd/system/cell-vmlab.service" <<UNIT
[Unit]
Description=Cell VM lab test runner
After=multi-user.target user@$vm_uid.service
Wants=user@$vm_uid.service
SuccessAction=poweroff-force
FailureAction=poweroff-force

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/cell-vmlab-runner
StandardOutput=tty
StandardError=inherit
TTYPath=/dev/ttyS0
TTYReset=no
TTYVHangup=no
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
UNIT
	mkdir -p "$tree/etc/systemd/system/multi-user.target.wants"
	ln -sf ../cell-vmlab.service "$tree/etc/systemd/system/multi-user.target.wants/cell-vmlab.service"
	# The console target of the runner is not a text terminal for a login.
	in_root systemctl set-default multi-user.target >/dev/null 2>&1

	# Mark /etc and /var as up to date with /usr, so that no boot spends the
	# emulated CPUs on ldconfig, the journal catalog or the hwdb (every boot
	# starts from the same snapshot, so nothing done at boot is kept).
	in_root /usr/lib/systemd/systemd-update-done

	local kver podman_ver systemd_ver vmlinuz initrd
	kver=$(in_root dpkg-query -W -f='${Version}' "$kernel_pkg")
	podman_ver=$(in_root dpkg-query -W -f='${Version}' podman)
	systemd_ver=$(in_root dpkg-query -W -f='${Version}' systemd)
	vmlinuz=$(find "$tree/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n 1)
	initrd=$(find "$tree/boot" -maxdepth 1 -name 'initrd.img-*' | sort -V | tail -n 1)
	[[ -n $vmlinuz && -n $initrd ]] || die "no kernel or initrd in $tree/boot"
	cp "$vmlinuz" "$out/vmlinuz"
	cp "$initrd" "$out/initrd.img"

	if [[ $backend == debootstrap ]]; then
		in_root apt-get clean
		rm -rf "$tree"/var/lib/apt/lists/* "$tree"/var/cache/apt/*.bin "$tree"/tmp/* "$tree"/var/tmp/*
	fi
	# (mmdebstrap still needs its apt files after this hook: --mkfs hides
	# them from the image instead.)

	step "root filesystem image ($root_size)"
	truncate -s "$root_size" "$out/root.img"
	if [[ -n $(mounts_under "$tree") ]]; then
		# mmdebstrap still has /dev, /proc and /sys mounted in the tree;
		# make the image in a mount namespace of our own without them.
		unshare --mount --propagation private bash "${BASH_SOURCE[0]}" --mkfs "$tree" "$out/root.img"
	else
		mkfs.ext4 -q -F -L cellroot -d "$tree" "$out/root.img"
	fi
	chmod 0644 "$out"/*
	cat >"$out/info" <<INFO
suite=$suite
mirror=$mirror
kernel_package=$kernel_pkg
kernel_package_version=$kver
kernel=$(basename "$vmlinuz")
systemd=$systemd_ver
podman=$podman_ver
user=$vm_user
uid=$vm_uid
backend=$backend
built=$(date -u +%Y-%m-%dT%H:%M:%SZ)
INFO
	chmod 0644 "$out/info"
	step "done: kernel $kver, podman $podman_ver, systemd $systemd_ver"
}

# mounts_under DIR lists the mount points below DIR, deepest first.
mounts_under() {
	awk -v d="$1/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r
}

if [[ ${1:-} == --mkfs ]]; then
	[[ $# -eq 3 ]] || die "usage: image.sh --mkfs TREE IMAGE (in a private mount namespace)"
	# (A lazy unmount takes the mounts below along, so later ones may be
	# gone already: what counts is that none is left.)
	mounts_under "$2" | while read -r m; do
		umount -l "$m" 2>/dev/null || true
	done
	[[ -z $(mounts_under "$2") ]] || die "cannot unmount everything under $2"
	# Empty what the image does not need (apt's lists and downloads, temp
	# files) by mounting empty folders over it, in this namespace only.
	mount -t tmpfs -o mode=0755 tmpfs "$2/var/lib/apt/lists"
	mount -t tmpfs -o mode=0755 tmpfs "$2/var/cache/apt"
	mount -t tmpfs -o mode=1777 tmpfs "$2/tmp"
	mount -t tmpfs -o mode=1777 tmpfs "$2/var/tmp"
	mkfs.ext4 -q -F -L cellroot -d "$2" "$3"
	exit 0
fi

if [[ ${1:-} == --finish ]]; then
	[[ $# -eq 7 ]] || die "usage: image.sh --finish TREE OUT KERNEL_PACKAGE SUITE MIRROR BACKEND"
	finish "${@:2}"
	exit 0
fi

[[ $# -eq 5 ]] || die "usage: image.sh OUT_DIR MIRROR SUITE KERNEL_PACKAGE PACKAGES_FILE"
out=$1 mirror=$2 suite=$3 kernel_pkg=$4 packages_file=$5
[[ ! -e $out ]] || die "$out already exists"
command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 (e2fsprogs) is not installed"
packages=$(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$packages_file" | grep -v '^$' | paste -sd, -)
[[ -n $packages ]] || die "no packages in $packages_file"

if [[ $(id -u) -eq 0 ]]; then
	command -v debootstrap >/dev/null || die "debootstrap is not installed"
	backend=debootstrap
else
	command -v mmdebstrap >/dev/null || die "building the image as a user needs mmdebstrap (and uidmap); or build it as root with debootstrap"
	backend=mmdebstrap
fi

mounted=()
work=""
cleanup() {
	local m
	for m in "${mounted[@]}"; do
		umount -l "$m" 2>/dev/null || true
	done
	[[ -n $work ]] || return 0
	# Never remove a tree that still has something mounted inside it.
	if grep -q " $work/" /proc/mounts; then
		printf 'vmlab image: %s still has mounts; not removing it\n' "$work" >&2
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

if [[ $backend == debootstrap ]]; then
	work=$(mktemp -d "$(dirname "$out")/.image-build.XXXXXX")
	tree=$work/root
	mkdir "$work/out"

	step "debootstrap $suite from $mirror"
	debootstrap --variant=minbase --components=main --include="$packages" \
		"$suite" "$tree" "$mirror" >"$work/debootstrap.log" 2>&1 || {
		tail -n 40 "$work/debootstrap.log" >&2
		[[ -f $tree/debootstrap/debootstrap.log ]] && tail -n 40 "$tree/debootstrap/debootstrap.log" >&2
		die "debootstrap failed (log above)"
	}
	mount -t proc proc "$tree/proc" && mounted+=("$tree/proc")
	mount -t sysfs sysfs "$tree/sys" && mounted+=("$tree/sys")
	# No daemon may start inside the chroot while packages are installed.
	printf '#!/bin/sh\nexit 101\n' >"$tree/usr/sbin/policy-rc.d"
	chmod 0755 "$tree/usr/sbin/policy-rc.d"
	step "kernel $kernel_pkg and initramfs"
	chroot "$tree" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 \
		apt-get install -y --no-install-recommends "$kernel_pkg" initramfs-tools >"$work/kernel.log" 2>&1 || {
		tail -n 40 "$work/kernel.log" >&2
		die "installing $kernel_pkg failed (log above)"
	}
	rm -f "$tree/usr/sbin/policy-rc.d"
	for m in "${mounted[@]}"; do
		umount "$m"
	done
	mounted=()
	finish "$tree" "$work/out" "$kernel_pkg" "$suite" "$mirror" debootstrap
else
	# The hook runs as root of a user namespace, mapped to a subordinate id
	# that owns nothing here: it gets a world-writable folder to write the
	# image into, in a place it can reach (the cache may sit in a private
	# home), and its own copy of this script.
	work=$(mktemp -d "${TMPDIR:-/tmp}/cell-vmlab-image.XXXXXX")
	chmod 0755 "$work"
	mkdir -m 0777 "$work/out"
	install -m 0644 "${BASH_SOURCE[0]}" "$work/image.sh"
	step "mmdebstrap --mode=unshare $suite from $mirror"
	mmdebstrap --mode=unshare --variant=minbase --components=main \
		--include="$packages,$kernel_pkg,initramfs-tools" \
		--customize-hook="bash '$work/image.sh' --finish \"\$1\" '$work/out' '$kernel_pkg' '$suite' '$mirror' mmdebstrap" \
		"$suite" /dev/null "$mirror" >"$work/mmdebstrap.log" 2>&1 || {
		tail -n 40 "$work/mmdebstrap.log" >&2
		die "mmdebstrap failed (log above)"
	}
	grep '^vmlab image:' "$work/mmdebstrap.log" || true
fi

# Publish: the files move into place only once all of them are made. (Under
# mmdebstrap they belong to a subordinate id; they are world-readable and
# the folder is ours, so they can be moved and later removed.)
rm -rf "$out.tmp"
mkdir "$out.tmp"
for f in root.img vmlinuz initrd.img info; do
	[[ -f $work/out/$f ]] || die "the build made no $f"
	mv "$work/out/$f" "$out.tmp/$f"
done
mv "$out.tmp" "$out"
step "image ready in $out ($backend)"
exit
}
