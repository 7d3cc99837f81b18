#!/usr/bin/env bash
# Installs the Debian packages gatehouse needs to build and test (scripts/packages.txt), only those missing.
set -eu
here="$(dirname "$0")"
pkgs="$(sed -e 's/#.*//' "$here/packages.txt" | tr -s ' \t\n' ' ')"
missing=""
for p in $pkgs; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing Debian packages:$missing (run as root or: sudo apt-get install$missing)" >&2
    exit 1
fi
echo "deps: installing$missing"
apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >/dev/null
