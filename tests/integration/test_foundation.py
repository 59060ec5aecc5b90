#!/usr/bin/python3
"""The daemon on a private system bus: API, identity, name ownership,
signals, command line, configuration and the polkit gate of Manager1."""

import os
import subprocess
import sys
import uuid

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import twohosts  # noqa: E402
from harness import MANAGER_IFACE, MANAGER_PATH, GLib  # noqa: E402

GUEST_XML = """<domain type='qemu'>
  <name>gate-test</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
</domain>"""




class Foundation(harness.MigrationdTestCase):

    def test_introspect_shows_manager_and_object_manager(self):
        self.start_daemon()
        out = subprocess.run(["gdbus", "introspect", "--system", "--dest", "org.migrationd",
                              "--object-path", "/org/migrationd"],
                             capture_output=True, text=True, check=True).stdout
        self.assertIn("interface org.migrationd.Manager1", out)
        self.assertIn("interface org.freedesktop.DBus.ObjectManager", out)
        self.assertIn("DefineGuest", out)
        client = self.client()
        objects = client.call(MANAGER_PATH, "org.freedesktop.DBus.ObjectManager",
                              "GetManagedObjects", reply="(a{oa{sa{sv}}})")[0]
        self.assertEqual(objects, {})  # no guests, no migrations yet

    def test_properties(self):
        daemon = self.start_daemon(name="hostA")
        client = self.client()
        props = client.get_all(MANAGER_PATH, MANAGER_IFACE)
        self.assertEqual(props["HostName"], "hostA")
        self.assertRegex(props["Version"], r"^\d+\.\d+\.\d+$")
        host_uuid = props["HostUUID"]
        self.assertEqual(str(uuid.UUID(host_uuid)), host_uuid)
        with open(os.path.join(daemon.state_dir, "host-uuid")) as f:
            self.assertEqual(f.read().strip(), host_uuid)
        caps = props["Capabilities"]
        for feature in ("live-migration", "offline-migration", "copy-storage", "postcopy"):
            self.assertIn(feature, caps)
        for transport in ("tls", "tcp", "multifd", "nbd"):
            self.assertIn("transport:" + transport, caps)
        # Every option Migrate accepts, and nothing it refuses.
        options = sorted(c[len("option:"):] for c in caps if c.startswith("option:"))
        self.assertEqual(options, sorted(k for k in twohosts.MIGRATE_OPTION_TYPES if not k.startswith("auth.")))

    def test_host_uuid_survives_restart(self):
        daemon = self.start_daemon()
        first = self.client().get_property(MANAGER_PATH, MANAGER_IFACE, "HostUUID")
        self.assertEqual(daemon.terminate(), 0)
        daemon.start()
        second = self.client().get_property(MANAGER_PATH, MANAGER_IFACE, "HostUUID")
        self.assertEqual(first, second)

    def test_second_instance_refused_without_replace(self):
        first = self.start_daemon(name="hostA")
        second = harness.Daemon(self.bus, self.scratch, name="hostA2", wait=False)
        self.addCleanup(second.kill)
        second.proc.wait(30)
        self.assertEqual(second.proc.returncode, 1)
        self.assertIn("--replace", second.read_log())
        # The first one still serves.
        self.assertEqual(self.bus.get_name_owner_pid("org.migrationd"), first.proc.pid)
        self.assertEqual(self.client().get_property(MANAGER_PATH, MANAGER_IFACE, "HostName"), "hostA")

    def test_replace_takes_over(self):
        first = self.start_daemon(name="hostA")
        second = self.start_daemon(name="hostB", extra_args=["--replace"])
        first.proc.wait(30)
        self.assertEqual(first.proc.returncode, 0)
        self.assertEqual(self.bus.get_name_owner_pid("org.migrationd"), second.proc.pid)
        self.assertEqual(self.client().get_property(MANAGER_PATH, MANAGER_IFACE, "HostName"), "hostB")

    def test_sigterm_exits_zero_and_frees_name(self):
        daemon = self.start_daemon()
        self.assertTrue(self.bus.name_has_owner("org.migrationd"))
        self.assertEqual(daemon.terminate(), 0)
        self.assertFalse(self.bus.name_has_owner("org.migrationd"))

    def run_daemon_expecting_failure(self, args, config=None):
        env = dict(os.environ)
        argv = [harness.DAEMON, "--state-dir", self.scratch.join("s"), "--runtime-dir",
                self.scratch.join("r")] + args
        if config is not None:
            path = self.scratch.join("bad.conf")
            with open(path, "w") as f:
                f.write(config)
            argv += ["--config", path]
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30)
        self.assertFalse(self.bus.name_has_owner("org.migrationd"))
        return proc

    def test_unknown_option(self):
        proc = self.run_daemon_expecting_failure(["--frobnicate"])
        self.assertEqual(proc.returncode, 2)
        lines = proc.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, proc.stderr)
        self.assertIn("--frobnicate", lines[0])

    def test_bad_config_unknown_key(self):
        proc = self.run_daemon_expecting_failure([], "[daemon]\npeer-prot=1\n")
        self.assertEqual(proc.returncode, 1)
        self.assertEqual(len(proc.stderr.strip().splitlines()), 1, proc.stderr)
        self.assertIn("unknown key 'peer-prot'", proc.stderr)

    def test_bad_config_value_out_of_range(self):
        proc = self.run_daemon_expecting_failure([], "[daemon]\npeer-port=70000\n")
        self.assertEqual(proc.returncode, 1)
        self.assertIn("peer-port", proc.stderr)
        self.assertIn("70000", proc.stderr)

    def test_bad_config_syntax(self):
        proc = self.run_daemon_expecting_failure([], "this is not a key file\n")
        self.assertEqual(proc.returncode, 1)
        self.assertIn("bad.conf", proc.stderr)

    def test_unreadable_config(self):
        proc = self.run_daemon_expecting_failure(["--config", self.scratch.join("missing.conf")])
        self.assertEqual(proc.returncode, 1)
        self.assertIn("missing.conf", proc.stderr)
        self.assertEqual(len(proc.stderr.strip().splitlines()), 1, proc.stderr)

    def test_open_methods_need_no_authorization(self):
        self.polkitd.set_allowed([])
        self.start_daemon()
        client = self.client()
        self.assertEqual(client.call(MANAGER_PATH, MANAGER_IFACE, "ListGuests", reply="(ao)"), ([],))
        self.assertEqual(client.call(MANAGER_PATH, MANAGER_IFACE, "ListMigrations", reply="(ao)"), ([],))
        self.assertEqual(client.call(MANAGER_PATH, MANAGER_IFACE, "ListPeers", reply="(a(sss))"), ([],))
        self.assertDBusError("org.migrationd.Error.NotFound", client.call, MANAGER_PATH, MANAGER_IFACE,
                             "LookupGuest", "(s)", ("nosuchguest",), "(o)")


# The changing Manager1 methods, their arguments and the action each needs.
MANAGER_GATES = {
    "DefineGuest": ("(sa{sv})", (GUEST_XML, {}), "org.migrationd.guest.manage"),
    "CreateGuest": ("(sa{sv})", (GUEST_XML, {}), "org.migrationd.guest.manage"),
    "AddPeer": ("(sssa{sv})", ("hostB", "192.0.2.2:49200", "CN=hostB", {}), "org.migrationd.peer.manage"),
    "RemovePeer": ("(s)", ("hostB",), "org.migrationd.peer.manage"),
    "Restore": ("(sa{sv})", ("/nonexistent/guest.save", {}), "org.migrationd.guest.manage"),
    # Nothing listens there: allowed, it fails with PeerFailed, nothing moved.
    "Evacuate": ("(asa{sv})", (["127.0.0.1:1"], {}), "org.migrationd.migrate"),
}


class ManagerGate(harness.MigrationdTestCase):
    """For each changing method: denied -> NotAuthorized and nothing
    changed; allowed (only its own action) -> passes the gate."""

    def state(self, daemon, client):
        guests = client.call(MANAGER_PATH, MANAGER_IFACE, "ListGuests", reply="(ao)")
        peers = client.call(MANAGER_PATH, MANAGER_IFACE, "ListPeers", reply="(a(sss))")
        return harness.snapshot(daemon.state_dir), harness.snapshot(daemon.runtime_dir), guests, peers

    def check_denied(self, method):
        signature, args, action = MANAGER_GATES[method]
        # Every action but the one needed.
        self.polkitd.set_allowed([a for a in harness.ACTIONS if a != action])
        daemon = self.start_daemon()
        client = self.client()
        before = self.state(daemon, client)
        message = self.assertDBusError("org.migrationd.Error.NotAuthorized", client.call, MANAGER_PATH,
                                       MANAGER_IFACE, method, signature, args)
        self.assertIn(action, message)
        self.assertEqual(self.state(daemon, client), before)

    def check_allowed(self, method):
        signature, args, action = MANAGER_GATES[method]
        self.polkitd.set_allowed([action])
        self.start_daemon()
        client = self.client()
        try:
            client.call(MANAGER_PATH, MANAGER_IFACE, method, signature, args)
        except GLib.Error as e:
            name = harness.dbus_error_name(e)
            self.assertFalse(name.startswith("org.migrationd.Error.NotAuthorized"), e.message)
            self.assertTrue(name.startswith("org.migrationd.Error."), name)


for _method in MANAGER_GATES:
    setattr(ManagerGate, "test_denied_%s" % _method, lambda self, m=_method: self.check_denied(m))
    setattr(ManagerGate, "test_allowed_%s" % _method, lambda self, m=_method: self.check_allowed(m))


class Peers(harness.MigrationdTestCase):
    """Trusted peers added over D-Bus: validated, persisted, removable."""

    def setUp(self):
        super().setUp()
        self.polkitd.set_allowed(harness.ACTIONS)

    def peers(self, client):
        return client.call(MANAGER_PATH, MANAGER_IFACE, "ListPeers", reply="(a(sss))")[0]

    def add(self, client, name, address, dn):
        return client.call(MANAGER_PATH, MANAGER_IFACE, "AddPeer", "(sssa{sv})", (name, address, dn, {}))

    def test_add_list_persist_remove(self):
        daemon = self.start_daemon(config="[daemon]\nhost-name=hostA\nlisten-address=\n"
                                          "[peer conf]\naddress=192.0.2.9\ndn=CN=conf,O=migrationd\n")
        client = self.client()
        self.add(client, "hostB", "192.0.2.2:49200", "CN=hostB,O=migrationd")
        expected = [("conf", "192.0.2.9", "CN=conf,O=migrationd"),
                    ("hostB", "192.0.2.2:49200", "CN=hostB,O=migrationd")]
        self.assertEqual(self.peers(client), expected)
        with open(os.path.join(daemon.state_dir, "peers.conf")) as f:
            self.assertIn("CN=hostB,O=migrationd", f.read())
        self.assertEqual(daemon.terminate(), 0)
        daemon.start()
        client = self.client()
        self.assertEqual(self.peers(client), expected)
        # A peer from the configuration file is not removable over D-Bus.
        message = self.assertDBusError("org.migrationd.Error.InvalidState", client.call, MANAGER_PATH,
                                       MANAGER_IFACE, "RemovePeer", "(s)", ("conf",))
        self.assertIn("migrationd.conf", message)
        client.call(MANAGER_PATH, MANAGER_IFACE, "RemovePeer", "(s)", ("hostB",))
        self.assertEqual(self.peers(client), expected[:1])
        self.assertDBusError("org.migrationd.Error.NotFound", client.call, MANAGER_PATH, MANAGER_IFACE,
                             "RemovePeer", "(s)", ("hostB",))

    def test_bad_peers_are_refused_and_change_nothing(self):
        daemon = self.start_daemon()
        client = self.client()
        self.add(client, "hostB", "192.0.2.2", "CN=hostB,O=migrationd")
        before = (self.peers(client), harness.snapshot(daemon.state_dir))
        cases = [
            (("bad name", "192.0.2.3", "CN=x"), "org.migrationd.Error.InvalidArgument", "bad name"),
            (("", "192.0.2.3", "CN=x"), "org.migrationd.Error.InvalidArgument", "name"),
            (("hostC", "192.0.2.3:99999", "CN=x"), "org.migrationd.Error.InvalidArgument", "99999"),
            (("hostC", "", "CN=x"), "org.migrationd.Error.InvalidArgument", "empty"),
            (("hostC", "192.0.2.3", "not a dn"), "org.migrationd.Error.InvalidArgument", "not a dn"),
            (("hostB", "192.0.2.3", "CN=hostC"), "org.migrationd.Error.AlreadyExists", "hostB"),
        ]
        for args, error, fragment in cases:
            with self.subTest(args=args):
                message = self.assertDBusError(error, self.add, client, *args)
                self.assertIn(fragment, message)
                self.assertEqual((self.peers(client), harness.snapshot(daemon.state_dir)), before)
        message = self.assertDBusError("org.migrationd.Error.InvalidArgument", client.call, MANAGER_PATH,
                                       MANAGER_IFACE, "AddPeer", "(sssa{sv})",
                                       ("hostC", "192.0.2.3", "CN=hostC", {"persist": GLib.Variant("b", True)}))
        self.assertIn("persist", message)
        self.assertEqual((self.peers(client), harness.snapshot(daemon.state_dir)), before)


class RealPolkit(harness.MigrationdTestCase):
    """The real polkitd: a rules file grants 'nobody' guest management and
    nothing to 'daemon'; root is always authorized."""

    polkit = "real"
    RULES = """polkit.addRule(function(action, subject) {
    if (action.id.indexOf("org.migrationd.") == 0 && subject.user == "nobody")
        return polkit.Result.YES;
});
"""
    CALLER = """
import sys
sys.path.insert(0, %(dir)r)
import harness
bus = type("B", (), {"address": %(address)r})()
client = harness.Client(bus)
try:
    client.call("/org/migrationd", "org.migrationd.Manager1", "DefineGuest", "(sa{sv})", (%(xml)r, {}))
    print("ok")
except harness.GLib.Error as e:
    print(harness.dbus_error_name(e))
"""

    def setUp(self):
        super().setUp()
        self.polkitd = harness.RealPolkit(self.bus, self.scratch, self.RULES)
        self.addCleanup(self.polkitd.stop)
        self.start_daemon()

    def call_as(self, user):
        code = self.CALLER % {"dir": harness.importable_copy(self.scratch),
                              "address": self.bus.address, "xml": GUEST_XML}
        argv = ["setpriv", "--reuid=" + user, "--regid=nogroup", "--clear-groups",
                sys.executable, "-c", code]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        return proc.stdout.strip()

    def test_rule_granted_user_passes_the_gate(self):
        result = self.call_as("nobody")
        self.assertFalse(result.startswith("org.migrationd.Error.NotAuthorized"), result)

    def test_other_user_is_denied(self):
        self.assertEqual(self.call_as("daemon"), "org.migrationd.Error.NotAuthorized")


if __name__ == "__main__":
    harness.main()
