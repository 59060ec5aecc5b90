#!/bin/sh
# Fails on a source file in src/ over 1200 lines or a function over 120
# lines (docs/HACKING.md): past that a module or a step no longer fits in
# a reader's head; split it by job.
#
# A function is counted from the line with its opening brace (column 0,
# after a signature ending in ')') to its closing brace (column 0), both
# included; struct and enum bodies are not functions.
set -eu
SRC="${MD_SOURCE_DIR:-$(dirname "$0")/..}/src"
exec /usr/bin/python3 - "$SRC" <<'PY'
import os
import re
import sys

MAX_FILE_LINES = 1200
MAX_FUNCTION_LINES = 120
# Files not checked yet, each with the reason; remove an entry once the
# file is split.
EXCLUDED = {
}

src = sys.argv[1]
NAME = re.compile(r"(\w+)\s*\(")
problems = []
checked = 0
for folder in sorted(os.listdir(src)):
    if not os.path.isdir(os.path.join(src, folder)):
        continue
    for name in sorted(os.listdir(os.path.join(src, folder))):
        if not name.endswith((".c", ".h")):
            continue
        rel = folder + "/" + name
        if rel in EXCLUDED:
            continue
        checked += 1
        with open(os.path.join(src, folder, name), errors="replace") as f:
            lines = f.read().splitlines()
        if len(lines) > MAX_FILE_LINES:
            problems.append("%s: %d lines (at most %d): split it by job"
                            % (rel, len(lines), MAX_FILE_LINES))
        i = 0
        while i < len(lines):
            if lines[i] != "{" or i == 0 or not lines[i - 1].rstrip().endswith(")"):
                i += 1
                continue
            # The function's name: on the signature's line at column 0
            # (continuation lines are indented).
            j = i - 1
            while j > 0 and not (re.match(r"[A-Za-z_]", lines[j]) and "(" in lines[j]):
                j -= 1
            match = NAME.search(lines[j])
            function = match.group(1) if match else "?"
            end = i + 1
            while end < len(lines) and lines[end] != "}":
                end += 1
            length = end - i + 1
            if length > MAX_FUNCTION_LINES:
                problems.append("%s:%d: function %s is %d lines (at most %d): split it into steps"
                                % (rel, j + 1, function, length, MAX_FUNCTION_LINES))
            i = end + 1
for problem in problems:
    print(problem)
if problems:
    sys.exit(1)
print("%d files of %s: none over %d lines, no function over %d lines (not checked: %s)"
      % (checked, src, MAX_FILE_LINES, MAX_FUNCTION_LINES, ", ".join(sorted(EXCLUDED))))
PY
