/* migrationd: a restarted daemon resumes a broken postcopy stream (see
 * the header). */
#include "config.h"

#include "md-migration-recover-postcopy.h"
#include "common/md-error.h"
#include "common/md-fault.h"
#include "common/md-options.h"
#include "md-address.h"
#include "md-migration-qemu.h"
#include "md-tunnel.h"
#include "peer/md-peer.h"

#include <string.h>

/* QEMU's status is asked this often. */
#define POLL_MS 500
/* Seconds between two recovery attempts, as in a live migration. */
#define RETRY_S 2

typedef struct
{
  MdManager *manager;
  MdGuest *guest;
  MdMigration *migration;
  char *id;
  char *peer_address;
  char *token;
  char *tag;           /* the migration's tag: the recovery tunnels' names */
  MdTunnelOut *tunnel; /* transport=tunnel: the resumed stream's */
  guint timeout_s;
  guint attempts;
  gboolean attempt; /* an attempt is under way */
  gboolean resume_sent;
  gboolean deadline_passed;
  gboolean done;
  char *last_error;
  MdPeerConnection *peer;
  GCancellable *cancellable;
  guint poll_id;
  guint retry_id;
  guint deadline_id;
} Resume;

static void
resume_free (Resume *r)
{
  g_clear_handle_id (&r->poll_id, g_source_remove);
  g_clear_handle_id (&r->retry_id, g_source_remove);
  g_clear_handle_id (&r->deadline_id, g_source_remove);
  g_cancellable_cancel (r->cancellable);
  g_clear_object (&r->cancellable);
  if (r->peer != NULL)
    md_peer_connection_close (r->peer);
  g_clear_object (&r->peer);
  /* Completed: the relay drains what QEMU wrote, then frees itself. */
  if (r->done && r->tunnel != NULL)
    md_tunnel_out_release (g_steal_pointer (&r->tunnel));
  g_clear_pointer (&r->tunnel, md_tunnel_out_free);
  g_free (r->tag);
  g_clear_object (&r->guest);
  g_clear_object (&r->migration);
  g_free (r->id);
  g_free (r->peer_address);
  if (r->token != NULL)
    memset (r->token, 0, strlen (r->token));
  g_free (r->token);
  g_free (r->last_error);
  g_free (r);
}

static const char *
host_name (Resume *r)
{
  return md_manager_get_config (r->manager)->host_name;
}

/* The end, once: timers stop, the task returns. */
static void
resume_return (GTask *task, GError *error)
{
  Resume *r = g_task_get_task_data (task);

  if (r->done)
    {
      g_clear_error (&error);
      return;
    }
  r->done = TRUE;
  if (error != NULL)
    g_clear_pointer (&r->tunnel, md_tunnel_out_free);
  g_clear_handle_id (&r->poll_id, g_source_remove);
  g_clear_handle_id (&r->retry_id, g_source_remove);
  g_clear_handle_id (&r->deadline_id, g_source_remove);
  g_cancellable_cancel (r->cancellable);
  if (error != NULL)
    g_task_return_error (task, error);
  else
    g_task_return_boolean (task, TRUE);
}

static void attempt (GTask *task);

static gboolean
on_retry (gpointer user_data)
{
  GTask *task = user_data;
  Resume *r = g_task_get_task_data (task);

  r->retry_id = 0;
  attempt (task);
  return G_SOURCE_REMOVE;
}

static void
attempt_failed (GTask *task, GError *error)
{
  Resume *r = g_task_get_task_data (task);

  r->attempt = r->resume_sent = FALSE;
  g_free (r->last_error);
  r->last_error = g_strdup (error->message);
  g_message ("migration %s: postcopy recovery attempt %u (after a daemon restart) failed: %s",
             r->id, r->attempts, error->message);
  g_error_free (error);
  if (r->done)
    return;
  md_migration_set_running_state (r->migration, "postcopy-paused");
  if (r->retry_id == 0)
    r->retry_id = g_timeout_add_seconds_full (G_PRIORITY_DEFAULT, RETRY_S, on_retry,
                                              g_object_ref (task), g_object_unref);
}

static void
on_resume_sent (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  Resume *r = g_task_get_task_data (task);
  GError *error = NULL;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, &error);

  if (r->done)
    {
      g_clear_error (&error);
      return;
    }
  if (node == NULL)
    {
      g_prefix_error (&error, "migrate resume=true: ");
      attempt_failed (task, error);
      return;
    }
  /* QEMU is in postcopy-recover now; its status tells how it ends. */
  r->resume_sent = TRUE;
}

static void
on_tunnel_broken (const GError *error, gpointer user_data)
{
  /* QEMU pauses the stream again; the next attempt makes a new tunnel. */
  g_message ("%s", error->message);
}

/* transport=tunnel: the resumed stream goes through a new tunnel to the
 * tokens of Peer1.Recover's answer @out (the old relays died with the
 * previous daemon). */
static char *
tunnel_uri (Resume *r, GVariant *out, GError **error)
{
  g_autofree char *tag = g_strdup_printf ("%s-x%u", r->tag, r->attempts);
  g_autofree char *label =
      g_strdup_printf ("migration %s (recovery %u after a restart)", r->id, r->attempts);
  MdQemuProcess *process = md_guest_get_process (r->guest);
  g_autoptr (MdAddress) address = NULL;

  g_clear_pointer (&r->tunnel, md_tunnel_out_free);
  r->tunnel =
      md_tunnel_out_new (md_manager_get_peer_tls_config (r->manager), r->peer_address,
                         r->peer_address, process != NULL ? md_qemu_process_get_pid (process) : 0,
                         tag, label, out, on_tunnel_broken, r, error);
  if (r->tunnel == NULL)
    return NULL;
  if (md_tunnel_out_get_migration_path (r->tunnel) == NULL)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_PEER_FAILED,
                   "host %s offered no data stream for the recovered stream", r->peer_address);
      return NULL;
    }
  address = md_address_new_unix (md_tunnel_out_get_migration_path (r->tunnel), error);
  return address != NULL ? md_address_to_uri (address, error) : NULL;
}

static void
on_recover_answered (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  Resume *r = g_task_get_task_data (task);
  GError *error = NULL;
  g_autoptr (GVariant) out = NULL;
  g_autoptr (MdAddress) address = NULL;
  g_autofree char *checked = NULL;
  const char *uri = NULL;
  MdQmp *qmp;
  JsonObject *args;

  if (!md_dbus_peer1_call_recover_finish (MD_DBUS_PEER1 (source), &out, result, &error))
    {
      GError *converted = md_error_convert (error, MD_ERROR_PEER_FAILED);
      g_error_free (error);
      attempt_failed (task, converted);
      return;
    }
  if (r->done)
    return;
  if (g_variant_lookup (out, "tunnel-migration-tokens", "^a&s", NULL))
    checked = tunnel_uri (r, out, &error);
  /* As in Prepare: the peer's URI is parsed and rendered here. */
  else if (!g_variant_lookup (out, "migration-uri", "&s", &uri))
    error = g_error_new (MD_ERROR, MD_ERROR_PEER_FAILED, "host %s gave no migration URI",
                         r->peer_address);
  else if ((address = md_address_parse_tcp_uri (uri, &error)) != NULL)
    checked = md_address_to_uri (address, &error);
  qmp = md_guest_get_qmp (r->guest);
  if (checked != NULL && qmp == NULL)
    error = g_error_new (MD_ERROR, MD_ERROR_QEMU_FAILED, "the QEMU of %s is gone",
                         md_guest_get_name (r->guest));
  if (error != NULL)
    {
      attempt_failed (task, error);
      return;
    }
  g_message ("migration %s: recovery attempt %u: resuming the postcopy stream to %s", r->id,
             r->attempts, checked);
  args = json_object_new ();
  json_object_set_string_member (args, "uri", checked);
  json_object_set_boolean_member (args, "resume", TRUE);
  md_qmp_execute_async (qmp, "migrate", args, NULL, on_resume_sent, g_object_ref (task));
  json_object_unref (args);
}

static void
call_recover (GTask *task)
{
  Resume *r = g_task_get_task_data (task);
  GVariantBuilder opts;

  g_variant_builder_init (&opts, G_VARIANT_TYPE_VARDICT);
  if (r->token != NULL)
    g_variant_builder_add (&opts, "{sv}", "token", g_variant_new_string (r->token));
  md_dbus_peer1_call_recover (md_peer_connection_get_proxy (r->peer), r->id,
                              g_variant_builder_end (&opts), r->cancellable, on_recover_answered,
                              g_object_ref (task));
}

static void
on_connected (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  Resume *r = g_task_get_task_data (task);
  GError *error = NULL;
  MdPeerConnection *peer = md_peer_connect_finish (result, &error);

  if (peer == NULL)
    {
      attempt_failed (task, error);
      return;
    }
  if (r->done)
    {
      md_peer_connection_close (peer);
      g_object_unref (peer);
      return;
    }
  if (r->peer != NULL)
    md_peer_connection_close (r->peer);
  g_clear_object (&r->peer);
  r->peer = peer;
  call_recover (task);
}

static void
attempt (GTask *task)
{
  Resume *r = g_task_get_task_data (task);

  if (r->done || r->attempt)
    return;
  r->attempt = TRUE;
  r->attempts++;
  md_migration_set_recovery_attempts (r->migration, r->attempts);
  md_migration_set_running_state (r->migration, "postcopy-recovering");
  md_fault_point ("source-recover");
  if (r->peer != NULL && !md_peer_connection_is_closed (r->peer))
    call_recover (task);
  else
    md_peer_connect_async (md_manager_get_peer_tls_config (r->manager), r->peer_address,
                           r->cancellable, on_connected, g_object_ref (task));
}

static GError *
unrecovered_error (Resume *r, const char *status)
{
  return g_error_new (
      MD_ERROR, MD_ERROR_FAILED,
      "host %s, phase postcopy: the daemon restarted while guest %s was leaving in postcopy to "
      "host %s, and the broken stream could not be recovered within "
      "postcopy-recovery-timeout=%u s of the restart (%u attempts; last: %s). The guest's "
      "memory is split: part of it only exists in the QEMU here (QEMU status %s), the guest "
      "runs (waiting for those pages) on host %s. Both QEMUs were kept; killing or resuming "
      "either alone loses the guest. Restore the connection between the hosts, then recover by "
      "hand: QMP migrate-recover on host %s, migrate with resume=true here",
      host_name (r), md_guest_get_name (r->guest), r->peer_address, r->timeout_s, r->attempts,
      r->last_error != NULL ? r->last_error : "none", status, r->peer_address, r->peer_address);
}

static void poll_later (GTask *task);
static gboolean on_deadline (gpointer user_data);

/* QEMU's status decides everything: the attempts only start the stream. */
static void
on_status (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  Resume *r = g_task_get_task_data (task);
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, &error);
  const char *status = md_migration_qemu_status (node, "");

  if (r->done)
    return;
  if (node == NULL)
    {
      resume_return (task,
                     g_error_new (MD_ERROR, MD_ERROR_QEMU_FAILED,
                                  "host %s: the QEMU of %s, leaving in postcopy, does not "
                                  "answer: %s",
                                  host_name (r), md_guest_get_name (r->guest), error->message));
      return;
    }
  if (g_str_equal (status, "completed"))
    {
      g_message ("migration %s: the postcopy stream of %s completed%s", r->id,
                 md_guest_get_name (r->guest), r->attempts > 0 ? " after a recovery" : "");
      md_migration_set_running_state (r->migration, "postcopy");
      resume_return (task, NULL);
      return;
    }
  if (g_str_equal (status, "postcopy-active"))
    {
      if (r->attempts > 0 && (r->attempt || r->resume_sent))
        g_message ("migration %s: the postcopy stream of %s is back (attempt %u)", r->id,
                   md_guest_get_name (r->guest), r->attempts);
      r->attempt = r->resume_sent = r->deadline_passed = FALSE;
      g_clear_handle_id (&r->deadline_id, g_source_remove);
      md_migration_set_running_state (r->migration, "postcopy");
    }
  else if (g_str_equal (status, "postcopy-paused"))
    {
      if (r->deadline_passed)
        {
          resume_return (task, unrecovered_error (r, status));
          return;
        }
      if (r->deadline_id == 0)
        r->deadline_id = g_timeout_add_seconds_full (G_PRIORITY_DEFAULT, r->timeout_s, on_deadline,
                                                     g_object_ref (task), g_object_unref);
      if (r->resume_sent)
        attempt_failed (task, g_error_new (MD_ERROR, MD_ERROR_QEMU_FAILED,
                                           "QEMU could not resume the stream to host %s",
                                           r->peer_address));
      else if (r->retry_id == 0)
        attempt (task);
    }
  else if (g_str_equal (status, "postcopy-recover"))
    md_migration_set_running_state (r->migration, "postcopy-recovering");
  else
    {
      resume_return (task, g_error_new (MD_ERROR, MD_ERROR_QEMU_FAILED,
                                        "host %s: the postcopy migration of %s to host %s "
                                        "ended in QEMU status '%s'",
                                        host_name (r), md_guest_get_name (r->guest),
                                        r->peer_address, status));
      return;
    }
  poll_later (task);
}

static gboolean
on_poll (gpointer user_data)
{
  GTask *task = user_data;
  Resume *r = g_task_get_task_data (task);
  MdQmp *qmp = md_guest_get_qmp (r->guest);

  r->poll_id = 0;
  if (qmp == NULL)
    {
      resume_return (task, g_error_new (MD_ERROR, MD_ERROR_QEMU_FAILED,
                                        "host %s: the QEMU of %s, leaving in postcopy, is gone",
                                        host_name (r), md_guest_get_name (r->guest)));
      return G_SOURCE_REMOVE;
    }
  md_qmp_execute_async (qmp, "query-migrate", NULL, NULL, on_status, g_object_ref (task));
  return G_SOURCE_REMOVE;
}

static void
poll_later (GTask *task)
{
  Resume *r = g_task_get_task_data (task);

  if (r->poll_id == 0 && !r->done)
    r->poll_id = g_timeout_add_full (G_PRIORITY_DEFAULT, POLL_MS, on_poll, g_object_ref (task),
                                     g_object_unref);
}

static gboolean
on_deadline (gpointer user_data)
{
  GTask *task = user_data;
  Resume *r = g_task_get_task_data (task);

  r->deadline_id = 0;
  r->deadline_passed = TRUE;
  return G_SOURCE_REMOVE;
}

void
md_postcopy_resume_async (MdManager *manager, MdJournal *journal, MdGuest *guest,
                          MdMigration *migration, GAsyncReadyCallback callback, gpointer user_data)
{
  GTask *task = g_task_new (NULL, NULL, callback, user_data);
  Resume *r = g_new0 (Resume, 1);
  gint64 timeout = md_journal_get_int (journal, "postcopy-recovery-timeout");

  r->manager = manager;
  r->guest = g_object_ref (guest);
  r->migration = g_object_ref (migration);
  r->id = g_strdup (md_journal_get_id (journal));
  r->peer_address = g_strdup (md_journal_get_string (journal, "peer-address"));
  r->token = g_strdup (md_journal_get_string (journal, "peer-token"));
  r->tag = g_strdup (md_journal_get_string (journal, "tag") != NULL
                         ? md_journal_get_string (journal, "tag")
                         : md_journal_get_id (journal));
  r->timeout_s = timeout > 0 ? (guint) timeout : MD_MIGRATE_RECOVERY_TIMEOUT_DEFAULT;
  r->cancellable = g_cancellable_new ();
  g_task_set_task_data (task, r, (GDestroyNotify) resume_free);
  g_task_set_source_tag (task, md_postcopy_resume_async);
  md_migration_set_phase (migration, "postcopy");
  md_migration_set_running_state (migration, "postcopy");
  g_message ("migration %s: the daemon restarted while %s was leaving in postcopy to %s; "
             "following its stream (recovering it for up to %u s if it is broken)",
             r->id, md_guest_get_name (guest), r->peer_address, r->timeout_s);
  r->poll_id =
      g_timeout_add_full (G_PRIORITY_DEFAULT, 0, on_poll, g_object_ref (task), g_object_unref);
  g_object_unref (task);
}

gboolean
md_postcopy_resume_finish (GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}
