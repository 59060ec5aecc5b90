#!/usr/bin/python3
"""Manager1.Evacuate and `migrationctl evacuate`: every running guest of
hostA to hostB and hostC (twohosts.ThreeHosts), at most N migrations at
once, each guest's RAM intact where the result table says it went, a guest
that cannot move reported; Cancel; polkit; bad input."""

import json
import os
import re
import subprocess
import threading
import time

import harness
import twohosts
from harness import GUEST_IFACE, MANAGER_IFACE, MANAGER_PATH, MIGRATION_IFACE, GLib

EVACUATION_IFACE = "org.migrationd.Evacuation1"
VERIFY_RE = re.compile(r"MDGUEST VERIFY pass=(\d+) sum=([0-9a-f]+) (ok|BAD)")
# hostB and hostC accept only this CPU model; the odd guest uses another.
ALLOWED_MODEL = "kvm64"
ODD_CPU = "<cpu mode='custom' match='exact'><model>qemu64</model></cpu>"


def last_pass(guest):
    passes = [int(m.group(1)) for m in VERIFY_RE.finditer(guest.serial_text())]
    return max(passes) if passes else 0


def outgoing_running(client):
    """A's migrations not yet ended, from ListMigrations, as a client sees
    them."""
    n = 0
    for path in client.call(MANAGER_PATH, MANAGER_IFACE, "ListMigrations", None, None, "(ao)")[0]:
        try:
            props = client.get_all(path, MIGRATION_IFACE)
        except GLib.Error:
            continue
        if props["Direction"] == "outgoing" and props["State"] not in twohosts.TERMINAL_STATES:
            n += 1
    return n


class Sampler:
    """Polls outgoing_running() on its own connection until stopped."""

    def __init__(self, hosts, host):
        self.client = hosts.client(host)
        self.samples = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self):
        while not self.stop_event.is_set():
            self.samples.append(outgoing_running(self.client))
            time.sleep(0.05)

    def stop(self):
        self.stop_event.set()
        self.thread.join()
        return self.samples


def evacuation_objects(client):
    objects = client.call(MANAGER_PATH, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects",
                          None, None, "(a{oa{sa{sv}}})")[0]
    return sorted(path for path, ifaces in objects.items() if EVACUATION_IFACE in ifaces)


class Evacuate(twohosts.TwoHostsTestCase):
    start_hosts = False

    def three_hosts(self):
        hosts = twohosts.ThreeHosts(self, self.scratch, start=False)
        cpu = "[daemon]\ncpu-model-allow=%s\n" % ALLOWED_MODEL
        hosts.start(extra_config={"hostB": cpu, "hostC": cpu})
        self.hosts, self.a, self.b, self.c = hosts, hosts.a, hosts.b, hosts.c
        self.client_a, self.client_b, self.client_c = hosts.client_a, hosts.client_b, hosts.client_c
        return hosts

    def start_guests(self, names, memory=64, size_mib=4, xml_extra=""):
        guests = []
        for i, name in enumerate(names):
            guest = harness.TestGuest(self.scratch, name, size_mib=size_mib, seed=20 + i, memory=memory)
            if xml_extra:
                guest.xml = guest.xml.replace("  <os>", xml_extra + "\n  <os>")
            self.hosts.define(self.client_a, guest.xml)
            guests.append(guest)
        # Started all at once (their QEMUs come up in parallel).
        starts = [subprocess.Popen([harness.CTL, "start", g.name], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True,
                                   env=dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.a.bus.address))
                  for g in guests]
        for proc in starts:
            out = proc.communicate(timeout=180)[0]
            self.assertEqual(proc.returncode, 0, out)
        for guest in guests:
            guest.wait_serial(r"MDGUEST VERIFY pass=\d+ sum=[0-9a-f]+ ok", timeout=120)
        return guests

    def ctl(self, *args, host=None):
        host = host or self.a
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=host.bus.address)
        return subprocess.run([harness.CTL] + list(args), env=env, capture_output=True, text=True,
                              timeout=600)

    def test_twelve_guests_to_two_peers_two_at_a_time(self):
        t0 = time.monotonic()
        self.three_hosts()
        names = ["ev%02d" % i for i in range(12)]
        guests = self.start_guests(names)
        odd, = self.start_guests(["evodd"], xml_extra="  " + ODD_CPU)
        print("hosts and 13 guests up after %.1fs" % (time.monotonic() - t0), flush=True)
        lasts = {g.name: last_pass(g) for g in guests}

        sampler = Sampler(self.hosts, self.a)
        try:
            proc = self.ctl("--json", "evacuate", "--to", "%s,%s" % (self.b.peer_address, self.c.peer_address),
                            "--parallel", "2")
        finally:
            samples = sampler.stop()
        self.assertEqual(proc.returncode, 1, "the odd guest stays, so the evacuation fails:\n%s\n%s\n%s"
                         % (proc.stdout, proc.stderr, self.hosts.logs()))
        result = json.loads(proc.stdout.splitlines()[-1])
        print(json.dumps(result, indent=1))
        print("evacuated after %.1fs" % (time.monotonic() - t0), flush=True)
        print("running outgoing migrations sampled: max %d over %d samples" % (max(samples), len(samples)))
        self.assertEqual(result["state"], "failed")
        self.assertEqual(result["parallel"], 2)
        self.assertLessEqual(max(samples), 2, "more than 2 outgoing migrations at once: %s" % samples)
        self.assertGreaterEqual(max(samples), 1)

        table = {row["name"]: row for row in result["guests"]}
        self.assertEqual(sorted(table), sorted(names + ["evodd"]))
        by_address = {self.b.peer_address: self.b, self.c.peer_address: self.c}
        used = set()
        for guest in guests:
            row = table[guest.name]
            self.assertEqual(row["outcome"], "moved", row)
            self.assertIn(row["destination"], by_address, row)
            host = by_address[row["destination"]]
            used.add(host.name)
            # It runs where the table says, its RAM intact, and not on A.
            client = self.hosts.client(host)
            self.assertEqual(self.hosts.guest_state(client, guest.name), "running")
            self.assertIn(client.get_property(harness.guest_path(guest.name), GUEST_IFACE, "PID"),
                          host.qemu_pids())
            self.assertNotEqual(self.hosts.guest_state(self.client_a, guest.name), "running")
            migration = row["migration"]
            self.assertTrue(migration.startswith("/org/migrationd/migration/"), row)
            self.assertEqual(self.client_a.get_property(migration, MIGRATION_IFACE, "State"), "completed")
        # Placement by free memory spreads equal guests over both peers.
        self.assertEqual(used, {"hostB", "hostC"})
        for guest in guests:
            start = len(guest.serial_text())
            harness.wait_until(lambda: [m for m in VERIFY_RE.finditer(guest.serial_text(), start)
                                        if int(m.group(1)) > lasts[guest.name]],
                               timeout=60, what="a VERIFY pass of %s after the move" % guest.name)
            text = guest.serial_text()
            self.assertNotIn(" BAD", text, guest.name)
            self.assertEqual(text.count("MDGUEST READY"), 1, "%s rebooted" % guest.name)

        # The odd guest: reported with the destination's reason, tried on
        # both peers, still running on A.
        row = table["evodd"]
        self.assertEqual(row["outcome"], "failed", row)
        self.assertIn("qemu64", row["message"])
        self.assertIn("then", row["message"], "it was not retried on the other peer: %s" % row)
        self.assertEqual(self.hosts.guest_state(self.client_a, "evodd"), "running")
        self.assertEqual(len(self.a.qemu_pids()), 1)
        length = len(odd.serial_text())
        odd.wait_serial(r"MDGUEST VERIFY pass=\d+ sum=[0-9a-f]+ ok", start=length, timeout=60)
        self.assertEqual(len(self.b.qemu_pids()) + len(self.c.qemu_pids()), 12)

    def test_cancel_is_controlled_like_a_migration(self):
        self.make_hosts()
        guests = self.start_guests(["evc1", "evc2"], size_mib=16)
        evacuate = lambda: self.client_a.call(  # noqa: E731
            MANAGER_PATH, MANAGER_IFACE, "Evacuate", "(asa{sv})",
            ([self.b.peer_address], {"parallel": GLib.Variant("u", 1),
                                     "migrate-options": GLib.Variant("a{sv}", {
                                         "bandwidth": GLib.Variant("t", 2 << 20)})}), "(o)")[0]
        path = evacuate()
        self.assertTrue(path.startswith("/org/migrationd/evacuation/"), path)
        self.assertEqual(self.client_a.get_property(path, EVACUATION_IFACE, "Owner"), os.getuid())
        harness.wait_until(lambda: self.client_a.get_property(path, EVACUATION_IFACE, "Running") == 1,
                           timeout=30, what="the first migration running")
        # Another evacuation while this one runs: refused, named.
        self.assertDBusError("org.migrationd.Error.InvalidState", evacuate)
        # Without the control actions: Cancel refused, nothing changes.
        self.a.polkitd.set_allowed(["org.migrationd.migrate"])
        message = self.assertDBusError("org.migrationd.Error.NotAuthorized", self.client_a.call, path,
                                       EVACUATION_IFACE, "Cancel", "(a{sv})", ({},))
        self.assertIn("org.migrationd.migration.control-own", message)
        self.assertEqual(self.client_a.get_property(path, EVACUATION_IFACE, "State"), "running")
        # With control-own (the caller started it): cancelled; both guests
        # still run on A, nothing on B.
        self.a.polkitd.set_allowed(harness.ACTIONS)
        self.assertDBusError("org.migrationd.Error.InvalidArgument", self.client_a.call, path,
                             EVACUATION_IFACE, "Cancel", "(a{sv})", ({"now": GLib.Variant("b", True)},))
        self.assertEqual(self.client_a.get_property(path, EVACUATION_IFACE, "State"), "running")
        self.client_a.call(path, EVACUATION_IFACE, "Cancel", "(a{sv})", ({},))
        harness.wait_until(lambda: self.client_a.get_property(path, EVACUATION_IFACE, "State") == "cancelled",
                           timeout=60, what="the evacuation cancelled\n" + self.hosts.logs())
        results = self.client_a.get_property(path, EVACUATION_IFACE, "Results")
        self.assertEqual(sorted(r[1] for r in results), ["cancelled", "cancelled"], results)
        for guest in guests:
            self.assertEqual(self.hosts.guest_state(self.client_a, guest.name), "running")
        harness.wait_until(lambda: not self.b.qemu_pids(), timeout=30, what="no QEMU left on B")
        self.assertDBusError("org.migrationd.Error.InvalidState", self.client_a.call, path,
                             EVACUATION_IFACE, "Cancel", "(a{sv})", ({},))

    def test_shutdown_rest_powers_off_what_cannot_move(self):
        hosts = self.make_hosts(start=False)
        hosts.start(extra_config={"hostA": "[daemon]\nshutdown-timeout=1\n",
                                  "hostB": "[daemon]\ncpu-model-allow=%s\n" % ALLOWED_MODEL})
        mover, = self.start_guests(["evs1"])
        self.start_guests(["evsodd"], xml_extra="  " + ODD_CPU)
        last = last_pass(mover)
        proc = self.ctl("evacuate", self.b.peer_address, "--shutdown-rest")
        print(proc.stdout, proc.stderr)
        # Every guest left A: one moved, one shut down; exit 0.
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr + self.hosts.logs())
        rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines()[1:-1]}
        self.assertEqual(rows["evs1"][1:3], ["moved", self.b.peer_address], proc.stdout)
        self.assertEqual(rows["evsodd"][1], "shut-down", proc.stdout)
        self.assertIn("qemu64", proc.stdout)
        self.assertRegex(proc.stdout.splitlines()[-1], r"^evacuation \d+ completed$")
        self.assertEqual(self.a.qemu_pids(), [])
        self.assertEqual(self.hosts.guest_state(self.client_a, "evsodd"), "shut-off")
        self.assertEqual(self.hosts.guest_state(self.client_b, "evs1"), "running")
        start = len(mover.serial_text())
        harness.wait_until(lambda: [m for m in VERIFY_RE.finditer(mover.serial_text(), start)
                                    if int(m.group(1)) > last], timeout=60, what="evs1 verifying on B")
        self.assertNotIn(" BAD", mover.serial_text())


class EvacuateRefusals(harness.MigrationdTestCase):
    """One daemon: polkit and every bad input, each with its named error
    and nothing started."""

    def evacuate(self, client, peers, options=None):
        return client.call(MANAGER_PATH, MANAGER_IFACE, "Evacuate", "(asa{sv})", (peers, options or {}),
                           "(o)")[0]

    def assert_nothing_started(self, client):
        self.assertEqual(client.call(MANAGER_PATH, MANAGER_IFACE, "ListMigrations", None, None, "(ao)")[0], [])
        self.assertEqual(evacuation_objects(client), [])

    def test_denied_without_the_migrate_action(self):
        self.polkitd.set_allowed([a for a in harness.ACTIONS if a != "org.migrationd.migrate"])
        self.start_daemon()
        client = self.client()
        message = self.assertDBusError("org.migrationd.Error.NotAuthorized", self.evacuate, client,
                                       ["192.0.2.9:49200"])
        self.assertIn("org.migrationd.migrate", message)
        self.assert_nothing_started(client)

    def test_allowed_but_no_peer_answers(self):
        self.polkitd.set_allowed(["org.migrationd.migrate"])
        self.start_daemon()
        client = self.client()
        # Polkit let it through; no peer listens there: PeerFailed, each
        # peer's error named, nothing moved.
        message = self.assertDBusError("org.migrationd.Error.PeerFailed", self.evacuate, client,
                                       ["127.0.0.1:1", "127.0.0.1:2"], {"parallel": GLib.Variant("u", 4)})
        self.assertIn("no peer answered, so no guest was moved", message)
        self.assertIn("127.0.0.1:1: ", message)
        self.assertIn("127.0.0.1:2: ", message)
        self.assert_nothing_started(client)

    def test_bad_input_is_named_and_changes_nothing(self):
        self.polkitd.set_allowed(harness.ACTIONS)
        self.start_daemon()
        client = self.client()
        u, b, s = (lambda v: GLib.Variant("u", v)), (lambda v: GLib.Variant("b", v)), (lambda v: GLib.Variant("s", v))
        cases = [
            ([], {}, "needs 1-16 peers"),
            (["h%d:1" % i for i in range(17)], {}, "needs 1-16 peers"),
            (["192.0.2.9", "192.0.2.9"], {}, "peer '192.0.2.9' is given twice"),
            ([""], {}, "destination is empty"),
            (["192.0.2.9:0"], {}, "port 0 is not a valid port"),
            (["192.0.2.9"], {"parallel": u(0)}, "option 'parallel' must be 1-16, not 0"),
            (["192.0.2.9"], {"parallel": u(17)}, "option 'parallel' must be 1-16, not 17"),
            (["192.0.2.9"], {"parallel": s("2")}, "parallel"),
            (["192.0.2.9"], {"everything": b(True)}, "everything"),
            (["192.0.2.9"], {"migrate-options": GLib.Variant("a{sv}", {"destination-xml": s("<domain/>")})},
             "migrate-options 'destination-xml' names one guest's settings"),
            (["192.0.2.9"], {"migrate-options": GLib.Variant("a{sv}", {"bandwidth": s("fast")})},
             "migrate-options"),
            (["192.0.2.9"], {"migrate-options": GLib.Variant("a{sv}", {"warp": b(True)})}, "warp"),
        ]
        for peers, options, text in cases:
            message = self.assertDBusError("org.migrationd.Error.InvalidArgument", self.evacuate, client,
                                           peers, options)
            self.assertIn(text, message, (peers, options))
        self.assert_nothing_started(client)
        # migrationctl: usage errors before any call (exit 2), named.
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.bus.address)
        for args, text in ((["evacuate"], "evacuate needs peers"),
                           (["evacuate", "--parallel", "0", "x"], "--parallel needs a whole number from 1 to 16"),
                           (["evacuate", "--bandwidth", "fast", "x"], "--bandwidth needs a rate")):
            proc = subprocess.run([harness.CTL] + args, env=env, capture_output=True, text=True)
            self.assertEqual(proc.returncode, 2, proc.stderr)
            self.assertIn(text, proc.stderr)
        self.assert_nothing_started(client)


if __name__ == "__main__":
    harness.main()
