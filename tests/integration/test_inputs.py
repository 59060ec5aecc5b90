#!/usr/bin/python3
"""Every input is checked up front (issue 9, item 5): each Migrate option
and each method argument with an out-of-range value is refused with
InvalidArgument naming it, and nothing starts on either host; ports are
held to the destination's configured range; SetBandwidth/SetMaxDowntime
change their property only when QEMU took the value; guest names follow
the documented pattern; Migration1.Options shows only migration
options."""

import os
import re
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import MIGRATION_IFACE, GLib  # noqa: E402
from test_migration import VERIFY_RE, MigrationTestCase  # noqa: E402

MiB = 1024 * 1024
U64_MAX = 2 ** 64 - 1
U32_MAX = 2 ** 32 - 1


class Inputs(MigrationTestCase):

    def running_guest(self, name, **kwargs):
        guest = self.guest(name, size_mib=8, **kwargs)
        self.start_on_a(guest)
        return guest

    def assert_unchanged(self, guest):
        self.assertEqual(self.migration_list(self.client_a), [])
        self.assertEqual(self.migration_list(self.client_b), [])
        self.assertIsNone(self.hosts.guest_state(self.client_b, guest.name))
        self.assert_runs_on_a(guest)
        self.assert_nothing_on_b(guest.name)

    def test_out_of_range_options_are_named_and_nothing_starts(self):
        guest = self.running_guest("ranges")
        cases = [
            ("max-downtime", GLib.Variant("t", 0)),
            ("max-downtime", GLib.Variant("t", U64_MAX)),
            ("max-downtime", GLib.Variant("t", 2000001)),
            ("bandwidth", GLib.Variant("t", U64_MAX)),
            ("parallel-connections", GLib.Variant("u", 17)),
            ("parallel-connections", GLib.Variant("u", 100000)),
            ("abort-after", GLib.Variant("u", U32_MAX)),
            ("migration-port", GLib.Variant("q", 1)),
            ("migration-port", GLib.Variant("q", 22)),
            ("nbd-port", GLib.Variant("q", 80)),
            ("copy-storage", GLib.Variant("s", "everything")),
            ("compression", GLib.Variant("s", "lz4")),
            ("migration-address", GLib.Variant("s", "192.0.2.2; reboot")),
            ("nbd-address", GLib.Variant("s", "x" * 300)),
            ("destination-name", GLib.Variant("s", "..")),
            ("destination-name", GLib.Variant("s", "-rf")),
            ("destination-name", GLib.Variant("s", "a/b")),
            ("destination-name", GLib.Variant("s", "n" * 65)),
            ("destination-xml", GLib.Variant("s", "")),
            ("disks", GLib.Variant("as", ["vda", "vda"])),
            ("tls", GLib.Variant("s", "yes")),
        ]
        for key, value in cases:
            with self.subTest(option=key, value=value):
                message = self.assertDBusError("org.migrationd.Error.InvalidArgument", self.hosts.migrate,
                                               "ranges", None, {key: value})
                self.assertIn("'%s'" % key, message)
        # compression needs parallel-connections: named, too.
        message = self.assertDBusError("org.migrationd.Error.InvalidArgument", self.hosts.migrate, "ranges",
                                       None, {"compression": "zstd"})
        self.assertIn("'compression'", message)
        self.assert_unchanged(guest)

    def test_port_outside_destination_range_is_refused_in_prepare(self):
        # 50000 is a fine port for the source, but hostB allows only its own
        # [daemon] migration-port-min..max: Prepare refuses it by name, before
        # it starts anything, and the guest keeps running on A.
        guest = self.running_guest("portrange")
        low, high = self.b.migration_ports
        error_name, message, _ = self.migrate_and_fail("portrange", options={"migration-port": 50000})
        self.assertEqual(error_name, "org.migrationd.Error.InvalidArgument", message)
        self.assertIn("'migration-port'", message)
        self.assertIn("%d-%d" % (low, high), message)
        self.assertIn(self.b.name, message)
        self.assert_runs_on_a(guest)
        self.assert_nothing_on_b("portrange")

    def test_options_property_shows_only_migration_options(self):
        guest = self.guest("optview", size_mib=8, seed=3)
        self.start_on_a(guest)
        options = {"auth.no_user_interaction": True, "bandwidth": 512 * MiB, "max-downtime": 400}
        path = self.hosts.migrate("optview", options=options)
        shown = self.client_a.get_property(path, MIGRATION_IFACE, "Options")
        self.assertEqual(shown, {"bandwidth": 512 * MiB, "max-downtime": 400})
        success, error_name, message = self.hosts.wait_completed(self.client_a, path, 90)
        self.assertTrue(success, "%s: %s\n%s" % (error_name, message, self.hosts.logs()))
        incoming = self.migration_list(self.client_b)
        self.assertEqual(len(incoming), 1)
        shown_b = self.client_b.get_property(incoming[0], MIGRATION_IFACE, "Options")
        self.assertNotIn("auth.no_user_interaction", shown_b)
        for internal in ("source-host", "source-migration", "source-persistent", "disks-info"):
            self.assertNotIn(internal, shown_b)
        self.assertEqual(shown_b.get("max-downtime"), 400)
        self.assertEqual(self.hosts.guest_state(self.client_b, "optview"), "running")

    def test_tuning_is_checked_and_the_property_changes_only_on_success(self):
        # A dirtying guest at 4 MiB/s stays in perform long enough to tune.
        guest = self.guest("tune", mode="dirty", size_mib=16, memory=128)
        self.start_on_a(guest)
        path = self.hosts.migrate("tune", options={"bandwidth": 4 * MiB, "max-downtime": 50})
        self.hosts.wait_property(self.client_a, path, "Phase", lambda p: p == "perform", timeout=60)
        for method, value, prop, before in (("SetMaxDowntime", U64_MAX, "MaxDowntime", 50),
                                            ("SetMaxDowntime", 0, "MaxDowntime", 50),
                                            ("SetMaxDowntime", 2000001, "MaxDowntime", 50),
                                            ("SetBandwidth", U64_MAX, "Bandwidth", 4 * MiB)):
            with self.subTest(method=method, value=value):
                message = self.assertDBusError("org.migrationd.Error.InvalidArgument", self.migration_call,
                                               self.client_a, path, method, "(t)", (value,))
                self.assertIn(method, message)
                self.assertEqual(self.client_a.get_property(path, MIGRATION_IFACE, prop), before)
        # A good value: QEMU takes it before the call returns, so the
        # property already shows it.
        self.migration_call(self.client_a, path, "SetMaxDowntime", "(t)", (70,))
        self.assertEqual(self.client_a.get_property(path, MIGRATION_IFACE, "MaxDowntime"), 70)
        self.migration_call(self.client_a, path, "SetBandwidth", "(t)", (6 * MiB,))
        self.assertEqual(self.client_a.get_property(path, MIGRATION_IFACE, "Bandwidth"), 6 * MiB)
        self.migration_call(self.client_a, path, "Cancel", "(a{sv})", ({},))
        success, error_name, message = self.hosts.wait_completed(self.client_a, path, 60)
        self.assertEqual((success, error_name), (False, "org.migrationd.Error.Cancelled"), message)
        self.assert_runs_on_a(guest)
        self.assert_nothing_on_b("tune")

    def test_guest_names_follow_the_pattern(self):
        template = self.guest("namecheck", size_mib=8).xml
        for bad in ("..", ".hidden", "-rf", "a/b", "n" * 65):
            with self.subTest(name=bad):
                xml = template.replace("<name>namecheck</name>", "<name>%s</name>" % bad, 1)
                self.assertNotEqual(xml, template)
                message = self.assertDBusError("org.migrationd.Error.InvalidXML", self.hosts.define,
                                               self.client_a, xml)
                self.assertIn("invalid name", message)
        self.assertEqual(self.a.definition_files(), [])
        # The pattern's edges are fine: inner dots and dashes, 64 characters.
        for good in ("a.b-c", "n" * 64):
            xml = template.replace("<name>namecheck</name>", "<name>%s</name>" % good, 1)
            self.hosts.define(self.client_a, xml)
            self.assertTrue(self.a.has_definition(good))



class Flood(MigrationTestCase):
    """Admission under load (issue 9, item 3): 500 silent connections to
    hostB's peer port, reconnecting whenever hostB drops one, from hostA's
    own address, while hostA migrates a guest there."""

    FLOOD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peer_flood.py")

    def start_flood(self, count):
        argv = ["/usr/bin/python3", self.FLOOD, self.b.address, str(self.b.peer_port), str(count)]
        if self.a.netns:
            argv = ["ip", "netns", "exec", self.a.netns] + argv
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: proc.poll() is not None or proc.kill())
        line = proc.stdout.readline()
        self.assertIn("connections open", line, proc.stderr.read() if proc.poll() is not None else line)
        return proc

    def stop_flood(self, proc):
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        m = re.search(r"opened=(\d+) dropped=(\d+) busy=(\d+)", out)
        self.assertIsNotNone(m, out + err)
        return {k: int(v) for k, v in zip(("opened", "dropped", "busy"), m.groups())}

    def test_migration_completes_during_a_flood_of_silent_connections(self):
        guest = self.guest("flooded", size_mib=16, seed=5, memory=64)
        expected = harness.expected_sum(16, 5)
        self.start_on_a(guest)
        flood = self.start_flood(500)
        # Let hostB reach its caps and the flood start reconnecting.
        harness.wait_until(lambda: "peer busy" in self.b.log_tail(200), timeout=30,
                           what="hostB dropping flood connections at its caps")
        serial_b = self.scratch.join("flooded-serial-B.log")
        path = self.hosts.migrate("flooded", options={
            "destination-xml": self.destination_xml("flooded", serial_b), "bandwidth": 16 * MiB})
        success, error_name, message = self.hosts.wait_completed(self.client_a, path, 120)
        stats = self.stop_flood(flood)
        print("flood during the migration: %s" % stats)
        self.assertTrue(success, "%s: %s\n%s" % (error_name, message, self.hosts.logs()))
        # The flood was real: hostB dropped connections and told them why.
        self.assertGreater(stats["opened"], 500, stats)
        self.assertGreater(stats["busy"], 0, stats)

        # The guest runs on B only, with its RAM intact.
        harness.wait_until(lambda: not self.a.qemu_pids(), timeout=20, what="hostA's QEMU to exit")
        self.assertEqual(self.hosts.guest_state(self.client_b, "flooded"), "running")
        passes_a = [int(m.group(1)) for m in VERIFY_RE.finditer(guest.serial_text())]
        last_a = max(passes_a) if passes_a else 0
        guest_b = harness.TestGuest.__new__(harness.TestGuest)
        guest_b.name, guest_b.serial = "flooded", serial_b
        harness.wait_until(
            lambda: [m for m in VERIFY_RE.finditer(guest_b.serial_text()) if int(m.group(1)) > last_a],
            timeout=30, what="a VERIFY line on hostB after pass %d" % last_a)
        for m in VERIFY_RE.finditer(guest_b.serial_text()):
            self.assertEqual((m.group(2), m.group(3)), (expected, "ok"), guest_b.serial_text())
        self.assertNotIn("MDGUEST READY", guest_b.serial_text(), "the guest rebooted on B")
        # hostB still answers on its peer port and on the bus.
        self.assertTrue(self.hosts.guest_exists(self.client_b, "flooded"))


if __name__ == "__main__":
    harness.main()
