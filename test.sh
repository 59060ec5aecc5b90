#!/bin/bash
# The one test command: installs what the tests need (Debian 12, only what is
# missing), configures, builds and runs every test.
#
#   ./test.sh                 the whole suite in ./build; then the unit tests
#                             and an integration subset under ASan/UBSan
#                             (./build-sanitize), and each libFuzzer target for
#                             a short fixed number of runs (./build-fuzz, clang-14)
#   ./test.sh --sanitize      the whole suite under ASan/UBSan in ./build-sanitize
#   VALGRIND=1 ./test.sh      integration tests run the daemon under valgrind
#   ./test.sh -- ARGS         only `meson test ARGS` in ./build (e.g. a test name)
set -euo pipefail
cd "$(dirname "$0")"

mode=full
if [ "${1:-}" = "--sanitize" ]; then
  mode=sanitize
  shift
fi
[ "${1:-}" = "--" ] && shift
[ $# -gt 0 ] && [ "$mode" = full ] && mode=only

# shellcheck source=tools/install-deps.sh
. tools/install-deps.sh
install_deps
host_settings

sanitize_args=(-Db_sanitize=address,undefined -Db_lundef=false)

# Sanitizers abort on the first finding. Leaks in GLib's one-time
# allocations are noise for the daemon; its own leaks are checked by the
# VALGRIND=1 run (the fuzzers check leaks per input themselves).
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

setup () { # builddir, meson setup arguments...
  local dir=$1
  shift
  [ -f "$dir/build.ninja" ] || meson setup "$dir" "$@"
}

rc=0
logs=()
run_tests () { # builddir, log name, meson test arguments...
  local dir=$1 log=$2
  shift 2
  meson test -C "$dir" --print-errorlogs --num-processes "$(nproc)" --logbase "$log" "$@" || rc=$?
  logs+=("$dir/meson-logs/$log.json")
}

case $mode in
  sanitize)
    setup build-sanitize "${sanitize_args[@]}"
    meson compile -C build-sanitize
    run_tests build-sanitize testlog "$@"
    ;;
  only)
    setup build
    meson compile -C build
    run_tests build testlog "$@"
    ;;
  full)
    setup build
    meson compile -C build
    run_tests build testlog

    # Under ASan/UBSan: every unit test, and the integration cases that
    # cover the daemon's main paths (a migration with RAM checked, disks
    # over NBD, cancel, refusals, every input check).
    setup build-sanitize "${sanitize_args[@]}"
    meson compile -C build-sanitize
    run_tests build-sanitize ci-unit --suite unit --suite test_inputs
    run_tests build-sanitize ci-integration LiveMigration.test_fill_guest_arrives_with_ram_intact \
      Refusals.test_bad_options_and_destinations_are_named \
      Cancel.test_cancel_during_perform \
      Storage.test_nbd_port_is_used_and_plaintext_nbd_is_refused

    # The fuzzers, briefly (tests/fuzz/README.md: how to run them for hours).
    CC=clang-14 setup build-fuzz -Dfuzzing=true "${sanitize_args[@]}"
    meson compile -C build-fuzz tests/fuzz/fuzz-domain-xml tests/fuzz/fuzz-peer-call \
      tests/fuzz/fuzz-qmp tests/fuzz/fuzz-options
    run_tests build-fuzz ci-fuzz --no-rebuild --suite fuzz
    ;;
esac

# One plain closing line for whoever reads the log (CI among them); a
# skipped test counts as failed here, as it does for us.
/usr/bin/python3 - "${logs[@]}" <<'PY' || rc=1
import json, sys
passed = failed = 0
for path in sys.argv[1:]:
    for line in open(path):
        result = json.loads(line).get("result")
        if result == "OK":
            passed += 1
        else:
            failed += 1
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed or not passed else 0)
PY
exit "$rc"
