#!/usr/bin/python3
"""Corpus guests (tests/domain/good, as virt-install writes them) migrated
live between two hosts on real QEMU (TCG): the destination runs the same
devices (query-pci compared) with its own guest agent socket; and a
destination whose QEMU lacks the guest's CPU features refuses in Prepare,
naming them."""

import json
import os
import re
import socket
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import twohosts  # noqa: E402
from harness import GUEST_IFACE  # noqa: E402
from test_domains import corpus_xml  # noqa: E402


def query_pci(path):
    """query-pci through a second QMP monitor, without the daemon's help:
    [(bus, slot, function, vendor, device, qdev_id)] sorted."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(path)
    stream = sock.makefile("rw")
    try:
        def command(name):
            stream.write(json.dumps({"execute": name}) + "\n")
            stream.flush()
            while True:
                reply = json.loads(stream.readline())
                if "return" in reply or "error" in reply:
                    return reply
        json.loads(stream.readline())  # greeting
        command("qmp_capabilities")
        reply = command("query-pci")
    finally:
        stream.close()
        sock.close()
    devices = []

    def walk(bus):
        for dev in bus["devices"]:
            devices.append((bus["bus"], dev["slot"], dev["function"], dev["id"]["vendor"],
                            dev["id"]["device"], dev.get("qdev_id", "")))
            if "pci_bridge" in dev and "bus" in dev["pci_bridge"]:
                walk(dict(dev["pci_bridge"]["bus"], devices=dev["pci_bridge"].get("devices", [])))
    for bus in reply["return"]:
        walk(bus)
    return sorted(devices)


def user_network(xml):
    """Test hosts have no bridge: user networking, the rest as written."""
    xml = re.sub(r'<interface type="network">\s*<source network="default"/>',
                 '<interface type="user">', xml)
    return re.sub(r'<interface type="bridge">\s*<source bridge="[^"]+"/>',
                  '<interface type="user">', xml)


class CorpusMigration(twohosts.TwoHostsTestCase):

    start_hosts = False

    def setUp(self):
        super().setUp()
        self.qmp_dir = self.scratch.join("debug-qmp")
        os.makedirs(self.qmp_dir)
        os.environ["MIGRATIOND_DEBUG_QMP_DIR"] = self.qmp_dir
        self.make_hosts()

    def migrate_corpus_guest(self, corpus_name):
        xml = user_network(corpus_xml(self.scratch, corpus_name))
        name = re.search(r"<name>([^<]+)</name>", xml).group(1)
        path = self.hosts.define(self.client_a, xml)
        self.hosts.start_guest(self.client_a, path)
        self.assertEqual(self.hosts.guest_state(self.client_a, name), "running")
        before = query_pci(os.path.join(self.qmp_dir, "hostA-%s.qmp" % name))
        self.assertTrue(before)
        agent_a = os.path.join(self.a.daemon.runtime_dir, "%s.channel0.sock" % name)
        self.assertTrue(os.path.exists(agent_a))

        migration = self.hosts.migrate(name)
        success, error_name, message = self.hosts.wait_completed(self.client_a, migration, 120)
        self.assertTrue(success, "%s: %s\n%s" % (error_name, message, self.hosts.logs()))
        harness.wait_until(lambda: not self.a.qemu_pids(), timeout=20, what="hostA's QEMU to exit")
        self.assertEqual(self.hosts.guest_state(self.client_b, name), "running")
        self.assertEqual(len(self.b.qemu_pids()), 1)

        after = query_pci(os.path.join(self.qmp_dir, "hostB-%s.qmp" % name))
        self.assertEqual(after, before)
        # The agent socket moved with the guest: B's daemon owns one, A's is gone.
        self.assertTrue(os.path.exists(os.path.join(self.b.daemon.runtime_dir,
                                                    "%s.channel0.sock" % name)))
        harness.wait_until(lambda: not os.path.exists(agent_a), what="hostA's agent socket removal")
        # The definition B runs is the one A ran (the CPU too).
        xml_b = self.client_b.call(harness.guest_path(name), GUEST_IFACE, "GetXML", "(a{sv})",
                                   ({},), "(s)")[0]
        self.assertEqual(re.findall(r"<cpu.*?</cpu>|<cpu[^>]*/>", xml_b, re.S),
                         re.findall(r"<cpu.*?</cpu>|<cpu[^>]*/>",
                                    self.client_a.call(path, GUEST_IFACE, "GetXML", "(a{sv})",
                                                       ({},), "(s)")[0], re.S))
        return before

    def test_q35_spice_agent_guest(self):
        devices = self.migrate_corpus_guest("vi-q35-spice-agent")
        # qxl, ich9 sound, xhci, virtio-serial, root ports... all on B too.
        self.assertGreaterEqual(len(devices), 10)

    def test_i440fx_vnc_usb2_guest(self):
        devices = self.migrate_corpus_guest("vi-i440fx-vnc-bridge-usb2")
        self.assertIn(0x8086, [d[3] for d in devices])


class CpuPrepare(twohosts.TwoHostsTestCase):

    def test_destination_lacking_features_refuses_in_prepare(self):
        xml = user_network(corpus_xml(self.scratch, "vi-q35-spice-agent"))
        path = self.hosts.define(self.client_a, xml)
        dumped = self.client_a.call(path, GUEST_IFACE, "GetXML", "(a{sv})", ({},), "(s)")[0]
        model = re.search(r"<cpu mode='custom'>\s*<model>([^<]+)</model>", dumped).group(1)
        features = re.findall(r"<feature policy='require' name='([^']+)'/>", dumped)
        self.assertTrue(features, dumped)
        # B's QEMU stands for an older one: the model, none of the extra features.
        self.b.daemon.terminate()
        self.b.start_daemon(extra_config="\n[daemon]\ncpu-model-allow=%s\n" % model)
        harness.wait_until(lambda: self.client_b.get_property(
            harness.MANAGER_PATH, harness.MANAGER_IFACE, "PeerAddress") != "",
            timeout=10, what="hostB's peer listener")
        self.hosts.start_guest(self.client_a, path)
        migration = self.hosts.migrate("fedora-spice")
        success, error_name, message = self.hosts.wait_completed(self.client_a, migration, 90)
        self.assertFalse(success)
        # Where it failed, said once (the peer's refusal already names it).
        self.assertEqual(message.count("host hostB, phase prepare"), 1, message)
        self.assertIn("CPU features this host's QEMU (tcg) cannot give the guest: ", message)
        for feature in features[:3]:
            self.assertIn(feature, message)
        # Nothing moved: the guest runs on A, nothing is left on B.
        self.assertEqual(self.hosts.guest_state(self.client_a, "fedora-spice"), "running")
        self.assertEqual(self.b.qemu_pids(), [])


if __name__ == "__main__":
    harness.main()
