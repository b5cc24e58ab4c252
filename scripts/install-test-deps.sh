#!/bin/sh
# Installs the Debian packages the tests use, when running as root and they
# are missing. Without root it only says what is missing: the tests that need
# them skip and say why.
set -eu
missing=""
for p in "$@"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "not root: cannot install$missing; tests needing them will skip"
	exit 0
fi
echo "installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
# Packaged daemons must not run on their own: tests start their own instances.
for s in tinyproxy; do
	if command -v systemctl >/dev/null 2>&1; then systemctl disable --now "$s" >/dev/null 2>&1 || true; fi
	pkill -x "$s" 2>/dev/null || true
done
