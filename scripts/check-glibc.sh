#!/usr/bin/env bash
# Prints the highest GLIBC and GLIBCXX symbol version each binary requires (objdump -T) and fails
# when one is above the floor: GLIBC 2.31 (Debian 11, Ubuntu 20.04, RHEL 9) and GLIBCXX 3.4.28
# (GCC 10). The release binaries link libstdc++ statically, so they should need no GLIBCXX at all.
#
#   scripts/check-glibc.sh FILE...      env: GLIBC_FLOOR (2.31), GLIBCXX_FLOOR (3.4.28)
set -euo pipefail
glibc_floor="${GLIBC_FLOOR:-2.31}"
glibcxx_floor="${GLIBCXX_FLOOR:-3.4.28}"
# The highest NAME_x.y[.z] version a binary's dynamic symbols require, or "none".
highest() { objdump -T "$1" | grep -oE "\\b$2_[0-9]+(\\.[0-9]+)*" | sed "s/^$2_//" | sort -uV | tail -1 | grep . || echo none; }
# Whether version $1 is above $2.
above() { [ "$1" != none ] && [ "$1" != "$2" ] && [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | tail -1)" = "$1" ]; }
status=0
for f in "$@"; do
  [ -f "$f" ] || { echo "check-glibc: $f: not found" >&2; status=1; continue; }
  g="$(highest "$f" GLIBC)"; x="$(highest "$f" GLIBCXX)"
  dyn="$(objdump -p "$f" | awk '/NEEDED/ {print $2}' | paste -sd, -)"
  verdict=""
  if above "$g" "$glibc_floor"; then verdict+=" GLIBC_$g > $glibc_floor"; fi
  if above "$x" "$glibcxx_floor"; then verdict+=" GLIBCXX_$x > $glibcxx_floor"; fi
  if [ -n "$verdict" ]; then verdict="FAIL:$verdict"; status=1; else verdict=ok; fi
  printf '%-48s GLIBC %-6s GLIBCXX %-8s needs %s  %s\n' "$(basename "$(dirname "$f")")/$(basename "$f")" "$g" "$x" "$dyn" "$verdict"
done
exit $status
