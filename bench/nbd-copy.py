#!/usr/bin/python3
"""Benchmark: migrationd's NBD copier against nbdcopy and qemu-img convert.

All tools copy the same sparse raw image (default 4 GiB virtual, ~1 GiB of
random data in scattered chunks) from one qemu-nbd server (read-only,
multi-conn) to a freshly created destination image served by another
qemu-nbd (writable, multi-conn), N times each. Every run is checked with
qemu-img compare (untimed). Prints a table: wall time (mean/min), throughput
of the virtual size, bytes the destination ended up allocating (st_blocks)
and, for our copier, the bytes it reports as copied/zeroed.

Not part of the test suite. Usage:

    bench/nbd-copy.py --cli BUILD/bench/md-nbd-copy-cli [--runs 3]
                      [--size-gib 4] [--data-gib 1] [--workdir DIR]
"""

import argparse
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

MiB = 1024 * 1024
GiB = 1024 * MiB


def run(argv, **kw):
    return subprocess.run(argv, check=True, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, **kw)


def make_source(path, size, data, seed=42):
    """Sparse raw image: random chunks of 64 KiB..8 MiB (64 KiB aligned) at
    random places until `data` bytes are written."""
    run(["qemu-img", "create", "-q", "-f", "raw", path, str(size)])
    rng = random.Random(seed)
    used = []  # (start, end) of written chunks, kept disjoint
    written = 0
    with open(path, "r+b") as f:
        while written < data:
            length = min(rng.randrange(1, 129) * 64 * 1024, data - written)
            start = rng.randrange(0, (size - length) // (64 * 1024)) * 64 * 1024
            end = start + length
            if any(s < end and start < e for s, e in used):
                continue
            used.append((start, end))
            f.seek(start)
            f.write(os.urandom(length))
            written += length
    return len(used)


def wait_socket(path, proc, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("qemu-nbd exited early: %s" % proc.stderr.read())
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(path)
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("qemu-nbd did not listen on %s" % path)


class Server:
    """qemu-nbd -t on a unix socket; --shared=8 makes it advertise multi-conn."""

    def __init__(self, workdir, name, image, read_only):
        self.sock = os.path.join(workdir, name + ".sock")
        argv = ["qemu-nbd", "-t", "--shared=8", "-f", "raw", "-x", name,
                "-k", self.sock, image]
        if read_only:
            argv.append("--read-only")
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        wait_socket(self.sock, self.proc)
        self.uri = "nbd+unix:///%s?socket=%s" % (name, self.sock)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cli", required=True, help="path of md-nbd-copy-cli")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size-gib", type=float, default=4)
    ap.add_argument("--data-gib", type=float, default=1)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()

    for tool in ("qemu-img", "qemu-nbd", "nbdcopy"):
        if shutil.which(tool) is None:
            sys.exit("%s not found (packages qemu-utils, libnbd-bin)" % tool)
    cli = os.path.abspath(args.cli)
    if not os.access(cli, os.X_OK):
        sys.exit("%s is not executable; build it (bench/meson.build)" % cli)

    workdir = tempfile.mkdtemp(prefix="md-bench-nbd-", dir=args.workdir)
    size = int(args.size_gib * GiB)
    data = int(args.data_gib * GiB)
    src = os.path.join(workdir, "src.raw")
    dst = os.path.join(workdir, "dst.raw")
    try:
        chunks = make_source(src, size, data)
        st = os.stat(src)
        print("source: %d MiB virtual, %d MiB allocated in %d chunks; %d run(s) per tool"
              % (size // MiB, st.st_blocks * 512 // MiB, chunks, args.runs), flush=True)
        source = Server(workdir, "src", src, True)

        tools = [
            ("migrationd copier", lambda s, d: [cli, s, d]),
            ("migrationd copier --verify", lambda s, d: [cli, "--verify", s, d]),
            ("nbdcopy --flush", lambda s, d: ["nbdcopy", "--flush", s, d]),
            ("nbdcopy --flush --destination-is-zero",
             lambda s, d: ["nbdcopy", "--flush", "--destination-is-zero", s, d]),
            ("qemu-img convert -n", lambda s, d: ["qemu-img", "convert", "-n", "-f", "raw",
                                                 "-O", "raw", s, d]),
        ]
        # Warm up: the source server reads every data extent once, untimed.
        run(["nbdcopy", source.uri, "null:"])
        # Round-robin over the tools so that drift (writeback, caches) hits
        # them alike.
        times = {name: [] for name, _ in tools}
        allocated = {name: [] for name, _ in tools}
        reported = {name: "" for name, _ in tools}
        for i in range(args.runs):
            for name, argv_of in tools:
                if os.path.exists(dst):
                    os.unlink(dst)
                run(["qemu-img", "create", "-q", "-f", "raw", dst, str(size)])
                dest = Server(workdir, "dst", dst, False)
                argv = argv_of(source.uri, dest.uri)
                # Write back the previous run's dirty pages outside the timing.
                os.sync()
                t0 = time.monotonic()
                out = run(argv)
                times[name].append(time.monotonic() - t0)
                dest.stop()
                if name.startswith("migrationd"):
                    kv = dict(f.split("=") for f in out.stdout.split())
                    reported[name] = "copied %d MiB, zeroed %d MiB" % (
                        int(kv["copied"]) // MiB, int(kv["zeroed"]) // MiB)
                allocated[name].append(os.stat(dst).st_blocks * 512)
                cmp = subprocess.run(["qemu-img", "compare", "-q", "-f", "raw", "-F", "raw",
                                      src, dst])
                if cmp.returncode != 0:
                    sys.exit("%s: destination differs from the source (%s)" % (name, argv))
                print("  run %d %s: %.2fs" % (i + 1, name, times[name][-1]), flush=True)
        rows = []
        for name, _ in tools:
            mean = statistics.mean(times[name])
            rows.append((name, mean, min(times[name]), size / MiB / mean,
                         max(allocated[name]) // MiB, reported[name]))
        source.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print()
    header = ("tool", "mean s", "min s", "MiB/s (virtual)", "dst allocated MiB", "reported")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for name, mean, best, rate, alloc, reported in rows:
        print("| %s | %.2f | %.2f | %.0f | %d | %s |" % (name, mean, best, rate, alloc,
                                                         reported or "-"))


if __name__ == "__main__":
    main()
