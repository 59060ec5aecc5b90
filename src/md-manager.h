/* migrationd: org.migrationd.Manager1 at /org/migrationd. */
#pragma once

#include "md-auth.h"
#include "md-config.h"
#include "md-dbus-generated.h"

G_BEGIN_DECLS

#define MD_MANAGER_PATH "/org/migrationd"

#define MD_TYPE_MANAGER (md_manager_get_type ())
G_DECLARE_FINAL_TYPE (MdManager, md_manager, MD, MANAGER, MdDbusManager1Skeleton)

/* @config is borrowed and must outlive the manager. */
MdManager *md_manager_new (const MdConfig *config, MdAuth *auth, const char *host_uuid);

/* Exports Manager1 and the object manager on @connection. */
gboolean md_manager_export (MdManager *self, GDBusConnection *connection, GError **error);
void md_manager_unexport (MdManager *self);

GDBusObjectManagerServer *md_manager_get_object_manager (MdManager *self);
const MdConfig *md_manager_get_config (MdManager *self);
MdAuth *md_manager_get_auth (MdManager *self);

/* Reads the host UUID from @state_dir/host-uuid, creating it on first
 * start. */
char *md_manager_load_host_uuid (const char *state_dir, GError **error);

G_END_DECLS
