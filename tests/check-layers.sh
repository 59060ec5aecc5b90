#!/bin/sh
# Fails on an include cycle between the folders (layers) of src/, or
# between two modules (md-foo.[ch] + md-foo-private.h) anywhere in src/.
# Folders are layers (docs/HACKING.md): a cycle means two layers cannot be
# understood, or tested, one without the other.
set -eu
SRC="${MD_SOURCE_DIR:-$(dirname "$0")/..}/src"
exec /usr/bin/python3 - "$SRC" <<'PY'
import os
import re
import sys

src = sys.argv[1]
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def module_of(path):
    """common/md-error.c -> common/md-error; a private header belongs to
    its module (md-peer-private.h -> md-peer)."""
    folder, name = os.path.split(path)
    stem = os.path.splitext(name)[0]
    if stem.endswith("-private"):
        stem = stem[: -len("-private")]
    return folder + "/" + stem


files = {}
for folder in sorted(os.listdir(src)):
    if not os.path.isdir(os.path.join(src, folder)):
        continue
    for name in sorted(os.listdir(os.path.join(src, folder))):
        if name.endswith((".c", ".h")):
            files[folder + "/" + name] = open(os.path.join(src, folder, name), errors="replace").read()

folders = {f.split("/")[0] for f in files}
folder_edges = {}  # (from, to) -> [why]
module_edges = {}
for path, text in files.items():
    folder = path.split("/")[0]
    for target in INCLUDE.findall(text):
        if "/" in target:
            target_path = target
        else:
            target_path = folder + "/" + target
        if target_path not in files:
            continue  # config.h, generated headers, system headers
        why = '%s includes "%s"' % (path, target)
        to_folder = target_path.split("/")[0]
        if to_folder != folder and to_folder in folders:
            folder_edges.setdefault((folder, to_folder), []).append(why)
        a, b = module_of(path), module_of(target_path)
        if a != b:
            module_edges.setdefault((a, b), []).append(why)


def cycles(edges):
    """Strongly connected components of more than one node (Tarjan)."""
    graph = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index, low, stack, on_stack, result = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return result


failed = False
for kind, edges in (("folders", folder_edges), ("modules", module_edges)):
    for component in cycles(edges):
        failed = True
        print("include cycle between %s: %s" % (kind, " <-> ".join(component)))
        members = set(component)
        for (a, b), whys in sorted(edges.items()):
            if a in members and b in members:
                for why in whys:
                    print("    %s -> %s: %s" % (a, b, why))
if failed:
    print("Break each cycle: the lower layer must not include the higher one "
          "(hand off through a signal or a callback; docs/HACKING.md).")
    sys.exit(1)
print("no include cycle between %d folders and %d modules of %s"
      % (len(folders), len({module_of(f) for f in files}), src))
PY
