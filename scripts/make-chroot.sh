#!/usr/bin/env bash
# Creates the release build root: a Debian bullseye (glibc 2.31) chroot with cmake, g++, make and
# ninja, made with debootstrap from this machine's apt mirror. Needs root. Idempotent: an existing,
# complete chroot (marked by /.simba-ready) is left alone.
#
#   scripts/make-chroot.sh [DIR]      default: $SIMBA_CHROOT or ~/.cache/simba-ssm/bullseye
set -euo pipefail
root="${1:-${SIMBA_CHROOT:-$HOME/.cache/simba-ssm/bullseye}}"
if [ -f "$root/.simba-ready" ]; then echo "chroot ready: $root"; exit 0; fi
if [ "$(id -u)" != 0 ]; then echo "make-chroot: debootstrap needs root" >&2; exit 1; fi
command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap; }
# The mirror this machine's apt uses (deb822 or one-line sources), else the Debian default.
mirror="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v '^\s*#' |
  grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -1 | tr -d ' ' || true)"
mirror="${mirror:-http://deb.debian.org/debian}"
echo "debootstrap bullseye from $mirror into $root"
mkdir -p "$root"
debootstrap --variant=minbase --include=g++,cmake,make,ninja-build,binutils bullseye "$root" "$mirror"
touch "$root/.simba-ready"
echo "chroot ready: $root ($(chroot "$root" ldd --version | head -1))"
