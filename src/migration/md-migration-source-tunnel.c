/* migrationd: the outgoing side of transport=tunnel: after Prepare, unix
 * sockets for QEMU whose every connection becomes a data stream to the
 * peer port (md-tunnel.c), and a broken stream failing the migration by
 * name. */
#include "config.h"

#include "md-migration-source-private.h"
#include "common/md-error.h"
#include "common/md-fault.h"
#include "md-address.h"

/* How long a failure reported by QEMU ("Broken pipe") or by the peer ("its
 * QEMU died") waits for the relay that saw the stream end: the relay
 * threads notice a moment later, and the stream's name says more. */
#define STREAM_NAME_GRACE_MS 1500

/* The stream's error, with what QEMU or the peer said about it. */
static void
fail_with_stream (Source *src, const GError *broken)
{
  g_autoptr (GError) held = g_steal_pointer (&src->held_failure);
  g_autofree char *also = held != NULL ? g_strdup_printf (" (%s)", held->message) : g_strdup ("");

  g_clear_handle_id (&src->held_failure_id, g_source_remove);
  source_fail (src, g_error_new (MD_ERROR, MD_ERROR_PEER_FAILED, "host %s, phase %s: %s%s; %s",
                                 source_host_name (src), source_phase (src), broken->message, also,
                                 src->offline ? "the guest stays here, shut off"
                                              : "the guest keeps running here"));
}

/* A data stream broke: unless QEMU already finished with it (then its
 * status decides), the migration fails naming the stream. */
static void
on_tunnel_status (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (SourceRef) src = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) node =
      source != NULL ? md_qmp_execute_finish (MD_QMP (source), result, &error) : NULL;
  g_autoptr (GError) broken = g_steal_pointer (&src->tunnel_error);
  const char *status = "";

  if (node != NULL && JSON_NODE_HOLDS_OBJECT (node))
    status = json_object_get_string_member_with_default (json_node_get_object (node), "status", "");
  if (source_is_stale (src) || src->qemu_completed || g_str_equal (status, "completed")
      || md_machine_get_authority (src->machine) != MD_AUTHORITY_SOURCE || broken == NULL)
    return;
  fail_with_stream (src, broken);
}

static void
on_tunnel_broken (const GError *error, gpointer user_data)
{
  Source *src = user_data;
  MdQmp *qmp = md_guest_get_qmp (src->guest);

  if (source_is_stale (src) || src->qemu_completed || src->tunnel_error != NULL)
    return;
  if (src->held_failure != NULL)
    {
      fail_with_stream (src, error);
      return;
    }
  src->tunnel_error = g_error_copy (error);
  if (qmp == NULL)
    {
      on_tunnel_status (NULL, NULL, source_ref (src));
      return;
    }
  md_qmp_execute_async (qmp, "query-migrate", NULL, NULL, on_tunnel_status, source_ref (src));
}

static gboolean
on_stream_name_grace_over (gpointer user_data)
{
  Source *src = user_data;

  src->held_failure_id = 0;
  if (!source_is_stale (src) && src->held_failure != NULL)
    source_fail (src, g_steal_pointer (&src->held_failure));
  return G_SOURCE_REMOVE;
}

/* QEMU's migration failed, or the peer says its side aborted. Through the
 * tunnel that is usually a data stream that ended: wait a moment for the
 * relay to name it. */
void
source_fail_naming_stream (Source *src, GError *error)
{
  if (src->tunnel == NULL || source_is_stale (src) || md_machine_is_failing (src->machine)
      || md_machine_get_authority (src->machine) != MD_AUTHORITY_SOURCE)
    {
      source_fail (src, error);
      return;
    }
  if (src->held_failure != NULL)
    {
      g_error_free (error);
      return;
    }
  src->held_failure = error;
  src->held_failure_id =
      g_timeout_add_full (G_PRIORITY_DEFAULT, STREAM_NAME_GRACE_MS, on_stream_name_grace_over,
                          source_ref (src), (GDestroyNotify) source_unref);
}

static void
undo_tunnel (gpointer owner, gpointer data)
{
  Source *src = owner;

  g_clear_pointer (&src->tunnel, md_tunnel_out_free);
  md_machine_undo_done (src->machine);
}

/* Prepare offered a data stream for every disk to copy. */
static gboolean
check_disk_streams (Source *src, const char *hint, GError **error)
{
  for (guint i = 0; i < src->plan->len; i++)
    {
      const MdDomainDisk *disk = g_ptr_array_index (src->plan, i);

      if (md_tunnel_out_get_nbd_path (src->tunnel, disk->target) == NULL)
        {
          g_set_error (error, MD_ERROR, MD_ERROR_PEER_FAILED,
                       "host %s, phase prepare: the peer offered no data stream for disk %s%s",
                       source_peer_name (src), disk->target, hint);
          return FALSE;
        }
    }
  return TRUE;
}

/* transport=tunnel: QEMU sends to unix sockets of ours; each connection
 * it makes becomes a data stream to the peer port with a token Prepare
 * gave us. */
void
source_perform_tunnelled (Source *src, GVariant *prepared)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *label = g_strdup_printf ("migration %s", src->migration_id);
  g_autoptr (MdAddress) address = NULL;
  g_autofree char *uri = NULL;

  src->tunnel =
      md_tunnel_out_new (md_manager_get_peer_tls_config (src->manager),
                         md_peer_connection_get_address (src->peer), source_peer_name (src),
                         md_guest_get_process (src->guest) != NULL
                             ? md_qemu_process_get_pid (md_guest_get_process (src->guest))
                             : 0,
                         src->tag, label, prepared, on_tunnel_broken, src, &error);
  if (src->tunnel != NULL)
    md_machine_push_undo (src->machine, "tunnel", MD_UNDO_CLEANUP, undo_tunnel, NULL, NULL);
  if (src->tunnel != NULL && error == NULL)
    check_disk_streams (src, "", &error);
  if (error == NULL && md_tunnel_out_get_migration_path (src->tunnel) == NULL)
    g_set_error (&error, MD_ERROR, MD_ERROR_PEER_FAILED,
                 "host %s, phase prepare: the peer offered no data stream for the migration "
                 "(does it support transport=tunnel?)",
                 source_peer_name (src));
  if (error == NULL)
    address = md_address_new_unix (md_tunnel_out_get_migration_path (src->tunnel), &error);
  if (address != NULL)
    uri = md_address_to_uri (address, &error);
  if (uri == NULL)
    {
      g_prefix_error (&error, "host %s, phase prepare: ", source_host_name (src));
      source_fail (src, g_steal_pointer (&error));
      return;
    }
  md_migration_mark_time (src->migration, "prepared");
  md_fault_point ("source-prepare-done");
  source_perform (src, uri);
}

/* transport=tunnel for an offline migration: no QEMU runs here; the
 * daemon's own copier connects to unix sockets of ours, one per disk, and
 * each connection becomes a data stream to the peer's qemu-storage-daemon
 * with a token Prepare gave us. */
void
source_copy_offline_tunnelled (Source *src, GVariant *prepared)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *label = g_strdup_printf ("migration %s", src->migration_id);

  src->tunnel = md_tunnel_out_new_local (
      md_manager_get_peer_tls_config (src->manager), md_peer_connection_get_address (src->peer),
      source_peer_name (src), md_manager_get_config (src->manager)->runtime_dir, src->tag, label,
      prepared, on_tunnel_broken, src, &error);
  if (src->tunnel != NULL)
    md_machine_push_undo (src->machine, "tunnel", MD_UNDO_CLEANUP, undo_tunnel, NULL, NULL);
  if (src->tunnel != NULL && error == NULL)
    check_disk_streams (src, " (does it support offline copies through transport=tunnel?)", &error);
  if (error != NULL)
    {
      if (!g_str_has_prefix (error->message, "host "))
        g_prefix_error (&error, "host %s, phase prepare: ", source_host_name (src));
      source_fail (src, g_steal_pointer (&error));
      return;
    }
  md_migration_mark_time (src->migration, "prepared");
  md_fault_point ("source-prepare-done");
  source_copy_offline (src);
}
