#!/usr/bin/python3
"""Issue 11 on two hosts with real QEMU: the convergence policy
(convergence=auto) takes a guest that dirties memory faster than the link
moves it to the end by itself (postcopy allowed) or fails saying both
rates (postcopy forbidden); a postcopy migration survives the link going
down (QEMU's postcopy recovery, driven by both daemons); past the
recovery deadline both QEMUs are left paused with an explicit error; a
destination daemon killed in postcopy neither loses the guest nor leaves
the migration unexplained."""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "guest"))
import harness  # noqa: E402
import mkguest  # noqa: E402
import twohosts  # noqa: E402
from harness import GUEST_IFACE, MANAGER_IFACE, MANAGER_PATH, MIGRATION_IFACE  # noqa: E402
from test_faults import QMP, qmp_socket_of  # noqa: E402

MiB = 1024 * 1024
PAGE = 4096
DIRTY_RE = re.compile(r"MDGUEST DIRTY round=(\d+)")
PEER_TIMEOUT = 3  # s, [daemon] peer-timeout: a cut link is noticed quickly
RANGE_MIB = 48
SEED = 7


def with_serial(xml, serial):
    return re.sub(r"(<serial type='file'>\s*<source path=')[^']*(')", r"\g<1>%s\g<2>" % serial, xml)


class ConvergenceTestCase(twohosts.TwoHostsTestCase):
    start_hosts = False

    def setUp(self):
        super().setUp()
        config = "[daemon]\npeer-timeout=%d\n" % PEER_TIMEOUT
        self.make_hosts(start=False)
        self.hosts.start(extra_config={"hostA": config, "hostB": config})

    def dirty_guest(self, name, memory=128):
        guest = harness.TestGuest(self.scratch, name, mode="dirty", size_mib=RANGE_MIB, seed=SEED,
                                  memory=memory)
        self.hosts.define_and_start_on_a(guest)
        guest.wait_serial(r"MDGUEST DIRTY round=[1-9]", timeout=60)
        return guest

    def destination_xml(self, name, serial):
        xml = self.client_a.call(harness.guest_path(name), GUEST_IFACE, "GetXML", "(a{sv})", ({},),
                                 "(s)")[0]
        return with_serial(xml, serial)

    def changes(self, client, path, prop):
        watcher = self.hosts.watcher(client)
        watcher.pump(0)
        return [c[prop] for c in watcher.changes.get(path, []) if prop in c]

    def statistics(self, client, path):
        return client.call(path, MIGRATION_IFACE, "GetStatistics", None, None, "(a{sv})")[0]

    def wait_dirty_on_b(self, guest, serial_b):
        last_a = max(int(m.group(1)) for m in DIRTY_RE.finditer(guest.serial_text()))
        harness.wait_until(lambda: [m for m in DIRTY_RE.finditer(open(serial_b).read())
                                    if int(m.group(1)) > last_a] if os.path.exists(serial_b) else None,
                           timeout=60, what="DIRTY rounds going on on hostB\n" + self.hosts.logs())

    def verify_ram_on_b(self, name):
        """Stops B's daemon (its QEMU keeps running), pauses the guest and
        reads its range with pmemsave: every page must hold the fill
        pattern after its first word (the dirtying loop writes only that
        word, the round number), and the round numbers must be two
        consecutive ones at most (the round under way when the guest was
        paused)."""
        pids = self.b.qemu_pids()
        self.assertEqual(len(pids), 1, "hostB should run exactly one QEMU\n" + self.hosts.logs())
        self.b.daemon.terminate()
        qmp = QMP(qmp_socket_of(self.b, pids[0]))
        # QEMU is confined (a private /tmp it owns): it writes the dump
        # there, and we read it through its root.
        inside = "/tmp/%s-ram.bin" % name
        dump = "/proc/%d/root%s" % (pids[0], inside)
        try:
            qmp.execute("stop")
            qmp.execute("pmemsave", val=2 * MiB, size=RANGE_MIB * MiB, filename=inside)
            with open(dump, "rb") as f:
                ram = f.read()
        finally:
            qmp.close()
        self.assertEqual(len(ram), RANGE_MIB * MiB)
        rounds = set()
        for off in range(0, RANGE_MIB * MiB, MiB):
            expected = mkguest.pattern_bytes(SEED, 2 * MiB + off, MiB)
            for page in range(0, MiB, PAGE):
                got = ram[off + page: off + page + PAGE]
                if got[4:] != expected[page + 4: page + PAGE]:
                    self.fail("guest RAM on hostB differs from what the guest wrote at %#x" % (2 * MiB + off + page))
                rounds.add(int.from_bytes(got[:4], "little"))
        self.assertLessEqual(max(rounds) - min(rounds), 1, "round numbers in RAM: %s" % sorted(rounds)[:10])

    def assert_source_gone(self, name):
        harness.wait_until(lambda: not self.a.qemu_pids(), timeout=30,
                           what="hostA's QEMU to exit\n" + self.hosts.logs())
        self.assertIn(self.hosts.guest_state(self.client_a, name), ("shut-off", None))


class ConvergencePolicy(ConvergenceTestCase):

    def test_dirty_guest_with_postcopy_allowed_completes_on_its_own(self):
        guest = self.dirty_guest("conv-pc")
        serial_b = self.scratch.join("conv-pc-B.log")
        path = self.hosts.migrate("conv-pc", options={
            "bandwidth": 16 * MiB, "max-downtime": 50, "postcopy": True, "abort-after": 120,
            "destination-xml": self.destination_xml("conv-pc", serial_b)})
        success, name, message = self.hosts.wait_completed(self.client_a, path, 150)
        self.assertTrue(success, "%s: %s\n%s" % (name, message, self.hosts.logs()))
        steps = self.changes(self.client_a, path, "Convergence")
        self.assertIn("postcopy", steps, "the client never saw Convergence=postcopy: %s" % steps)
        reasons = self.changes(self.client_a, path, "ConvergenceReason")
        self.assertTrue(any("MiB/s" in r for r in reasons), reasons)
        props = self.hosts.migration_props(self.client_a, path)
        self.assertEqual(props["Convergence"], "postcopy")
        taken = [s["step"] for s in self.statistics(self.client_a, path)["convergence-steps"]]
        print("steps:", self.statistics(self.client_a, path)["convergence-steps"], file=sys.stderr)
        self.assertEqual(taken[0], "precopy")
        self.assertEqual(taken[-1], "postcopy")
        self.assertNotIn("throttling", taken, "throttling before postcopy is off by default")
        # The early check: the guest rewrites its 48 MiB many times a
        # second, the link moves 16 MiB/s, so QEMU's dirty-rate sample
        # during the first pass decided (early-dirty-percent=200).
        last = self.statistics(self.client_a, path)["convergence-steps"][-1]
        self.assertTrue(last.get("early"), "postcopy was not decided by the early check: %s" % last)
        self.assertIn("first pass", last["reason"])
        self.assertGreater(self.statistics(self.client_a, path)["sampled-dirty-rate"], 32 * MiB)
        self.assert_source_gone("conv-pc")
        self.wait_dirty_on_b(guest, serial_b)
        self.verify_ram_on_b("conv-pc")

    def test_postcopy_forbidden_and_short_ceiling_fails_naming_both_rates(self):
        guest = self.dirty_guest("conv-fail")
        path = self.hosts.migrate("conv-fail", options={
            "bandwidth": 16 * MiB, "max-downtime": 50, "max-downtime-ceiling": 100,
            "auto-converge": False, "abort-after": 150})
        success, name, message = self.hosts.wait_completed(self.client_a, path, 170)
        self.assertFalse(success)
        self.assertEqual(name, "org.migrationd.Error.Timeout", message)
        self.assertRegex(message, r"guest dirties [1-9]\d* MiB/s, link moves [1-9]\d* MiB/s; allow postcopy or "
                                  r"raise max-downtime-ceiling")
        self.assertNotIn("abort-after", message, "the policy must give up before abort-after")
        steps = [s["step"] for s in self.statistics(self.client_a, path)["convergence-steps"]]
        self.assertEqual(steps[0], "precopy")
        self.assertIn("downtime-raised", steps)
        self.assertEqual(steps[-1], "gave-up")
        self.assertNotIn("throttling", steps, "auto-converge=false forbids throttling")
        self.assertEqual(self.client_a.get_property(path, MIGRATION_IFACE, "MaxDowntime"), 100)
        # The guest runs on A, nothing is left on B.
        self.assertEqual(self.hosts.guest_state(self.client_a, "conv-fail"), "running")
        start = len(guest.serial_text())
        guest.wait_serial(r"MDGUEST DIRTY round=\d+", timeout=30, start=start)
        harness.wait_until(lambda: not self.b.qemu_pids(), timeout=30, what="hostB's QEMU to go")
        self.assertFalse(self.hosts.guest_exists(self.client_b, "conv-fail"))
        self.assertEqual(self.b.listening_migration_ports(), [])

    def test_manual_keeps_todays_behaviour(self):
        self.dirty_guest("conv-man")
        path = self.hosts.migrate("conv-man", options={
            "bandwidth": 16 * MiB, "max-downtime": 50, "postcopy": True, "convergence": "manual",
            "abort-after": 20})
        success, name, message = self.hosts.wait_completed(self.client_a, path, 60)
        self.assertFalse(success)
        self.assertIn("abort-after=20", message)
        self.assertEqual(self.client_a.get_property(path, MIGRATION_IFACE, "Convergence"), "manual")
        self.assertEqual(self.statistics(self.client_a, path)["convergence-steps"][-1]["step"], "manual")
        self.assertEqual(self.hosts.guest_state(self.client_a, "conv-man"), "running")

    def test_bad_convergence_options_are_refused_and_change_nothing(self):
        guest = harness.TestGuest(self.scratch, "conv-bad", size_mib=8, memory=64)
        self.hosts.define_and_start_on_a(guest)
        cases = [
            ({"convergence": "sometimes"}, "option 'convergence'"),
            ({"max-downtime": 300, "max-downtime-ceiling": 100}, "option 'max-downtime-ceiling'"),
            ({"max-downtime-ceiling": 3000000}, "option 'max-downtime-ceiling'"),
            ({"postcopy-recovery-timeout": 0}, "option 'postcopy-recovery-timeout'"),
        ]
        for options, expected in cases:
            with self.subTest(options=options):
                message = self.assertDBusError("org.migrationd.Error.InvalidArgument", self.hosts.migrate,
                                               "conv-bad", options=options)
                self.assertIn(expected, message)
        migrations = self.client_a.call(MANAGER_PATH, MANAGER_IFACE, "ListMigrations", None, None, "(ao)")[0]
        self.assertEqual(migrations, [])
        self.assertEqual(self.hosts.guest_state(self.client_a, "conv-bad"), "running")
        self.assertEqual(self.b.qemu_pids(), [])


class PostcopyRecovery(ConvergenceTestCase):
    """Postcopy over a link shaped to 4 MiB/s (tc tbf on both veth ends),
    so the postcopy phase of a 48 MiB dirty range lasts long enough to
    break it."""

    LINK_RATE = "32mbit"

    def setUp(self):
        if not twohosts.use_netns():
            self.skipTest("cutting the link needs network namespaces (root)")  # counted as failure
        super().setUp()
        for name in ("hostA", "hostB"):
            twohosts.run(["tc", "-n", self.hosts.netns[name], "qdisc", "add", "dev", self.hosts.veth[name],
                          "root", "tbf", "rate", self.LINK_RATE, "burst", "64kb", "latency", "500ms"])

    def start_postcopy(self, name, timeout=None, extra=None):
        """Migrates @name with postcopy allowed, switches by hand once the
        first pass is done and waits until B runs the guest (Finish done)."""
        guest = self.dirty_guest(name)
        serial_b = self.scratch.join(name + "-B.log")
        options = {"max-downtime": 50, "postcopy": True, "convergence": "manual",
                   "destination-xml": self.destination_xml(name, serial_b)}
        options.update(extra or {})
        if timeout is not None:
            options["postcopy-recovery-timeout"] = timeout
        path = self.hosts.migrate(name, options=options)
        self.hosts.wait_property(self.client_a, path, "Iteration", lambda v: v >= 2, timeout=90)
        self.client_a.call(path, MIGRATION_IFACE, "StartPostcopy", "(a{sv})", ({},))
        self.hosts.wait_property(self.client_a, path, "State", lambda s: s != "running", timeout=60)
        harness.wait_until(lambda: self.hosts.guest_state(self.client_b, name) == "running", timeout=60,
                           what="B resuming the guest in postcopy\n" + self.hosts.logs())
        self.assertEqual(self.client_a.get_property(path, MIGRATION_IFACE, "State"), "postcopy",
                         "postcopy ended before the link could be cut; the link is too fast")
        return guest, path, serial_b

    def incoming_path(self):
        paths = self.client_b.call(MANAGER_PATH, MANAGER_IFACE, "ListMigrations", None, None, "(ao)")[0]
        self.assertEqual(len(paths), 1, paths)
        return paths[0]

    def test_link_cut_for_5s_in_postcopy_recovers_and_completes(self):
        guest, path, serial_b = self.start_postcopy("pc-cut")
        incoming = self.incoming_path()
        self.hosts.link(False)
        self.addCleanup(self.hosts.link, True)
        time.sleep(5)
        self.hosts.link(True)
        success, name, message = self.hosts.wait_completed(self.client_a, path, 180)
        self.assertTrue(success, "%s: %s\n%s" % (name, message, self.hosts.logs()))
        states = self.changes(self.client_a, path, "State")
        self.assertIn("postcopy-paused", states, "A never showed the broken stream: %s\n%s" % (states, self.hosts.logs()))
        self.assertGreaterEqual(self.client_a.get_property(path, MIGRATION_IFACE, "RecoveryAttempts"), 1)
        success_b, name_b, message_b = self.hosts.wait_completed(self.client_b, incoming, 60)
        self.assertTrue(success_b, "%s: %s" % (name_b, message_b))
        self.assertGreaterEqual(self.client_b.get_property(incoming, MIGRATION_IFACE, "RecoveryAttempts"), 1)
        self.assert_source_gone("pc-cut")
        self.wait_dirty_on_b(guest, serial_b)
        self.verify_ram_on_b("pc-cut")

    def test_link_cut_past_the_deadline_leaves_both_qemus_paused(self):
        guest, path, serial_b = self.start_postcopy("pc-dead", timeout=10)
        incoming = self.incoming_path()
        pids_a, pids_b = self.a.qemu_pids(), self.b.qemu_pids()
        self.hosts.link(False)
        self.addCleanup(self.hosts.link, True)
        for client, migration in ((self.client_a, path), (self.client_b, incoming)):
            self.hosts.wait_property(client, migration, "State", lambda s: s == "needs-attention", timeout=90,
                                     what="needs-attention\n" + self.hosts.logs())
            props = self.hosts.migration_props(client, migration)
            self.assertEqual(props["ErrorName"], "org.migrationd.Error.Failed")
            self.assertIn("could not be recovered within postcopy-recovery-timeout=10 s"
                          if client is self.client_a else "was not recovered within postcopy-recovery-timeout=10 s",
                          props["ErrorMessage"])
            self.assertIn("Both QEMUs were kept", props["ErrorMessage"])
            self.assertIn("migrate-recover", props["ErrorMessage"])
        self.assertGreaterEqual(self.client_a.get_property(path, MIGRATION_IFACE, "RecoveryAttempts"), 1)
        # No process was killed, and both QEMUs say they are paused.
        self.assertEqual((self.a.qemu_pids(), self.b.qemu_pids()), (pids_a, pids_b))
        for host, pids in ((self.a, pids_a), (self.b, pids_b)):
            host.daemon.terminate()
            qmp = QMP(qmp_socket_of(host, pids[0]))
            try:
                status = qmp.execute("query-migrate").get("status")
            finally:
                qmp.close()
            self.assertEqual(status, "postcopy-paused", "%s's QEMU" % host.name)

    def test_destination_daemon_killed_in_postcopy(self):
        guest, path, serial_b = self.start_postcopy("pc-killb")
        pids_b = self.b.qemu_pids()
        self.b.daemon.sigkill()
        # The guest keeps running on B without its daemon, and A goes on
        # serving its pages: nothing is killed on either side.
        start = len(open(serial_b).read())
        harness.wait_until(lambda: DIRTY_RE.search(open(serial_b).read(), start), timeout=30,
                           what="the guest running on B while its daemon is dead")
        success, name, message = self.hosts.wait_completed(self.client_a, path, 180)
        self.assertTrue(success, "%s: %s\n%s" % (name, message, self.hosts.logs()))
        self.assertEqual(self.b.qemu_pids(), pids_b)
        self.b.daemon.start()
        self.hosts.wait_peer_listener(self.b)
        self.client_b = self.hosts.client_b = self.hosts.client(self.b)
        harness.wait_until(lambda: self.hosts.guest_state(self.client_b, "pc-killb") == "running", timeout=60,
                           what="B's restarted daemon re-attaching the guest\n" + self.hosts.logs())
        resolved = self.client_b.call(MANAGER_PATH, MANAGER_IFACE, "ListMigrations", None, None, "(ao)")[0]
        self.assertEqual(len(resolved), 1, resolved)
        success_b, name_b, message_b = self.hosts.wait_completed(self.client_b, resolved[0], 60)
        self.assertTrue(success_b, "%s: %s" % (name_b, message_b))
        self.assertEqual(self.b.qemu_pids(), pids_b)
        self.assert_source_gone("pc-killb")
        self.wait_dirty_on_b(guest, serial_b)
        self.verify_ram_on_b("pc-killb")


    def restart_daemon(self, host):
        host.daemon.env = {}
        host.daemon.start()
        self.hosts.wait_peer_listener(host)
        client = self.hosts.client(host)
        if host is self.a:
            self.client_a = self.hosts.client_a = client
        else:
            self.client_b = self.hosts.client_b = client
        return client

    def cut_until_paused(self, path):
        """Cuts the link and waits until A paused the postcopy stream."""
        self.hosts.link(False)
        self.addCleanup(self.hosts.link, True)
        self.hosts.wait_property(self.client_a, path, "State",
                                 lambda s: s in ("postcopy-paused", "postcopy-recovering"), timeout=90,
                                 what="A pausing the cut postcopy stream\n" + self.hosts.logs())

    def test_destination_daemon_killed_while_paused_recovers_after_restart(self):
        guest, path, serial_b = self.start_postcopy("pc-reb")
        pids_a, pids_b = self.a.qemu_pids(), self.b.qemu_pids()
        self.cut_until_paused(path)
        self.b.daemon.sigkill()
        self.hosts.link(True)
        self.assertEqual((self.a.qemu_pids(), self.b.qemu_pids()), (pids_a, pids_b),
                         "a QEMU went away with B's daemon")
        self.restart_daemon(self.b)
        # B's restarted daemon re-attaches the migration in postcopy; A's
        # recovery attempts find it and the stream completes.
        resumed = self.incoming_path()
        success, name, message = self.hosts.wait_completed(self.client_a, path, 180)
        self.assertTrue(success, "%s: %s\n%s" % (name, message, self.hosts.logs()))
        success_b, name_b, message_b = self.hosts.wait_completed(self.client_b, resumed, 60)
        self.assertTrue(success_b, "%s: %s\n%s" % (name_b, message_b, self.hosts.logs()))
        self.assertGreaterEqual(self.client_b.get_property(resumed, MIGRATION_IFACE, "RecoveryAttempts"), 1)
        self.assertEqual(self.b.qemu_pids(), pids_b)
        self.assertEqual(self.hosts.guest_state(self.client_b, "pc-reb"), "running")
        self.assert_source_gone("pc-reb")
        self.wait_dirty_on_b(guest, serial_b)
        self.verify_ram_on_b("pc-reb")


    def test_source_daemon_killed_while_paused_recovers_after_restart(self):
        guest, path, serial_b = self.start_postcopy("pc-rea")
        incoming = self.incoming_path()
        pids_a, pids_b = self.a.qemu_pids(), self.b.qemu_pids()
        self.cut_until_paused(path)
        self.a.daemon.sigkill()
        self.hosts.link(True)
        self.assertEqual((self.a.qemu_pids(), self.b.qemu_pids()), (pids_a, pids_b),
                         "a QEMU went away with A's daemon")
        self.restart_daemon(self.a)
        # A's restarted daemon finds its QEMU paused in postcopy and
        # recovers the stream into B's QEMU; then its copy goes.
        resumed = self.client_a.call(MANAGER_PATH, MANAGER_IFACE, "ListMigrations", None, None, "(ao)")[0]
        self.assertEqual(len(resumed), 1, resumed)
        success, name, message = self.hosts.wait_completed(self.client_a, resumed[0], 180)
        self.assertTrue(success, "%s: %s\n%s" % (name, message, self.hosts.logs()))
        self.assertGreaterEqual(self.client_a.get_property(resumed[0], MIGRATION_IFACE, "RecoveryAttempts"), 1)
        success_b, name_b, message_b = self.hosts.wait_completed(self.client_b, incoming, 60)
        self.assertTrue(success_b, "%s: %s\n%s" % (name_b, message_b, self.hosts.logs()))
        self.assertEqual(self.b.qemu_pids(), pids_b)
        self.assertEqual(self.hosts.guest_state(self.client_b, "pc-rea"), "running")
        self.assert_source_gone("pc-rea")
        self.wait_dirty_on_b(guest, serial_b)
        self.verify_ram_on_b("pc-rea")


    def test_tunnel_destination_daemon_killed_recovers_through_a_new_tunnel(self):
        """transport=tunnel: B's daemon dies with its relays, so both QEMUs
        pause; the restarted daemon re-attaches and A's recovery resumes
        the stream through a new data stream of the peer port."""
        guest, path, serial_b = self.start_postcopy("pc-tun", extra={"transport": "tunnel"})
        pids_a, pids_b = self.a.qemu_pids(), self.b.qemu_pids()
        self.b.daemon.sigkill()
        self.hosts.wait_property(self.client_a, path, "State",
                                 lambda s: s in ("postcopy-paused", "postcopy-recovering"), timeout=60,
                                 what="A noticing the stream ended with B's relays\n" + self.hosts.logs())
        self.assertEqual((self.a.qemu_pids(), self.b.qemu_pids()), (pids_a, pids_b),
                         "a QEMU went away with B's daemon")
        self.restart_daemon(self.b)
        resumed = self.incoming_path()
        success, name, message = self.hosts.wait_completed(self.client_a, path, 180)
        self.assertTrue(success, "%s: %s\n%s" % (name, message, self.hosts.logs()))
        success_b, name_b, message_b = self.hosts.wait_completed(self.client_b, resumed, 60)
        self.assertTrue(success_b, "%s: %s\n%s" % (name_b, message_b, self.hosts.logs()))
        self.assertGreaterEqual(self.client_b.get_property(resumed, MIGRATION_IFACE, "RecoveryAttempts"), 1)
        # QEMU on B listened for the resumed stream on a private unix
        # socket, never on a TCP port.
        self.assertRegex(self.b.log(), r"recovery attempt \d+: QEMU listens on a private unix socket")
        self.assertNotRegex(self.b.log(), r"recovery attempt \d+: QEMU listens on tcp:")
        self.assertEqual(sorted(self.b.listening_ports() - {self.b.peer_port}), [])
        self.assertEqual(self.b.qemu_pids(), pids_b)
        self.assert_source_gone("pc-tun")
        self.wait_dirty_on_b(guest, serial_b)
        self.verify_ram_on_b("pc-tun")


    def test_tunnel_source_daemon_killed_recovers_through_a_new_tunnel(self):
        """transport=tunnel: A's daemon dies with its relays, so both QEMUs
        pause; A's restarted daemon finds its QEMU paused in postcopy and
        resumes the stream through a new tunnel."""
        guest, path, serial_b = self.start_postcopy("pc-tua", extra={"transport": "tunnel"})
        incoming = self.incoming_path()
        pids_a, pids_b = self.a.qemu_pids(), self.b.qemu_pids()
        self.a.daemon.sigkill()
        self.hosts.wait_property(self.client_b, incoming, "State",
                                 lambda s: s in ("postcopy-paused", "postcopy-recovering"), timeout=60,
                                 what="B noticing the stream ended with A's relays\n" + self.hosts.logs())
        self.assertEqual((self.a.qemu_pids(), self.b.qemu_pids()), (pids_a, pids_b),
                         "a QEMU went away with A's daemon")
        self.restart_daemon(self.a)
        resumed = self.client_a.call(MANAGER_PATH, MANAGER_IFACE, "ListMigrations", None, None, "(ao)")[0]
        self.assertEqual(len(resumed), 1, resumed)
        success, name, message = self.hosts.wait_completed(self.client_a, resumed[0], 180)
        self.assertTrue(success, "%s: %s\n%s" % (name, message, self.hosts.logs()))
        self.assertGreaterEqual(self.client_a.get_property(resumed[0], MIGRATION_IFACE, "RecoveryAttempts"), 1)
        success_b, name_b, message_b = self.hosts.wait_completed(self.client_b, incoming, 60)
        self.assertTrue(success_b, "%s: %s\n%s" % (name_b, message_b, self.hosts.logs()))
        self.assertRegex(self.b.log(), r"recovery attempt \d+: QEMU listens on a private unix socket")
        self.assertNotRegex(self.b.log(), r"recovery attempt \d+: QEMU listens on tcp:")
        self.assertEqual(sorted(self.b.listening_ports() - {self.b.peer_port}), [])
        self.assertEqual(self.b.qemu_pids(), pids_b)
        self.assert_source_gone("pc-tua")
        self.wait_dirty_on_b(guest, serial_b)
        self.verify_ram_on_b("pc-tua")


class RecoverCall(ConvergenceTestCase):
    """Peer1.Recover from a peer with a valid certificate but nothing to
    recover: refused by name, and nothing starts listening on B."""

    def test_recover_without_a_postcopy_migration_is_refused(self):
        import json
        spec = {"address": self.b.peer_address, "tls_dir": self.a.tls_dir, "calls": [
            ["Hello", "(uint32 1, 'd4b09434-9323-41ec-94a2-11f6e09cb784', 'hostA', @a{sv} {})"],
            ["Recover", "('no-such-migration', @a{sv} {})"],
            ["Recover", "('no-such-migration', {'token': <'forged'>})"],
        ]}
        client = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peer_client.py")
        proc = self.a.run_in_netns([sys.executable, client, json.dumps(spec)], timeout=120)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        results = json.loads(proc.stdout.strip().splitlines()[-1])
        for result in results[1:]:
            self.assertEqual(result.get("error"), "org.migrationd.Error.InvalidState", result)
            self.assertIn("nothing to recover", result["message"])
        self.assertEqual(self.b.listening_migration_ports(), [])
        self.assertEqual(self.b.qemu_pids(), [])


if __name__ == "__main__":
    harness.main()
