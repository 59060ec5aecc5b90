#!/usr/bin/python3
"""migrationd demo: real daemons on a private system bus, a real guest.

Run through ./demo.sh, which builds first. Every command shown is run for
real; its output is printed as it comes."""

import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
os.environ.setdefault("MD_BUILD_ROOT", os.path.join(ROOT, "build"))
os.environ.setdefault("MD_SOURCE_ROOT", ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402

BOLD = "\033[1m" if sys.stdout.isatty() else ""
RESET = "\033[0m" if sys.stdout.isatty() else ""


def step(text):
    print("\n%s== %s%s" % (BOLD, text, RESET), flush=True)


def run(*argv):
    print("$ " + " ".join(argv), flush=True)
    subprocess.run(argv, check=False)


def main():
    scratch = harness.Scratch(prefix="migrationd-demo-")
    cleanups = [scratch.cleanup, lambda: harness.kill_qemus_in(scratch.path)]
    try:
        step("A private system bus, polkit (mock: allows all) and migrationd as host A")
        bus = harness.Bus(scratch)
        cleanups.append(bus.stop)
        polkit = harness.MockPolkit(bus, scratch)
        cleanups.append(polkit.stop)
        polkit.set_allowed(harness.ACTIONS)
        daemon_a = harness.Daemon(bus, scratch, name="hostA")
        cleanups.append(daemon_a.kill)
        ctl = [harness.CTL, "--system"]
        run(*ctl, "info")

        step("The test guest: a tiny x86 program that fills 32 MiB of RAM and keeps verifying it")
        guest = harness.TestGuest(scratch, "demo-guest", size_mib=32, seed=2026, memory=128)
        xml_path = scratch.join("demo-guest.xml")
        with open(xml_path, "w") as f:
            f.write(guest.xml)
        run(*ctl, "define", xml_path)
        run(*ctl, "start", "demo-guest")
        run(*ctl, "list")
        run(*ctl, "status", "demo-guest")
        guest.wait_serial(r"MDGUEST VERIFY pass=\d+ .* ok", timeout=60)
        step("Its serial console (COM1), as the guest wrote it")
        print(guest.serial_text().strip(), flush=True)
        print("host-computed checksum: %s" % harness.expected_sum(32, 2026))

        step("Stop it")
        run(*ctl, "destroy", "demo-guest")
        run(*ctl, "list")
        left = harness.qemu_pids_in(scratch.path)
        print("QEMU processes left: %d" % len(left))
        return 0 if not left else 1
    finally:
        for cleanup in reversed(cleanups):
            try:
                cleanup()
            except Exception as e:  # noqa: BLE001 - best effort teardown
                print("cleanup: %s" % e, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
