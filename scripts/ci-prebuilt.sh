#!/usr/bin/env bash
# CI check of the prebuilt install path, end to end: pack the main package and @simba-ssm/linux-x64,
# install both tarballs into a fresh project whose PATH holds only node, npm, npx and sh (cmake, cc,
# c++, gcc, g++, make, ninja and nvcc are stand-ins that record any call and fail), then run
# `simba generate` and `simba doctor` there. Fails if the install compiled anything, called a
# compiler, or the addon does not come from the platform package.
#
#   scripts/ci-prebuilt.sh                 the release binary npm/linux-x64/simba_ssm.node, the one we
#                                          ship (`npm run prebuild:release` puts it there); the installed
#                                          addon must be that file, byte for byte
#   scripts/ci-prebuilt.sh --local-build   the host-toolchain build in build/Release instead (no root or
#                                          chroot needed; not what ships)
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
t0=$(date +%s)
mode="${1:-release}"
case "$mode" in
  release) addon=npm/linux-x64/simba_ssm.node; stage=()
    [ -f "$addon" ] || { echo "ci-prebuilt: $addon is missing: run SIMBA_PREBUILD_CUDA=0 npm run prebuild:release first" >&2; exit 1; } ;;
  --local-build) addon=build/Release/simba_ssm.node; stage=(--stage-local-build)
    [ -f "$addon" ] || SIMBA_NO_CUDA=1 npx cmake-js compile --log-level error ;;
  *) echo "ci-prebuilt: unknown argument '$mode' (none, or --local-build)" >&2; exit 2 ;;
esac
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
node scripts/pack.js "${stage[@]}" --out "$work/packages" main linux-x64
version="$(node -p "require('./package.json').version")"
main_tgz="$work/packages/simba-ssm-$version.tgz"
plat_tgz="$work/packages/simba-ssm-linux-x64-$version.tgz"
mkdir -p "$work/bin" "$work/app"
for t in node npm npx sh; do ln -s "$(readlink -f "$(command -v "$t")")" "$work/bin/$t"; done
for t in cmake cc c++ gcc g++ make ninja nvcc; do
  printf '#!/bin/sh\necho "$0 $*" >> %s/compiler-calls\nexit 127\n' "$work" > "$work/bin/$t"
  chmod +x "$work/bin/$t"
done
fail() { echo "ci-prebuilt: FAIL: $*" >&2; exit 1; }
cd "$work/app"
echo '{ "name": "ci-app", "version": "1.0.0", "private": true }' > package.json
t1=$(date +%s)
env -u CC -u CXX -u CUDACXX PATH="$work/bin" npm install --no-audit --no-fund --foreground-scripts "$main_tgz" "$plat_tgz" 2>&1 | tee "$work/install.log"
echo "ci-prebuilt: npm install took $(( $(date +%s) - t1 )) s"
run() { env -u CC -u CXX -u CUDACXX PATH="$work/bin" "$@"; }
run npx simba generate --prompt "The jury" --max-tokens 8 | tee "$work/generate.log"; echo
run npx simba doctor | tee "$work/doctor.log"

grep -q 'nothing to compile' "$work/install.log" || fail "the install did not use the prebuilt addon"
grep -q 'building the addon from source' "$work/install.log" && fail "the install fell back to a source build"
grep -q 'EBADENGINE' "$work/install.log" && fail "a dependency does not support this Node.js: $(grep -A2 EBADENGINE "$work/install.log" | head -3)"
[ -e "$work/compiler-calls" ] && fail "a compiler was called: $(cat "$work/compiler-calls")"
[ -e node_modules/simba-ssm/build ] && fail "node_modules/simba-ssm/build exists: something was compiled"
grep -qE "^from +platform package @simba-ssm/linux-x64@$version\$" "$work/doctor.log" || fail "doctor does not report the platform package"
[ -s "$work/generate.log" ] || fail "simba generate printed nothing"
installed=node_modules/@simba-ssm/linux-x64/simba_ssm.node
cmp -s "$installed" "$repo/$addon" || fail "the installed $installed is not $addon"
echo "ci-prebuilt: ok ($addon) in $(( $(date +%s) - t0 )) s ($(du -k "$main_tgz" | cut -f1) KiB + $(du -k "$plat_tgz" | cut -f1) KiB tarballs)"
