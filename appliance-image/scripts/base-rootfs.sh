#!/bin/sh
# base-rootfs.sh DIR: a minimal Debian 12 with the kernel, systemd and
# nftables, made by debootstrap from the mirror this machine's apt uses.
# The result is cached: the image build copies it and adds Gatehouse.
set -eu
dir=$1
suite=${SUITE:-bookworm}
mirror=${MIRROR:-$(dirname "$0")/mirror.sh}
[ -x "$mirror" ] && mirror=$("$mirror")
# What the appliance runs: kernel and initramfs, systemd (networkd for the
# network), systemd-boot (the boot loader, and boot counting through
# systemd-bless-boot), nftables for the
# firewall, and nothing that listens (no SSH server, no resolver stub).
pkgs=linux-image-amd64,initramfs-tools,systemd,systemd-sysv,systemd-boot,udev,dbus,kmod,nftables,ca-certificates,e2fsprogs,dosfstools,procps,open-vm-tools
rm -rf "$dir.tmp"
debootstrap --variant=minbase --include="$pkgs" "$suite" "$dir.tmp" "$mirror"
# Trim what an appliance without a shell user never reads.
rm -rf "$dir.tmp"/usr/share/doc/* "$dir.tmp"/usr/share/man/* "$dir.tmp"/usr/share/info/* \
	"$dir.tmp"/var/cache/apt/archives/*.deb "$dir.tmp"/var/lib/apt/lists/*
find "$dir.tmp"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'en*' -exec rm -rf {} +
rm -rf "$dir"
mv "$dir.tmp" "$dir"
