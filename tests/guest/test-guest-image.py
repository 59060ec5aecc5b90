#!/usr/bin/python3
"""Boot the test guest image in real QEMU and check what it promises:

- fill mode (48 MiB in a 128 MiB guest): the READY line, its sum equal to the
  sum mkguest.py --print-sum computes on the host, at least two VERIFY ... ok
  lines with that sum, and that an ACPI power-button press is ignored;
- dirty mode: the READY line and DIRTY lines with growing round numbers;
- a range outside RAM: an MDGUEST ERROR line instead of a READY line.

Environment: MD_TESTGUEST_IMG (built image, required), MD_QEMU (emulator,
default qemu-system-x86_64). --expect-sum HEX replaces the host-computed
sum, to show the test catches a guest whose RAM does not hold what the host
expects (it must then fail).
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MKGUEST = os.path.join(HERE, "mkguest.py")
PYTHON = sys.executable or "/usr/bin/python3"

READY_FILL = re.compile(
    r"^MDGUEST READY mode=fill start=(\d+) size=(\d+) sum=([0-9a-f]{8})$")
READY_DIRTY = re.compile(r"^MDGUEST READY mode=dirty start=(\d+) size=(\d+)$")
VERIFY = re.compile(r"^MDGUEST VERIFY pass=(\d+) sum=([0-9a-f]{8}) (ok|BAD)$")
DIRTY = re.compile(r"^MDGUEST DIRTY round=(\d+)$")

# Generous: TCG on a loaded 2-core builder can be several times slower.
BOOT_TIMEOUT = 60
LINE_TIMEOUT = 30


class Failure(Exception):
    pass


class Guest:
    """One QEMU process running a configured copy of the image."""

    def __init__(self, workdir, name, image, mem_mib):
        self.name = name
        self.serial = os.path.join(workdir, name + ".serial")
        self.qmp_path = os.path.join(workdir, name + ".qmp")
        self.stderr_path = os.path.join(workdir, name + ".stderr")
        qemu = os.environ.get("MD_QEMU", "qemu-system-x86_64")
        argv = [qemu, "-machine", "pc,accel=tcg", "-m", str(mem_mib),
                "-nodefaults", "-no-user-config", "-display", "none",
                "-drive", f"file={image},format=raw,if=ide",
                "-chardev", f"file,id=s0,path={self.serial}",
                "-device", "isa-serial,chardev=s0",
                "-qmp", f"unix:{self.qmp_path},server=on,wait=off"]
        self.stderr = open(self.stderr_path, "wb")
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=self.stderr,
                                         stderr=subprocess.STDOUT)
        except OSError as e:
            self.stderr.close()
            raise Failure(f"{name}: cannot start {qemu}: {e}; set MD_QEMU "
                          f"to the QEMU system emulator") from e

    def lines(self):
        try:
            with open(self.serial, "rb") as f:
                data = f.read().decode("ascii", "replace")
        except FileNotFoundError:
            return []
        # Only complete lines: the last one may still be being written.
        return [l.rstrip("\r") for l in data.split("\n")[:-1]]

    def qemu_output(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace").strip()

    def wait_for(self, what, predicate, timeout):
        """Poll the serial log until predicate(lines) returns non-None."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.lines()
            errors = [l for l in lines if l.startswith("MDGUEST ERROR")]
            if errors:
                raise Failure(f"{self.name}: the guest reported: {errors[0]}")
            got = predicate(lines)
            if got is not None:
                return got
            if self.proc.poll() is not None:
                raise Failure(f"{self.name}: QEMU exited with status "
                              f"{self.proc.returncode} while waiting for "
                              f"{what}: {self.qemu_output() or '(no output)'}")
            if time.monotonic() > deadline:
                raise Failure(f"{self.name}: no {what} on the serial console "
                              f"within {timeout} s")
            time.sleep(0.1)

    def qmp(self, command):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        try:
            s.connect(self.qmp_path)
            f = s.makefile("rwb")

            def reply():
                while True:
                    line = f.readline()
                    if not line:
                        raise Failure(f"{self.name}: QMP closed the connection")
                    msg = json.loads(line)
                    if "return" in msg or "error" in msg:
                        return msg

            f.readline()  # greeting
            for cmd in ("qmp_capabilities", command):
                f.write(json.dumps({"execute": cmd}).encode() + b"\n")
                f.flush()
                msg = reply()
                if "error" in msg:
                    raise Failure(f"{self.name}: QMP {cmd} failed: "
                                  f"{msg['error'].get('desc')}")
        finally:
            s.close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.stderr.close()


def mkguest(*args):
    r = subprocess.run([PYTHON, MKGUEST, *args], capture_output=True,
                       text=True)
    if r.returncode != 0:
        raise Failure(f"mkguest.py {' '.join(args)} failed: {r.stderr.strip()}")
    return r.stdout.strip()


def matches(regex, lines):
    return [m for m in map(regex.match, lines) if m]


def test_fill(workdir, base, expect_sum):
    seed, start, size = 20261122, 2, 48
    img = os.path.join(workdir, "fill.img")
    mkguest("--base", base, "--out", img, "--mode", "fill", "--seed",
            str(seed), "--start-mib", str(start), "--size-mib", str(size))
    host_sum = expect_sum or mkguest("--print-sum", "--seed", str(seed),
                                     "--start-mib", str(start),
                                     "--size-mib", str(size))
    g = Guest(workdir, "fill", img, 128)
    try:
        ready = g.wait_for("READY line",
                           lambda ls: (matches(READY_FILL, ls) or [None])[0],
                           BOOT_TIMEOUT)
        if (int(ready[1]), int(ready[2])) != (start, size):
            raise Failure(f"fill: READY line reports start={ready[1]} "
                          f"size={ready[2]}, configured {start} and {size}")
        if ready[3] != host_sum:
            raise Failure(f"fill: the guest filled RAM with sum={ready[3]} "
                          f"but the host computes {host_sum} for seed {seed}, "
                          f"{size} MiB at {start} MiB")
        print(f"fill: READY sum={ready[3]} matches the host")

        def verified(n):
            def pred(ls):
                vs = matches(VERIFY, ls)
                bad = [v[0] for v in vs if v[3] != "ok" or v[2] != ready[3]]
                if bad:
                    raise Failure(f"fill: {bad[0]} (fill-time sum {ready[3]})")
                return vs if len(vs) >= n else None
            return pred

        t0 = time.monotonic()
        vs = g.wait_for("two VERIFY ok lines", verified(2), 2 * LINE_TIMEOUT)
        passes = [int(v[1]) for v in vs]
        if passes != list(range(1, len(passes) + 1)):
            raise Failure(f"fill: VERIFY pass numbers {passes} do not count "
                          f"up from 1")
        print(f"fill: {len(vs)} VERIFY ok lines after "
              f"{time.monotonic() - t0:.1f} s")

        # No ACPI in the guest: a power-button press must change nothing.
        g.qmp("system_powerdown")
        n = len(matches(VERIFY, g.lines()))
        g.wait_for("VERIFY line after system_powerdown", verified(n + 2),
                   2 * LINE_TIMEOUT)
        if g.proc.poll() is not None:
            raise Failure("fill: QEMU exited after system_powerdown; the "
                          "guest must ignore the power button")
        print("fill: system_powerdown ignored, still verifying")
    finally:
        g.stop()


def test_dirty(workdir, base):
    img = os.path.join(workdir, "dirty.img")
    mkguest("--base", base, "--out", img, "--mode", "dirty", "--start-mib",
            "2", "--size-mib", "48")
    g = Guest(workdir, "dirty", img, 128)
    try:
        ready = g.wait_for("READY line",
                           lambda ls: (matches(READY_DIRTY, ls) or [None])[0],
                           BOOT_TIMEOUT)
        if (ready[1], ready[2]) != ("2", "48"):
            raise Failure(f"dirty: READY line {ready[0]!r} does not report "
                          f"start=2 size=48")
        ds = g.wait_for("two DIRTY lines",
                        lambda ls: (lambda d: d if len(d) >= 2 else None)(
                            matches(DIRTY, ls)), 2 * LINE_TIMEOUT)
        rounds = [int(d[1]) for d in ds]
        if any(b <= a for a, b in zip(rounds, rounds[1:])) or rounds[0] < 1:
            raise Failure(f"dirty: round numbers {rounds} do not grow")
        print(f"dirty: READY, DIRTY rounds {rounds}")
    finally:
        g.stop()


def test_bad_range(workdir, base):
    img = os.path.join(workdir, "bad.img")
    mkguest("--base", base, "--out", img, "--mode", "fill", "--size-mib",
            "200")
    g = Guest(workdir, "bad-range", img, 128)
    try:
        try:
            g.wait_for("ERROR line", lambda ls: None, BOOT_TIMEOUT)
        except Failure as e:
            if "MDGUEST ERROR range start=2 size=200" not in str(e) or \
                    "RAM between 1 MiB and 128 MiB" not in str(e):
                raise
            print("bad range: the guest refused 200 MiB in a 128 MiB VM")
        if matches(READY_FILL, g.lines()):
            raise Failure("bad range: the guest printed READY for a range "
                          "outside RAM")
    finally:
        g.stop()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--expect-sum", metavar="HEX",
                   help="use this sum instead of the host-computed one")
    args = p.parse_args()
    base = os.environ.get("MD_TESTGUEST_IMG")
    if not base or not os.path.exists(base):
        print(f"MD_TESTGUEST_IMG={base!r} does not name the built "
              f"testguest.img; run through meson test", file=sys.stderr)
        return 1

    # meson test ends a timed-out test with SIGTERM: still clean up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    workdir = tempfile.mkdtemp(prefix="md-testguest-")
    try:
        for name, case in (("fill", lambda: test_fill(workdir, base,
                                                      args.expect_sum)),
                           ("dirty", lambda: test_dirty(workdir, base)),
                           ("bad-range", lambda: test_bad_range(workdir,
                                                                base))):
            try:
                case()
            except Failure as e:
                print(f"FAIL: {e}", file=sys.stderr)
                serial = os.path.join(workdir, name + ".serial")
                if os.path.exists(serial):
                    with open(serial, "rb") as f:
                        tail = f.read()[-800:].decode("ascii", "replace")
                    print(f"--- end of {name} serial log ---\n{tail}",
                          file=sys.stderr)
                return 1
        print("PASS")
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
