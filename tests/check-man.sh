#!/bin/sh
# Every built man page renders with man -l, without warnings, with the
# sections a man page needs. Arguments: the built pages.
set -u
failures=0
for page in "$@"; do
	out=$(MANWIDTH=80 man --warnings -E UTF-8 -l "$page" 2>"$page.warnings")
	if [ $? -ne 0 ] || [ -s "$page.warnings" ]; then
		echo "FAIL: man -l $page:"
		cat "$page.warnings"
		failures=$((failures + 1))
	else
		for section in NAME SYNOPSIS DESCRIPTION "SEE ALSO"; do
			printf '%s\n' "$out" | grep -q "^$section" || {
				echo "FAIL: $page has no $section section"
				failures=$((failures + 1))
			}
		done
		echo "ok: $(basename "$page") renders ($(printf '%s\n' "$out" | wc -l) lines)"
	fi
	rm -f "$page.warnings"
done
[ "$failures" -eq 0 ]
