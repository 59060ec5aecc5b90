/* migrationd: an incoming migration's lifetime and its one failure path.
 *
 * Whatever Prepare makes pushes what undoes it on the state machine's
 * undo list (md-migration-machine.h), as the source does: the target
 * images (removed), the prepared QEMU (killed; a guest object made for it
 * goes with it), the offline NBD server (stopped). incoming_abort() hands
 * a failure to md_machine_fail(), which runs them newest first as far as
 * who holds the guest allows: once the destination holds (part of) it,
 * the QEMU and the images stay, and the migration ends "lost" (that QEMU
 * is gone) or needs attention (it lives). */
#include "config.h"

#include "common/md-error.h"
#include "md-migration-dest-private.h"
#include "md-migration-resolve.h"

/* ---- lifetime --------------------------------------------------------------- */

Incoming *
incoming_ref (Incoming *in)
{
  return g_rc_box_acquire (in);
}

static void incoming_clear (Incoming *in);

void
incoming_unref (Incoming *in)
{
  g_rc_box_release_full (in, (GDestroyNotify) incoming_clear);
}

const char *
host_name (MdMigrationDest *dest)
{
  return md_manager_get_config (dest->manager)->host_name;
}

void
incoming_stop_events (Incoming *in)
{
  if (in->event_qmp != NULL)
    g_clear_signal_handler (&in->event_id, in->event_qmp);
  g_clear_object (&in->event_qmp);
  g_clear_handle_id (&in->finish_timeout_id, g_source_remove);
}

/* The migration is over here: the table lets go of it, and @outcome
 * ("running", "aborted") stays in the journal for a source that asks. */
void
incoming_end (Incoming *in, const char *outcome)
{
  incoming_stop_events (in);
  /* Running here: postcopy may still pull pages through the streams. */
  if (g_str_equal (outcome, "running"))
    md_tunnel_in_release (g_steal_pointer (&in->tunnel));
  else
    g_clear_pointer (&in->tunnel, md_tunnel_in_free);
  if (in->machine != NULL)
    md_machine_end (in->machine, outcome, FALSE);
  g_hash_table_remove (in->dest->incoming, in->key);
}

static void
incoming_clear (Incoming *in)
{
  incoming_stop_events (in);
  if (in->conn != NULL && in->closed_id != 0)
    g_signal_handler_disconnect (in->conn, in->closed_id);
  if (in->guest != NULL && in->stopped_id != 0)
    g_signal_handler_disconnect (in->guest, in->stopped_id);
  if (in->resume_qmp != NULL)
    g_clear_signal_handler (&in->resume_id, in->resume_qmp);
  g_clear_object (&in->resume_qmp);
  g_clear_object (&in->conn);
  g_clear_object (&in->guest);
  g_clear_object (&in->migration);
  g_clear_pointer (&in->opts, md_migrate_options_free);
  g_clear_pointer (&in->def, md_domain_free);
  g_clear_error (&in->abort_error);
  g_clear_error (&in->split_error);
  g_clear_error (&in->setup_error);
  g_clear_handle_id (&in->split_wait_id, g_source_remove);
  g_clear_handle_id (&in->switch_wait_id, g_source_remove);
  g_free (in->uri);
  g_free (in->address);
  g_clear_pointer (&in->disks_info, g_variant_unref);
  g_strfreev (in->created);
  g_clear_pointer (&in->nbd_server, md_nbd_server_free);
  g_free (in->tls_object);
  g_clear_object (&in->migration_socket);
  g_clear_object (&in->nbd_socket);
  g_clear_pointer (&in->tunnel, md_tunnel_in_free);
  g_clear_pointer (&in->owner, md_incoming_owner_free);
  g_free (in->key);
  g_free (in->id);
  g_free (in->tag);
  g_clear_pointer (&in->machine, md_machine_free);
  dest_recovery_clear (in);
}

/* ---- undo steps ------------------------------------------------------------- */

static void
on_images_removed (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (IncomingRef) in = user_data;

  md_image_admission_remove_finish (result);
  md_machine_undo_done (in->machine);
}

/* The target images Prepare created (in the admission's worker: a hung
 * mount must not stop the daemon). Pushed before the QEMU, so it runs
 * after it: with QEMU gone nothing writes to them any more. */
static void
undo_images (gpointer owner, gpointer data)
{
  Incoming *in = owner;

  if (in->created == NULL || in->created[0] == NULL)
    {
      md_machine_undo_done (in->machine);
      return;
    }
  md_image_admission_remove_async (in->dest->admission, (const char *const *) in->created,
                                   on_images_removed, incoming_ref (in));
}

void
incoming_push_undo_images (Incoming *in)
{
  md_machine_push_undo (in->machine, "images", MD_UNDO_GUEST, undo_images, NULL, NULL);
}

static void
on_incoming_killed (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (IncomingRef) in = user_data;
  g_autoptr (GError) error = NULL;

  if (!md_guest_destroy_finish (MD_GUEST (source), result, &error))
    g_warning ("incoming migration %s: killing the prepared QEMU: %s", in->id, error->message);
  md_machine_undo_done (in->machine);
}

/* The prepared QEMU is killed; a guest object made for it goes away with
 * it (it is transient), a definition that existed stays. */
static void
undo_incoming_qemu (gpointer owner, gpointer data)
{
  Incoming *in = owner;

  if (in->guest != NULL && md_guest_is_active (in->guest))
    {
      md_guest_destroy_async (in->guest, on_incoming_killed, incoming_ref (in));
      return;
    }
  if (in->guest != NULL)
    md_guest_end_migration (in->guest, FALSE);
  md_machine_undo_done (in->machine);
}

void
incoming_push_undo_qemu (Incoming *in)
{
  md_machine_push_undo (in->machine, "incoming-qemu", MD_UNDO_GUEST, undo_incoming_qemu, NULL,
                        NULL);
}

/* An offline migration's qemu-storage-daemon serves only this host. */
static void
undo_nbd_server (gpointer owner, gpointer data)
{
  Incoming *in = owner;

  g_clear_pointer (&in->nbd_server, md_nbd_server_free);
  md_machine_undo_done (in->machine);
}

void
incoming_push_undo_nbd_server (Incoming *in)
{
  md_machine_push_undo (in->machine, "nbd-server", MD_UNDO_CLEANUP, undo_nbd_server, NULL, NULL);
}

/* ---- the failure path ----------------------------------------------------- */

#define SPLIT_EXIT_WAIT_S 3

static gboolean
on_split_wait_over (gpointer user_data)
{
  Incoming *in = user_data;

  in->split_wait_id = 0;
  if (!in->ended)
    incoming_abort (in, in->split_error);
  return G_SOURCE_REMOVE;
}

/* The undo list ran (or was skipped as far as who holds the guest says):
 * the migration ends as decided in incoming_abort(). */
static void
incoming_after_undo (gpointer owner)
{
  Incoming *in = owner;
  const GError *error = md_machine_get_error (in->machine);

  if (g_str_equal (in->fail_outcome, "running"))
    {
      if (in->migration != NULL)
        {
          md_migration_set_needs_attention (in->migration, error);
          md_migration_resolver_attach (in->migration, in->dest->manager,
                                        md_machine_get_journal (in->machine), in->guest);
        }
    }
  else
    {
      if (g_str_equal (in->fail_outcome, "lost"))
        g_warning ("incoming migration %s: %s", in->id, error->message);
      else
        g_message ("incoming migration %s of %s aborted: %s", in->id, in->def->name,
                   error->message);
      if (in->migration != NULL)
        md_migration_complete (in->migration, error, 0);
    }
  incoming_end (in, in->fail_outcome);
}

/* What a failure means here, by who holds the guest: before the switch
 * the source does (everything Prepare made goes: "aborted"); after it,
 * this copy is left as it is ("running", needs attention), or its QEMU
 * is gone and with it the guest ("lost": the source's copy is older). */
static GError *
describe_failure (Incoming *in, const GError *error)
{
  MdAuthority authority = md_machine_get_authority (in->machine);

  if (authority == MD_AUTHORITY_SOURCE)
    {
      in->fail_outcome = "aborted";
      return g_error_copy (error);
    }
  if (in->guest == NULL || !md_guest_is_active (in->guest))
    {
      /* The images stay: they hold the guest's latest disk data. */
      in->fail_outcome = "lost";
      return g_error_new (MD_ERROR, MD_ERROR_QEMU_FAILED,
                          "%s; guest %s is lost: its QEMU on host %s exited after the switch-over "
                          "(%s), and the copy on the source host is older than what ran here",
                          error->message, in->def->name, host_name (in->dest),
                          md_authority_to_string (authority));
    }
  /* The guest is (partly) here now: nothing kills this copy because of a
   * failure; it is left as it is and says so. */
  in->fail_outcome = "running";
  return g_error_new (MD_ERROR, MD_ERROR_FAILED,
                      "%s; host %s holds the guest (%s) and left its QEMU as it is", error->message,
                      host_name (in->dest), md_authority_to_string (authority));
}

/* Ends an incoming migration that failed: its Migration1 records @error
 * and the undo list runs (md_machine_fail()). */
void
incoming_abort (Incoming *in, const GError *error)
{
  if (in->ended)
    return;
  if (in->cont_waits)
    {
      /* Finish failed while "cont" waited for the journal write: the
       * guest never ran here, so the source's paused copy is the guest. */
      in->cont_waits = FALSE;
      md_machine_set_authority (in->machine, MD_AUTHORITY_SOURCE);
    }
  if (md_machine_get_authority (in->machine) != MD_AUTHORITY_SOURCE && in->guest != NULL
      && md_guest_is_active (in->guest) && in->split_error == NULL)
    {
      /* A QMP failure usually arrives just before QEMU's exit is seen:
       * wait for the exit (incoming_on_qemu_stopped comes back here)
       * before deciding that the copy here still lives. */
      in->split_error = g_error_copy (error);
      in->split_wait_id =
          g_timeout_add_seconds_full (G_PRIORITY_DEFAULT, SPLIT_EXIT_WAIT_S, on_split_wait_over,
                                      incoming_ref (in), (GDestroyNotify) incoming_unref);
      return;
    }
  if (in->split_error != NULL)
    error = in->split_error;
  in->ended = TRUE;
  md_machine_fail (in->machine, describe_failure (in, error), incoming_after_undo);
}

/* ---- what makes a migration fail here ------------------------------------- */

/* Tells the source at once, rather than letting it find out from a
 * broken stream (or never, if its QEMU waits on a dead NBD server). */
static void
notify_source_aborted (Incoming *in, const GError *error)
{
  g_autoptr (GError) converted = md_error_convert (error, MD_ERROR_FAILED);
  GDBusConnection *dbus;

  /* A daemon restarted in postcopy has no connection until Recover. */
  if (in->conn == NULL || md_peer_connection_is_closed (in->conn))
    return;
  dbus = md_peer_connection_get_dbus (in->conn);
  g_dbus_connection_emit_signal (dbus, NULL, MD_PEER_OBJECT_PATH, "org.migrationd.Peer1", "Aborted",
                                 g_variant_new ("(sss)", in->id,
                                                md_error_code_to_dbus_name (converted->code),
                                                converted->message),
                                 NULL);
}

void
incoming_on_qemu_stopped (MdGuest *guest, Incoming *in)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *tail = NULL;

  if (in->ended || in->finish_invocation != NULL || in->prepare_invocation != NULL)
    return;
  error = g_error_new (MD_ERROR, MD_ERROR_QEMU_FAILED,
                       "host %s: the destination QEMU of %s exited during the migration; "
                       "removed what Prepare made (see its log on host %s)",
                       host_name (in->dest), in->def->name, host_name (in->dest));
  notify_source_aborted (in, error);
  incoming_abort (in, error);
}

static void source_lost (Incoming *in);
static void on_status_after_close (GObject *source, GAsyncResult *result, gpointer user_data);

static gboolean
on_switch_wait (gpointer user_data)
{
  Incoming *in = user_data;
  MdQmp *qmp = in->guest != NULL ? md_guest_get_qmp (in->guest) : NULL;

  in->switch_wait_id = 0;
  if (qmp == NULL)
    source_lost (in); /* QEMU went: its stopped handler reports it */
  else
    md_qmp_execute_async (qmp, "query-migrate", NULL, NULL, on_status_after_close,
                          incoming_ref (in));
  return G_SOURCE_REMOVE;
}

/* The source was lost while QEMU still loads precopy, in a migration that
 * allows postcopy: the source's QEMU may have switched to postcopy with
 * the switch still on its way (a cut link holds it in TCP's buffers).
 * Removing this QEMU then would leave the source's paused in postcopy,
 * which can neither recover nor resume. QEMU says which it is: it enters
 * postcopy when the stream goes on, its incoming migration fails (and
 * QEMU exits) when the source cancelled it. Asked every second until
 * postcopy-recovery-timeout; then the source is taken to hold the guest. */
static gboolean
wait_for_switch (Incoming *in)
{
  if (!in->opts->postcopy || in->offline || in->prepare_invocation != NULL
      || in->switch_waits >= in->opts->postcopy_recovery_timeout)
    return FALSE;
  if (in->switch_waits++ == 0)
    g_message ("incoming migration %s: lost the source host before Finish while QEMU still "
               "loads precopy; a switch to postcopy may be on its way: waiting up to %u s for "
               "QEMU to enter postcopy or fail",
               in->id, in->opts->postcopy_recovery_timeout);
  in->switch_wait_id = g_timeout_add_seconds_full (
      G_PRIORITY_DEFAULT, 1, on_switch_wait, incoming_ref (in), (GDestroyNotify) incoming_unref);
  return TRUE;
}

static void
source_lost (Incoming *in)
{
  g_autoptr (GError) error = NULL;

  if (in->ended || in->finishing)
    return;
  if (in->conn != NULL && !md_peer_connection_is_closed (in->conn))
    return; /* the source came back meanwhile (Finish, Recover) */
  if (in->machine != NULL && md_machine_get_authority (in->machine) != MD_AUTHORITY_SOURCE)
    {
      /* Postcopy: the source QEMU can never run this guest again, and
       * keeps serving its pages without its daemon. This copy is the
       * only one that can go on. */
      adopt_after_lost_source (in);
      return;
    }
  if (wait_for_switch (in))
    return;
  error = g_error_new (MD_ERROR, MD_ERROR_PEER_FAILED,
                       "host %s: the connection to source host %s dropped before Finish; "
                       "removed what Prepare made (the guest stays on the source)",
                       host_name (in->dest), md_peer_connection_get_host_name (in->conn));
  if (in->prepare_invocation != NULL)
    {
      /* Prepare still runs: it notices abort_error when it completes. */
      if (in->abort_error == NULL)
        in->abort_error = g_error_copy (error);
      return;
    }
  incoming_abort (in, error);
}

static void
on_status_after_close (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (IncomingRef) in = user_data;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, NULL);
  const char *status =
      node != NULL
          ? json_object_get_string_member_with_default (json_node_get_object (node), "status", "")
          : "";

  /* QEMU's word beats a MIGRATION event still in the queue. */
  if (g_str_has_prefix (status, "postcopy") && !in->ended && in->machine != NULL)
    md_machine_set_authority (in->machine, MD_AUTHORITY_SPLIT);
  source_lost (in);
}

void
incoming_on_connection_closed (MdPeerConnection *conn, Incoming *in)
{
  MdQmp *qmp = in->guest != NULL ? md_guest_get_qmp (in->guest) : NULL;

  if (in->postcopy_watch)
    {
      dest_recovery_source_lost (in);
      return;
    }
  /* A Finish under way runs to its end: it resumes the guest here (the
   * source already gave it up) or aborts by itself. */
  if (in->ended || in->finishing)
    return;
  if (qmp != NULL && in->prepare_invocation == NULL)
    {
      md_qmp_execute_async (qmp, "query-migrate", NULL, NULL, on_status_after_close,
                            incoming_ref (in));
      return;
    }
  source_lost (in);
}
