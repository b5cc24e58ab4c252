#!/bin/sh
# Prints the Debian mirror this machine's apt uses, so debootstrap reaches
# the same host (the build never names a mirror of its own).
set -eu
for f in /etc/apt/sources.list.d/*.sources; do
	[ -e "$f" ] || continue
	awk 'tolower($1)=="uris:" && $2 ~ /\/debian\/?$/ {print $2; exit}' "$f"
done | head -n1 | grep . && exit 0
awk '$1=="deb" && $2 !~ /^\[/ && $2 ~ /\/debian\/?$/ {print $2; exit} $1=="deb" && $2 ~ /^\[/ && $3 ~ /\/debian\/?$/ {print $3; exit}' /etc/apt/sources.list 2>/dev/null | grep . && exit 0
echo "no Debian mirror found in /etc/apt/sources.list*: set MIRROR=" >&2
exit 1
