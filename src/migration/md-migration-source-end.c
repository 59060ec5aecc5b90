/* migrationd: the end of an outgoing migration: Finish on the peer,
 * Confirm (the source QEMU goes once the peer runs the guest), Resolving
 * (the peer went away at the switch-over: ask it before touching either
 * copy), and the one way out: success, failure (md_machine_fail() runs
 * the undo list) or needs-attention. */
#include "config.h"

#include "common/md-error.h"
#include "common/md-fault.h"
#include "md-migration-ask.h"
#include "md-migration-resolve.h"
#include "md-migration-source-private.h"

/* How long a source that lost the peer at the switch-over keeps asking
 * it (it may be restarting) before it leaves the guest paused here and
 * asks for attention: twice [daemon] peer-timeout (60 s by default). */
static guint
resolve_timeout_s (Source *src)
{
  return 2 * md_manager_get_config (src->manager)->peer_timeout;
}

/* ---- the end: success, failure, or attention ------------------------------ */

/* The migration is over: publish the result and let go; callbacks still
 * pending hold their own reference and find the machine ended. */
void
source_teardown (Source *src)
{
  source_recovery_stop (src);
  if (src->event_qmp != NULL)
    for (guint i = 0; i < G_N_ELEMENTS (src->event_ids); i++)
      g_clear_signal_handler (&src->event_ids[i], src->event_qmp);
  g_clear_object (&src->event_qmp);
  if (src->mirror_qmp != NULL)
    g_clear_signal_handler (&src->mirror_event_id, src->mirror_qmp);
  g_clear_object (&src->mirror_qmp);
  g_clear_handle_id (&src->progress_id, g_source_remove);
  g_clear_handle_id (&src->abort_id, g_source_remove);
  g_cancellable_cancel (src->cancellable);
  /* Success (a failure's undo freed it): the streams drain what QEMU
   * already wrote, then go. */
  md_tunnel_out_release (g_steal_pointer (&src->tunnel));
  if (src->peer != NULL && src->peer_closed_id != 0)
    g_clear_signal_handler (&src->peer_closed_id, src->peer);
  if (src->peer != NULL && src->peer_aborted_id != 0)
    g_clear_signal_handler (&src->peer_aborted_id, md_peer_connection_get_proxy (src->peer));
  /* Kept for the next migration to this peer (closed if it broke). */
  if (src->peer != NULL)
    md_peer_pool_give_back (md_manager_get_peer_pool (src->manager), src->destination,
                            g_steal_pointer (&src->peer));
  md_migration_set_control (src->migration, NULL, NULL);
}

void
source_done (Source *src)
{
  const GError *error = md_machine_get_error (src->machine);

  if (md_machine_is_ended (src->machine))
    return;
  if (src->final_figures_pending && error == NULL)
    {
      /* Completed carries QEMU's downtime: on_final_figures comes back. */
      src->done_deferred = TRUE;
      return;
    }
  source_teardown (src);
  if (error != NULL && md_machine_get_authority (src->machine) == MD_AUTHORITY_SPLIT)
    {
      /* Postcopy broke: memory is on both hosts and neither QEMU may be
       * killed or resumed alone, unless the peer says its copy is gone. */
      source_split_ask (src);
      return;
    }
  md_machine_end (src->machine, NULL, TRUE);
  md_migration_complete (src->migration, error, src->downtime);
  source_unref (src);
}

static void
source_after_undo (gpointer owner)
{
  source_done (owner);
}

/* The failure path, whatever the phase: the machine runs the undo list
 * (stop QEMU's migration, have the peer remove what it prepared, resume
 * the guest here), as far as who holds the guest allows. */
void
source_fail (Source *src, GError *error)
{
  if (!md_machine_is_failing (src->machine))
    {
      g_clear_handle_id (&src->progress_id, g_source_remove);
      g_clear_handle_id (&src->abort_id, g_source_remove);
      g_clear_handle_id (&src->held_failure_id, g_source_remove);
      g_cancellable_cancel (src->cancellable);
    }
  md_machine_fail (src->machine, error, source_after_undo);
}

/* ---- Confirm ----------------------------------------------------------- */

static void
on_source_qemu_gone (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (SourceRef) src = user_data;
  g_autoptr (GError) error = NULL;

  if (!md_guest_destroy_finish (MD_GUEST (source), result, &error))
    g_warning ("migration %s: stopping the source QEMU after success: %s", src->migration_id,
               error->message);
  md_migration_mark_time (src->migration, "source-qemu-gone");
  source_done (src);
}

/* The peer confirmed the guest runs there: the source QEMU goes and the
 * source definition follows the persist/undefine table. */
void
source_confirm_success (Source *src)
{
  gboolean undefine = src->opts->undefine_source;
  g_autoptr (GError) error = NULL;

  if (md_machine_is_ended (src->machine) || !md_machine_advance (src->machine, MD_PHASE_CONFIRM))
    return;
  md_fault_point ("source-confirm");
  if (src->src_persistent && undefine)
    {
      if (!md_manager_delete_definition (src->manager, md_guest_get_name (src->guest), &error))
        md_migration_add_error_detail (src->migration, error);
      md_guest_set_persistent (src->guest, FALSE);
    }
  md_guest_end_migration (src->guest, FALSE);
  if (src->offline || !md_guest_is_active (src->guest))
    {
      if (!md_guest_is_persistent (src->guest))
        md_manager_remove_guest (src->manager, src->guest);
      source_done (src);
      return;
    }
  /* QEMU's final figures (total-time, downtime) die with it. */
  if (src->final_figures_pending)
    {
      src->destroy_deferred = TRUE;
      return;
    }
  source_destroy_qemu (src);
}

void
source_destroy_qemu (Source *src)
{
  src->destroy_deferred = FALSE;
  md_guest_destroy_async (src->guest, on_source_qemu_gone, source_ref (src));
}

/* The guest runs on the peer now: confirm once QEMU has sent everything
 * (at once in precopy; when postcopy completes otherwise). */
static void
source_peer_runs_guest (Source *src)
{
  md_machine_set_authority (src->machine, MD_AUTHORITY_DESTINATION);
  if (src->qemu_completed || src->offline)
    source_confirm_success (src);
}

/* ---- Finish (peer) ----------------------------------------------------------- */

static gboolean
is_connection_loss (const GError *error)
{
  return !g_dbus_error_is_remote_error (error)
         || g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CLOSED)
         || g_error_matches (error, G_DBUS_ERROR, G_DBUS_ERROR_DISCONNECTED)
         || g_error_matches (error, G_DBUS_ERROR, G_DBUS_ERROR_NO_REPLY)
         || g_error_matches (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
}

static void
on_peer_finished (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (SourceRef) src = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) out = NULL;

  src->finish_pending = FALSE;
  if (!md_dbus_peer1_call_finish_finish (MD_DBUS_PEER1 (source), &out, result, &error))
    {
      GError *converted;

      if (source_is_stale (src))
        return;
      if (is_connection_loss (error) && source_recovery_finish_lost (src))
        return; /* re-sent once the postcopy stream is recovered */
      if (is_connection_loss (error))
        {
          /* The peer may have resumed the guest before it went away: only
           * its answer (or its journal after a restart) can tell. */
          source_resolve_with_peer (src, error);
          return;
        }
      converted = md_error_convert (error, MD_ERROR_PEER_FAILED);
      g_prefix_error (&converted, "host %s, phase finish: ", source_peer_name (src));
      source_fail (src, converted);
      return;
    }
  if (source_is_stale (src))
    return;
  md_migration_mark_time (src->migration, "finished");
  md_fault_point ("source-finish-done");
  source_peer_runs_guest (src);
}

/* The journal says "finish" on disk: a restarted daemon asks the peer
 * rather than resuming a guest the peer may run by then. */
static void
send_finish (gpointer data)
{
  Source *src = data;
  GVariantBuilder opts;

  if (source_is_stale (src))
    return;
  md_migration_mark_time (src->migration, "finish-journaled");
  g_variant_builder_init (&opts, G_VARIANT_TYPE_VARDICT);
  if (src->peer_token != NULL)
    g_variant_builder_add (&opts, "{sv}", "token", g_variant_new_string (src->peer_token));
  md_dbus_peer1_call_finish (md_peer_connection_get_proxy (src->peer), src->migration_id, TRUE,
                             g_variant_builder_end (&opts), NULL, on_peer_finished,
                             source_ref (src));
}

void
source_finish_on_peer (Source *src)
{
  md_migration_mark_time (src->migration, "finish-sent");
  md_fault_point ("source-finish-sent");
  if (md_machine_get_phase (src->machine) != MD_PHASE_POSTCOPY
      && !md_machine_advance (src->machine, MD_PHASE_FINISH))
    return;
  /* Pending from here: a lost peer is asked, not failed (on_peer_closed). */
  src->finish_pending = TRUE;
  md_machine_when_written (src->machine, send_finish, source_ref (src),
                           (GDestroyNotify) source_unref);
}

/* ---- Resolving: the peer went away at the switch-over ------------------------ */

static void
on_peer_answered (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (SourceRef) src = user_data;
  g_autoptr (GError) error = NULL;
  g_autofree char *outcome = md_migration_ask_peer_finish (result, &error);

  if (md_machine_is_ended (src->machine))
    return;
  if (outcome != NULL && g_str_equal (outcome, "running"))
    {
      g_message ("migration %s: host %s says guest %s runs there", src->migration_id,
                 source_peer_name (src), md_guest_get_name (src->guest));
      source_peer_runs_guest (src);
      return;
    }
  if (outcome != NULL && md_machine_get_authority (src->machine) == MD_AUTHORITY_SOURCE)
    {
      /* The peer removed its copy (or never had one): the guest is ours. */
      source_fail (src, g_error_new (MD_ERROR, MD_ERROR_PEER_FAILED,
                                     "host %s, phase finish: lost the connection to host %s, "
                                     "which then reported the migration %s; the guest keeps "
                                     "running here",
                                     source_host_name (src), source_peer_name (src), outcome));
      return;
    }
  {
    g_autoptr (GError) attention = g_error_new (
        MD_ERROR, MD_ERROR_PEER_FAILED,
        "host %s, phase %s: lost host %s at the switch-over and %s; guest %s is left paused "
        "here because this host cannot prove the copy here is the only one. Check whether it "
        "runs on %s: if it does, destroy it here; if not, resume it here",
        source_host_name (src), md_phase_to_string (md_machine_get_phase (src->machine)),
        source_peer_name (src),
        outcome != NULL ? "it reported the migration aborted during postcopy"
                        : "could not ask it what became of the guest",
        md_guest_get_name (src->guest), source_peer_name (src));
    if (error != NULL)
      g_message ("migration %s: %s", src->migration_id, error->message);
    md_migration_add_error_detail (src->migration, attention);
    md_migration_set_needs_attention (src->migration, attention);
    source_teardown (src);
    md_machine_end (src->machine, "needs-attention", FALSE);
    md_migration_resolver_attach (src->migration, src->manager,
                                  md_machine_get_journal (src->machine), src->guest);
    source_unref (src);
  }
}

void
source_resolve_with_peer (Source *src, const GError *why)
{
  g_message ("migration %s: lost host %s in phase %s (%s); asking it what became of the guest",
             src->migration_id, source_peer_name (src), source_phase (src), why->message);
  if (src->peer != NULL && src->peer_closed_id != 0)
    g_clear_signal_handler (&src->peer_closed_id, src->peer);
  if (md_machine_get_phase (src->machine) == MD_PHASE_FINISH
      || md_machine_get_phase (src->machine) == MD_PHASE_POSTCOPY)
    md_machine_advance (src->machine, MD_PHASE_RESOLVING);
  md_migration_ask_peer_async (md_manager_get_peer_tls_config (src->manager), src->destination,
                               src->migration_id, resolve_timeout_s (src), NULL, on_peer_answered,
                               source_ref (src));
}
