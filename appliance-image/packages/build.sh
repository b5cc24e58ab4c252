#!/bin/sh
# build.sh BIN OUT VERSION: the Debian packages gatehouse-relay,
# gatehouse-agent and gatehouse-cloud, made with dpkg-deb from the static
# binaries in BIN (make build). Each has its hardened systemd unit, a
# default configuration (a conffile) and maintainer scripts for a clean
# install, upgrade and purge.
set -eu
bin=$1 out=$2 version=$3
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
mkdir -p "$out"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

# pkg NAME CONF DESCRIPTION BINARIES...
pkg() {
	name=$1 conf=$2 desc=$3
	shift 3
	root=$stage/$name
	install -d "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/gatehouse" "$root/usr/share/doc/$name"
	for b in "$@"; do install -m 0755 "$bin/$b" "$root/usr/bin/$b"; done
	install -m 0644 "$here/$name/$name.service" "$root/lib/systemd/system/$name.service"
	# The default configuration: the package's own when the sample's
	# example values would not do, else the sample (every key, defaults).
	sample=$repo/docs/samples/$conf
	default=$here/$name/$conf
	[ -f "$default" ] || default=$sample
	install -m 0640 "$default" "$root/etc/gatehouse/$conf"
	install -m 0644 "$sample" "$root/usr/share/doc/$name/$conf.sample"
	printf '%s\n\nSee https://github.com/gatehouse/gatehouse/tree/main/docs\n' "$desc" >"$root/usr/share/doc/$name/README"
	echo "/etc/gatehouse/$conf" >"$root/DEBIAN/conffiles"
	for s in postinst prerm postrm; do
		sed -e "s/@SCRIPT@/$s/g" -e "s/@PKG@/$name/g" -e "s/@CONF@/$conf/g" "$here/maintscript.in" >"$root/DEBIAN/$s"
		chmod 0755 "$root/DEBIAN/$s"
	done
	size=$(du -sk "$root" | cut -f1)
	cat >"$root/DEBIAN/control" <<CONTROL
Package: $name
Version: $version
Architecture: amd64
Maintainer: Gatehouse <gatehouse@example.invalid>
Section: net
Priority: optional
Installed-Size: $size
Depends: systemd
Homepage: https://github.com/gatehouse/gatehouse
Description: $desc
 Part of Gatehouse, an on-premises relay for endpoint-security agents.
 Static binary; the systemd unit is hardened (see docs/appliance.md).
CONTROL
	dpkg-deb --root-owner-group -Zgzip --build "$root" "$out/${name}_${version}_amd64.deb" >/dev/null
	echo "$out/${name}_${version}_amd64.deb"
}

pkg gatehouse-relay relay.yaml "Gatehouse relay: the site's zone proxy for endpoint agents" gatehouse-relay
pkg gatehouse-agent agent.yaml "Gatehouse endpoint agent" gatehouse-agent
pkg gatehouse-cloud cloud.yaml "Gatehouse cloud tier: ingest, control plane and admin API" gatehouse-cloud gatehousectl
