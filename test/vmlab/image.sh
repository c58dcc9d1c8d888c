#!/usr/bin/env bash
# image.sh: the recipe of the lab's VM image (Debian, systemd, rootless
# Podman). run.sh calls it when the cache holds no image for the current key;
# the key hashes this file, so any change here rebuilds the image.
#
# usage: image.sh OUT_DIR MIRROR SUITE KERNEL_PACKAGE PACKAGES_FILE
#
# Writes OUT_DIR/root.img (ext4, the root filesystem), OUT_DIR/vmlinuz,
# OUT_DIR/initrd.img and OUT_DIR/info. Needs root (debootstrap, chroot).
# OUT_DIR must not exist yet; on failure nothing is left behind.
set -euo pipefail

die() { printf 'vmlab image: %s\n' "$*" >&2; exit 1; }

[[ $# -eq 5 ]] || die "usage: image.sh OUT_DIR MIRROR SUITE KERNEL_PACKAGE PACKAGES_FILE"
out=$1 mirror=$2 suite=$3 kernel_pkg=$4 packages_file=$5

# The unprivileged user the tests run as; run.sh and the guest runner rely
# on these values.
readonly vm_user=cellvm vm_uid=1000
readonly root_size=3G

[[ $(id -u) -eq 0 ]] || die "building the image needs root (debootstrap and chroot)"
[[ ! -e $out ]] || die "$out already exists"
command -v debootstrap >/dev/null || die "debootstrap is not installed"
command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 (e2fsprogs) is not installed"

packages=$(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$packages_file" | grep -v '^$' | paste -sd, -)
[[ -n $packages ]] || die "no packages in $packages_file"

work=$(mktemp -d "$(dirname "$out")/.image-build.XXXXXX")
tree=$work/root
mounted=()
cleanup() {
	local m
	for m in "${mounted[@]}"; do
		umount -l "$m" 2>/dev/null || true
	done
	# Never remove a tree that still has something mounted inside it.
	if grep -q " $work/" /proc/mounts; then
		printf 'vmlab image: %s still has mounts; not removing it\n' "$work" >&2
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT

step() { printf 'vmlab image: [%s] %s\n' "$(date +%T)" "$*"; }

step "debootstrap $suite from $mirror"
debootstrap --variant=minbase --components=main --include="$packages" \
	"$suite" "$tree" "$mirror" >"$work/debootstrap.log" 2>&1 || {
	tail -n 40 "$work/debootstrap.log" >&2
	[[ -f $tree/debootstrap/debootstrap.log ]] && tail -n 40 "$tree/debootstrap/debootstrap.log" >&2
	die "debootstrap failed (log above)"
}

in_root() { chroot "$tree" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 "$@"; }

mount -t proc proc "$tree/proc" && mounted+=("$tree/proc")
mount -t sysfs sysfs "$tree/sys" && mounted+=("$tree/sys")
# No daemon may start inside the chroot while packages are installed.
printf '#!/bin/sh\nexit 101\n' >"$tree/usr/sbin/policy-rc.d"
chmod 0755 "$tree/usr/sbin/policy-rc.d"

step "kernel $kernel_pkg and initramfs"
in_root apt-get install -y --no-install-recommends "$kernel_pkg" initramfs-tools >"$work/kernel.log" 2>&1 || {
	tail -n 40 "$work/kernel.log" >&2
	die "installing $kernel_pkg failed (log above)"
}

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

kver=$(in_root dpkg-query -W -f='${Version}' "$kernel_pkg")
podman_ver=$(in_root dpkg-query -W -f='${Version}' podman)
systemd_ver=$(in_root dpkg-query -W -f='${Version}' systemd)
vmlinuz=$(find "$tree/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n 1)
initrd=$(find "$tree/boot" -maxdepth 1 -name 'initrd.img-*' | sort -V | tail -n 1)
[[ -n $vmlinuz && -n $initrd ]] || die "no kernel or initrd in $tree/boot"

# Mark /etc and /var as up to date with /usr, so that no boot spends the
# emulated CPUs on ldconfig, the journal catalog or the hwdb (every boot
# starts from the same snapshot, so nothing done at boot is kept).
in_root /usr/lib/systemd/systemd-update-done

rm -f "$tree/usr/sbin/policy-rc.d"
in_root apt-get clean
rm -rf "$tree"/var/lib/apt/lists/* "$tree"/var/cache/apt/*.bin "$tree"/tmp/* "$tree"/var/tmp/*
for m in "${mounted[@]}"; do
	umount "$m"
done
mounted=()

step "root filesystem image ($root_size)"
mkdir -p "$work/out"
cp "$vmlinuz" "$work/out/vmlinuz"
cp "$initrd" "$work/out/initrd.img"
truncate -s "$root_size" "$work/out/root.img"
mkfs.ext4 -q -F -L cellroot -d "$tree" "$work/out/root.img"
cat >"$work/out/info" <<INFO
suite=$suite
mirror=$mirror
kernel_package=$kernel_pkg
kernel_package_version=$kver
kernel=$(basename "$vmlinuz")
systemd=$systemd_ver
podman=$podman_ver
user=$vm_user
uid=$vm_uid
built=$(date -u +%Y-%m-%dT%H:%M:%SZ)
INFO
mv "$work/out" "$out"
step "done: $(du -sh --apparent-size "$out/root.img" | cut -f1) root image, kernel $kver, podman $podman_ver, systemd $systemd_ver"
