"""Integration test harness: a private system bus (real dbus-daemon), a
polkit daemon (python-dbusmock's polkitd template, or the real polkitd),
and migrationd from the build tree, driven as a client would drive it.

Run with /usr/bin/python3 (Debian's gi and dbusmock). Environment from
meson: MD_BUILD_ROOT, MD_SOURCE_ROOT; VALGRIND=1 runs the daemon under
valgrind and fails the test on a valgrind error.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import gi

gi.require_version("Gio", "2.0")
gi.require_version("GLib", "2.0")
from gi.repository import Gio, GLib  # noqa: E402

BUILD_ROOT = os.environ.get("MD_BUILD_ROOT", os.path.join(os.path.dirname(__file__), "../../build"))
SOURCE_ROOT = os.environ.get("MD_SOURCE_ROOT", os.path.join(os.path.dirname(__file__), "../.."))
DAEMON = os.path.join(BUILD_ROOT, "src", "migrationd")
CTL = os.path.join(BUILD_ROOT, "src", "migrationctl")
BUS_NAME = "org.migrationd"
MANAGER_PATH = "/org/migrationd"
MANAGER_IFACE = "org.migrationd.Manager1"
GUEST_IFACE = "org.migrationd.Guest1"
MIGRATION_IFACE = "org.migrationd.Migration1"

ACTIONS = [
    "org.migrationd.guest.manage",
    "org.migrationd.migrate",
    "org.migrationd.migration.control-own",
    "org.migrationd.migration.control-other",
    "org.migrationd.migration.resolve",
    "org.migrationd.peer.manage",
]

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus"/>
  </policy>
  {includes}
</busconfig>
"""


def wait_until(predicate, timeout=30.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out after %.0fs waiting for %s" % (timeout, what))


def snapshot(directory):
    """Every file under @directory with its content, to show that nothing
    changed."""
    result = {}
    for root, _dirs, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                result[os.path.relpath(path, directory)] = f.read()
    return result


class Scratch:
    """A scratch directory of the test's own, removed at the end."""

    def __init__(self, prefix="md-test-"):
        self.path = tempfile.mkdtemp(prefix=prefix)
        # World-readable so a test client running as another uid can reach
        # the bus socket inside it.
        os.chmod(self.path, 0o755)

    def join(self, *parts):
        return os.path.join(self.path, *parts)

    def cleanup(self):
        shutil.rmtree(self.path, ignore_errors=True)


def importable_copy(scratch):
    """A directory another user (nobody) can import harness from: the
    clone may live where only root can read (a 0700 /root), so copy this
    module into the world-readable scratch directory. Returns the dir."""
    directory = scratch.join("pylib")
    os.makedirs(directory, exist_ok=True)
    os.chmod(directory, 0o755)
    target = os.path.join(directory, "harness.py")
    shutil.copyfile(os.path.abspath(__file__), target)
    os.chmod(target, 0o644)
    return directory


class Bus:
    """A private dbus-daemon configured as a system bus."""

    def __init__(self, scratch, include_policy=True):
        self.socket = scratch.join("system_bus_socket")
        includes = ""
        if include_policy:
            includes = "<include>%s</include>" % os.path.join(SOURCE_ROOT, "data", "org.migrationd.conf")
        config = scratch.join("bus.conf")
        with open(config, "w") as f:
            f.write(BUS_CONFIG.format(socket=self.socket, includes=includes))
        self.proc = subprocess.Popen(
            ["dbus-daemon", "--nofork", "--config-file=" + config, "--print-address=1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.address = self.proc.stdout.readline().strip()
        if not self.address:
            raise RuntimeError("dbus-daemon did not start: " + self.proc.stderr.read())
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = self.address
        self.connection = Gio.DBusConnection.new_for_address_sync(
            self.address,
            Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION,
            None, None)

    def name_has_owner(self, name):
        reply = self.connection.call_sync(
            "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
            "NameHasOwner", GLib.Variant("(s)", (name,)), GLib.VariantType("(b)"),
            Gio.DBusCallFlags.NONE, 5000, None)
        return reply.unpack()[0]

    def get_name_owner_pid(self, name):
        reply = self.connection.call_sync(
            "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
            "GetConnectionUnixProcessID", GLib.Variant("(s)", (name,)), GLib.VariantType("(u)"),
            Gio.DBusCallFlags.NONE, 5000, None)
        return reply.unpack()[0]

    def stop(self):
        if self.connection is not None:
            self.connection.close_sync(None)
            self.connection = None
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc.stdout.close()
        self.proc.stderr.close()


class MockPolkit:
    """python-dbusmock's polkitd template: allows exactly the actions set.
    @wait False: the caller calls wait() (to start several at once)."""

    def __init__(self, bus, scratch, wait=True):
        self.log = open(scratch.join("polkit-mock.log"), "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dbusmock", "--system", "--template", "polkitd"],
            stdout=self.log, stderr=subprocess.STDOUT, env=dict(os.environ))
        self.bus = bus
        if wait:
            self.wait()

    def wait(self):
        wait_until(lambda: self.bus.name_has_owner("org.freedesktop.PolicyKit1"), what="mock polkitd")

    def set_allowed(self, actions):
        self.bus.connection.call_sync(
            "org.freedesktop.PolicyKit1", "/org/freedesktop/PolicyKit1/Authority",
            "org.freedesktop.DBus.Mock", "SetAllowed", GLib.Variant("(as)", (list(actions),)),
            None, Gio.DBusCallFlags.NONE, 5000, None)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.log.close()


class RealPolkit:
    """The real polkitd on the private bus. Root is always authorized; for
    other users the rules file decides (there are no login sessions here).
    polkitd reads actions and rules only from the system directories, so
    the test installs the policy and a rules file there and removes them."""

    ACTIONS_DIR = "/usr/share/polkit-1/actions"
    RULES_DIR = "/etc/polkit-1/rules.d"
    POLKITD = "/usr/lib/polkit-1/polkitd"

    def __init__(self, bus, scratch, rules):
        self.installed = []
        policy = os.path.join(BUILD_ROOT, "polkit", "org.migrationd.policy")
        if not os.path.exists(policy):
            raise AssertionError("built polkit policy missing: " + policy)
        dest = os.path.join(self.ACTIONS_DIR, "org.migrationd.policy")
        if not os.path.exists(dest):
            shutil.copy(policy, dest)
            self.installed.append(dest)
        os.makedirs(self.RULES_DIR, exist_ok=True)
        rules_path = os.path.join(self.RULES_DIR, "49-migrationd-test-%d.rules" % os.getpid())
        with open(rules_path, "w") as f:
            f.write(rules)
        self.installed.append(rules_path)
        self.log = open(scratch.join("polkitd.log"), "w")
        self.proc = subprocess.Popen([self.POLKITD, "--no-debug"], stdout=self.log,
                                     stderr=subprocess.STDOUT, env=dict(os.environ))
        wait_until(lambda: bus.name_has_owner("org.freedesktop.PolicyKit1"), what="polkitd")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.log.close()
        for path in self.installed:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


class Daemon:
    """migrationd from the build tree, with its own state, runtime and
    configuration, talking to the private bus."""

    def __init__(self, bus, scratch, name="hostA", config=None, extra_args=(), wait=True, env=None):
        self.bus = bus
        # Extra environment, e.g. the test-only MD_TEST_STOP_AT fault
        # points (docs/HACKING.md).
        self.env = dict(env or {})
        self.name = name
        self.dir = scratch.join(name)
        self.state_dir = os.path.join(self.dir, "state")
        self.runtime_dir = os.path.join(self.dir, "run")
        os.makedirs(self.state_dir, exist_ok=True)
        os.makedirs(self.runtime_dir, exist_ok=True)
        self.config_path = os.path.join(self.dir, "migrationd.conf")
        if config is None:
            config = "[daemon]\nhost-name=%s\nlisten-address=\naccelerator=tcg\n" % name
        with open(self.config_path, "w") as f:
            f.write(config)
        self.log_path = os.path.join(self.dir, "migrationd.log")
        self.valgrind_log = os.path.join(self.dir, "valgrind.log")
        self.extra_args = list(extra_args)
        self.proc = None
        self.start(wait=wait)

    def argv(self):
        argv = [DAEMON, "--config", self.config_path, "--state-dir", self.state_dir,
                "--runtime-dir", self.runtime_dir, "--verbose"] + self.extra_args
        if os.environ.get("VALGRIND") == "1":
            argv = ["valgrind", "--error-exitcode=99", "--leak-check=full",
                    "--errors-for-leak-kinds=definite", "--track-fds=no",
                    "--suppressions=" + os.path.join(SOURCE_ROOT, "tests", "valgrind.supp"),
                    "--log-file=" + self.valgrind_log] + argv
        return argv

    def start(self, wait=True):
        env = dict(os.environ)
        env["G_DEBUG"] = "fatal-criticals"
        env["DBUS_SYSTEM_BUS_ADDRESS"] = self.bus.address
        env.update(self.env)
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen(self.argv(), stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True)
        if wait:
            self.wait_started()

    def wait_started(self):
        """Until the daemon owns its bus name (it exited: an error)."""
        timeout = 120 if os.environ.get("VALGRIND") == "1" else 30
        wait_until(lambda: self._owns_name() or self.proc.poll() is not None,
                   timeout=timeout, what="migrationd to own " + BUS_NAME)
        if self.proc.poll() is not None:
            raise AssertionError("migrationd exited with %d:\n%s" % (self.proc.returncode, self.read_log()))

    def _owns_name(self):
        if not self.bus.name_has_owner(BUS_NAME):
            return False
        return self.bus.get_name_owner_pid(BUS_NAME) == self.pid_of_daemon()

    def pid_of_daemon(self):
        return self.proc.pid

    def read_log(self):
        with open(self.log_path) as f:
            return f.read()

    def terminate(self, timeout=30):
        """SIGTERM; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("migrationd did not exit within %ds of SIGTERM" % timeout)
        self.log.close()
        self.check_valgrind()
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def check_valgrind(self):
        if os.environ.get("VALGRIND") == "1" and self.proc.returncode == 99:
            with open(self.valgrind_log) as f:
                raise AssertionError("valgrind found errors in migrationd:\n" + f.read())


class Client:
    """A D-Bus client of the daemon on its own connection (its own unique
    name, as a separate program would have)."""

    def __init__(self, bus):
        self.connection = Gio.DBusConnection.new_for_address_sync(
            bus.address,
            Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION,
            None, None)

    def call(self, path, iface, method, signature=None, args=None, reply=None, timeout=60000,
             interactive=False):
        params = GLib.Variant(signature, args) if signature else None
        flags = Gio.DBusCallFlags.ALLOW_INTERACTIVE_AUTHORIZATION if interactive else Gio.DBusCallFlags.NONE
        result = self.connection.call_sync(BUS_NAME, path, iface, method, params,
                                           GLib.VariantType(reply) if reply else None,
                                           flags, timeout, None)
        return result.unpack() if result is not None else None

    def get_property(self, path, iface, name):
        return self.call(path, "org.freedesktop.DBus.Properties", "Get", "(ss)", (iface, name), "(v)")[0]

    def get_all(self, path, iface):
        return self.call(path, "org.freedesktop.DBus.Properties", "GetAll", "(s)", (iface,), "(a{sv})")[0]

    def close(self):
        self.connection.close_sync(None)


def dbus_error_name(error):
    """The remote D-Bus error name of a GLib.Error raised by a call."""
    return Gio.DBusError.get_remote_error(error)


class MigrationdTestCase(unittest.TestCase):
    """Base: a scratch directory, a private bus and the mock polkitd."""

    polkit = "mock"

    def setUp(self):
        self.scratch = Scratch()
        self.addCleanup(self.scratch.cleanup)
        # Runs before the scratch removal: no QEMU may outlive a test.
        self.addCleanup(kill_qemus_in, self.scratch.path)
        self.bus = Bus(self.scratch)
        self.addCleanup(self.bus.stop)
        if self.polkit == "mock":
            self.polkitd = MockPolkit(self.bus, self.scratch)
            self.addCleanup(self.polkitd.stop)

    def start_daemon(self, **kwargs):
        daemon = Daemon(self.bus, self.scratch, **kwargs)
        self.addCleanup(daemon.kill)
        return daemon

    def client(self):
        client = Client(self.bus)
        self.addCleanup(client.close)
        return client

    def assertDBusError(self, name, func, *args, **kwargs):
        with self.assertRaises(GLib.Error) as ctx:
            func(*args, **kwargs)
        self.assertEqual(dbus_error_name(ctx.exception), name, ctx.exception.message)
        return ctx.exception.message


def main():
    """Run one named case (meson registers one test per case) or all; a
    skipped test is a failure."""
    loader = unittest.TestLoader()
    module = sys.modules["__main__"]
    if sys.argv[1:] == ["--list"]:
        # meson asks at configure time, to register one test per case.
        def walk(suite):
            for item in suite:
                if isinstance(item, unittest.TestSuite):
                    yield from walk(item)
                else:
                    yield item.id().split(".", 1)[1]
        print("\n".join(walk(loader.loadTestsFromModule(module))))
        sys.exit(0)
    if len(sys.argv) > 1:
        suite = unittest.TestSuite()
        for name in sys.argv[1:]:
            suite.addTests(loader.loadTestsFromName(name, module))
    else:
        suite = loader.loadTestsFromModule(module)
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    if result.skipped:
        print("skipped tests count as failures: %s" % [str(t) for t, _ in result.skipped])
        sys.exit(1)
    if result.testsRun == 0:
        print("no test ran")
        sys.exit(1)
    sys.exit(0 if result.wasSuccessful() else 1)


# ---- guests -----------------------------------------------------------------

TESTGUEST_IMG = os.environ.get("MD_TESTGUEST_IMG", os.path.join(BUILD_ROOT, "tests", "guest", "testguest.img"))
MKGUEST = os.path.join(SOURCE_ROOT, "tests", "guest", "mkguest.py")

GUEST_XML = """<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{memory}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <boot dev='hd'/>
  </os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{image}'/>
      <target dev='hda' bus='ide'/>
    </disk>
    <serial type='file'>
      <source path='{serial}'/>
      <target port='0'/>
    </serial>
  </devices>
</domain>
"""


def make_guest_image(path, mode="fill", size_mib=16, seed=1, start_mib=2, pace=0):
    subprocess.run([sys.executable, MKGUEST, "--base", TESTGUEST_IMG, "--out", path, "--mode", mode,
                    "--size-mib", str(size_mib), "--start-mib", str(start_mib), "--seed", str(seed),
                    "--pace", str(pace)],
                   check=True)
    return path


def expected_sum(size_mib, seed, start_mib=2):
    out = subprocess.run([sys.executable, MKGUEST, "--print-sum", "--seed", str(seed), "--start-mib",
                          str(start_mib), "--size-mib", str(size_mib)],
                         check=True, capture_output=True, text=True).stdout
    return out.strip().split()[-1].lower()


class TestGuest:
    """A test guest's files in the scratch directory and its definition."""

    def __init__(self, scratch, name, mode="fill", size_mib=16, seed=1, memory=64, pace=0):
        self.name = name
        self.image = make_guest_image(scratch.join(name + ".img"), mode, size_mib, seed, pace=pace)
        self.serial = scratch.join(name + "-serial.log")
        self.size_mib = size_mib
        self.seed = seed
        self.xml = GUEST_XML.format(name=name, memory=memory, image=self.image, serial=self.serial)

    def serial_text(self):
        try:
            with open(self.serial, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_serial(self, pattern, timeout=60, start=0):
        """Waits for a line matching @pattern after character @start of the
        serial log; returns the match."""
        import re
        regex = re.compile(pattern)
        return wait_until(lambda: regex.search(self.serial_text(), start), timeout=timeout,
                          what="serial output /%s/ of %s" % (pattern, self.name))


def qemu_processes():
    """{pid: (command line, environment)} of every live qemu-system process."""
    result = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                cmdline = f.read().decode(errors="replace")
            if "qemu-system" not in cmdline:
                continue
            with open("/proc/%s/stat" % entry) as f:
                if f.read().split(") ", 1)[1].startswith("Z"):
                    continue
            with open("/proc/%s/environ" % entry, "rb") as f:
                environ = f.read().decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError, IndexError, PermissionError):
            continue
        result[int(entry)] = (cmdline, environ)
    return result


def qemu_pids_in(directory):
    """PIDs of QEMU processes whose command line or environment mentions
    @directory (each test's scratch directory is its own, so parallel tests
    do not mix). The environment counts because the QMP socket is now a
    passed fd: a guest without disks has no scratch path on its command
    line, but it inherits its daemon's DBUS_SYSTEM_BUS_ADDRESS, a socket
    in the scratch directory."""
    return sorted(pid for pid, (cmdline, environ) in qemu_processes().items()
                  if directory in cmdline or directory in environ)


def storage_daemon_pids(directory):
    """PIDs of qemu-storage-daemon processes whose command line mentions
    @directory (a test's scratch directory)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/cmdline" % entry, "rb") as f:
                    cmdline = f.read().decode(errors="replace")
            except OSError:
                continue
            if "qemu-storage-daemon" in cmdline and directory in cmdline:
                pids.append(int(entry))
    return pids


def kill_qemus_in(directory):
    for pid in qemu_pids_in(directory):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def guest_path(name):
    return "/org/migrationd/guest/" + "".join(
        c if c.isalnum() else "_%02x" % ord(c) for c in name)
