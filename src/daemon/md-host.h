/* migrationd: what a guest needs of the host it runs on: configuration,
 * the polkit bouncer, QEMU's capabilities, and the two operations the
 * host does for it (Undefine, Migrate). The manager fills it in and the
 * service wires Migrate to the migration engine from above, so guests
 * depend on neither the manager nor the engine. */
#pragma once

#include "common/md-config.h"
#include "md-auth.h"
#include "qemu/md-qemu-caps.h"

G_BEGIN_DECLS

#define MD_MANAGER_PATH "/org/migrationd"

typedef struct _MdGuest MdGuest;

typedef struct
{
  const MdConfig *config;
  MdAuth *auth;
  const MdQemuCaps *caps; /* set once QEMU was probed */
  gpointer owner;         /* the manager */
  /* Guest1.Undefine: removes the persistent definition. */
  gboolean (*undefine_guest) (gpointer owner, MdGuest *guest, GError **error);
  /* Guest1.Migrate: starts an outgoing migration, returns the path of
   * its Migration1 object (NULL with @error when nothing started). */
  char *(*migrate_guest) (gpointer owner, MdGuest *guest, const char *destination,
                          GVariant *options, guint owner_uid, GError **error);
} MdHost;

G_END_DECLS
