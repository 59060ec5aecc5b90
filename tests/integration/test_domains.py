#!/usr/bin/python3
"""Bring your own guest: libvirt-written definitions (tests/domain/good,
the shapes virt-install and virsh dumpxml write) on the real daemon and
real QEMU (TCG): every problem named at once, define --check, [networks],
host-model expansion, graphics passwords kept out of argv and logs, the
guest agent socket, and start failures that lead with QEMU's own words."""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import GUEST_IFACE, MANAGER_IFACE, MANAGER_PATH  # noqa: E402

CORPUS = os.path.join(harness.SOURCE_ROOT, "tests", "domain")
DAEMON_CONFIG = "[daemon]\nhost-name=hostA\nlisten-address=\naccelerator=tcg\n"


def corpus_xml(scratch, name, sub="good"):
    """A corpus file with its host paths moved into @scratch: disk images
    made now (qcow2 ones over a raw backing file), serial logs there too."""
    with open(os.path.join(CORPUS, sub, name + ".xml")) as f:
        xml = f.read()

    def disk(match):
        quote, path = match.group(1), match.group(2)
        local = scratch.join(os.path.basename(path))
        if not os.path.exists(local):
            if path.endswith(".qcow2"):
                base = local + ".base"
                subprocess.run(["qemu-img", "create", "-q", "-f", "raw", base, "16M"], check=True)
                subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", base,
                                local, "16M"], check=True)
            else:
                subprocess.run(["qemu-img", "create", "-q", "-f", "raw", local, "16M"], check=True)
        return "file=%s%s%s" % (quote, local, quote)

    xml = re.sub(r"file=([\"'])(/var/lib/libvirt/images/[^\"']+)[\"']", disk, xml)
    xml = re.sub(r"path=([\"'])/var/log/guests/([^\"']+)[\"']",
                 lambda m: "path=%s%s%s" % (m.group(1), scratch.join(m.group(2)), m.group(1)), xml)
    # The emulator is this host's QEMU from [daemon] qemu-binary.
    return re.sub(r"\s*<emulator>[^<]*</emulator>", "", xml)


class DomainTestCase(harness.MigrationdTestCase):

    def setUp(self):
        super().setUp()
        self.polkitd.set_allowed(harness.ACTIONS)

    def define(self, client, xml, options=None):
        return client.call(MANAGER_PATH, MANAGER_IFACE, "DefineGuest", "(sa{sv})",
                           (xml, options or {}), "(o)")[0]

    def ctl(self, daemon, *args):
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.bus.address, LC_ALL="C.UTF-8")
        proc = subprocess.run([harness.CTL, "--system"] + list(args), env=env,
                              capture_output=True, text=True, timeout=60)
        return proc.returncode, proc.stdout, proc.stderr

    def defined(self, daemon):
        guests = os.path.join(daemon.state_dir, "guests")
        return sorted(os.listdir(guests)) if os.path.isdir(guests) else []


class AllProblems(DomainTestCase):

    def test_five_unsupported_elements_in_one_error(self):
        daemon = self.start_daemon()
        path = os.path.join(CORPUS, "bad", "five-unsupported.xml")
        rc, out, err = self.ctl(daemon, "define", "--check", path)
        self.assertNotEqual(rc, 0, out)
        with open(os.path.join(CORPUS, "bad", "five-unsupported.err")) as f:
            expected = [line for line in f.read().splitlines()[1:] if line]
        self.assertIn("domain XML has 5 problems", err)
        for line in expected:
            self.assertIn(line, err)
        self.assertEqual(self.defined(daemon), [])
        # The same file through DefineGuest: the same single error.
        with open(path) as f:
            message = self.assertDBusError("org.migrationd.Error.NotSupported", self.define,
                                           self.client(), f.read())
        self.assertEqual(len(re.findall(r"^  line \d+: ", message, re.M)), 5, message)
        self.assertEqual(self.defined(daemon), [])

    def test_check_defines_nothing(self):
        daemon = self.start_daemon()
        xml = corpus_xml(self.scratch, "vi-i440fx-ich6-user")
        path = self.scratch.join("legacy.xml")
        with open(path, "w") as f:
            f.write(xml)
        rc, out, err = self.ctl(daemon, "define", "--check", path)
        self.assertEqual((rc, out), (0, "%s: the definition is valid on this host\n" % path), err)
        self.assertEqual(self.defined(daemon), [])
        self.assertEqual(self.define(self.client(), xml, {"check-only": harness.GLib.Variant("b", True)}), "/")
        self.assertEqual(self.defined(daemon), [])
        self.assertEqual(self.client().call(MANAGER_PATH, MANAGER_IFACE, "ListGuests", None, None,
                                            "(ao)")[0], [])


class Networks(DomainTestCase):

    def test_network_without_mapping_is_refused_at_define(self):
        daemon = self.start_daemon()
        xml = corpus_xml(self.scratch, "vi-q35-headless-network")
        message = self.assertDBusError("org.migrationd.Error.NotSupported", self.define,
                                       self.client(), xml)
        self.assertIn("network 'default' is not mapped", message)
        self.assertIn('"default = BRIDGE" to the [networks] section', message)
        self.assertEqual(self.defined(daemon), [])

    def test_mapped_network_needs_its_bridge_here(self):
        daemon = self.start_daemon(config=DAEMON_CONFIG + "[networks]\ndefault = mdnobr%d\n"
                                   % (os.getpid() % 1000))
        xml = corpus_xml(self.scratch, "vi-q35-headless-network")
        message = self.assertDBusError("org.migrationd.Error.NotSupported", self.define,
                                       self.client(), xml)
        self.assertRegex(message, r"bridge 'mdnobr\d+' \(network 'default'\) does not exist")
        self.assertEqual(self.defined(daemon), [])

    def test_bridge_interface_needs_the_bridge(self):
        daemon = self.start_daemon()
        xml = corpus_xml(self.scratch, "vi-i440fx-vnc-bridge-usb2").replace("br0", "mdnobr0")
        message = self.assertDBusError("org.migrationd.Error.NotSupported", self.define,
                                       self.client(), xml)
        self.assertIn("bridge 'mdnobr0' does not exist on this host", message)
        self.assertEqual(self.defined(daemon), [])


class Cpu(DomainTestCase):

    def test_host_model_is_expanded_into_a_named_model(self):
        self.start_daemon()
        client = self.client()
        xml = corpus_xml(self.scratch, "vi-q35-spice-agent")
        # No bridge on a test host: user networking, the rest as written.
        xml = re.sub(r'<interface type="network">\s*<source network="default"/>',
                     '<interface type="user">', xml)
        self.assertIn('<cpu mode="host-model"/>', xml)
        path = self.define(client, xml)
        dumped = client.call(path, GUEST_IFACE, "GetXML", "(a{sv})", ({},), "(s)")[0]
        match = re.search(r"<cpu mode='custom'>\s*<model>([^<]+)</model>", dumped)
        self.assertIsNotNone(match, dumped)
        self.assertNotIn(match.group(1), ("host", "max", "base"))
        self.assertRegex(match.group(1), r"-v\d+$")
        self.assertNotIn("host-model", dumped)
        # What dumpxml shows defines again to the same guest.
        self.assertEqual(self.define(client, dumped), path)
        self.assertEqual(client.call(path, GUEST_IFACE, "GetXML", "(a{sv})", ({},), "(s)")[0],
                         dumped)
        # And runs, with SPICE on a port the daemon picked, the agent socket
        # and the sound card it asked for.
        client.call(path, GUEST_IFACE, "Start", "(a{sv})", ({},), timeout=120000)
        self.assertEqual(client.get_property(path, GUEST_IFACE, "State"), "running")
        pid = client.get_property(path, GUEST_IFACE, "PID")
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = f.read().split(b"\0")
        self.assertIn(b"-cpu", argv)
        self.assertTrue(argv[argv.index(b"-cpu") + 1].startswith(match.group(1).encode() + b","))
        self.assertTrue(any(a.startswith(b"port=59") for a in argv), argv)
        client.call(path, GUEST_IFACE, "Destroy", "(a{sv})", ({},))


class Secrets(DomainTestCase):

    def test_vnc_password_never_in_argv_or_log(self):
        daemon = self.start_daemon()
        client = self.client()
        password = "pw-%d-never-shown" % os.getpid()
        xml = corpus_xml(self.scratch, "vi-q35-usb2-virtio-video")
        xml = xml.replace('<graphics type="vnc" autoport="yes"/>',
                          '<graphics type="vnc" autoport="yes" passwd="%s"/>' % password)
        path = self.define(client, xml)
        client.call(path, GUEST_IFACE, "Start", "(a{sv})", ({},), timeout=120000)
        pid = client.get_property(path, GUEST_IFACE, "PID")
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmdline = f.read()
        self.assertNotIn(password.encode(), cmdline)
        self.assertIn(b"password-secret=graphics0-secret", cmdline)
        self.assertNotIn(password, daemon.read_log())
        # QEMU read the secret at start-up; the file is gone.
        self.assertEqual([f for f in os.listdir(daemon.runtime_dir) if f.endswith(".secret")], [])
        # The guest agent channel is a socket the daemon owns, QEMU listens.
        sock = os.path.join(daemon.runtime_dir, "ubuntu-usb2.channel0.sock")
        self.assertTrue(os.path.exists(sock), os.listdir(daemon.runtime_dir))
        client.call(path, GUEST_IFACE, "Destroy", "(a{sv})", ({},))
        harness.wait_until(lambda: not os.path.exists(sock), what="agent socket removal")


class StartFailure(DomainTestCase):

    def test_message_leads_with_qemu_and_shows_this_start_only(self):
        self.start_daemon()
        client = self.client()
        xml = corpus_xml(self.scratch, "vi-i440fx-ich6-user")
        # A raw file declared qcow2: QEMU refuses it at start.
        xml = xml.replace('<driver name="qemu" type="raw" cache="writeback" io="threads"/>',
                          '<driver name="qemu" type="qcow2"/>')
        path = self.define(client, xml)
        messages = []
        for _ in range(2):
            messages.append(self.assertDBusError("org.migrationd.Error.QemuFailed", client.call,
                                                 path, GUEST_IFACE, "Start", "(a{sv})", ({},)))
        for message in messages:
            first = message.splitlines()[0]
            self.assertRegex(first, r"starting guest legacy-ich6 failed: qemu-system-x86_64: "
                                    r"-blockdev .*qcow2", message)
            log = message.split("QEMU log of this start", 1)[1].splitlines()[1:]
            self.assertLessEqual(len(log), 20, message)
            self.assertNotIn("migrationd starting", message)
            self.assertNotIn("Connection reset by peer", first)
        # The second answer does not repeat the first start's log.
        stamp = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z", re.M)
        self.assertEqual(len(stamp.findall(messages[1])), len(stamp.findall(messages[0])))
        self.assertEqual(client.get_property(path, GUEST_IFACE, "State"), "shut-off")
        self.assertEqual(harness.qemu_pids_in(self.scratch.path), [])


class Corpus(DomainTestCase):
    """The files of tests/domain/good that need no bridge run on the daemon."""

    def run_corpus_guest(self, name):
        self.start_daemon()
        client = self.client()
        path = self.define(client, corpus_xml(self.scratch, name))
        client.call(path, GUEST_IFACE, "Start", "(a{sv})",
                    ({"start-paused": harness.GLib.Variant("b", True)},), timeout=120000)
        self.assertEqual(client.get_property(path, GUEST_IFACE, "State"), "paused")
        client.call(path, GUEST_IFACE, "Destroy", "(a{sv})", ({},))
        self.assertEqual(client.get_property(path, GUEST_IFACE, "State"), "shut-off")

    def test_i440fx_ich6_nec_xhci(self):
        self.run_corpus_guest("vi-i440fx-ich6-user")

    def test_q35_usb2_virtio_video(self):
        self.run_corpus_guest("vi-q35-usb2-virtio-video")


if __name__ == "__main__":
    harness.main()
