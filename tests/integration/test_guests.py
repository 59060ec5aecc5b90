#!/usr/bin/python3
"""Guests on real QEMU: define, lifecycle, re-attach after a daemon crash,
bad definitions, and the polkit gate of every Guest1 method."""

import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import GUEST_IFACE, MANAGER_IFACE, MANAGER_PATH, Gio, GLib  # noqa: E402




class GuestTestCase(harness.MigrationdTestCase):

    def setUp(self):
        super().setUp()
        self.polkitd.set_allowed(harness.ACTIONS)

    def define(self, client, guest):
        return client.call(MANAGER_PATH, MANAGER_IFACE, "DefineGuest", "(sa{sv})", (guest.xml, {}), "(o)")[0]

    def state(self, client, path):
        return client.get_property(path, GUEST_IFACE, "State")

    def wait_state(self, client, path, state, timeout=30):
        harness.wait_until(lambda: self.state(client, path) == state, timeout=timeout,
                           what="guest state %s" % state)

    def guest_call(self, client, path, method, options=None, timeout=120000):
        return client.call(path, GUEST_IFACE, method, "(a{sv})", (options or {},), timeout=timeout)


class Lifecycle(GuestTestCase):

    def test_define_start_pause_resume_destroy(self):
        daemon = self.start_daemon()
        client = self.client()
        guest = harness.TestGuest(self.scratch, "lifecycle", size_mib=8, seed=42)
        path = self.define(client, guest)
        self.assertEqual(path, harness.guest_path("lifecycle"))
        self.assertTrue(os.path.exists(os.path.join(daemon.state_dir, "guests", "lifecycle.xml")))
        props = client.get_all(path, GUEST_IFACE)
        self.assertEqual(props["State"], "shut-off")
        self.assertTrue(props["Persistent"])
        self.assertEqual(props["Memory"], 64 * 1024 * 1024)
        self.assertRegex(props["Machine"], r"^pc-i440fx-\d+\.\d+$")
        self.assertEqual(props["PID"], 0)

        self.guest_call(client, path, "Start")
        self.assertEqual(self.state(client, path), "running")
        pid = client.get_property(path, GUEST_IFACE, "PID")
        self.assertEqual(harness.qemu_pids_in(self.scratch.path), [pid])
        # The guest really runs: it filled its RAM and reports the checksum
        # the host computes independently.
        match = guest.wait_serial(r"MDGUEST READY mode=fill .*sum=([0-9a-f]{8})")
        self.assertEqual(match.group(1), harness.expected_sum(8, 42))
        guest.wait_serial(r"MDGUEST VERIFY pass=\d+ sum=[0-9a-f]+ ok")

        self.guest_call(client, path, "Pause")
        self.wait_state(client, path, "paused")
        # Paused means paused: no new serial output for a while.
        length = len(guest.serial_text())
        time.sleep(3)
        self.assertEqual(len(guest.serial_text()), length)
        self.guest_call(client, path, "Resume")
        self.wait_state(client, path, "running")
        guest.wait_serial(r"MDGUEST VERIFY pass=\d+ sum=[0-9a-f]+ ok", start=length)

        self.guest_call(client, path, "Destroy")
        self.assertEqual(self.state(client, path), "shut-off")
        self.assertEqual(client.get_property(path, GUEST_IFACE, "PID"), 0)
        harness.wait_until(lambda: not harness.qemu_pids_in(self.scratch.path), what="QEMU gone")
        self.assertEqual(os.listdir(daemon.runtime_dir), [])

    def test_start_paused_and_get_xml_round_trip(self):
        self.start_daemon()
        client = self.client()
        guest = harness.TestGuest(self.scratch, "paused-start")
        path = self.define(client, guest)
        self.guest_call(client, path, "Start", {"start-paused": GLib.Variant("b", True)})
        self.assertEqual(self.state(client, path), "paused")
        self.assertEqual(guest.serial_text(), "")
        xml = client.call(path, GUEST_IFACE, "GetXML", "(a{sv})", ({},), "(s)")[0]
        self.assertIn("<name>paused-start</name>", xml)
        self.assertRegex(xml, r"machine=['\"]pc-i440fx-")
        # Redefining with what GetXML returned changes nothing.
        again = client.call(MANAGER_PATH, MANAGER_IFACE, "DefineGuest", "(sa{sv})", (xml, {}), "(o)")[0]
        self.assertEqual(again, path)
        self.assertEqual(client.call(path, GUEST_IFACE, "GetXML", "(a{sv})", ({},), "(s)")[0], xml)
        self.guest_call(client, path, "Destroy")

    def test_start_twice_is_invalid_state(self):
        self.start_daemon()
        client = self.client()
        path = self.define(client, harness.TestGuest(self.scratch, "twice"))
        self.guest_call(client, path, "Start")
        message = self.assertDBusError("org.migrationd.Error.InvalidState", self.guest_call, client, path, "Start")
        self.assertIn("already running", message)
        self.assertEqual(len(harness.qemu_pids_in(self.scratch.path)), 1)
        self.guest_call(client, path, "Destroy")
        self.assertDBusError("org.migrationd.Error.InvalidState", self.guest_call, client, path, "Destroy")
        self.assertDBusError("org.migrationd.Error.InvalidState", self.guest_call, client, path, "Pause")

    def test_ignored_acpi_shutdown_times_out_and_guest_keeps_running(self):
        self.start_daemon()
        client = self.client()
        guest = harness.TestGuest(self.scratch, "no-acpi")
        path = self.define(client, guest)
        self.guest_call(client, path, "Start")
        guest.wait_serial("MDGUEST READY")
        message = self.assertDBusError("org.migrationd.Error.Timeout", self.guest_call, client, path, "Shutdown",
                                       {"timeout": GLib.Variant("u", 2)})
        self.assertIn("keeps running", message)
        self.assertEqual(self.state(client, path), "running")
        self.assertEqual(len(harness.qemu_pids_in(self.scratch.path)), 1)
        length = len(guest.serial_text())
        guest.wait_serial(r"MDGUEST VERIFY pass=\d+ sum=[0-9a-f]+ ok", start=length)
        self.guest_call(client, path, "Destroy")

    def test_bad_options_are_named(self):
        self.start_daemon()
        client = self.client()
        path = self.define(client, harness.TestGuest(self.scratch, "opts"))
        message = self.assertDBusError("org.migrationd.Error.InvalidArgument", self.guest_call, client, path,
                                       "Start", {"start-pasued": GLib.Variant("b", True)})
        self.assertIn("start-pasued", message)
        message = self.assertDBusError("org.migrationd.Error.InvalidArgument", self.guest_call, client, path,
                                       "Start", {"start-paused": GLib.Variant("s", "yes")})
        self.assertIn("start-paused", message)
        self.assertEqual(self.state(client, path), "shut-off")
        self.assertEqual(harness.qemu_pids_in(self.scratch.path), [])

    def test_transient_guest_disappears_when_destroyed(self):
        daemon = self.start_daemon()
        client = self.client()
        guest = harness.TestGuest(self.scratch, "transient")
        path = client.call(MANAGER_PATH, MANAGER_IFACE, "CreateGuest", "(sa{sv})", (guest.xml, {}), "(o)")[0]
        self.assertEqual(self.state(client, path), "running")
        self.assertFalse(client.get_property(path, GUEST_IFACE, "Persistent"))
        self.assertFalse(os.path.exists(os.path.join(daemon.state_dir, "guests", "transient.xml")))
        # Undefining a running transient guest is refused.
        self.assertDBusError("org.migrationd.Error.InvalidState", self.guest_call, client, path, "Undefine")
        self.guest_call(client, path, "Destroy")
        guests = client.call(MANAGER_PATH, MANAGER_IFACE, "ListGuests", reply="(ao)")[0]
        self.assertNotIn(path, guests)
        self.assertEqual(harness.qemu_pids_in(self.scratch.path), [])

    def test_undefine_running_persistent_makes_it_transient(self):
        daemon = self.start_daemon()
        client = self.client()
        path = self.define(client, harness.TestGuest(self.scratch, "undef"))
        self.guest_call(client, path, "Start")
        self.guest_call(client, path, "Undefine")
        self.assertFalse(os.path.exists(os.path.join(daemon.state_dir, "guests", "undef.xml")))
        self.assertFalse(client.get_property(path, GUEST_IFACE, "Persistent"))
        self.assertEqual(self.state(client, path), "running")
        self.guest_call(client, path, "Destroy")
        self.assertNotIn(path, client.call(MANAGER_PATH, MANAGER_IFACE, "ListGuests", reply="(ao)")[0])

    def test_lookup_by_name_and_uuid(self):
        self.start_daemon()
        client = self.client()
        path = self.define(client, harness.TestGuest(self.scratch, "lookup"))
        uuid = client.get_property(path, GUEST_IFACE, "UUID")
        for key in ("lookup", uuid, uuid.upper()):
            self.assertEqual(client.call(MANAGER_PATH, MANAGER_IFACE, "LookupGuest", "(s)", (key,), "(o)")[0], path)


class Machined(GuestTestCase):
    """With systemd-machined on the bus (python-dbusmock standing in for
    it), every QEMU is handed over to it in a scope of its own; without it
    (every other test) guests run as before."""

    def start_mock_machined(self):
        log = open(self.scratch.join("machined-mock.log"), "w")
        self.addCleanup(log.close)
        proc = subprocess.Popen([sys.executable, "-m", "dbusmock", "--system", "org.freedesktop.machine1",
                                 "/org/freedesktop/machine1", "org.freedesktop.machine1.Manager"],
                                stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(proc.wait, 10)
        self.addCleanup(proc.terminate)
        harness.wait_until(lambda: self.bus.name_has_owner("org.freedesktop.machine1"), what="mock machined")
        self.mock_call("AddMethod", "(sssss)", ("org.freedesktop.machine1.Manager", "CreateMachine",
                                                  "sayssusa(sv)", "o",
                                                  'ret = dbus.ObjectPath("/org/freedesktop/machine1/machine/m")'))

    def mock_call(self, method, signature=None, args=None):
        return self.bus.connection.call_sync(
            "org.freedesktop.machine1", "/org/freedesktop/machine1", "org.freedesktop.DBus.Mock", method,
            GLib.Variant(signature, args) if signature else None, None, Gio.DBusCallFlags.NONE, 5000, None)

    def create_machine_calls(self):
        calls = self.mock_call("GetCalls").unpack()[0]
        return [args for _stamp, method, args in calls if method == "CreateMachine"]

    def test_qemu_registered_in_its_own_scope(self):
        self.start_mock_machined()
        self.start_daemon()
        client = self.client()
        guest = harness.TestGuest(self.scratch, "web.1_a+b", size_mib=4)
        path = self.define(client, guest)
        self.guest_call(client, path, "Start")
        calls = harness.wait_until(self.create_machine_calls, timeout=10, what="CreateMachine on machined")
        self.assertEqual(len(calls), 1, calls)
        name, machine_id, service, klass, leader, root, scope = calls[0]
        props = client.get_all(path, GUEST_IFACE)
        self.assertEqual((name, service, klass, leader, root), ("md-web-1-a-b", "migrationd", "vm", props["PID"], ""))
        self.assertEqual(bytes(machine_id).hex(), props["UUID"].replace("-", ""))
        self.assertIn(["Description", "migrationd guest web.1_a+b"], [list(p) for p in scope])
        # The guest's limits: its RAM (64 MiB) + [qemu] memory-overhead, tasks-max.
        self.assertIn(["MemoryMax", (64 + 1024) * 1024 * 1024], [list(p) for p in scope])
        self.assertIn(["TasksMax", 1024], [list(p) for p in scope])
        self.assertEqual(self.state(client, path), "running")


class Survival(GuestTestCase):

    def test_sigkill_daemon_restart_reattaches(self):
        daemon = self.start_daemon()
        client = self.client()
        guests = [harness.TestGuest(self.scratch, "survivor%d" % i, seed=i) for i in (1, 2)]
        paths = [self.define(client, g) for g in guests]
        for path in paths:
            self.guest_call(client, path, "Start")
        self.guest_call(client, paths[1], "Pause")
        self.wait_state(client, paths[1], "paused")
        pids = [client.get_property(p, GUEST_IFACE, "PID") for p in paths]

        daemon.proc.send_signal(signal.SIGKILL)
        daemon.proc.wait()
        daemon.log.close()
        # QEMU does not die with the daemon.
        self.assertEqual(sorted(harness.qemu_pids_in(self.scratch.path)), sorted(pids))
        length = len(guests[0].serial_text())
        guests[0].wait_serial(r"MDGUEST VERIFY pass=\d+ sum=[0-9a-f]+ ok", start=length)

        daemon.start()
        client = self.client()
        self.assertEqual(self.state(client, paths[0]), "running")
        self.assertEqual(self.state(client, paths[1]), "paused")
        self.assertEqual([client.get_property(p, GUEST_IFACE, "PID") for p in paths], pids)
        # Events still reach the new daemon, and control still works.
        self.guest_call(client, paths[1], "Resume")
        self.wait_state(client, paths[1], "running")
        for path in paths:
            self.guest_call(client, path, "Destroy")
            self.assertEqual(self.state(client, path), "shut-off")
        harness.wait_until(lambda: not harness.qemu_pids_in(self.scratch.path), what="QEMUs gone")

    def test_guest_that_died_while_daemon_was_down_is_shut_off(self):
        daemon = self.start_daemon()
        client = self.client()
        path = self.define(client, harness.TestGuest(self.scratch, "dies"))
        self.guest_call(client, path, "Start")
        pid = client.get_property(path, GUEST_IFACE, "PID")
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.proc.wait()
        daemon.log.close()
        os.kill(pid, signal.SIGKILL)
        harness.wait_until(lambda: not harness.qemu_pids_in(self.scratch.path), what="QEMU gone")
        daemon.start()
        client = self.client()
        self.assertEqual(self.state(client, path), "shut-off")
        self.assertEqual(client.get_property(path, GUEST_IFACE, "PID"), 0)
        self.assertEqual(os.listdir(daemon.runtime_dir), [])


    def test_stale_offline_copy_server_is_killed_at_start(self):
        """A qemu-storage-daemon of an offline copy interrupted by a daemon
        crash cannot be resumed; the next daemon removes it."""
        daemon = self.start_daemon()
        self.assertEqual(daemon.terminate(), 0)
        import subprocess
        qmp = os.path.join(daemon.runtime_dir, "migration-7-nbd.qmp")
        stale = subprocess.Popen(["qemu-storage-daemon", "--chardev",
                                  "socket,id=qmp,path=%s,server=on,wait=off" % qmp, "--monitor", "chardev=qmp"],
                                 start_new_session=True)
        self.addCleanup(lambda: stale.poll() is None and stale.kill())
        harness.wait_until(lambda: os.path.exists(qmp), what="the stale server's socket")
        daemon.start()
        stale.wait(30)
        self.assertIn("left by an offline disk copy", daemon.read_log())


class BadDefinitions(GuestTestCase):
    """Each bad definition: a named error, and nothing written."""

    def check_rejected(self, xml, error_name, *fragments):
        daemon = self.start_daemon()
        client = self.client()
        before = harness.snapshot(daemon.state_dir)
        message = self.assertDBusError(error_name, client.call, MANAGER_PATH, MANAGER_IFACE, "DefineGuest",
                                       "(sa{sv})", (xml, {}), "(o)")
        for fragment in fragments:
            self.assertIn(fragment, message)
        self.assertEqual(harness.snapshot(daemon.state_dir), before)
        self.assertEqual(client.call(MANAGER_PATH, MANAGER_IFACE, "ListGuests", reply="(ao)")[0], [])
        return message

    def good_xml(self, name="bad"):
        return harness.TestGuest(self.scratch, name).xml

    def test_malformed(self):
        self.check_rejected(self.good_xml().replace("</domain>", ""), "org.migrationd.Error.InvalidXML")

    def test_doctype_with_entity(self):
        xml = ('<?xml version="1.0"?>\n<!DOCTYPE domain [<!ENTITY a "aaaaaaaaaa">'
               '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>\n' +
               self.good_xml().replace("<vcpu>1</vcpu>", "<description>&b;</description><vcpu>1</vcpu>"))
        self.check_rejected(xml, "org.migrationd.Error.InvalidXML", "DOCTYPE")

    def test_unknown_element(self):
        xml = self.good_xml().replace("<vcpu>1</vcpu>", "<vcpu>1</vcpu>\n  <frobnicator/>")
        message = self.check_rejected(xml, "org.migrationd.Error.InvalidXML", "frobnicator")
        self.assertRegex(message, r"line \d+")

    def test_bad_memory_unit(self):
        xml = self.good_xml().replace("unit='MiB'", "unit='furlongs'")
        self.check_rejected(xml, "org.migrationd.Error.InvalidXML", "furlongs")

    def test_oversized_document(self):
        padding = "x" * (10 * 1024 * 1024)
        xml = self.good_xml().replace("<vcpu>1</vcpu>", "<description>%s</description><vcpu>1</vcpu>" % padding)
        self.check_rejected(xml, "org.migrationd.Error.InvalidArgument")

    def test_duplicate_name(self):
        daemon = self.start_daemon()
        client = self.client()
        first = harness.TestGuest(self.scratch, "dup")
        client.call(MANAGER_PATH, MANAGER_IFACE, "DefineGuest", "(sa{sv})", (first.xml, {}), "(o)")
        before = harness.snapshot(daemon.state_dir)
        # Same name, another UUID (none given: a new one is generated).
        message = self.assertDBusError("org.migrationd.Error.AlreadyExists", client.call, MANAGER_PATH,
                                       MANAGER_IFACE, "DefineGuest", "(sa{sv})", (first.xml, {}), "(o)")
        self.assertIn("dup", message)
        self.assertEqual(harness.snapshot(daemon.state_dir), before)
        self.assertEqual(len(client.call(MANAGER_PATH, MANAGER_IFACE, "ListGuests", reply="(ao)")[0]), 1)

    def test_unknown_option(self):
        self.start_daemon()
        client = self.client()
        message = self.assertDBusError("org.migrationd.Error.InvalidArgument", client.call, MANAGER_PATH,
                                       MANAGER_IFACE, "DefineGuest", "(sa{sv})",
                                       (self.good_xml(), {"persist": GLib.Variant("b", True)}), "(o)")
        self.assertIn("persist", message)


# Guest1 methods, their arguments, and whether the guest must run first.
GUEST_GATES = {
    "Start": ("(a{sv})", ({},), False),
    "Shutdown": ("(a{sv})", ({"timeout": GLib.Variant("u", 1)},), True),
    "Destroy": ("(a{sv})", ({},), True),
    "Pause": ("(a{sv})", ({},), True),
    "Resume": ("(a{sv})", ({},), True),
    "Reset": ("(a{sv})", ({},), True),
    "Undefine": ("(a{sv})", ({},), False),
    "Migrate": ("(sa{sv})", ("127.0.0.1:1", {}), True),  # nothing listens: refused at once
    "Save": ("(sa{sv})", ("/nonexistent/save.state", {}), True),
    "ManagedSave": ("(a{sv})", ({},), True),
    "Restore": ("(sa{sv})", ("/nonexistent/save.state", {}), False),
}


class GuestGate(GuestTestCase):
    """Denied: NotAuthorized and nothing changed. Allowed: through the gate."""

    def prepare(self, method):
        signature, args, running = GUEST_GATES[method]
        daemon = self.start_daemon()
        client = self.client()
        path = self.define(client, harness.TestGuest(self.scratch, "gate"))
        if running:
            self.guest_call(client, path, "Start")
            self.guest_call(client, path, "Pause")
            self.wait_state(client, path, "paused")
        return daemon, client, path, signature, args

    def observe(self, daemon, client, path):
        return (harness.snapshot(os.path.join(daemon.state_dir, "guests")),
                client.get_all(path, GUEST_IFACE),
                sorted(harness.qemu_pids_in(self.scratch.path)))

    def check_denied(self, method):
        daemon, client, path, signature, args = self.prepare(method)
        needed = "org.migrationd.migrate" if method == "Migrate" else "org.migrationd.guest.manage"
        self.polkitd.set_allowed([a for a in harness.ACTIONS if a != needed])
        before = self.observe(daemon, client, path)
        message = self.assertDBusError("org.migrationd.Error.NotAuthorized", client.call, path, GUEST_IFACE,
                                       method, signature, args)
        self.assertIn(needed, message)
        self.assertEqual(self.observe(daemon, client, path), before)

    def check_allowed(self, method):
        daemon, client, path, signature, args = self.prepare(method)
        needed = "org.migrationd.migrate" if method == "Migrate" else "org.migrationd.guest.manage"
        self.polkitd.set_allowed([needed])
        if method == "Resume":
            pass  # paused by prepare()
        try:
            client.call(path, GUEST_IFACE, method, signature, args)
        except GLib.Error as e:
            name = harness.dbus_error_name(e)
            self.assertFalse(name.startswith("org.migrationd.Error.NotAuthorized"), e.message)
            self.assertTrue(name.startswith("org.migrationd.Error."), name)


for _method in GUEST_GATES:
    setattr(GuestGate, "test_denied_%s" % _method, lambda self, m=_method: self.check_denied(m))
    setattr(GuestGate, "test_allowed_%s" % _method, lambda self, m=_method: self.check_allowed(m))


if __name__ == "__main__":
    harness.main()
