#!/bin/bash
# The one test command: installs what the tests need (Debian 12, only what is
# missing), configures, builds and runs every test.
#
#   ./test.sh                 build in ./build and run the whole suite
#   ./test.sh --sanitize      the same with -Db_sanitize=address,undefined
#                             (in ./build-sanitize)
#   VALGRIND=1 ./test.sh      integration tests run the daemon under valgrind
#   ./test.sh -- ARGS         extra arguments for `meson test` (e.g. a test name)
set -euo pipefail
cd "$(dirname "$0")"

builddir=build
setup_args=()
if [ "${1:-}" = "--sanitize" ]; then
  builddir=build-sanitize
  setup_args+=(-Db_sanitize=address,undefined -Db_lundef=false)
  shift
fi
[ "${1:-}" = "--" ] && shift

# shellcheck source=tools/install-deps.sh
. tools/install-deps.sh
install_deps

if [ ! -f "$builddir/build.ninja" ]; then
  meson setup "$builddir" "${setup_args[@]}"
fi
meson compile -C "$builddir"

# Under sanitizers, leaks in GLib's one-time allocations are noise; the
# daemon's own leaks are checked by the VALGRIND=1 run.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

rc=0
meson test -C "$builddir" --print-errorlogs --num-processes "$(nproc)" "$@" || rc=$?

# One plain closing line for whoever reads the log (CI among them); a
# skipped test counts as failed here, as it does for us.
/usr/bin/python3 - "$builddir/meson-logs/testlog.json" <<'PY' || rc=1
import json, sys
passed = failed = 0
for line in open(sys.argv[1]):
    result = json.loads(line).get("result")
    if result == "OK":
        passed += 1
    else:
        failed += 1
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed or not passed else 0)
PY
exit "$rc"
