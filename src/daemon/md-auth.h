/* migrationd: the polkit bouncer. One method -> action table, deny by
 * default, attached to the g-authorize-method signal of every skeleton. */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

#define MD_ACTION_GUEST_MANAGE "org.migrationd.guest.manage"
#define MD_ACTION_MIGRATE "org.migrationd.migrate"
#define MD_ACTION_CONTROL_OWN "org.migrationd.migration.control-own"
#define MD_ACTION_CONTROL_OTHER "org.migrationd.migration.control-other"
#define MD_ACTION_PEER_MANAGE "org.migrationd.peer.manage"
#define MD_ACTION_RESOLVE "org.migrationd.migration.resolve"

/* Pseudo-actions of the table: open to every caller, or decided by the
 * owner of the migration object (control-own/control-other). */
#define MD_ACTION_OPEN "open"
#define MD_ACTION_CONTROL "control"

/* Set on an authorized Migrate invocation: the caller's uid + 1. */
#define MD_AUTH_CALLER_UID_KEY "md-caller-uid"

#define MD_TYPE_AUTH (md_auth_get_type ())
G_DECLARE_FINAL_TYPE (MdAuth, md_auth, MD, AUTH, GObject)

MdAuth *md_auth_new (void);

/* Routes every method call on @skeleton through the bouncer. GDBus runs
 * the handler in a worker thread, so the polkit check there may block
 * without stalling the main loop. */
void md_auth_attach (MdAuth *auth, GDBusInterfaceSkeleton *skeleton);

/* The table, exposed for the unit test that checks every method of every
 * interface has an entry: returns NULL for a method not in it. */
const char *md_auth_lookup_action (const char *interface_name, const char *method_name);

G_END_DECLS
