/* migrationd: the incoming side of transport=tunnel: QEMU listens on
 * private unix sockets (md-tunnel.c) and the source's data streams reach
 * it through the peer port; disk targets Prepare created stay sparse. */
#include "config.h"

#include "md-migration-dest-private.h"
#include "common/md-error.h"

/* The source's streams may break at any time; the source sees it too and
 * fails the migration (it holds the guest until Finish), or this QEMU's
 * incoming migration fails and its exit cleans up here. In postcopy a
 * broken stream is paused and recovered through a new tunnel
 * (md-migration-dest-recovery.c): it is no error of the migration then. */
static void
on_tunnel_broken (const GError *error, gpointer user_data)
{
  Incoming *in = user_data;

  if (in->migration == NULL || in->ended)
    return;
  if (in->machine != NULL && md_machine_get_authority (in->machine) != MD_AUTHORITY_SOURCE)
    g_message ("incoming migration %s: %s; waiting for the source to recover the postcopy stream",
               in->id, error->message);
  else
    md_migration_add_error_detail (in->migration, error);
}

/* transport=tunnel: QEMU's migration channels arrive as data streams
 * through the peer port; QEMU listens on a private unix socket. */
gboolean
incoming_start_tunnel (Incoming *in, GError **error)
{
  const MdConfig *config = md_manager_get_config (in->dest->manager);
  g_autofree char *label = g_strdup_printf ("migration %s", in->id);
  GSocket *socket;

  in->tunnel = md_tunnel_in_new (in->dest->gate, config->runtime_dir, in->tag,
                                 md_peer_connection_get_dn (in->conn), config->host_name, label,
                                 on_tunnel_broken, in, error);
  if (in->tunnel == NULL)
    return FALSE;
  /* Offline: no QEMU, only the disks' streams (incoming_tunnel_nbd_socket()). */
  if (in->offline)
    return TRUE;
  socket = md_tunnel_in_listen_migration (in->tunnel, in->opts->parallel_connections, error);
  if (socket == NULL)
    return FALSE;
  in->migration_socket = g_object_ref (socket);
  return TRUE;
}

/* The NBD server's listening socket when the disks come through the
 * tunnel: one data stream per disk to copy. */
gboolean
incoming_tunnel_nbd_socket (Incoming *in, GError **error)
{
  g_autoptr (GPtrArray) targets = g_ptr_array_new_with_free_func (g_free);
  GSocket *socket;

  for (gsize i = 0; i < g_variant_n_children (in->disks_info); i++)
    {
      g_autoptr (GVariant) info = g_variant_get_child_value (in->disks_info, i);
      char *target = NULL;
      g_variant_lookup (info, "target", "s", &target);
      g_ptr_array_add (targets, target);
    }
  g_ptr_array_add (targets, NULL);
  socket = md_tunnel_in_listen_nbd (in->tunnel, (const char *const *) targets->pdata, error);
  if (socket == NULL)
    return FALSE;
  in->nbd_socket = g_object_ref (socket);
  in->nbd_socket_given = TRUE;
  return TRUE;
}

/* The definition QEMU starts with. Images Prepare created for copied
 * disks open with discard=unmap unless the definition says otherwise:
 * the mirror writes zero ranges as "zeroes, may unmap", and only then do
 * they stay holes (with discard=ignore QEMU allocates them), so a sparse
 * disk arrives sparse. The live definition says so. */
MdDomain *
incoming_live_definition (Incoming *in)
{
  MdDomain *live = md_domain_copy (in->def);

  for (guint i = 0; in->created != NULL && in->created[i] != NULL; i++)
    for (guint d = 0; d < live->disks->len; d++)
      {
        MdDomainDisk *disk = g_ptr_array_index (live->disks, d);
        if (g_strcmp0 (disk->source, in->created[i]) == 0
            && disk->discard == MD_DOMAIN_DISK_DISCARD_DEFAULT)
          disk->discard = MD_DOMAIN_DISK_DISCARD_UNMAP;
      }
  return live;
}
