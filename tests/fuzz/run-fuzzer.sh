#!/bin/sh
# Runs libFuzzer target $1 over the seed corpus $2 for the arguments that
# follow (e.g. -runs=20000). New inputs go to a scratch directory, never
# into the corpus kept in the repository.
set -eu
fuzzer=$(realpath "$1")
seeds=$(realpath "$2")
shift 2
work=$(mktemp -d "${TMPDIR:-/tmp}/md-fuzz-XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
"$fuzzer" -seed=1 -max_len=65536 -timeout=60 -rss_limit_mb=2048 "$@" "$work" "$seeds"
