#!/usr/bin/python3
"""Benchmark: evacuating a host of N guests with --parallel 1, 2, 4.

Three daemons (hostA, hostB, hostC) from the build tree, in network
namespaces as the integration tests run them (tests/integration/twohosts.py,
ThreeHosts; needs root). For each parallel value, N guests (test guest,
fill mode) run on hostA; Manager1.Evacuate moves them to hostB and hostC;
the guests then go back to hostA (destroyed on B/C, started again on A) for
the next value.

Reports per parallel value: the total time (Evacuate() call to the
evacuation's Completed), the per-guest downtime (Migration1.Downtime: the
switch-over pause QEMU measured) as median and max, and the per-guest
migration time (Migration1.TotalTime) median. Not part of the test suite.

    sudo bench/evacuate-bench.py [--build DIR] [--guests 6] [--parallel 1,2,4]
                                 [--memory-mib 128] [--fill-mib 32]
"""

import argparse
import os
import statistics
import sys
import time

SOURCE_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


class Cleanups:
    """What twohosts needs of a unittest.TestCase: addCleanup, run LIFO."""

    def __init__(self):
        self.callbacks = []

    def addCleanup(self, func, *args, **kwargs):  # noqa: N802 (unittest's name)
        self.callbacks.append((func, args, kwargs))

    def run(self):
        while self.callbacks:
            func, args, kwargs = self.callbacks.pop()
            try:
                func(*args, **kwargs)
            except Exception as e:  # keep cleaning up
                print("cleanup %s: %s" % (func, e), file=sys.stderr)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def start_on_a(hosts, guests):
    for guest in guests:
        hosts.start_guest(hosts.client_a, hosts.define(hosts.client_a, guest.xml))
    for guest in guests:
        guest.wait_serial(r"MDGUEST VERIFY pass=\d+ sum=[0-9a-f]+ ok", timeout=300)


def run_once(harness, hosts, guests, parallel):
    from harness import MANAGER_IFACE, MANAGER_PATH, MIGRATION_IFACE, GLib
    client = hosts.client_a
    t0 = time.monotonic()
    path = client.call(MANAGER_PATH, MANAGER_IFACE, "Evacuate", "(asa{sv})",
                       ([hosts.b.peer_address, hosts.c.peer_address],
                        {"parallel": GLib.Variant("u", parallel)}), "(o)")[0]
    harness.wait_until(
        lambda: client.get_property(path, "org.migrationd.Evacuation1", "State") != "running",
        timeout=1800, interval=0.05, what="the evacuation's end")
    total = time.monotonic() - t0
    state = client.get_property(path, "org.migrationd.Evacuation1", "State")
    results = client.get_property(path, "org.migrationd.Evacuation1", "Results")
    if state != "completed":
        raise SystemExit("evacuation %s: %s" % (state, results))
    downtimes, times = [], []
    for _name, _outcome, _dest, migration, _msg in results:
        props = client.get_all(migration, MIGRATION_IFACE)
        downtimes.append(props["Downtime"])
        times.append(props["TotalTime"])
    return total, downtimes, times, results


def bring_back(hosts, guests):
    from harness import GUEST_IFACE
    import harness
    for host, client in ((hosts.b, hosts.client_b), (hosts.c, hosts.client_c)):
        for guest in guests:
            if hosts.guest_state(client, guest.name) == "running":
                client.call(harness.guest_path(guest.name), GUEST_IFACE, "Destroy", "(a{sv})", ({},))
    lengths = {guest.name: len(guest.serial_text()) for guest in guests}
    for guest in guests:
        hosts.start_guest(hosts.client_a, harness.guest_path(guest.name))
    for guest in guests:
        guest.wait_serial(r"MDGUEST VERIFY pass=\d+ sum=[0-9a-f]+ ok", timeout=300,
                          start=lengths[guest.name])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", default=os.path.join(SOURCE_ROOT, "build"))
    parser.add_argument("--guests", type=int, default=6)
    parser.add_argument("--parallel", default="1,2,4")
    parser.add_argument("--memory-mib", type=int, default=128)
    parser.add_argument("--fill-mib", type=int, default=32)
    args = parser.parse_args()
    os.environ["MD_BUILD_ROOT"] = os.path.abspath(args.build)
    os.environ["MD_SOURCE_ROOT"] = SOURCE_ROOT
    os.environ.setdefault("MD_TESTGUEST_IMG", os.path.join(args.build, "tests", "guest", "testguest.img"))
    sys.path.insert(0, os.path.join(SOURCE_ROOT, "tests", "integration"))
    import harness
    import twohosts

    cleanups = Cleanups()
    scratch = harness.Scratch(prefix="md-bench-evac-")
    cleanups.addCleanup(scratch.cleanup)
    cleanups.addCleanup(harness.kill_qemus_in, scratch.path)
    rows = []
    try:
        hosts = twohosts.ThreeHosts(cleanups, scratch)
        guests = [harness.TestGuest(scratch, "b%02d" % i, size_mib=args.fill_mib, seed=i + 1,
                                    memory=args.memory_mib) for i in range(args.guests)]
        start_on_a(hosts, guests)
        for i, parallel in enumerate(int(p) for p in args.parallel.split(",")):
            if i > 0:
                bring_back(hosts, guests)
                time.sleep(2)
            log("evacuating %d guests with --parallel %d" % (len(guests), parallel))
            total, downtimes, times, _results = run_once(harness, hosts, guests, parallel)
            rows.append((parallel, total, downtimes, times))
            log("  %.1f s" % total)
    finally:
        cleanups.run()
    print("| --parallel | guests | total (s) | downtime median (ms) | downtime max (ms) "
          "| per-guest migration median (ms) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for parallel, total, downtimes, times in rows:
        print("| %d | %d | %.1f | %.0f | %d | %.0f |"
              % (parallel, len(downtimes), total, statistics.median(downtimes), max(downtimes),
                 statistics.median(times)))


if __name__ == "__main__":
    main()
