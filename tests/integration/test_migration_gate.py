#!/usr/bin/python3
"""The polkit gate of every Migration1 method: without the control action a
caller gets NotAuthorized and the migration is untouched; with
control-own (the caller started it) the call goes through."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import twohosts  # noqa: E402
from harness import MIGRATION_IFACE, GLib  # noqa: E402

MIB = 1024 * 1024

# method -> (signature, args, property it changes or None)
CONTROLS = {
    "Cancel": ("(a{sv})", ({},), "State"),
    "SetBandwidth": ("(t)", (3 * MIB,), "Bandwidth"),
    "SetMaxDowntime": ("(t)", (123,), "MaxDowntime"),
    "StartPostcopy": ("(a{sv})", ({},), "State"),
}

OWN = "org.migrationd.migration.control-own"
OTHER = "org.migrationd.migration.control-other"


class MigrationGate(twohosts.TwoHostsTestCase):

    def start_slow_migration(self):
        """A migration that stays in Perform: a guest dirtying its RAM,
        1 MiB/s, post-copy allowed so StartPostcopy has something to do,
        convergence=manual: the policy's early check would switch this
        guest to post-copy within seconds (Cancel is refused there)."""
        guest = harness.TestGuest(self.scratch, "gated", mode="dirty", size_mib=32, memory=96)
        self.hosts.define_and_start_on_a(guest)
        guest.wait_serial("MDGUEST DIRTY")
        migration = self.hosts.migrate("gated", options={
            "bandwidth": 1 * MIB, "postcopy": True, "abort-after": 120,
            "convergence": "manual"})
        self.hosts.wait_property(self.client_a, migration, "Phase", lambda p: p == "perform",
                                 timeout=60)
        self.addCleanup(self.cancel_quietly, migration)
        return migration

    def cancel_quietly(self, migration):
        self.a.polkitd.set_allowed(harness.ACTIONS)
        try:
            self.client_a.call(migration, MIGRATION_IFACE, "Cancel", "(a{sv})", ({},))
            self.hosts.wait_completed(self.client_a, migration, timeout=60)
        except (GLib.Error, AssertionError):
            pass

    def snapshot(self, migration):
        props = self.hosts.migration_props(self.client_a, migration)
        return {k: props[k] for k in ("State", "Bandwidth", "MaxDowntime", "Phase", "ErrorName")}

    def check_denied(self, method):
        signature, args, prop = CONTROLS[method]
        migration = self.start_slow_migration()
        # Everything but the two control actions.
        self.a.polkitd.set_allowed([a for a in harness.ACTIONS if a not in (OWN, OTHER)])
        before = self.snapshot(migration)
        message = self.assertDBusError("org.migrationd.Error.NotAuthorized", self.client_a.call, migration,
                                       MIGRATION_IFACE, method, signature, args)
        # The caller (root) started it, so control-own is what it lacked.
        self.assertIn(OWN, message)
        after = self.snapshot(migration)
        self.assertEqual(after["State"], before["State"])
        self.assertEqual(after[prop], before[prop])
        self.assertEqual(self.hosts.guest_state(self.client_a, "gated"), "migrating-out")

    def check_allowed(self, method):
        signature, args, prop = CONTROLS[method]
        migration = self.start_slow_migration()
        self.a.polkitd.set_allowed([OWN])
        self.client_a.call(migration, MIGRATION_IFACE, method, signature, args)
        if method == "Cancel":
            success, name, _ = self.hosts.wait_completed(self.client_a, migration)
            self.assertEqual((success, name), (False, "org.migrationd.Error.Cancelled"))
            self.assertEqual(self.hosts.guest_state(self.client_a, "gated"), "running")
        elif method == "SetBandwidth":
            self.assertEqual(self.snapshot(migration)["Bandwidth"], 3 * MIB)
        elif method == "SetMaxDowntime":
            self.assertEqual(self.snapshot(migration)["MaxDowntime"], 123)
        else:
            self.hosts.wait_property(self.client_a, migration, "State",
                                     lambda s: s in ("postcopy", "completed"), timeout=60)


for _method in CONTROLS:
    setattr(MigrationGate, "test_denied_%s" % _method, lambda self, m=_method: self.check_denied(m))
    setattr(MigrationGate, "test_allowed_%s" % _method, lambda self, m=_method: self.check_allowed(m))


if __name__ == "__main__":
    harness.main()
