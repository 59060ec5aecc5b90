#!/usr/bin/python3
"""Benchmark: the daemons' memory over many back-to-back migrations.

Two daemons as the integration tests run them (tests/integration/twohosts.py:
private buses, mock polkitd, network namespaces as root), one small test
guest (64 MiB, fill mode) migrated hostA -> hostB -> hostA ... N times, each
run only after the guest finished a RAM verify pass where it now runs.

Default mode prints each daemon's resident memory (VmRSS) after migration
1, 5, 10 and N and the growth from 1 to N; the goal (issue 8) is growth
within 1 MiB after 20 migrations.

--valgrind --retained K also asks memcheck (vgdb "leak_check full reachable
increased") after migration K and after the last which blocks still
reachable grew in between, by allocation stack: memory kept per migration
(retention), as opposed to malloc keeping freed memory (fragmentation).

--valgrind runs both daemons under valgrind (memcheck, --leak-check=full,
the suppressions of tests/valgrind.supp), migrates N times (default 10),
stops the daemons with SIGTERM and prints each daemon's leak summary; it
exits 1 when a leak is "definitely lost" or valgrind found an error.

Not part of the test suite (no timing or memory assertion in tests).
Needs a build (MD_BUILD_ROOT or --build) and /usr/bin/python3:

    /usr/bin/python3 bench/daemon-soak.py --build build [--migrations 20]
    /usr/bin/python3 bench/daemon-soak.py --build build --valgrind [--migrations 10]
"""

import argparse
import os
import re
import sys
import time

SOURCE_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(SOURCE_ROOT, "tests", "integration"))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", default=os.environ.get("MD_BUILD_ROOT", os.path.join(SOURCE_ROOT, "build")))
    parser.add_argument("--migrations", type=int, default=None)
    parser.add_argument("--valgrind", action="store_true")
    parser.add_argument("--retained", type=int, metavar="K", default=0,
                        help="with --valgrind: after migration K, and again after the last, ask "
                             "memcheck (vgdb leak_check) which reachable blocks grew in between: "
                             "what the daemon keeps per migration")
    parser.add_argument("--memory-mib", type=int, default=64)
    parser.add_argument("--keep-seconds", type=int, default=0,
                        help="[daemon] migration-keep-seconds: how long a finished Migration1 stays "
                             "readable (default 0 here, so kept objects do not count as growth)")
    return parser.parse_args()


ARGS = parse_args()
os.environ["MD_BUILD_ROOT"] = os.path.abspath(ARGS.build)
os.environ["MD_SOURCE_ROOT"] = SOURCE_ROOT
os.environ.setdefault("MD_TESTGUEST_IMG", os.path.join(os.environ["MD_BUILD_ROOT"], "tests", "guest", "testguest.img"))
if ARGS.valgrind:
    os.environ["VALGRIND"] = "1"

import harness  # noqa: E402
import twohosts  # noqa: E402
from harness import GUEST_IFACE  # noqa: E402

VERIFY_RE = re.compile(r"MDGUEST VERIFY pass=(\d+) sum=([0-9a-f]{8}) (ok|BAD)")


class Owner:
    """What TwoHosts wants of a unittest.TestCase: cleanups, run LIFO."""

    def __init__(self):
        self.cleanups = []

    def addCleanup(self, func, *args, **kwargs):
        self.cleanups.append((func, args, kwargs))

    def cleanup(self):
        while self.cleanups:
            func, args, kwargs = self.cleanups.pop()
            try:
                func(*args, **kwargs)
            except Exception as e:  # report, go on with the rest
                print("cleanup %s: %s" % (getattr(func, "__name__", func), e), file=sys.stderr)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for %d" % pid)


def last_pass(guest):
    passes = [int(m.group(1)) for m in VERIFY_RE.finditer(guest.serial_text())]
    if " BAD" in guest.serial_text():
        raise SystemExit("the guest reported a bad RAM checksum (VERIFY BAD)")
    return max(passes) if passes else 0


def wait_new_pass(guest, after, timeout=120):
    harness.wait_until(lambda: last_pass(guest) > after, timeout=timeout, what="a new RAM verify pass")


def vgdb_leak_check(host, kind):
    """memcheck's leak check of @host's daemon now; @kind "any" (the
    baseline) or "increased" (blocks that grew since the last check)."""
    import subprocess
    out = subprocess.run(["vgdb", "--pid=%d" % host.daemon.proc.pid, "leak_check", "full", "reachable", kind],
                         capture_output=True, text=True, timeout=600)
    return out.stdout + out.stderr


def main():
    count = ARGS.migrations or (10 if ARGS.valgrind else 20)
    owner = Owner()
    scratch = harness.Scratch(prefix="md-soak-")
    owner.addCleanup(scratch.cleanup)
    owner.addCleanup(harness.kill_qemus_in, scratch.path)
    try:
        hosts = twohosts.TwoHosts(owner, scratch, start=False)
        keep = "[daemon]\nmigration-keep-seconds=%d\n" % ARGS.keep_seconds
        if ARGS.valgrind:
            # Everything is ~20x slower under memcheck: the TLS handshake
            # and the keepalives must not count that as a dead peer.
            keep += "peer-timeout=300\n[tls]\nhandshake-timeout=120\n"
        hosts.start(extra_config={"hostA": keep, "hostB": keep})
        guest = harness.TestGuest(scratch, "soak", size_mib=16, seed=3, memory=ARGS.memory_mib)
        hosts.define_and_start_on_a(guest)
        guest.wait_serial(r"MDGUEST VERIFY pass=\d+ sum=[0-9a-f]+ ok", timeout=120)
        clients = {"hostA": hosts.client_a, "hostB": hosts.client_b}
        here, there = hosts.a, hosts.b
        samples = {}
        for n in range(1, count + 1):
            before = last_pass(guest)
            client = clients[here.name]
            hosts.watcher(client)
            t0 = time.monotonic()
            path = client.call(harness.guest_path("soak"), GUEST_IFACE, "Migrate", "(sa{sv})",
                               (there.peer_address, {}), "(o)")[0]
            success, name, message = hosts.wait_completed(client, path, timeout=600 if ARGS.valgrind else 120)
            if not success:
                raise SystemExit("migration %d (%s -> %s) failed: %s %s\n%s"
                                 % (n, here.name, there.name, name, message, hosts.logs()))
            here, there = there, here
            harness.wait_until(lambda: not there.qemu_pids(), timeout=60, what="the source QEMU gone")
            wait_new_pass(guest, before)
            rss = {h.name: rss_kib(h.daemon.proc.pid) for h in (hosts.a, hosts.b)}
            samples[n] = rss
            print("migration %2d %s -> %s: %.2f s; daemon RSS hostA %d KiB, hostB %d KiB"
                  % (n, there.name, here.name, time.monotonic() - t0, rss["hostA"], rss["hostB"]),
                  file=sys.stderr, flush=True)
            if ARGS.valgrind and ARGS.retained and n in (ARGS.retained, count):
                for host in (hosts.a, hosts.b):
                    report = vgdb_leak_check(host, "any" if n == ARGS.retained else "increased")
                    if n == count:
                        print("---- %s: reachable blocks grown from migration %d to %d ----\n%s"
                              % (host.name, ARGS.retained, count, report))
        if ARGS.valgrind:
            failed = False
            for host in (hosts.a, hosts.b):
                host.daemon.proc.send_signal(15)
                host.daemon.proc.wait(120)
                with open(host.daemon.valgrind_log) as f:
                    text = f.read()
                summary = [line.split("== ", 1)[-1] for line in text.splitlines()
                           if re.search(r"(definitely|indirectly|possibly) lost:|ERROR SUMMARY", line)]
                print("%s daemon (exit %d) after %d migrations:\n  %s"
                      % (host.name, host.daemon.proc.returncode, count, "\n  ".join(summary)))
                definite = re.search(r"definitely lost: ([\d,]+) bytes", text)
                if host.daemon.proc.returncode == 99 or (definite and definite.group(1) != "0"):
                    failed = True
                    print(text[-20000:])
            return 1 if failed else 0
        print("\ndaemon resident memory (VmRSS, KiB) after N back-to-back migrations of a %d MiB guest "
              "(migration-keep-seconds=%d)" % (ARGS.memory_mib, ARGS.keep_seconds))
        marks = [n for n in (1, 5, 10, count) if n in samples]
        marks = sorted(set(marks))
        print("%-8s %s %s" % ("host", " ".join("%8s" % ("N=%d" % n) for n in marks), "  growth 1->%d" % count))
        worst = 0
        for host in ("hostA", "hostB"):
            growth = samples[count][host] - samples[1][host]
            worst = max(worst, growth)
            print("%-8s %s   %+d KiB" % (host, " ".join("%8d" % samples[n][host] for n in marks), growth))
        print("goal: growth within 1024 KiB -> %s" % ("met" if worst <= 1024 else "NOT met"))
        return 0
    finally:
        owner.cleanup()


if __name__ == "__main__":
    sys.exit(main())
