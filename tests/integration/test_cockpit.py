#!/usr/bin/python3
"""The Cockpit page (cockpit/) in a real browser: Debian's cockpit-ws and
bridge on hostA's private system bus, a test user logging in through
Cockpit's login page and PAM, headless Chromium driven over the DevTools
protocol. The page migrates a guest to hostB and follows it to 100 %,
then cancels a second migration; a screenshot of the page mid-migration
is saved under the build directory (cockpit-screenshot.png)."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import browser  # noqa: E402
import harness  # noqa: E402
import twohosts  # noqa: E402
from harness import MANAGER_IFACE, MANAGER_PATH, MIGRATION_IFACE  # noqa: E402

PACKAGE = os.path.join(harness.SOURCE_ROOT, "cockpit")
SCREENSHOT = os.path.join(harness.BUILD_ROOT, "cockpit-screenshot.png")
MiB = 1024 * 1024

# Records every text the progress labels and facts of the page show, so the
# test sees what a user saw, not only the end state.
RECORDER = """
window.mdSeen = [];
new MutationObserver(() => {
  for (const card of document.querySelectorAll('#active .migration')) {
    window.mdSeen.push({path: card.getAttribute('data-path'),
                        label: card.querySelector('.label').textContent,
                        phase: (card.querySelector('.phase') || {}).textContent || '',
                        state: (card.querySelector('.state') || {}).textContent || ''});
  }
}).observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});
true
"""


def js(value):
    return json.dumps(value)


class CockpitPage(twohosts.TwoHostsTestCase):

    start_hosts = False

    def setUp(self):
        super().setUp()
        hosts = self.make_hosts(start=False)
        # A short shutdown-timeout: the test guest ignores ACPI power-down,
        # so the page's Shut down shows the daemon's Timeout error soon.
        hosts.start(extra_config={"hostA": "\n[daemon]\nshutdown-timeout=3\n"})
        # hostA trusts hostB by name, so the dialog's ListPeers offers it.
        self.client_a.call(MANAGER_PATH, MANAGER_IFACE, "AddPeer", "(sssa{sv})",
                           ("hostB", self.b.peer_address, self.hosts.tls.dns["hostB"], {}))
        self.user = browser.TestUser(self.scratch)
        self.addCleanup(self.user.remove)
        self.user.install_package(PACKAGE, "migrationd")
        self.ws = browser.CockpitWs(self.scratch, self.a.bus.socket)
        # Runs after stop (cleanups are LIFO); meson shows it on failure.
        self.addCleanup(lambda: sys.stderr.write("--- cockpit-ws log:\n" + self.ws.read_log()))
        self.addCleanup(self.ws.stop)
        self.browser = browser.Chromium(self.scratch)
        self.addCleanup(self.browser.stop)

    def polkit_checks(self):
        """Arguments of every CheckAuthorization hostA's mock polkitd got."""
        reply = self.a.bus.connection.call_sync(
            "org.freedesktop.PolicyKit1", "/org/freedesktop/PolicyKit1/Authority", "org.freedesktop.DBus.Mock",
            "GetCalls", None, None, harness.Gio.DBusCallFlags.NONE, 5000, None)
        return [args for _stamp, method, args in reply.unpack()[0] if method == "CheckAuthorization"]

    def guest_row(self, name):
        return "document.querySelector('#guests tr[data-guest=%s]')" % js(name)

    def card(self, path):
        return "document.querySelector('#active .migration[data-path=%s]')" % js(path)

    def log_in(self):
        b = self.browser
        b.navigate(self.ws.url + "/cockpit/@localhost/migrationd/index.html")
        # login.js shows the form once it has set itself up.
        b.wait_js("document.readyState === 'complete' && "
                  "document.getElementById('login-user-input').offsetParent !== null",
                  what="Cockpit's login page")
        b.eval("""(() => {
            document.getElementById('login-user-input').value = %s;
            document.getElementById('login-password-input').value = %s;
            document.getElementById('login-button').click();
            return true; })()""" % (js(self.user.name), js(self.user.password)))
        b.wait_js("document.body && document.body.getAttribute('data-ready') === '1'",
                  what="the migrationd page after login")
        b.eval(RECORDER)

    def open_dialog_and_migrate(self, guest, bandwidth_mib=None):
        b = self.browser
        b.eval("%s.querySelector('button.migrate').click(), true" % self.guest_row(guest))
        b.wait_js("document.querySelector('#migrate-peer option[value=hostB]')",
                  what="hostB offered in the Migrate dialog")
        if bandwidth_mib:
            b.eval("document.getElementById('opt-bandwidth').value = %d, true" % bandwidth_mib)
        b.eval("document.getElementById('migrate-submit').click(), true")
        b.wait_js("!document.getElementById('migrate-dialog').open",
                  what="the dialog to close (Migrate accepted); error: %s"
                  % b.eval("document.getElementById('migrate-error').textContent"))
        paths = self.client_a.call(MANAGER_PATH, MANAGER_IFACE, "ListMigrations", None, None, "(ao)")[0]
        for path in reversed(paths):
            if self.client_a.get_property(path, MIGRATION_IFACE, "GuestName") == guest:
                return path
        raise AssertionError("no migration of %s on hostA" % guest)

    def test_migrate_watch_and_cancel_from_the_page(self):
        b = self.browser
        first = harness.TestGuest(self.scratch, "web1", mode="fill", size_mib=16, memory=64)
        second = harness.TestGuest(self.scratch, "web2", mode="dirty", size_mib=16, memory=128, seed=2)
        third = harness.TestGuest(self.scratch, "web3", mode="fill", size_mib=4, memory=64, seed=3)
        for guest in (first, second):
            self.hosts.define_and_start_on_a(guest)
        self.hosts.define(self.client_a, third.xml)
        for guest in (first, second):
            guest.wait_serial(r"MDGUEST (VERIFY pass=\d+ .* ok|DIRTY round=[1-9])", timeout=60)

        self.log_in()
        # Start and Shut down from the guest list.
        b.wait_js("%s && %s.querySelector('.state').textContent === 'shut-off'"
                  % (self.guest_row("web3"), self.guest_row("web3")), what="web3 listed as shut off")
        b.eval("%s.querySelector('button.start').click(), true" % self.guest_row("web3"))
        b.wait_js("%s.querySelector('.state').textContent === 'running'" % self.guest_row("web3"),
                  timeout=60, what="web3 running after Start on the page")
        self.assertEqual(self.hosts.guest_state(self.client_a, "web3"), "running")
        third.wait_serial("MDGUEST READY", timeout=60)
        b.eval("%s.querySelector('button.shutdown').click(), true" % self.guest_row("web3"))
        shown = b.wait_js("document.getElementById('page-error').textContent.includes("
                          "'org.migrationd.Error.Timeout') && document.getElementById('page-error').textContent",
                          timeout=30, what="the page to report the ignored power-down")
        self.assertIn("Cannot shut down web3: org.migrationd.Error.Timeout: ", shown)
        self.assertIn("keeps running", shown)
        self.assertEqual(self.hosts.guest_state(self.client_a, "web3"), "running")
        b.eval("document.getElementById('page-error').click(), true")
        self.assertTrue(b.eval("document.getElementById('page-error').hidden"))
        b.wait_js("%s && %s.querySelector('.state').textContent === 'running'"
                  % (self.guest_row("web1"), self.guest_row("web1")), what="web1 listed as running")
        caps = b.eval("Array.from(document.querySelectorAll('#migrate-form [data-cap]'))"
                      ".filter(n => !n.hidden).map(n => n.getAttribute('data-cap'))")
        self.assertIn("option:copy-storage", caps)
        self.assertIn("option:postcopy", caps)

        # 1. A live migration from the page, followed to 100 %.
        path = self.open_dialog_and_migrate("web1")
        # The page allows interactive authorization, so a polkit that needs a
        # password asks through Cockpit's agent (flag 1: AllowUserInteraction).
        checks = [args for args in self.polkit_checks() if args[1] == "org.migrationd.migrate"]
        self.assertEqual([flags for _subject, _action, _details, flags, _cancel in checks], [1])
        b.wait_js("%s && %s.classList.contains('ended')" % (self.card(path), self.card(path)), timeout=90,
                  what="the first migration to end on the page\n" + self.hosts.logs())
        final = b.eval("({label: %s.querySelector('.label').textContent, state: %s.querySelector('.state')"
                       ".textContent})" % (self.card(path), self.card(path)))
        self.assertEqual(final, {"label": "100 %", "state": "State completed"}, self.hosts.logs())
        seen = [s for s in b.eval("window.mdSeen") if s["path"] == path]
        self.assertTrue(any(s["phase"] == "Phase perform" for s in seen), seen)
        self.assertEqual(self.hosts.guest_state(self.client_b, "web1"), "running", self.hosts.logs())
        self.assertEqual(len(self.b.qemu_pids()), 1, "hostB should run web1")
        length = len(first.serial_text())
        first.wait_serial(r"MDGUEST VERIFY pass=\d+ sum=[0-9a-f]+ ok", timeout=30, start=length)
        # The page shows it as gone from this host's running guests.
        b.wait_js("!%s || %s.querySelector('.state').textContent === 'shut-off'"
                  % (self.guest_row("web1"), self.guest_row("web1")), what="web1 no longer running on hostA")
        b.wait_js("document.querySelector('#history tr[data-path=%s] .result').textContent === 'completed'"
                  % js(path), what="the first migration in the history")

        # 2. A slow migration, photographed mid-way, then cancelled from the page.
        path = self.open_dialog_and_migrate("web2", bandwidth_mib=4)
        b.wait_js("%s && %s.querySelector('.phase').textContent === 'Phase perform' && "
                  "parseInt(%s.querySelector('.label').textContent) >= 5"
                  % (self.card(path), self.card(path), self.card(path)), timeout=60,
                  what="the second migration under way on the page")
        b.screenshot(SCREENSHOT)
        with open(SCREENSHOT, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        b.eval("%s.querySelector('button.cancel').click(), true" % self.card(path))
        b.wait_js("%s.classList.contains('ended')" % self.card(path), timeout=60,
                  what="the cancelled migration to end on the page")
        self.assertEqual(b.eval("%s.querySelector('.state').textContent" % self.card(path)), "State cancelled")
        error = b.eval("%s.querySelector('.error').textContent" % self.card(path))
        self.assertTrue(error.startswith("org.migrationd.Error.Cancelled\n"), error)
        props = self.client_a.get_all(path, MIGRATION_IFACE)
        self.assertEqual((props["State"], props["ErrorName"]), ("cancelled", "org.migrationd.Error.Cancelled"))
        self.assertEqual(error, "%s\n%s" % (props["ErrorName"], props["ErrorMessage"]))
        self.assertEqual(self.hosts.guest_state(self.client_a, "web2"), "running")
        harness.wait_until(lambda: not self.hosts.guest_exists(self.client_b, "web2"), timeout=20,
                           what="no web2 on hostB")
        self.assertEqual(len(self.a.qemu_pids()), 2, "hostA keeps exactly web2's and web3's QEMUs")
        exceptions = [line for line in b.console if line.startswith("exception")]
        self.assertEqual(exceptions, [])


if __name__ == "__main__":
    harness.main()
