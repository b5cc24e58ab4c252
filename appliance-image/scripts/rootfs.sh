#!/bin/sh
# rootfs.sh OUT BASE RELAY_DEB APPLIANCE_BIN RELEASE PUBKEY DEFAULTS
# The appliance's root file system: the cached Debian base, the relay
# package, the appliance tool and units (appliance-image/rootfs), the
# vendor's update key, with getty and every unneeded timer masked.
set -eu
out=$1 base=$2 deb=$3 appl=$4 release=$5 pubkey=$6 defaults=$7
here=$(cd "$(dirname "$0")/.." && pwd)
rm -rf "$out"
cp -a "$base" "$out"
cp -a "$here/rootfs/." "$out/"
cp "$deb" "$out/tmp/relay.deb"
chroot "$out" dpkg -i /tmp/relay.deb >/dev/null
rm "$out/tmp/relay.deb"
install -m 0755 "$appl" "$out/usr/bin/gatehouse-appliance"
install -d "$out/usr/share/gatehouse" "$out/data" "$out/efi"
install -d -m 0700 "$out/var/lib/private"
echo "$release" >"$out/usr/share/gatehouse/release"
install -m 0644 "$pubkey" "$out/usr/share/gatehouse/update-key.pub"
install -m 0644 "$defaults" "$out/usr/share/gatehouse/appliance-defaults.yaml"
ln -sf /run/gatehouse/resolv.conf "$out/etc/resolv.conf"
echo gatehouse >"$out/etc/hostname"
: >"$out/etc/machine-id"
# No password anywhere: root is locked, emergency mode cannot log in.
chroot "$out" passwd -l root >/dev/null
systemctl --root="$out" enable systemd-networkd.service gatehouse-setup.service gatehouse-boot-check.service \
	gatehouse-health.service gatehouse-report.service gatehouse-update.service gatehouse-firewall.timer \
	gatehouse-console@tty1.service gatehouse-console@ttyS0.service gatehouse-relay.service >/dev/null 2>&1
# No login prompt on any console, nothing that reaches out on its own.
systemctl --root="$out" mask getty@.service serial-getty@.service console-getty.service autovt@.service \
	apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer >/dev/null 2>&1
systemctl --root="$out" disable getty@tty1.service >/dev/null 2>&1 || true
# Drivers no appliance uses (about 150 MB); the initrd keeps its own set.
kver=$(ls "$out/usr/lib/modules")
k=$out/usr/lib/modules/$kver/kernel
rm -rf "$k/sound" "$k/drivers/gpu" "$k/drivers/media" "$k/drivers/net/wireless" "$k/drivers/infiniband" \
	"$k/drivers/staging" "$k/drivers/bluetooth" "$k/drivers/isdn" "$k/drivers/iio" "$k/net/bluetooth" "$k/net/wireless" "$k/net/mac80211"
chroot "$out" depmod -a "$kver"
