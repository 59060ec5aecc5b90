"""Two migrationd hosts on one machine, for live-migration tests.

Each host has its own private system bus (two daemons cannot share the
name org.migrationd on one bus), its own mock polkitd (allowing every
migrationd action), its own migrationd with state and runtime directories
under <scratch>/<host>/, and TLS material made at test time with
data/migrationd-tls-setup. As root, each daemon (and so its QEMU) runs in a
network namespace of its own joined to the other by a veth pair with
192.0.2.1/24 (hostA) and 192.0.2.2/24 (hostB), TEST-NET-1 only; the unix
bus sockets in the scratch directory are reachable from both namespaces.
Without root both hosts share 127.0.0.1 with distinct free ports.

Run with /usr/bin/python3, like harness.py.
"""

import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import unittest

import harness
from harness import GUEST_IFACE, MANAGER_IFACE, MANAGER_PATH, MIGRATION_IFACE, Gio, GLib

TLS_SETUP = os.path.join(harness.SOURCE_ROOT, "data", "migrationd-tls-setup")
HOSTS = ("hostA", "hostB")
NETNS_ADDRESSES = {"hostA": "192.0.2.1", "hostB": "192.0.2.2"}
PEER_PORT = 49200
# Distinct per host, so a listening port tells which host opened it.
NETNS_MIGRATION_PORTS = {"hostA": (49300, 49319), "hostB": (49400, 49419)}
TERMINAL_STATES = ("completed", "failed", "cancelled")

# The types of Guest1.Migrate() options (introspection/org.migrationd.Guest1.xml).
MIGRATE_OPTION_TYPES = {
    "live": "b", "offline": "b", "tls": "b", "bandwidth": "t", "max-downtime": "t",
    "auto-converge": "b", "postcopy": "b", "parallel-connections": "u", "compression": "s",
    "persist-destination": "b", "undefine-source": "b", "destination-xml": "s",
    "destination-name": "s", "migration-address": "s", "migration-port": "q",
    "paused-on-destination": "b", "abort-after": "u", "copy-storage": "s", "disks": "as",
    "nbd-port": "q", "nbd-address": "s", "verify": "b", "auth.no_user_interaction": "b",
    "reuse-existing-images": "b", "convergence": "s", "max-downtime-ceiling": "t",
    "postcopy-recovery-timeout": "u",
}


def is_root():
    return os.geteuid() == 0


def use_netns():
    """Network namespaces need root; MD_TEST_NO_NETNS=1 forces the
    127.0.0.1 fallback (for comparing the two)."""
    return os.geteuid() == 0 and os.environ.get("MD_TEST_NO_NETNS") != "1"


def run(argv, check=True):
    proc = subprocess.run(argv, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (" ".join(argv), proc.returncode,
                                                      proc.stderr.strip() or proc.stdout.strip()))
    return proc


def variant_options(options):
    """Python values -> a{sv} values, typed from MIGRATE_OPTION_TYPES; a
    GLib.Variant passes as is (to send a wrong type on purpose)."""
    result = {}
    for key, value in (options or {}).items():
        if isinstance(value, GLib.Variant):
            result[key] = value
        else:
            result[key] = GLib.Variant(MIGRATE_OPTION_TYPES[key], value)
    return result


def free_tcp_ports(count, address="127.0.0.1"):
    """@count consecutive ports free on @address now (a race is possible,
    but the ranges are random)."""
    for _ in range(200):
        base = 20000 + secrets.randbelow(20000)
        socks = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                s.bind((address, port))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no %d consecutive free ports on %s" % (count, address))


class HostDir:
    """What harness.Bus and harness.MockPolkit need of a scratch dir."""

    def __init__(self, path):
        self.path = path
        os.makedirs(path, exist_ok=True)
        os.chmod(path, 0o755)

    def join(self, *parts):
        return os.path.join(self.path, *parts)


class TLS:
    """migrationd-tls-setup run into a directory: host dirs and DNs."""

    def __init__(self, out, hosts, expired=False, ca_name=None):
        argv = [TLS_SETUP, "--out", out]
        if expired:
            argv.append("--expired")
        if ca_name:
            argv += ["--ca-name", ca_name]
        proc = run(argv + ["%s=%s" % (name, addr) for name, addr in hosts.items()])
        self.out = out
        self.dns = {}
        for name in hosts:
            match = re.search(r"to /etc/migrationd/tls/ on %s\b.*\n.*allowed-dns on the other hosts: (.*)"
                              % re.escape(name), proc.stdout)
            if match is None:
                raise AssertionError("migrationd-tls-setup printed no DN for %s:\n%s" % (name, proc.stdout))
            self.dns[name] = match.group(1).strip()

    def dir(self, name):
        return os.path.join(self.out, name)

    @classmethod
    def cached(cls, out, hosts):
        """The same PKI as TLS(out, hosts), copied from a cache in the build
        tree: made once per set of host addresses and version of
        migrationd-tls-setup, shared by the tests that need no PKI of
        their own (certtool costs seconds per test on a busy machine)."""
        with open(TLS_SETUP, "rb") as f:
            key = hashlib.sha256(f.read() + repr(sorted(hosts.items())).encode()).hexdigest()[:16]
        base = os.path.join(harness.BUILD_ROOT, "tests", "pki-cache")
        cache = os.path.join(base, key)
        os.makedirs(base, exist_ok=True)
        with open(cache + ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not os.path.exists(os.path.join(cache, "dns.json")):
                tmp = cache + ".tmp"
                shutil.rmtree(tmp, ignore_errors=True)
                made = cls(tmp, hosts)
                with open(os.path.join(tmp, "dns.json"), "w") as f:
                    json.dump(made.dns, f)
                shutil.rmtree(cache, ignore_errors=True)
                os.rename(tmp, cache)
        shutil.copytree(cache, out)
        self = cls.__new__(cls)
        self.out = out
        with open(os.path.join(out, "dns.json")) as f:
            self.dns = json.load(f)
        return self


class NetnsDaemon(harness.Daemon):
    """harness.Daemon, run inside a network namespace (QEMU inherits it)."""

    def __init__(self, *args, netns=None, **kwargs):
        self.netns = netns
        super().__init__(*args, **kwargs)

    def argv(self):
        argv = super().argv()
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns] + argv
        return argv

    def sigkill(self):
        """SIGKILL, as a crash: QEMU processes stay."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.log.close()

    def sigcont(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def is_stopped(self):
        """Stopped by a signal (state T in /proc)."""
        try:
            with open("/proc/%d/stat" % self.proc.pid) as f:
                return f.read().split(") ", 1)[1].startswith("T")
        except (FileNotFoundError, ProcessLookupError):
            return False

    def wait_fault_point(self, name, timeout=60, stopped=True):
        """Waits until the daemon reached fault point @name (armed with
        MD_TEST_STOP_AT) and, for the stop action, is stopped there."""
        marker = "fault point %s reached" % name

        def reached():
            if marker not in self.read_log():
                if self.proc.poll() is not None:
                    raise AssertionError("migrationd of %s exited (%s) before fault point %s:\n%s"
                                         % (self.name, self.proc.returncode, name, self.read_log()[-3000:]))
                return False
            return not stopped or self.is_stopped()
        harness.wait_until(reached, timeout=timeout, interval=0.05,
                           what="migrationd of %s at fault point %s" % (self.name, name))


class Watcher:
    """Collects, for one client connection, every Completed signal and the
    Progress values of PropertiesChanged of every Migration1 object; the
    subscriptions exist before Migrate() is called, so nothing is missed."""

    def __init__(self, client):
        self.client = client
        self.completed = {}  # path -> (success, name, message)
        self.progress = {}   # path -> [Progress values in order]
        self.changes = {}    # path -> [dict of changed properties]
        conn = client.connection
        self.ids = [
            conn.signal_subscribe(None, MIGRATION_IFACE, "Completed", None, None,
                                  Gio.DBusSignalFlags.NONE, self._on_completed),
            conn.signal_subscribe(None, "org.freedesktop.DBus.Properties", "PropertiesChanged", None,
                                  MIGRATION_IFACE, Gio.DBusSignalFlags.NONE, self._on_changed),
        ]

    def _on_completed(self, _conn, _sender, path, _iface, _signal, params):
        self.completed.setdefault(path, tuple(params.unpack()))

    def _on_changed(self, _conn, _sender, path, _iface, _signal, params):
        _iface_name, changed, _invalidated = params.unpack()
        self.changes.setdefault(path, []).append(changed)
        if "Progress" in changed:
            self.progress.setdefault(path, []).append(changed["Progress"])

    def pump(self, seconds=0.0):
        """Dispatches what arrived (for @seconds)."""
        context = GLib.MainContext.default()
        deadline = time.monotonic() + seconds
        while True:
            while context.iteration(False):
                pass
            if time.monotonic() >= deadline:
                return
            time.sleep(0.05)

    def close(self):
        for sid in self.ids:
            self.client.connection.signal_unsubscribe(sid)
        self.ids = []


class Host:
    """One host: bus, mock polkitd, TLS directory, migrationd."""

    def __init__(self, test, scratch, name, address, peer_port, ports, netns):
        self.test = test
        self.scratch = scratch
        self.name = name
        self.address = address
        self.peer_port = peer_port
        self.migration_ports = ports
        self.netns = netns
        self.dir = scratch.join(name)
        self.busdir = HostDir(scratch.join(name + "-bus"))
        self.bus = harness.Bus(self.busdir)
        test.addCleanup(self.bus.stop)
        # MockPolkit connects to DBUS_SYSTEM_BUS_ADDRESS, which Bus() just
        # set; TwoHosts waits for both mocks at once (polkit_ready()).
        self.polkitd = harness.MockPolkit(self.bus, self.busdir, wait=False)
        test.addCleanup(self.polkitd.stop)
        self.daemon = None
        self.tls_dir = None
        self.allowed_dns = []
        # Both "hosts" share this machine's files: test images live in the
        # scratch directory, which each host allows as an image directory.
        self.image_dirs = [scratch.path]
        self.storage_config = ""

    @property
    def peer_address(self):
        return "%s:%d" % (self.address, self.peer_port)

    def config(self, extra=""):
        return ("[daemon]\nhost-name=%s\nlisten-address=%s\npeer-port=%d\nmigration-port-min=%d\n"
                "migration-port-max=%d\nmigration-keep-seconds=600\naccelerator=tcg\n\n"
                "[tls]\ndirectory=%s\nallowed-dns=%s\nhandshake-timeout=15\n\n"
                "[storage]\nimage-dirs=%s\n%s\n%s"
                % (self.name, self.address, self.peer_port, self.migration_ports[0],
                   self.migration_ports[1], self.tls_dir, ";".join(self.allowed_dns),
                   ";".join(self.image_dirs), self.storage_config, extra))

    def polkit_ready(self):
        self.polkitd.wait()
        self.polkitd.set_allowed(harness.ACTIONS)

    def start_daemon(self, extra_config="", env=None, wait=True):
        self.daemon = NetnsDaemon(self.bus, self.scratch, name=self.name, config=self.config(extra_config),
                                  netns=self.netns, env=env, wait=wait)
        self.test.addCleanup(self.daemon.kill)
        return self.daemon

    @property
    def state_dir(self):
        return self.daemon.state_dir

    def definition_files(self):
        """Names of the guest definition files in the state directory."""
        try:
            return sorted(os.listdir(os.path.join(self.daemon.state_dir, "guests")))
        except FileNotFoundError:
            return []

    def has_definition(self, guest_name):
        return guest_name + ".xml" in self.definition_files()

    def qemu_pids(self):
        """This host's QEMUs: as root, those in this host's network
        namespace; without namespaces, those whose environment names this
        host's bus (inherited from its daemon)."""
        if self.netns:
            try:
                ns = os.stat("/run/netns/" + self.netns).st_ino
            except FileNotFoundError:
                return []
            pids = []
            for pid in harness.qemu_processes():
                try:
                    if os.stat("/proc/%d/ns/net" % pid).st_ino == ns:
                        pids.append(pid)
                except (FileNotFoundError, ProcessLookupError):
                    continue
            return sorted(pids)
        return sorted(pid for pid, (_cmdline, environ) in harness.qemu_processes().items()
                      if self.busdir.path + os.sep in environ)

    def run_in_netns(self, argv, **kwargs):
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns] + list(argv)
        return subprocess.run(argv, capture_output=True, text=True, **kwargs)

    def listening_ports(self):
        """TCP ports listening in this host's namespace (all of them
        without namespaces, where the host's ranges are distinct)."""
        proc = self.run_in_netns(["ss", "-ltnH"])
        if proc.returncode != 0:
            raise AssertionError("ss -ltn failed: " + proc.stderr)
        ports = set()
        for line in proc.stdout.splitlines():
            fields = line.split()
            if len(fields) >= 4:
                ports.add(int(fields[3].rsplit(":", 1)[1]))
        return ports

    def listening_migration_ports(self):
        low, high = self.migration_ports
        return sorted(p for p in self.listening_ports() if low <= p <= high)

    def log(self):
        return self.daemon.read_log() if self.daemon else ""

    def log_tail(self, lines=40):
        return "\n".join(self.log().splitlines()[-lines:])


class TwoHosts:
    """hostA (the source) and hostB (the destination), trusting each other.

    @tls: optional {host: directory} overriding the host's TLS directory;
    @allowed_dns: optional {host: [DN, ...]} overriding the allow-lists;
    @start: start both daemons now."""

    def __init__(self, test, scratch, tls=None, allowed_dns=None, start=True):
        self.test = test
        self.scratch = scratch
        self.netns = {}
        if use_netns():
            tag = secrets.token_hex(3)
            self.netns = {"hostA": "md-%s-a" % tag, "hostB": "md-%s-b" % tag}
            self._make_netns(tag)
            addresses = dict(NETNS_ADDRESSES)
            peer_ports = {name: PEER_PORT for name in HOSTS}
            ports = dict(NETNS_MIGRATION_PORTS)
        else:
            addresses = {name: "127.0.0.1" for name in HOSTS}
            base = free_tcp_ports(42)
            peer_ports = {"hostA": base, "hostB": base + 1}
            ports = {"hostA": (base + 2, base + 21), "hostB": (base + 22, base + 41)}
        self.addresses = addresses
        if use_netns():
            self.tls = TLS.cached(scratch.join("tls"), addresses)
        else:
            self.tls = TLS(scratch.join("tls"), addresses)  # random ports: nothing to share
        self.hosts = {}
        for name in HOSTS:
            host = Host(test, scratch, name, addresses[name], peer_ports[name], ports[name],
                        self.netns.get(name))
            host.tls_dir = self.tls.dir(name)
            other = "hostB" if name == "hostA" else "hostA"
            host.allowed_dns = [self.tls.dns[other]]
            if tls and name in tls:
                host.tls_dir = tls[name]
            if allowed_dns and name in allowed_dns:
                host.allowed_dns = list(allowed_dns[name])
            self.hosts[name] = host
        for host in self.hosts.values():
            host.polkit_ready()
        self.a = self.hosts["hostA"]
        self.b = self.hosts["hostB"]
        self.client_a = self._client(self.a)
        self.client_b = self._client(self.b)
        self.watchers = {}
        self.watcher_a = self.watcher(self.client_a)
        self.watcher_b = self.watcher(self.client_b)
        if start:
            self.start()

    def start(self, wait_peer=True, env=None, extra_config=None):
        """Starts both daemons; @env and @extra_config: {host name: value}."""
        # Destinations first, so the source finds them listening.
        order = [host for host in self.hosts.values() if host is not self.a] + [self.a]
        for host in order:
            host.start_daemon((extra_config or {}).get(host.name, ""), env=(env or {}).get(host.name),
                              wait=False)
        for host in order:
            host.daemon.wait_started()
        for host in self.hosts.values() if wait_peer else ():
            self.wait_peer_listener(host)

    def _client(self, host):
        client = harness.Client(host.bus)
        self.test.addCleanup(client.close)
        return client

    def client(self, host):
        return self._client(host)

    def watcher(self, client):
        if id(client) not in self.watchers:
            self.watchers[id(client)] = Watcher(client)
            self.test.addCleanup(self.watchers[id(client)].close)
        return self.watchers[id(client)]

    # -- network namespaces ------------------------------------------------

    def _make_netns(self, tag):
        na, nb = self.netns["hostA"], self.netns["hostB"]
        va, vb = "md%sa" % tag, "md%sb" % tag
        self.veth = {"hostA": va, "hostB": vb}
        run(["ip", "netns", "add", na])
        self.test.addCleanup(self._delete_netns, na)
        run(["ip", "netns", "add", nb])
        self.test.addCleanup(self._delete_netns, nb)
        self.test.addCleanup(harness.kill_qemus_in, self.scratch.path)
        run(["ip", "link", "add", va, "type", "veth", "peer", "name", vb])
        run(["ip", "link", "set", va, "netns", na])
        run(["ip", "link", "set", vb, "netns", nb])
        for ns, dev, addr in ((na, va, NETNS_ADDRESSES["hostA"]), (nb, vb, NETNS_ADDRESSES["hostB"])):
            run(["ip", "-n", ns, "addr", "add", addr + "/24", "dev", dev])
            # A loopback-sized MTU: with 1500 the per-packet cost on a
            # busy 2-core machine (TCG vCPUs) slows QEMU's stream a lot.
            run(["ip", "-n", ns, "link", "set", dev, "mtu", "65000", "up"])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])

    def link(self, up):
        """Cuts (@up False) or restores the network between the hosts:
        hostA's end of the veth pair goes down (both ends lose carrier);
        TCP connections stay open and resume when it comes back."""
        if not self.netns:
            raise AssertionError("cutting the link needs network namespaces (root)")
        run(["ip", "-n", self.netns["hostA"], "link", "set", self.veth["hostA"], "up" if up else "down"])

    def restart_daemon(self, host, env=None, extra_config=""):
        """Stops @host's daemon (SIGTERM) and starts it again with @env
        (e.g. MD_TEST_STOP_AT) and @extra_config."""
        host.daemon.terminate()
        host.start_daemon(extra_config, env=env)
        self.wait_peer_listener(host)

    def wait_peer_listener(self, host):
        address = harness.Client(host.bus)
        try:
            harness.wait_until(
                lambda: address.get_property(MANAGER_PATH, MANAGER_IFACE, "PeerAddress") != "",
                timeout=10, what="%s's peer listener (Manager1.PeerAddress)" % host.name)
        finally:
            address.close()

    @staticmethod
    def _delete_netns(name):
        # Runs after the daemons and QEMUs were killed (cleanups are LIFO);
        # deleting the namespace removes its end of the veth pair too.
        subprocess.run(["ip", "netns", "del", name], capture_output=True)

    # -- guests and migrations ---------------------------------------------

    def define(self, client, xml):
        return client.call(MANAGER_PATH, MANAGER_IFACE, "DefineGuest", "(sa{sv})", (xml, {}), "(o)")[0]

    def create(self, client, xml):
        return client.call(MANAGER_PATH, MANAGER_IFACE, "CreateGuest", "(sa{sv})", (xml, {}), "(o)")[0]

    def start_guest(self, client, path):
        client.call(path, GUEST_IFACE, "Start", "(a{sv})", ({},), timeout=120000)

    def define_and_start_on_a(self, guest):
        path = self.define(self.client_a, guest.xml)
        self.start_guest(self.client_a, path)
        return path

    def guest_state(self, client, name):
        """The guest's State on the client's host, or None when no such guest."""
        try:
            return client.get_property(harness.guest_path(name), GUEST_IFACE, "State")
        except GLib.Error as e:
            if harness.dbus_error_name(e) in ("org.freedesktop.DBus.Error.UnknownObject",
                                              "org.freedesktop.DBus.Error.UnknownMethod",
                                              "org.freedesktop.DBus.Error.InvalidArgs"):
                return None
            raise

    def guest_exists(self, client, name):
        paths = client.call(MANAGER_PATH, MANAGER_IFACE, "ListGuests", None, None, "(ao)")[0]
        return harness.guest_path(name) in paths

    def migrate(self, name, dest=None, options=None, client=None):
        """Guest1.Migrate of guest @name on hostA to @dest (hostB's peer
        address by default); returns the Migration1 path."""
        client = client or self.client_a
        self.watcher(client)
        dest = self.b.peer_address if dest is None else dest
        return client.call(harness.guest_path(name), GUEST_IFACE, "Migrate", "(sa{sv})",
                           (dest, variant_options(options)), "(o)")[0]

    def migration_props(self, client, path):
        return client.get_all(path, MIGRATION_IFACE)

    def wait_completed(self, client, path, timeout=90):
        """Waits for the end of migration @path seen by @client: the
        Completed signal, or a terminal State (polled, so a completion
        before the subscription is not missed; then the signal is given a
        second to arrive). Returns (success, error_name, error_message)."""
        watcher = self.watcher(client)
        deadline = time.monotonic() + timeout
        terminal_since = None
        # Cheap on the CPU: the QEMUs of timing-sensitive cases need it.
        while time.monotonic() < deadline:
            watcher.pump(0.5)
            if path in watcher.completed:
                return watcher.completed[path]
            try:
                props = client.get_all(path, MIGRATION_IFACE)
            except GLib.Error as e:
                raise AssertionError("migration %s vanished while waiting: %s" % (path, e.message))
            if props["State"] in TERMINAL_STATES:
                if terminal_since is None:
                    terminal_since = time.monotonic()
                elif time.monotonic() - terminal_since > 1.0:
                    return (props["State"] == "completed", props["ErrorName"], props["ErrorMessage"])
        raise AssertionError("migration %s did not end within %ds (state %s, phase %s)\n--- hostA log:\n%s"
                             "\n--- hostB log:\n%s"
                             % (path, timeout, self._prop(client, path, "State"),
                                self._prop(client, path, "Phase"), self.a.log_tail(), self.b.log_tail()))

    def _prop(self, client, path, name):
        try:
            return client.get_property(path, MIGRATION_IFACE, name)
        except GLib.Error as e:
            return "? (%s)" % e.message

    def wait_property(self, client, path, name, predicate, timeout=60, what=None):
        """Waits until Migration1 property @name of @path satisfies
        @predicate; returns its value."""
        watcher = self.watcher(client)
        result = []

        def check():
            watcher.pump(0)
            value = client.get_property(path, MIGRATION_IFACE, name)
            if predicate(value):
                result.append(value)
                return True
            return False
        harness.wait_until(check, timeout=timeout, interval=0.05, what=what or "Migration1.%s" % name)
        return result[0]

    def logs(self):
        return "--- hostA log:\n%s\n--- hostB log:\n%s" % (self.a.log_tail(60), self.b.log_tail(60))


class TwoHostsTestCase(unittest.TestCase):
    """Base: a scratch directory, two hosts; no QEMU outlives a test."""

    start_hosts = True

    def setUp(self):
        self.scratch = harness.Scratch()
        self.addCleanup(self.scratch.cleanup)
        self.addCleanup(harness.kill_qemus_in, self.scratch.path)
        if self.start_hosts:
            self.make_hosts()

    def make_hosts(self, **kwargs):
        hosts = TwoHosts(self, self.scratch, **kwargs)
        self.hosts = hosts
        self.a = hosts.a
        self.b = hosts.b
        self.client_a = hosts.client_a
        self.client_b = hosts.client_b
        return hosts

    def assertDBusError(self, name, func, *args, **kwargs):
        with self.assertRaises(GLib.Error) as ctx:
            func(*args, **kwargs)
        self.assertEqual(harness.dbus_error_name(ctx.exception), name, ctx.exception.message)
        return ctx.exception.message


# ---- three hosts ------------------------------------------------------------

THREE_HOSTS = ("hostA", "hostB", "hostC")
THREE_NETNS_ADDRESSES = {"hostA": "192.0.2.1", "hostB": "192.0.2.2", "hostC": "192.0.2.3"}
THREE_NETNS_MIGRATION_PORTS = {"hostA": (49300, 49319), "hostB": (49400, 49419),
                               "hostC": (49500, 49519)}


class ThreeHosts(TwoHosts):
    """hostA, hostB and hostC, each trusting the other two (evacuating A to
    B and C). As root each host has its own network namespace with a veth
    pair into a fourth namespace holding a bridge (192.0.2.1-3/24); without
    root all three share 127.0.0.1 with distinct free ports. The TwoHosts
    methods work unchanged (a: source, b: first destination); c and
    client_c are the third host."""

    def __init__(self, test, scratch, start=True):
        self.test = test
        self.scratch = scratch
        self.netns = {}
        if use_netns():
            tag = secrets.token_hex(3)
            self.netns = {name: "md-%s-%s" % (tag, name[-1].lower()) for name in THREE_HOSTS}
            self._make_bridged_netns(tag)
            addresses = dict(THREE_NETNS_ADDRESSES)
            peer_ports = {name: PEER_PORT for name in THREE_HOSTS}
            ports = dict(THREE_NETNS_MIGRATION_PORTS)
            self.tls = TLS.cached(scratch.join("tls"), addresses)
        else:
            addresses = {name: "127.0.0.1" for name in THREE_HOSTS}
            base = free_tcp_ports(63)
            peer_ports = {name: base + i for i, name in enumerate(THREE_HOSTS)}
            ports = {name: (base + 3 + 20 * i, base + 22 + 20 * i) for i, name in enumerate(THREE_HOSTS)}
            self.tls = TLS(scratch.join("tls"), addresses)
        self.addresses = addresses
        self.hosts = {}
        for name in THREE_HOSTS:
            host = Host(test, scratch, name, addresses[name], peer_ports[name], ports[name],
                        self.netns.get(name))
            host.tls_dir = self.tls.dir(name)
            host.allowed_dns = [self.tls.dns[other] for other in THREE_HOSTS if other != name]
            self.hosts[name] = host
        for host in self.hosts.values():
            host.polkit_ready()
        self.a, self.b, self.c = (self.hosts[name] for name in THREE_HOSTS)
        self.client_a = self._client(self.a)
        self.client_b = self._client(self.b)
        self.client_c = self._client(self.c)
        self.watchers = {}
        self.watcher_a = self.watcher(self.client_a)
        self.watcher_b = self.watcher(self.client_b)
        if start:
            self.start()

    def _make_bridged_netns(self, tag):
        switch = "md-%s-sw" % tag
        bridge = "md%sbr" % tag
        run(["ip", "netns", "add", switch])
        self.test.addCleanup(self._delete_netns, switch)
        self.test.addCleanup(harness.kill_qemus_in, self.scratch.path)
        run(["ip", "-n", switch, "link", "add", bridge, "type", "bridge"])
        run(["ip", "-n", switch, "link", "set", bridge, "up"])
        self.veth = {}
        for name in THREE_HOSTS:
            ns = self.netns[name]
            inner, outer = "md%s%s" % (tag, name[-1].lower()), "md%s%sx" % (tag, name[-1].lower())
            self.veth[name] = inner
            run(["ip", "netns", "add", ns])
            self.test.addCleanup(self._delete_netns, ns)
            run(["ip", "link", "add", inner, "type", "veth", "peer", "name", outer])
            run(["ip", "link", "set", inner, "netns", ns])
            run(["ip", "link", "set", outer, "netns", switch])
            run(["ip", "-n", switch, "link", "set", outer, "master", bridge])
            run(["ip", "-n", switch, "link", "set", outer, "mtu", "65000", "up"])
            run(["ip", "-n", ns, "addr", "add", THREE_NETNS_ADDRESSES[name] + "/24", "dev", inner])
            run(["ip", "-n", ns, "link", "set", inner, "mtu", "65000", "up"])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        run(["ip", "-n", switch, "link", "set", bridge, "mtu", "65000"])
