#!/bin/sh
# Fails when a C file under src/ or tests/ differs from what clang-format
# (config: .clang-format at the top of the source tree) makes of it, and
# lists those files. Fix with the command it prints.
set -u

srcdir=${MD_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
clang_format=${CLANG_FORMAT:-clang-format}

if ! command -v "$clang_format" >/dev/null 2>&1; then
	echo "SKIP: $clang_format not found (apt install clang-format)"
	exit 1
fi
if [ ! -f "$srcdir/.clang-format" ]; then
	echo "FAIL: $srcdir/.clang-format is missing"
	exit 1
fi

cd "$srcdir" || exit 1

# Generated code (gdbus-codegen output lives in the build directory, but
# skip anything named *-generated.* that may be copied in) is not ours;
# the test guest's assembly (tests/guest/*.S) is not C.
files=$(find src tests -type f \( -name '*.c' -o -name '*.h' \) \
	! -name '*-generated.*' | LC_ALL=C sort)

if [ -z "$files" ]; then
	echo "FAIL: no C files found under $srcdir/src and $srcdir/tests"
	exit 1
fi

bad=""
count=0
for f in $files; do
	count=$((count + 1))
	if ! "$clang_format" --dry-run --Werror "$f" >/dev/null 2>&1; then
		bad="$bad $f"
	fi
done

if [ -n "$bad" ]; then
	echo "FAIL: not formatted according to .clang-format:"
	for f in $bad; do
		echo "  $f"
	done
	echo "The first differences:"
	for f in $bad; do
		"$clang_format" --dry-run --Werror "$f" 2>&1 | head -n 6
	done
	echo "Fix with: (cd $srcdir && $clang_format -i$bad)"
	exit 1
fi
echo "ok: $count files formatted"
