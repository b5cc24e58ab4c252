#!/bin/sh
# disk.sh OUT.raw ROOTFS_IMG KERNEL INITRD SYSTEMD_BOOT_EFI APPLIANCE_BIN RELEASE SLOT_MIB DATA_MIB
# Assembles the disk without loop devices: each file system is made in a
# file (mkfs.vfat + mtools, mkfs.ext4 -d) and copied into a GPT laid out
# by sfdisk: ESP, root-a, root-b (empty until the first update), data.
set -eu
out=$1 rootimg=$2 kernel=$3 initrd=$4 sdboot=$5 appl=$6 release=$7 slot=$8 data=$9
esp=256
work=$(mktemp -d "$(dirname "$out")/disk.XXXXXX")
trap 'rm -rf "$work"' EXIT

# ESP: systemd-boot as the removable-media loader (no NVRAM entry needed),
# slot A's kernel and its blessed entry.
mkfs.vfat -n ESP -F 32 -C "$work/esp.img" $((esp * 1024)) >/dev/null
export MTOOLS_SKIP_CHECK=1
i="$work/esp.img"
mmd -i "$i" ::/EFI ::/EFI/BOOT ::/EFI/systemd ::/loader ::/loader/entries ::/gatehouse ::/gatehouse/a ::/gatehouse/b
mcopy -i "$i" "$sdboot" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$i" "$sdboot" ::/EFI/systemd/systemd-bootx64.efi
mcopy -i "$i" "$kernel" ::/gatehouse/a/vmlinuz
mcopy -i "$i" "$initrd" ::/gatehouse/a/initrd.img
# No editor: the kernel command line cannot be changed at the console (no
# init=/bin/sh); the menu shows 3 s so an operator can pick a slot.
printf 'timeout 3\neditor no\nauto-entries no\nauto-firmware no\nconsole-mode keep\n' >"$work/loader.conf"
mcopy -i "$i" "$work/loader.conf" ::/loader/loader.conf
"$appl" entry a "$release" >"$work/entry.conf"
mcopy -i "$i" "$work/entry.conf" ::/loader/entries/gatehouse-a.conf

# Data: empty directories for the appliance's settings and the relay's state.
mkdir -p "$work/data/appliance" "$work/data/relay"
chmod 0700 "$work/data/appliance"
mkfs.ext4 -q -F -L data -d "$work/data" "$work/data.img" "${data}M"

# GPT, in MiB: 1 reserved, ESP, A, B, data, 1 for the backup table.
a=$((1 + esp)) b=$((1 + esp + slot)) d=$((1 + esp + 2 * slot))
total=$((d + data + 1))
rm -f "$out"
truncate -s "${total}M" "$out"
sfdisk -q "$out" <<SFDISK
label: gpt
start=1MiB, size=${esp}MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=esp
start=${a}MiB, size=${slot}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root-a
start=${b}MiB, size=${slot}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root-b
start=${d}MiB, size=${data}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=data
SFDISK
dd if="$work/esp.img" of="$out" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$rootimg" of="$out" bs=1M seek=$a conv=notrunc,sparse status=none
dd if="$work/data.img" of="$out" bs=1M seek=$d conv=notrunc,sparse status=none
