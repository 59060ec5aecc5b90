/* migrationd: org.migrationd.Manager1 at /org/migrationd. */
#pragma once

#include "md-auth.h"
#include "common/md-config.h"
#include "md-dbus-generated.h"
#include "md-guest.h"
#include "md-host.h"
#include "peer/md-peer-pool.h"
#include "peer/md-peer.h"
#include "qemu/md-qemu-caps.h"

G_BEGIN_DECLS

#define MD_TYPE_MANAGER (md_manager_get_type ())
G_DECLARE_FINAL_TYPE (MdManager, md_manager, MD, MANAGER, MdDbusManager1Skeleton)

#define MD_GUESTS_SUBDIR "guests"

/* @config is borrowed and must outlive the manager. */
MdManager *md_manager_new (const MdConfig *config, MdAuth *auth, const char *host_uuid);

/* Probes QEMU, loads the persistent definitions and re-attaches to every
 * QEMU a previous instance left running. Call before exporting. */
void md_manager_load_async (MdManager *self, GCancellable *cancellable,
                            GAsyncReadyCallback callback, gpointer user_data);
gboolean md_manager_load_finish (MdManager *self, GAsyncResult *result, GError **error);

/* Exports Manager1 and the object manager on @connection. */
gboolean md_manager_export (MdManager *self, GDBusConnection *connection, GError **error);
void md_manager_unexport (MdManager *self);

GDBusObjectManagerServer *md_manager_get_object_manager (MdManager *self);
const MdConfig *md_manager_get_config (MdManager *self);
MdAuth *md_manager_get_auth (MdManager *self);
const MdQemuCaps *md_manager_get_qemu_caps (MdManager *self);

MdGuest *md_manager_find_guest (MdManager *self, const char *name_or_uuid);

/* Registry operations the migration engines use. */
void md_manager_add_guest (MdManager *self, MdGuest *guest);
void md_manager_remove_guest (MdManager *self, MdGuest *guest);
gboolean md_manager_save_definition (MdManager *self, const MdDomain *def, GError **error);
gboolean md_manager_delete_definition (MdManager *self, const char *name, GError **error);
/* Parses @xml and resolves its machine type against this host's QEMU. */
MdDomain *md_manager_prepare_definition (MdManager *self, const char *xml, GError **error);
/* The same for an @incoming migration's definition on its destination:
 * host-model is not expanded again, host-passthrough must be migratable. */
MdDomain *md_manager_prepare_definition_full (MdManager *self, const char *xml, gboolean incoming,
                                              GError **error);

/* Migrations: numbered objects below /org/migrationd/migration. */
guint md_manager_next_migration_number (MdManager *self);
/* Exports a Migration1 object (the manager knows only the interface: the
 * engines sit above it). */
void md_manager_add_migration (MdManager *self, const char *path, MdDbusMigration1 *migration);
/* Every guest (container owned by the caller, guests borrowed). */
GList *md_manager_list_guests (MdManager *self);
/* While migrations a previous daemon left open are being resolved
 * (md-migration-recover.c), new ones are refused. */
gboolean md_manager_is_recovering (MdManager *self);
void md_manager_hold_recovery (MdManager *self, gboolean hold);
/* Unexports a finished migration (its keep time ran out). */
void md_manager_forget_migration (MdManager *self, const char *path);

/* Authenticated peer connections kept for the next migration. */
MdPeerPool *md_manager_get_peer_pool (MdManager *self);

/* What guests get of the host (md-host.h). */
MdHost *md_manager_get_host (MdManager *self);
/* Guest1.Migrate goes to @func (the service wires in the engine). */
void md_manager_set_migrate_func (MdManager *self,
                                  char *(*func) (gpointer owner, MdGuest *guest,
                                                 const char *destination, GVariant *options,
                                                 guint owner_uid, GError **error));

/* Save and restore, wired from above like Migrate: the four save and
 * restore members of @funcs are copied into the host. */
void md_manager_set_save_funcs (MdManager *self, const MdHost *funcs);
/* Manager1.Evacuate, wired from above: the two evacuate members of @funcs. */
void md_manager_set_evacuate_funcs (MdManager *self, const MdHost *funcs);

/* A trusted peer by name (migrationd.conf or AddPeer), or NULL. */
const MdConfigPeer *md_manager_find_peer (MdManager *self, const char *name);
/* The listener whose allow-list follows AddPeer/RemovePeer. */
void md_manager_set_listener (MdManager *self, MdPeerListener *listener);

/* The TLS identity this host uses towards peers. */
const MdPeerTlsConfig *md_manager_get_peer_tls_config (MdManager *self);

/* Guest1.Undefine: removes the persistent definition; a running guest
 * becomes transient, a running transient one is refused. */
gboolean md_manager_undefine_guest (MdManager *self, MdGuest *guest, GError **error);

/* Reads the host UUID from @state_dir/host-uuid, creating it on first
 * start. */
char *md_manager_load_host_uuid (const char *state_dir, GError **error);

G_END_DECLS
