#!/usr/bin/env bash
# `npm run prebuild:release`: the release build of the platform packages, in a Debian bullseye
# chroot (glibc 2.31, GCC 10) so the binaries run on any glibc >= 2.31, with libstdc++ and libgcc linked
# statically. Needs root (debootstrap, chroot, a bind mount of the CUDA toolkit).
#
#   npm/linux-x64/simba_ssm.node          the CPU addon (all ISAs, chosen at run time)
#   npm/linux-x64-cuda/libsimba_cuda.so   the CUDA backend (sm_80, sm_90 + compute_90 PTX, static CUDA runtime)
#
# Then scripts/check-glibc.sh fails above GLIBC 2.31 / GLIBCXX 3.4.28, and both binaries are loaded
# inside the chroot (glibc 2.31) by node. Env: SIMBA_CHROOT (default ~/.cache/simba-ssm/bullseye),
# CUDA_HOME (default /usr/local/cuda; no nvcc there -> the CUDA package is skipped with a message),
# SIMBA_PREBUILD_CUDA=0 skips the CUDA package. (Not named `prebuild`: npm runs a script of that
# name before every `npm run build`.)
set -euo pipefail
cd "$(dirname "$0")/.."
chroot_dir="${SIMBA_CHROOT:-$HOME/.cache/simba-ssm/bullseye}"
cuda_home="$(readlink -f "${CUDA_HOME:-/usr/local/cuda}" 2>/dev/null || true)"
t_start=$(date +%s)
scripts/make-chroot.sh "$chroot_dir"

# Sources and the header-only dependencies cmake-js would pass (node-api-headers, node-addon-api),
# plus the host's node (needs glibc 2.28) for CMakeLists' `node -p` and the load check.
src="$chroot_dir/src"
rm -rf "$src" && mkdir -p "$src/node_modules"
cp -r CMakeLists.txt cmake native "$src/"
cp -rL node_modules/node-addon-api node_modules/node-api-headers "$src/node_modules/"
install -m 755 "$(readlink -f "$(command -v node)")" "$chroot_dir/usr/local/bin/node"

mounts=()
cleanup() { for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || true; done; }
trap cleanup EXIT
for m in proc dev; do
  mkdir -p "$chroot_dir/$m"
  mountpoint -q "$chroot_dir/$m" || { mount --bind "/$m" "$chroot_dir/$m"; mounts+=("$chroot_dir/$m"); }
done
want_cuda=0
if [ "${SIMBA_PREBUILD_CUDA:-1}" != 0 ] && [ -x "$cuda_home/bin/nvcc" ]; then
  want_cuda=1
  mkdir -p "$chroot_dir/opt/cuda"
  mountpoint -q "$chroot_dir/opt/cuda" || { mount --bind -o ro "$cuda_home" "$chroot_dir/opt/cuda"; mounts+=("$chroot_dir/opt/cuda"); }
elif [ "${SIMBA_PREBUILD_CUDA:-1}" != 0 ]; then
  echo "prebuild: no nvcc at $cuda_home/bin/nvcc: skipping @simba-ssm/linux-x64-cuda" >&2
fi

# configure + build one flavour inside the chroot: $1 build dir, $2 SIMBA_CUDA ON/OFF
build() {
  local t0=$(date +%s)
  chroot "$chroot_dir" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root /bin/sh -ec "
    cd /src
    cmake -S . -B $1 -G Ninja --no-warn-unused-cli -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_LIBRARY_OUTPUT_DIRECTORY=/src/$1/Release \
      '-DCMAKE_JS_INC=/src/node_modules/node-api-headers/include;/src/node_modules/node-addon-api' \
      '-DCMAKE_SHARED_LINKER_FLAGS=-static-libstdc++ -static-libgcc' \
      -DSIMBA_CUDA=$2 -DCMAKE_CUDA_COMPILER=/opt/cuda/bin/nvcc -DCUDAToolkit_ROOT=/opt/cuda \
      '-DCMAKE_CUDA_FLAGS=-Xcompiler=-static-libstdc++ -Xcompiler=-static-libgcc' > /src/$1.configure.log
    cmake --build $1 -j \$(nproc)"
  echo "prebuild: $1 built in $(( $(date +%s) - t0 )) s"
}
# One build gives both binaries: the addon is the same with or without the CUDA backend beside it.
build build-release "$([ $want_cuda = 1 ] && echo ON || echo OFF)"
cp "$src/build-release/Release/simba_ssm.node" npm/linux-x64/simba_ssm.node
bins=(npm/linux-x64/simba_ssm.node)
if [ $want_cuda = 1 ]; then
  cp "$src/build-release/Release/libsimba_cuda.so" npm/linux-x64-cuda/libsimba_cuda.so
  bins+=(npm/linux-x64-cuda/libsimba_cuda.so)
fi
strip --strip-unneeded "${bins[@]}"
scripts/check-glibc.sh "${bins[@]}"

# Load check on glibc 2.31: the addon, and the CUDA library through the addon's loader (no GPU here,
# so it must get as far as "loaded, but" the driver or device is missing).
cp npm/linux-x64/simba_ssm.node "$src/check.node"
[ $want_cuda = 1 ] && cp npm/linux-x64-cuda/libsimba_cuda.so "$src/libsimba_cuda.so"
chroot "$chroot_dir" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin SIMBA_CUDA_LIB=/src/libsimba_cuda.so /usr/local/bin/node -e "(async () => {
  const a = require('/src/check.node');
  // a real forward pass (random weights, 3 tokens) on glibc 2.31, not just a load
  const e = new a.Engine({ vocabSize: 16, dModel: 8, nLayer: 2, dInner: 16, dState: 4, dtRank: 1, dConv: 4, convBias: true,
                           projBias: false, tieEmbeddings: true, eps: 1e-5 }, { bf16: false });
  await e.randomize(1); e.finalize();
  const r = await e.forward(Int32Array.from([1, 2, 3]), Int32Array.from([3]), [new Float32Array(e.info().stateFloats)], Int32Array.from([2]));
  if (r.logits.length !== 16 || !r.logits.every(Number.isFinite)) throw new Error('forward pass gave ' + r.logits);
  e.dispose();
  const c = a.cudaAvailable();
  console.log('prebuild: loads and runs a forward pass on ' + require('child_process').execSync('ldd --version').toString().split('\n')[0] + ': kernels ' + a.activeIsa() + ', CUDA: ' + c.reason.split('\n').slice(-1)[0].trim());
  if ($want_cuda && !c.available && !/loaded, but/.test(c.reason)) process.exit(1);
})().catch((e) => { console.error('prebuild: load check failed: ' + e.message); process.exit(1); });"
ls -l "${bins[@]}"
echo "prebuild: done in $(( $(date +%s) - t_start )) s"
