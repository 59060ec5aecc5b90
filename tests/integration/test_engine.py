#!/usr/bin/python3
"""The migration engine under crashes at exact transitions (hostA ->
hostB, real QEMU): a daemon is made to die at a named fault point
(MD_TEST_STOP_AT, see docs/HACKING.md), restarted, and the guest must run
in exactly one place with its RAM intact, nothing left behind. Each case
is one failure reported in issue 8 that broke this before the state
machine and its journal."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import twohosts  # noqa: E402
from harness import GUEST_IFACE, MIGRATION_IFACE  # noqa: E402

MiB = 1024 * 1024


def with_serial(xml, serial):
    return re.sub(r"(<serial type='file'>\s*<source path=')[^']*(')", r"\g<1>%s\g<2>" % serial, xml)


class EngineTestCase(twohosts.TwoHostsTestCase):

    def guest(self, name, **kwargs):
        return harness.TestGuest(self.scratch, name, **kwargs)

    def start_on_a(self, guest):
        path = self.hosts.define_and_start_on_a(guest)
        guest.wait_serial(r"MDGUEST (VERIFY pass=\d+ .* ok|DIRTY round=[1-9])", timeout=60)
        return path

    def destination_xml(self, name, serial):
        xml = self.client_a.call(harness.guest_path(name), GUEST_IFACE, "GetXML", "(a{sv})", ({},),
                                 "(s)")[0]
        return with_serial(xml, serial)

    def arm(self, host, point, action="kill"):
        """Restarts @host's daemon so that it acts at fault point @point."""
        host.daemon.terminate()
        os.environ["MD_TEST_STOP_AT"] = point
        os.environ["MD_TEST_STOP_ACTION"] = action
        try:
            host.daemon.start()
        finally:
            del os.environ["MD_TEST_STOP_AT"]
            del os.environ["MD_TEST_STOP_ACTION"]
        self.wait_peer_listener(host)
        if host is self.a:
            self.client_a = self.hosts.client_a = self.hosts.client(self.a)
        else:
            self.client_b = self.hosts.client_b = self.hosts.client(self.b)

    def wait_peer_listener(self, host):
        client = self.hosts.client(host)
        harness.wait_until(lambda: client.get_property(harness.MANAGER_PATH, harness.MANAGER_IFACE,
                                                       "PeerAddress") != "",
                           timeout=20, what="%s's peer listener" % host.name)

    def wait_died(self, host, timeout=120):
        harness.wait_until(lambda: host.daemon.proc.poll() is not None, timeout=timeout,
                           what="%s's daemon to die at its fault point\n%s" % (host.name, self.hosts.logs()))
        host.daemon.log.close()

    def restart(self, host):
        host.daemon.start()
        client = self.hosts.client(host)
        if host is self.a:
            self.client_a = self.hosts.client_a = client
        else:
            self.client_b = self.hosts.client_b = client
        return client

    def assert_runs_only_on(self, host, other, name, guest, serial=None):
        client = self.client_a if host is self.a else self.client_b
        harness.wait_until(lambda: self.hosts.guest_state(client, name) == "running", timeout=90,
                           what="%s running on %s\n%s" % (name, host.name, self.hosts.logs()))
        harness.wait_until(lambda: not other.qemu_pids(), timeout=60,
                           what="no QEMU left on %s\n%s" % (other.name, self.hosts.logs()))
        self.assertEqual(len(host.qemu_pids()), 1, "%s should have exactly one QEMU" % host.name)
        text = lambda: open(serial).read() if serial and os.path.exists(serial) else guest.serial_text()  # noqa: E731
        start = len(text())
        harness.wait_until(lambda: re.search(r"MDGUEST (VERIFY pass=\d+ sum=[0-9a-f]+ ok|DIRTY round=\d+)",
                                                     text()[start:]),
                           timeout=60, what="the guest making progress on %s" % host.name)
        self.assertNotIn(" BAD", text())

    def journal_files(self, host):
        path = os.path.join(host.state_dir, "migrations")
        return sorted(os.listdir(path)) if os.path.isdir(path) else []


class FailedPhase(EngineTestCase):

    def test_failed_migration_keeps_the_phase_it_failed_in(self):
        # Before: Phase was "confirm" while the error named "prepare".
        guest = self.guest("phase", size_mib=8, memory=64)
        self.start_on_a(guest)
        # A port nobody listens on, in B's namespace (or on loopback).
        port = twohosts.PEER_PORT + 99 if twohosts.use_netns() else twohosts.free_tcp_ports(1)
        path = self.hosts.migrate("phase", dest="%s:%d" % (self.b.address, port))
        success, name, message = self.hosts.wait_completed(self.client_a, path, 60)
        self.assertFalse(success)
        self.assertIn("phase prepare", message)
        props = self.hosts.migration_props(self.client_a, path)
        self.assertEqual((props["State"], props["Phase"]), ("failed", "prepare"), message)
        self.assertEqual(self.hosts.guest_state(self.client_a, "phase"), "running")
        self.assertEqual(self.journal_files(self.a), [], "the journal keeps a finished migration")


class Retry(EngineTestCase):

    def test_retry_after_source_daemon_crash_mid_perform(self):
        # Before: the retry failed with "duplicate property 'md-tls-1'":
        # numbers restarted at 1 while QEMU kept the first TLS object.
        guest = self.guest("retry", size_mib=32, seed=9, memory=128)
        self.start_on_a(guest)
        path = self.hosts.migrate("retry", options={"bandwidth": 4 * MiB})
        self.hosts.wait_property(self.client_a, path, "Phase", lambda p: p == "perform", timeout=30)
        self.hosts.wait_property(self.client_a, path, "MemoryProcessed", lambda v: v > 2 * MiB, timeout=30)
        self.a.daemon.sigkill()
        harness.wait_until(lambda: not self.b.qemu_pids(), timeout=30, what="B removing its QEMU")
        self.restart(self.a)
        harness.wait_until(lambda: self.hosts.guest_state(self.client_a, "retry") == "running", timeout=60,
                           what="the guest running on A after the restart\n" + self.hosts.logs())
        serial_b = self.scratch.join("retry-B.log")
        path = self.hosts.migrate("retry", options={"destination-xml": self.destination_xml("retry", serial_b)})
        success, name, message = self.hosts.wait_completed(self.client_a, path, 120)
        self.assertTrue(success, "%s: %s\n%s" % (name, message, self.hosts.logs()))
        self.assert_runs_only_on(self.b, self.a, "retry", guest, serial_b)


class Postcopy(EngineTestCase):

    def postcopy_migration(self, name):
        guest = self.guest(name, mode="dirty", size_mib=48, seed=5, memory=128)
        self.start_on_a(guest)
        serial_b = self.scratch.join(name + "-B.log")
        path = self.hosts.migrate(name, options={
            "bandwidth": 8 * MiB, "max-downtime": 50, "postcopy": True, "convergence": "manual",
            "destination-xml": self.destination_xml(name, serial_b)})
        self.hosts.wait_property(self.client_a, path, "Iteration", lambda v: v >= 2, timeout=60)
        return guest, path, serial_b

    def test_cancel_in_postcopy_is_refused(self):
        guest, path, serial_b = self.postcopy_migration("pc-cancel")
        self.client_a.call(path, MIGRATION_IFACE, "StartPostcopy", "(a{sv})", ({},))
        self.hosts.wait_property(self.client_a, path, "State", lambda s: s in ("postcopy", "completed"),
                                 timeout=60)
        if self.client_a.get_property(path, MIGRATION_IFACE, "State") == "postcopy":
            message = self.assertDBusError("org.migrationd.Error.InvalidState", self.client_a.call, path,
                                           MIGRATION_IFACE, "Cancel", "(a{sv})", ({},))
            self.assertIn("postcopy", message)
        success, name, message = self.hosts.wait_completed(self.client_a, path, 120)
        self.assertTrue(success, "%s: %s\n%s" % (name, message, self.hosts.logs()))
        self.assert_runs_only_on(self.b, self.a, "pc-cancel", guest, serial_b)

    def test_destination_daemon_killed_at_postcopy_finish(self):
        # Before: A sent migrate_cancel into the healthy postcopy stream,
        # then the restarted B killed the QEMU holding the live guest.
        self.arm(self.b, "dest-finish")
        guest, path, serial_b = self.postcopy_migration("pc-killb")
        self.client_a.call(path, MIGRATION_IFACE, "StartPostcopy", "(a{sv})", ({},))
        self.wait_died(self.b)
        self.restart(self.b)
        success, name, message = self.hosts.wait_completed(self.client_a, path, 180)
        self.assertTrue(success, "%s: %s\n%s" % (name, message, self.hosts.logs()))
        self.assert_runs_only_on(self.b, self.a, "pc-killb", guest, serial_b)


class SwitchOver(EngineTestCase):

    def precopy(self, name):
        guest = self.guest(name, size_mib=16, seed=3, memory=64)
        self.start_on_a(guest)
        serial_b = self.scratch.join(name + "-B.log")
        path = self.hosts.migrate(name, options={"destination-xml": self.destination_xml(name, serial_b)})
        return guest, path, serial_b

    def test_destination_daemon_killed_just_before_resume(self):
        # B journals that it holds the guest, then dies before "cont".
        # Before: A resumed its own copy (or reported "keeps running here"
        # while B ran it); now A asks the restarted B and stops its copy.
        self.arm(self.b, "dest-authority-destination")
        guest, path, serial_b = self.precopy("so-killb")
        self.wait_died(self.b)
        self.restart(self.b)
        success, name, message = self.hosts.wait_completed(self.client_a, path, 180)
        self.assertTrue(success, "%s: %s\n%s" % (name, message, self.hosts.logs()))
        self.assert_runs_only_on(self.b, self.a, "so-killb", guest, serial_b)

    def test_source_daemon_killed_after_destination_confirmed(self):
        # Before: a paused second copy stayed on A forever next to B's.
        self.arm(self.a, "source-authority-destination")
        guest, path, serial_b = self.precopy("so-killa")
        self.wait_died(self.a)
        self.restart(self.a)
        self.assert_runs_only_on(self.b, self.a, "so-killa", guest, serial_b)
        harness.wait_until(lambda: not self.journal_files(self.a), timeout=60,
                           what="A's journal resolved\n" + self.hosts.logs())
        # A's guest object is gone with its QEMU (it was transient? no:
        # defined, so it stays shut off); a second migration back works.
        self.assertIn(self.hosts.guest_state(self.client_a, "so-killa"), ("shut-off", None))

    def test_source_daemon_killed_entering_finish(self):
        # A dies with QEMU's migration complete, before Finish reached B:
        # B removes its copy; the restarted A asks B and resumes its own.
        self.arm(self.a, "source-finish")
        guest, path, serial_b = self.precopy("so-fin")
        self.wait_died(self.a)
        self.restart(self.a)
        self.assert_runs_only_on(self.a, self.b, "so-fin", guest)
        harness.wait_until(lambda: not self.journal_files(self.a), timeout=60,
                           what="A's journal resolved\n" + self.hosts.logs())


class ImagesLeak(EngineTestCase):

    def test_destination_daemon_killed_mid_mirror_removes_its_images(self):
        # Before: the image Prepare created stayed on B after its restart.
        import test_storage
        disk_a, disk_b = self.scratch.join("vdb-A.raw"), self.scratch.join("vdb-B.raw")
        with open(disk_a, "wb") as f:
            f.truncate(64 * MiB)
        test_storage.write_random(disk_a, 0, 48)
        guest = harness.TestGuest(self.scratch, "leak", size_mib=8, seed=11)
        guest.xml = guest.xml.replace("<serial type='file'>", test_storage.DATA_DISK_XML.format(
            format="raw", path=disk_a) + "<serial type='file'>", 1)
        path = self.hosts.define_and_start_on_a(guest)
        xml = self.client_a.call(path, GUEST_IFACE, "GetXML", "(a{sv})", ({},), "(s)")[0]
        migration = self.hosts.migrate("leak", options={
            "copy-storage": "all", "disks": ["vdb"], "bandwidth": 4 * MiB,
            "destination-xml": xml.replace(disk_a, disk_b)})
        self.hosts.wait_property(self.client_a, migration, "DiskProcessed", lambda d: d > 0, timeout=60)
        self.assertTrue(os.path.exists(disk_b))
        self.b.daemon.sigkill()
        success, name, message = self.hosts.wait_completed(self.client_a, migration, 90)
        self.assertFalse(success)
        self.restart(self.b)
        harness.wait_until(lambda: not os.path.exists(disk_b), timeout=30,
                           what="B removing the image Prepare made\n" + self.hosts.logs())
        harness.wait_until(lambda: not self.b.qemu_pids(), timeout=30, what="no QEMU on B")
        self.assertEqual(self.hosts.guest_state(self.client_a, "leak"), "running")
        self.assertTrue(os.path.exists(disk_a))


if __name__ == "__main__":
    harness.main()
