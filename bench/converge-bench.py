#!/usr/bin/python3
"""Issue 11's convergence bench: the test guest in unpaced dirty mode
(default 512 MiB RAM, 256 MiB dirtied, max-downtime 50 ms, abort-after
45 s) migrated between two migrationd daemons in two network namespaces
(tests/integration/twohosts.py: real dbus-daemon, TLS, QEMU TCG), N
times each with

  manual        convergence=manual (what every migration did before)
  auto          convergence=auto, postcopy not allowed
  auto-postcopy convergence=auto, postcopy allowed

and prints completed / total, time, downtime, the steps the policy took
(a postcopy step decided by the early check during the first pass is
marked "(early)"), and the ratio of each run's time to ONE FULL RAM PASS:
the mean, over the manual runs, of the time from Guest1.Migrate() until
the client sees Migration1.Iteration reach 2 (QEMU has sent all RAM once
and begins its second pass). Same clock, same guest, same start (the
daemon's prepare included), so the ratio is what the policy costs over
the bare first pass. Without manual among --modes, give --one-pass SEC.
The load average of the machine is printed at the start and after
every mode (the machine may be shared).

Needs root (network namespaces). Run from a build tree:

  sudo bench/converge-bench.py --build build [--runs 5] [--modes auto-postcopy]
"""

import argparse
import os
import sys
import time

MODES = {
    "manual": {"convergence": "manual"},
    "auto": {},
    "auto-postcopy": {"postcopy": True},
}
MiB = 1024 * 1024


class Cleanups:
    """Stands in for the unittest.TestCase the harness expects."""

    def __init__(self):
        self.funcs = []

    def addCleanup(self, func, *args, **kwargs):  # noqa: N802 (unittest's name)
        self.funcs.append((func, args, kwargs))

    def run(self):
        while self.funcs:
            func, args, kwargs = self.funcs.pop()
            try:
                func(*args, **kwargs)
            except Exception as e:  # cleanup goes on
                print("cleanup: %s" % e, file=sys.stderr)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", default="build", help="meson build dir (default build)")
    p.add_argument("--runs", type=int, default=5, help="migrations per mode (default 5)")
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of %s" % ",".join(MODES))
    p.add_argument("--memory-mib", type=int, default=512, help="guest RAM (default 512)")
    p.add_argument("--range-mib", type=int, default=256, help="RAM the guest dirties (default 256)")
    p.add_argument("--max-downtime", type=int, default=50, help="ms (default 50)")
    p.add_argument("--abort-after", type=int, default=45, help="s (default 45)")
    p.add_argument("--one-pass", type=float, default=None,
                   help="s, one full RAM pass when manual is not run (default: from the manual runs)")
    return p.parse_args(argv)


def setup_paths(build):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.environ.setdefault("MD_BUILD_ROOT", os.path.abspath(build))
    os.environ.setdefault("MD_SOURCE_ROOT", root)
    os.environ.setdefault("MD_TESTGUEST_IMG", os.path.join(os.path.abspath(build), "tests", "guest",
                                                           "testguest.img"))
    sys.path.insert(0, os.path.join(root, "tests", "integration"))


def one_run(hosts, harness, args, mode, index):
    from harness import GUEST_IFACE, MIGRATION_IFACE
    name = "cb-%s-%d" % (mode, index)
    guest = harness.TestGuest(hosts.scratch, name, mode="dirty", size_mib=args.range_mib, seed=index + 1,
                              memory=args.memory_mib)
    hosts.define_and_start_on_a(guest)
    guest.wait_serial(r"MDGUEST DIRTY round=[1-9]", timeout=120)
    options = dict(MODES[mode], **{"max-downtime": args.max_downtime, "abort-after": args.abort_after})
    t0 = time.monotonic()
    path = hosts.migrate(name, options=options)
    first_pass = None
    watcher = hosts.watcher(hosts.client_a)
    while True:
        watcher.pump(0.1)
        props = hosts.migration_props(hosts.client_a, path)
        if first_pass is None and props["Iteration"] >= 2:
            first_pass = time.monotonic() - t0
        if props["State"] in ("completed", "failed", "cancelled", "needs-attention"):
            break
        if time.monotonic() - t0 > args.abort_after + 60:
            raise AssertionError("%s: no end after %d s" % (name, args.abort_after + 60))
    stats = hosts.client_a.call(path, MIGRATION_IFACE, "GetStatistics", None, None, "(a{sv})")[0]
    steps = ["%s@%.1fs%s" % (s["step"], s["time-ms"] / 1000, "(early)" if s.get("early") else "")
             for s in stats.get("convergence-steps", [])]
    result = {
        "ok": props["State"] == "completed",
        "time": props["TotalTime"] / 1000.0,
        "downtime": props["Downtime"],
        "first-pass": first_pass,
        "steps": steps,
        "error": props["ErrorMessage"],
        "sampled": stats.get("sampled-dirty-rate"),
    }
    client = hosts.client_b if result["ok"] else hosts.client_a
    for c in (client,):
        try:
            c.call(harness.guest_path(name), GUEST_IFACE, "Destroy", "(a{sv})", ({},), timeout=60000)
        except Exception:
            pass
    return result


def load():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def print_summary(args, summary):
    manual = [r["first-pass"] for mode, results in summary if mode == "manual" for r in results
              if r["first-pass"]]
    one_pass = args.one_pass or (sum(manual) / len(manual) if manual else None)
    print()
    if one_pass:
        print("one full RAM pass: %.1f s (%s)" % (
            one_pass, "--one-pass" if args.one_pass else
            "mean time to Iteration 2 of %d manual runs, %.1f-%.1f s" % (len(manual), min(manual), max(manual))))
    print("%-14s %9s %12s %14s %12s  %s" % ("mode", "completed", "time s", "downtime ms", "x one pass",
                                           "failures"))
    for mode, results in summary:
        done = [r for r in results if r["ok"]]
        times = [r["time"] for r in done]
        downs = [r["downtime"] for r in done]
        failed = [r for r in results if not r["ok"]]
        named = [r for r in failed if "guest dirties" in r["error"] and "link moves" in r["error"]
                 and r["time"] < args.abort_after]
        print("%-14s %9s %12s %14s %12s  %s" % (
            mode, "%d/%d" % (len(done), len(results)),
            "%.1f-%.1f" % (min(times), max(times)) if done else "-",
            "%d-%d" % (min(downs), max(downs)) if done else "-",
            "%.2f-%.2f" % (min(times) / one_pass, max(times) / one_pass) if done and one_pass else "-",
            "" if not failed else "%d failed, %d naming both rates before abort-after (%.1f-%.1f s)" % (
                len(failed), len(named), min(r["time"] for r in failed), max(r["time"] for r in failed))))


def main(argv):
    args = parse_args(argv)
    setup_paths(args.build)
    import harness
    import twohosts
    if not twohosts.use_netns():
        sys.exit("converge-bench needs root (network namespaces)")
    cleanups = Cleanups()
    scratch = harness.Scratch(prefix="md-bench-")
    cleanups.addCleanup(scratch.cleanup)
    cleanups.addCleanup(harness.kill_qemus_in, scratch.path)
    try:
        hosts = twohosts.TwoHosts(cleanups, scratch)
        hosts.scratch = scratch
        print("guest: dirty unpaced, %d MiB RAM, %d MiB dirtied; max-downtime %d ms, abort-after %d s"
              % (args.memory_mib, args.range_mib, args.max_downtime, args.abort_after))
        print("load average at start: %s" % load())
        print("%-14s %3s %8s %9s %10s %9s  %s" % ("mode", "run", "time s", "downtime", "1st pass", "sampled",
                                               "steps / error"))
        summary = []
        for mode in args.modes.split(","):
            results = []
            for i in range(args.runs):
                r = one_run(hosts, harness, args, mode, i)
                results.append(r)
                print("%-14s %3d %8.1f %9s %10s %9s  %s" % (
                    mode, i + 1, r["time"], "%d ms" % r["downtime"] if r["ok"] else "-",
                    "%.1f s" % r["first-pass"] if r["first-pass"] else "-",
                    "%d MiB/s" % (r["sampled"] / MiB) if r["sampled"] is not None else "-",
                    " ".join(r["steps"]) + ("" if r["ok"] else " | " + r["error"][-170:])), flush=True)
            summary.append((mode, results))
            print("load average after %s: %s" % (mode, load()), flush=True)
        print_summary(args, summary)
    finally:
        cleanups.run()


if __name__ == "__main__":
    main(sys.argv[1:])
