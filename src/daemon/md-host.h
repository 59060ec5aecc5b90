/* migrationd: what a guest needs of the host it runs on: configuration,
 * the polkit bouncer, QEMU's capabilities, and the two operations the
 * host does for it (Undefine, Migrate). The manager fills it in and the
 * service wires Migrate to the migration engine from above, so guests
 * depend on neither the manager nor the engine. */
#pragma once

#include "common/md-config.h"
#include "md-auth.h"
#include "qemu/md-qemu-caps.h"
#include "qemu/md-qemu-identity.h"

G_BEGIN_DECLS

#define MD_MANAGER_PATH "/org/migrationd"

typedef struct _MdGuest MdGuest;

typedef struct
{
  const MdConfig *config;
  MdAuth *auth;
  const MdQemuCaps *caps; /* set once QEMU was probed */
  gpointer owner;         /* the manager */
  MdQemuUidPool *uids;    /* the identities of this host's running guests */
  /* Guest1.Undefine: removes the persistent definition. */
  gboolean (*undefine_guest) (gpointer owner, MdGuest *guest, GError **error);
  /* Guest1.Migrate: starts an outgoing migration, returns the path of
   * its Migration1 object (NULL with @error when nothing started). */
  char *(*migrate_guest) (gpointer owner, MdGuest *guest, const char *destination,
                          GVariant *options, guint owner_uid, GError **error);
  /* Guest1.Save and ManagedSave (@path NULL with @managed): completes,
   * once the file exists, with the path of the Migration1 object
   * (migration/md-save.c, wired by the service). */
  void (*save_guest) (gpointer owner, MdGuest *guest, const char *path, GVariant *options,
                      guint owner_uid, gboolean managed, GAsyncReadyCallback callback,
                      gpointer user_data);
  char *(*save_guest_finish) (GAsyncResult *result, GError **error);
  /* Guest1.Restore, Start from a managed save (@expected: the guest the
   * file must belong to) and Manager1.Restore (@expected NULL); completes
   * with the restored guest (a new reference). */
  void (*restore_guest) (gpointer owner, const char *path, GVariant *options, MdGuest *expected,
                         GAsyncReadyCallback callback, gpointer user_data);
  MdGuest *(*restore_guest_finish) (GAsyncResult *result, GError **error);
  /* Manager1.Evacuate: checks, asks the peers, starts; completes with the
   * path of the Evacuation1 object (migration/md-evacuation.c, wired by
   * the service). */
  void (*evacuate) (gpointer owner, const char *const *peers, GVariant *options, guint owner_uid,
                    GAsyncReadyCallback callback, gpointer user_data);
  char *(*evacuate_finish) (GAsyncResult *result, GError **error);
} MdHost;

G_END_DECLS
