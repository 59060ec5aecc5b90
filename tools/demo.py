#!/usr/bin/python3
"""migrationd demo: two hosts, one guest, a live migration.

Host A and host B are two migrationd daemons, each on its own private
system bus (a real dbus-daemon) with its own state, certificates and peer
port; polkit is python-dbusmock's polkitd allowing all. A throwaway PKI is
made with certtool. The test guest (a tiny x86 program that fills RAM with
a pattern and keeps verifying its checksum on the serial console) is
defined and started on A, migrated live to B over mutual TLS with
migrationctl's progress bar, and shown running on B with its RAM intact.

Run through ./demo.sh, which builds first. Every command shown is run for
real. Nothing is installed and nothing is left running afterwards."""

import os
import re
import socket
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
os.environ.setdefault("MD_BUILD_ROOT", os.path.join(ROOT, "build"))
os.environ.setdefault("MD_SOURCE_ROOT", ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402

TTY = sys.stdout.isatty()
BOLD = "\033[1m" if TTY else ""
RESET = "\033[0m" if TTY else ""
TLS_SETUP = os.path.join(ROOT, "data", "migrationd-tls-setup")
GUEST_MEMORY_MIB = 256
GUEST_FILL_MIB = 192
SEED = 2026


def step(text):
    print("\n%s== %s%s" % (BOLD, text, RESET), flush=True)


def run(host, *argv):
    """migrationctl against @host's bus, shown as the user would type it."""
    print("%s[%s]$ migrationctl %s%s" % (BOLD, host.name, " ".join(argv), RESET), flush=True)
    return subprocess.run([harness.CTL, "--address", host.bus.address] + list(argv), check=False).returncode


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Host:
    def __init__(self, scratch, name, peer_dn, port_range, cleanups):
        self.name = name
        self.bus = harness.Bus(harness.Scratch(prefix="migrationd-demo-bus-"))
        cleanups.append(self.bus.stop)
        self.polkit = harness.MockPolkit(self.bus, scratch)
        cleanups.append(self.polkit.stop)
        self.polkit.set_allowed(harness.ACTIONS)
        self.port = free_port()
        config = ("[daemon]\nhost-name=%s\nlisten-address=127.0.0.1\npeer-port=%d\n"
                  "migration-port-min=%d\nmigration-port-max=%d\naccelerator=tcg\n"
                  "[tls]\ndirectory=%s\nallowed-dns=%s\n"
                  # Both "hosts" share the demo's scratch directory as their
                  # shared storage; a destination admits disks and serial logs
                  # only under its image directories.
                  "[storage]\nimage-dirs=%s\n"
                  % (name, self.port, port_range[0], port_range[1], scratch.join("pki", name), peer_dn,
                     scratch.path))
        self.daemon = harness.Daemon(self.bus, scratch, name=name, config=config)
        cleanups.append(self.daemon.kill)


def main():
    scratch = harness.Scratch(prefix="migrationd-demo-")
    cleanups = [scratch.cleanup, lambda: harness.kill_qemus_in(scratch.path)]
    try:
        step("A throwaway PKI for two hosts (certtool): one CA, a certificate pair per host")
        subprocess.run([TLS_SETUP, "--out", scratch.join("pki"), "hostA=127.0.0.1", "hostB=127.0.0.1"],
                       check=True)

        step("Host A and host B: two migrationd daemons, each on its own system bus, "
             "trusting only each other's certificate")
        a = Host(scratch, "hostA", "CN=hostB,O=migrationd", (49600, 49609), cleanups)
        b = Host(scratch, "hostB", "CN=hostA,O=migrationd", (49610, 49619), cleanups)
        run(a, "info")
        run(b, "info")

        step("The test guest on A: fills %d MiB of its %d MiB RAM, then keeps verifying it"
             % (GUEST_FILL_MIB, GUEST_MEMORY_MIB))
        guest = harness.TestGuest(scratch, "demo-guest", size_mib=GUEST_FILL_MIB, seed=SEED,
                                  memory=GUEST_MEMORY_MIB)
        xml_path = scratch.join("demo-guest.xml")
        with open(xml_path, "w") as f:
            f.write(guest.xml)
        run(a, "define", xml_path)
        run(a, "start", "demo-guest")
        ready = guest.wait_serial(r"MDGUEST READY .*sum=([0-9a-f]{8})", timeout=120)
        expected = harness.expected_sum(GUEST_FILL_MIB, SEED)
        print("guest says: %s" % ready.group(0).strip())
        print("checksum computed on the host: %s" % expected)
        run(a, "list")

        step("Live migration A -> B over mutual TLS (bandwidth capped at 64 MiB/s so the "
             "progress is visible)")
        before = len(guest.serial_text())
        rc = run(a, "migrate", "demo-guest", "127.0.0.1:%d" % b.port, "--bandwidth", "64M")
        if rc != 0:
            print("the migration failed (exit %d); see the daemons' logs in %s" % (rc, scratch.path))
            return 1

        step("After: the guest runs on B, and no QEMU is left on A")
        run(b, "list")
        run(a, "list")
        run(b, "status", "demo-guest")
        match = guest.wait_serial(r"MDGUEST VERIFY pass=\d+ sum=([0-9a-f]{8}) (ok|BAD)", start=before,
                                  timeout=60)
        print("the guest on B verified its RAM after the move: %s" % match.group(0).strip())
        intact = match.group(1) == expected and match.group(2) == "ok"
        print("RAM intact: %s" % ("yes" if intact else "NO"))
        pids_a = [p for p in harness.qemu_pids_in(scratch.path)
                  if a.daemon.runtime_dir in open("/proc/%d/cmdline" % p, "rb").read().decode(errors="replace")]
        print("QEMU processes left on host A: %d" % len(pids_a))

        step("Done: stopping the guest on B")
        run(b, "destroy", "demo-guest")
        return 0 if intact and not pids_a else 1
    finally:
        for cleanup in reversed(cleanups):
            try:
                cleanup()
            except Exception as e:  # noqa: BLE001 - best effort teardown
                print("cleanup: %s" % e, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
