#!/usr/bin/env bash
# npm run test:sanitize [-- jest args]: the whole jest suite against the addon built with
# AddressSanitizer + UndefinedBehaviorSanitizer (CMake option SIMBA_SANITIZE=ON), in its own folder
# build-sanitize/ (the package keeps loading build/Release). Fails on any sanitizer report.
#
#   - the addon is loaded through SIMBA_ADDON_PATH; libasan is LD_PRELOADed into node (it must be the
#     first library loaded) and every child process (jest workers, the CLI tests' `node dist/...`)
#     inherits the environment;
#   - reports go to files, build-sanitize/reports/<asan|ubsan>.<pid>, so a report in a child whose
#     stderr a test swallows (or whose failing exit a test expects) still fails the run;
#   - halt_on_error=1 and -fno-sanitize-recover=all: the first report aborts that process.
#     detect_leaks=0: node itself does not free everything at exit (leaks: test/leaks.test.ts);
#   - SIMBA_SANITIZED=1 tells tests that timings mean nothing in this run, and tests that repeat one
#     check many times (fuzz iterations, random schemas, seeds, load cycles) run fewer repetitions
#     (test/helpers/sanitized.ts: every test and assertion still runs; npm test keeps full counts).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=build-sanitize
REPORTS="$PWD/$OUT/reports"

start=$(date +%s)
SIMBA_NO_CUDA=1 nice -n 10 npx cmake-js compile --log-level error --out "$OUT" --CDSIMBA_SANITIZE=ON
built=$(date +%s)
ADDON="$PWD/$OUT/Release/simba_ssm.node"
[ -f "$ADDON" ] || { echo "test-sanitize: $ADDON was not built" >&2; exit 2; }

# The sanitizer runtimes the addon was linked against (the compiler CMake used), else gcc's.
runtime() { ldd "$ADDON" | awk -v lib="$1" '$1 ~ "^"lib"\\.so" { print $3 }' | head -n1; }
ASAN_LIB=$(runtime libasan)
UBSAN_LIB=$(runtime libubsan)
[ -n "$ASAN_LIB" ] || ASAN_LIB=$(gcc -print-file-name=libasan.so)
[ -n "$UBSAN_LIB" ] || UBSAN_LIB=$(gcc -print-file-name=libubsan.so)
[ -f "$ASAN_LIB" ] || { echo "test-sanitize: libasan not found ($ASAN_LIB)" >&2; exit 2; }
if ! nm -D "$ADDON" | grep '__asan_' >/dev/null; then
  echo "test-sanitize: $ADDON is not instrumented (stale CMake cache? rm -rf $OUT)" >&2
  exit 2
fi

rm -rf "$REPORTS" && mkdir -p "$REPORTS"
LOG="$PWD/$OUT/jest.log"
status=0
env SIMBA_ADDON_PATH="$ADDON" SIMBA_SANITIZED=1 \
    LD_PRELOAD="$ASAN_LIB${UBSAN_LIB:+:$UBSAN_LIB}" \
    ASAN_OPTIONS="halt_on_error=1:detect_leaks=0:allocator_may_return_null=1:abort_on_error=0:exitcode=86:log_path=$REPORTS/asan" \
    UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:exitcode=87:log_path=$REPORTS/ubsan" \
    npx jest --ci "$@" 2>&1 | tee "$LOG" || status=$?
end=$(date +%s)

found=0
if [ -n "$(ls -A "$REPORTS")" ]; then
  for f in "$REPORTS"/*; do
    if grep -qE 'ERROR: |runtime error:' "$f"; then
      echo "==== sanitizer report $f" >&2
      found=1
    else
      # e.g. "ASan is ignoring requested __asan_handle_no_return" (an exception unwinding a thread
      # stack ASan did not allocate): a warning, printed but not a failure
      echo "==== sanitizer warning (not an error) $f" >&2
    fi
    head -n 40 "$f" >&2
  done
fi
if grep -qE 'runtime error:|AddressSanitizer|LeakSanitizer' "$LOG"; then
  found=1
  echo "==== sanitizer output in the jest log ($LOG):" >&2
  grep -nE 'runtime error:|AddressSanitizer|LeakSanitizer' "$LOG" | head -n 20 >&2
fi
echo "test-sanitize: build $((built - start)) s, tests $((end - built)) s, jest exit $status, sanitizer reports: $([ $found = 1 ] && echo yes || echo none)"
if [ $found = 1 ]; then exit 1; fi
exit "$status"
