#!/bin/bash
# The demo: builds migrationd, then runs it on a private system bus (a real
# dbus-daemon; polkit answered by python-dbusmock's polkitd allowing all)
# and drives it as a user would with migrationctl. Nothing is installed on
# the host and nothing is left running afterwards.
set -euo pipefail
cd "$(dirname "$0")"
. tools/install-deps.sh
install_deps
host_settings
[ -f build/build.ninja ] || meson setup build >/dev/null
meson compile -C build >/dev/null
exec /usr/bin/python3 tools/demo.py "$@"
