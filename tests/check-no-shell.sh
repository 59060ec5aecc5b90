#!/bin/sh
# Fails when code under src/ runs anything through a shell: every program
# the daemon and migrationctl start is an argv (GSubprocess, g_spawn_async
# with an argv), and QEMU is only ever given structured migration
# addresses (src/migration/md-address.c). Lists each offending line.
set -u

srcdir=${MD_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$srcdir" || exit 1

if [ ! -d src ]; then
	echo "FAIL: no src/ under $srcdir"
	exit 1
fi

# The shell itself, the GLib helpers that parse a command line, libc's
# shell-based calls.
pattern='"(/bin/)?sh"|"-c"|sh -c|/bin/sh|/bin/bash|g_spawn_command_line_(sync|async)|g_shell_parse_argv|[^_a-z]system[[:space:]]*\(|[^_a-z]popen[[:space:]]*\('

# Comments may name what is forbidden; code may not.
hits=$(grep -rnE "$pattern" src --include='*.c' --include='*.h' |
	grep -vE '^[^:]+:[0-9]+:[[:space:]]*(/?\*|//)')

if [ -n "$hits" ]; then
	echo "FAIL: shell use in src/ (spawn an argv instead):"
	echo "$hits"
	exit 1
fi
count=$(find src -name '*.c' | wc -l)
echo "ok: no shell use in $count C files under src/"
