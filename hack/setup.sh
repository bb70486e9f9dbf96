#!/usr/bin/env bash
# Installs every system package Berth needs (idempotent) and builds the release binaries into target/release.
# Run as root on a Debian 12 host: `sudo hack/setup.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "setup.sh: run as root (it installs Debian packages)" >&2
  exit 1
fi

mapfile -t wanted < <(cat hack/packages.txt ./*/PACKAGES 2>/dev/null | sed 's/#.*//' | awk 'NF' | sort -u)
missing=()
for p in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Packages that ship services (docker-registry) must not start them: tests run their own on free ports.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  # shellcheck disable=SC1091
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
fi
cargo build --release --workspace --bins
# Berth's CNI plugins beside the reference ones, where any CNI-speaking runtime looks for them.
mkdir -p /opt/cni/bin
for p in bridge host-local loopback portmap; do
  install -m 0755 "target/release/berth-$p" "/opt/cni/bin/berth-$p"
done
echo "setup.sh: built $(ls target/release/berth*  | grep -v '\.d$' | tr '\n' ' ')"
