/* migrationd: the outgoing side of postcopy when its stream breaks.
 *
 * In postcopy the guest's memory is split between the hosts: neither
 * QEMU may be killed or resumed alone. When the stream stops (QEMU says
 * postcopy-paused, or it made no progress for [daemon] peer-timeout
 * seconds once the destination confirmed postcopy (Finish answered),
 * which a cut link looks like: then QEMU is paused here with
 * migrate-pause), this side drives QEMU's postcopy recovery: it
 * re-connects to the destination's daemon, has it open a new listener
 * (Peer1.Recover: migrate-recover there) and resumes the stream into it
 * (migrate with resume=true), again every RETRY_S seconds until the
 * option postcopy-recovery-timeout. Then the migration needs attention,
 * with what each side holds; nothing is killed.
 *
 * When the migration failed in postcopy otherwise (source_done with a
 * split authority), the peer is asked what became of the guest
 * (source_split_ask). */
#include "config.h"

#include "common/md-error.h"
#include "common/md-fault.h"
#include "md-address.h"
#include "md-migration-ask.h"
#include "md-migration-resolve.h"
#include "md-migration-source-private.h"

/* How long the peer is asked before giving up on one question: twice
 * [daemon] peer-timeout, as at the switch-over (md-migration-source-end.c). */
#define RESOLVE_TIMEOUT_S (2 * md_manager_get_config (src->manager)->peer_timeout)
/* Seconds between two recovery attempts. */
#define RETRY_S 2

static void
on_lost_source_qemu_gone (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Source *src = user_data;
  g_autoptr (GError) error = NULL;

  if (!md_guest_destroy_finish (MD_GUEST (source), result, &error))
    g_warning ("migration %s: stopping the stale source QEMU: %s", src->migration_id,
               error->message);
  if (!md_guest_is_persistent (src->guest))
    md_manager_remove_guest (src->manager, src->guest);
  source_unref (src);
}

#define SPLIT_ASKS 4

static void on_split_peer_answered (GObject *source, GAsyncResult *result, gpointer user_data);

/* Postcopy broke for good: what became of the guest on the peer? */
void
source_split_ask (Source *src)
{
  md_migration_ask_peer_async (md_manager_get_peer_tls_config (src->manager), src->destination,
                               src->migration_id, RESOLVE_TIMEOUT_S, NULL, on_split_peer_answered,
                               src);
}

static gboolean
on_split_ask_again (gpointer user_data)
{
  Source *src = user_data;

  md_migration_ask_peer_async (md_manager_get_peer_tls_config (src->manager), src->destination,
                               src->migration_id, RESOLVE_TIMEOUT_S, NULL, on_split_peer_answered,
                               src);
  return G_SOURCE_REMOVE;
}

/* The answer to "what became of the guest" after postcopy broke. Only a
 * peer that says its copy is gone ("lost") lets this host act: the copy
 * here is older than what ran there and can never run, so it goes and the
 * loss is reported. Anything else leaves both QEMUs for the admin. */
static void
on_split_peer_answered (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Source *src = user_data; /* the run's reference, handed over by source_done */
  const GError *error = md_machine_get_error (src->machine);
  g_autoptr (GError) ask_error = NULL;
  g_autofree char *outcome = md_migration_ask_peer_finish (result, &ask_error);

  if ((outcome == NULL || !g_str_equal (outcome, "lost")) && src->split_asks++ < SPLIT_ASKS)
    {
      /* The peer decides only once its QEMU's exit is seen or its wait
       * is over: ask again a little later. */
      g_timeout_add_seconds (2, on_split_ask_again, src);
      return;
    }
  if (outcome != NULL && g_str_equal (outcome, "lost"))
    {
      g_autoptr (GError) lost =
          g_error_new (MD_ERROR, MD_ERROR_QEMU_FAILED,
                       "%s. Guest %s is lost: host %s says its QEMU, which ran the guest after the "
                       "switch-over, is gone; the paused copy on host %s is older and was stopped",
                       error->message, md_guest_get_name (src->guest), source_peer_name (src),
                       source_host_name (src));
      g_warning ("migration %s: %s", src->migration_id, lost->message);
      md_machine_end (src->machine, NULL, TRUE);
      md_migration_complete (src->migration, lost, 0);
      md_guest_end_migration (src->guest, FALSE);
      md_guest_destroy_async (src->guest, on_lost_source_qemu_gone, src);
      return;
    }
  {
    g_autoptr (GError) attention = g_error_new (
        MD_ERROR, MD_ERROR_FAILED,
        "%s. Guest %s is in postcopy between hosts %s and %s: its memory is split and "
        "neither copy was resumed or killed; keep both QEMUs until QEMU's migration completes "
        "or recover it by hand",
        error->message, md_guest_get_name (src->guest), source_host_name (src),
        source_peer_name (src));
    if (ask_error != NULL)
      g_message ("migration %s: asking host %s: %s", src->migration_id, source_peer_name (src),
                 ask_error->message);
    md_migration_set_needs_attention (src->migration, attention);
    md_machine_end (src->machine, "needs-attention", FALSE);
    md_migration_resolver_attach (src->migration, src->manager,
                                  md_machine_get_journal (src->machine), src->guest);
    source_unref (src);
  }
}

/* ---- recovery ------------------------------------------------------------- */

static void recovery_attempt (Source *src);

void
source_recovery_stop (Source *src)
{
  g_clear_handle_id (&src->pc_deadline_id, g_source_remove);
  g_clear_handle_id (&src->pc_retry_id, g_source_remove);
  if (src->pc_cancellable != NULL)
    g_cancellable_cancel (src->pc_cancellable);
  g_clear_object (&src->pc_cancellable);
}

static gboolean
on_retry (gpointer user_data)
{
  Source *src = user_data;

  src->pc_retry_id = 0;
  recovery_attempt (src);
  return G_SOURCE_REMOVE;
}

static void
attempt_failed (Source *src, GError *error)
{
  src->pc_attempt = FALSE;
  src->pc_resume_sent = FALSE;
  g_free (src->pc_last_error);
  src->pc_last_error = g_strdup (error->message);
  g_message ("migration %s: postcopy recovery attempt %u failed: %s", src->migration_id,
             src->pc_attempts, error->message);
  g_error_free (error);
  if (source_is_stale (src) || src->pc_deadline_id == 0)
    return;
  md_migration_set_running_state (src->migration, "postcopy-paused");
  if (src->pc_retry_id == 0)
    src->pc_retry_id = g_timeout_add_seconds_full (G_PRIORITY_DEFAULT, RETRY_S, on_retry,
                                                   source_ref (src), (GDestroyNotify) source_unref);
}

static void
on_resume_started (Source *src, GError *error)
{
  if (error != NULL)
    {
      attempt_failed (src, error);
      return;
    }
  /* QEMU is in postcopy-recover now; its status tells how it ends. */
  src->pc_resume_sent = TRUE;
}

static void
on_recovery_tunnel_broken (const GError *error, gpointer user_data)
{
  Source *src = user_data;

  /* QEMU pauses the stream again; the next attempt makes a new tunnel. */
  if (!source_is_stale (src))
    g_message ("migration %s: %s", src->migration_id, error->message);
}

/* transport=tunnel: the peer's QEMU listens behind the peer port; the
 * resumed stream goes through a new tunnel (the old one's relays ended
 * with the stream) to the tokens of Peer1.Recover's answer @out. */
static char *
recovery_tunnel_uri (Source *src, GVariant *out, GError **error)
{
  g_autofree char *tag = g_strdup_printf ("%s-r%u", src->tag, src->pc_attempts);
  g_autofree char *label =
      g_strdup_printf ("migration %s (recovery %u)", src->migration_id, src->pc_attempts);
  MdQemuProcess *process = md_guest_get_process (src->guest);
  g_autoptr (MdAddress) address = NULL;

  g_clear_pointer (&src->tunnel, md_tunnel_out_free);
  src->tunnel = md_tunnel_out_new (
      md_manager_get_peer_tls_config (src->manager), md_peer_connection_get_address (src->peer),
      source_peer_name (src), process != NULL ? md_qemu_process_get_pid (process) : 0, tag, label,
      out, on_recovery_tunnel_broken, src, error);
  if (src->tunnel == NULL)
    return NULL;
  if (md_tunnel_out_get_migration_path (src->tunnel) == NULL)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_PEER_FAILED,
                   "host %s offered no data stream for the recovered stream",
                   source_peer_name (src));
      return NULL;
    }
  address = md_address_new_unix (md_tunnel_out_get_migration_path (src->tunnel), error);
  return address != NULL ? md_address_to_uri (address, error) : NULL;
}

static void
on_recover_answered (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (SourceRef) src = user_data;
  GError *error = NULL;
  g_autoptr (GVariant) out = NULL;
  const char *uri = NULL;
  g_autoptr (MdAddress) address = NULL;
  g_autofree char *checked = NULL;
  JsonObject *args;

  if (!md_dbus_peer1_call_recover_finish (MD_DBUS_PEER1 (source), &out, result, &error))
    {
      GError *converted = md_error_convert (error, MD_ERROR_PEER_FAILED);
      g_error_free (error);
      if (!source_is_stale (src))
        attempt_failed (src, converted);
      else
        g_error_free (converted);
      return;
    }
  if (source_is_stale (src))
    return;
  if (g_variant_lookup (out, "tunnel-migration-tokens", "^a&s", NULL))
    {
      checked = recovery_tunnel_uri (src, out, &error);
      if (checked == NULL)
        {
          attempt_failed (src, error);
          return;
        }
    }
  /* As in Prepare: the peer's URI is parsed and rendered here. */
  else if (!g_variant_lookup (out, "migration-uri", "&s", &uri))
    error = g_error_new (MD_ERROR, MD_ERROR_PEER_FAILED, "host %s gave no migration URI",
                         source_peer_name (src));
  else if ((address = md_address_parse_tcp_uri (uri, &error)) != NULL)
    checked = md_address_to_uri (address, &error);
  if (checked == NULL)
    {
      attempt_failed (src, error);
      return;
    }
  g_message ("migration %s: recovery attempt %u: resuming the postcopy stream to %s",
             src->migration_id, src->pc_attempts, checked);
  args = source_json_args ();
  json_object_set_string_member (args, "uri", checked);
  json_object_set_boolean_member (args, "resume", TRUE);
  source_qmp_step (src, "migrate", args, on_resume_started);
}

static void
call_recover (Source *src)
{
  GVariantBuilder opts;

  g_variant_builder_init (&opts, G_VARIANT_TYPE_VARDICT);
  if (src->peer_token != NULL)
    g_variant_builder_add (&opts, "{sv}", "token", g_variant_new_string (src->peer_token));
  md_dbus_peer1_call_recover (md_peer_connection_get_proxy (src->peer), src->migration_id,
                              g_variant_builder_end (&opts), src->pc_cancellable,
                              on_recover_answered, source_ref (src));
}

/* The new connection replaces the broken one (whose signals go with it). */
static void
on_recover_connected (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (SourceRef) src = user_data;
  GError *error = NULL;
  MdPeerConnection *peer = md_peer_connect_finish (result, &error);

  if (peer == NULL)
    {
      if (!source_is_stale (src))
        attempt_failed (src, error);
      else
        g_error_free (error);
      return;
    }
  if (source_is_stale (src))
    {
      md_peer_connection_close (peer);
      g_object_unref (peer);
      return;
    }
  if (src->peer != NULL && src->peer_closed_id != 0)
    g_clear_signal_handler (&src->peer_closed_id, src->peer);
  if (src->peer != NULL && src->peer_aborted_id != 0)
    g_clear_signal_handler (&src->peer_aborted_id, md_peer_connection_get_proxy (src->peer));
  if (src->peer != NULL)
    md_peer_connection_close (src->peer);
  g_clear_object (&src->peer);
  src->peer = peer;
  call_recover (src);
}

static void
recovery_attempt (Source *src)
{
  if (source_is_stale (src) || !src->pc_paused || src->pc_attempt)
    return;
  src->pc_attempt = TRUE;
  src->pc_attempts++;
  md_migration_set_recovery_attempts (src->migration, src->pc_attempts);
  md_migration_set_running_state (src->migration, "postcopy-recovering");
  md_fault_point ("source-recover");
  if (src->pc_cancellable == NULL)
    src->pc_cancellable = g_cancellable_new ();
  if (src->peer != NULL && !md_peer_connection_is_closed (src->peer))
    call_recover (src);
  else
    md_peer_connect_async (md_manager_get_peer_tls_config (src->manager), src->destination,
                           src->pc_cancellable, on_recover_connected, source_ref (src));
}

static void
report_unrecovered (Source *src, const char *status)
{
  g_autoptr (GError) error = g_error_new (
      MD_ERROR, MD_ERROR_FAILED,
      "host %s, phase postcopy: the postcopy stream of guest %s to host %s broke and could not "
      "be recovered within postcopy-recovery-timeout=%u s (%u attempts; last: %s). The guest's "
      "memory is split: part of it only exists in the QEMU here (QEMU status %s), the guest "
      "runs (waiting for those pages) on host %s. Both QEMUs were kept; killing or resuming "
      "either alone loses the guest. Restore the connection between the hosts, then recover by "
      "hand: QMP migrate-recover on host %s, migrate with resume=true here",
      source_host_name (src), md_guest_get_name (src->guest), source_peer_name (src),
      src->opts->postcopy_recovery_timeout, src->pc_attempts,
      src->pc_last_error != NULL ? src->pc_last_error : "none", status, source_peer_name (src),
      source_peer_name (src));

  g_warning ("migration %s: %s", src->migration_id, error->message);
  md_migration_set_needs_attention (src->migration, error);
  source_teardown (src);
  md_machine_end (src->machine, "needs-attention", FALSE);
  source_unref (src); /* the run's reference */
}

static void
on_deadline_status (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (SourceRef) src = user_data;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, NULL);
  const char *status = md_migration_qemu_status (node, "unknown");

  if (source_is_stale (src))
    return;
  if (g_str_equal (status, "postcopy-active") || g_str_equal (status, "completed"))
    return; /* recovered at the last moment: the status poll goes on */
  report_unrecovered (src, status);
}

static gboolean
on_deadline (gpointer user_data)
{
  Source *src = user_data;
  MdQmp *qmp = md_guest_get_qmp (src->guest);

  src->pc_deadline_id = 0;
  if (source_is_stale (src))
    return G_SOURCE_REMOVE;
  if (qmp == NULL)
    report_unrecovered (src, "gone");
  else
    md_qmp_execute_async (qmp, "query-migrate", NULL, NULL, on_deadline_status, source_ref (src));
  return G_SOURCE_REMOVE;
}

static void
enter_paused (Source *src)
{
  src->pc_paused = TRUE;
  g_message ("migration %s: the postcopy stream of %s to %s broke; recovering it for up to %u s",
             src->migration_id, md_guest_get_name (src->guest), source_peer_name (src),
             src->opts->postcopy_recovery_timeout);
  md_migration_set_running_state (src->migration, "postcopy-paused");
  md_migration_mark_time (src->migration, "postcopy-paused");
  if (src->pc_deadline_id == 0)
    src->pc_deadline_id =
        g_timeout_add_seconds_full (G_PRIORITY_DEFAULT, src->opts->postcopy_recovery_timeout,
                                    on_deadline, source_ref (src), (GDestroyNotify) source_unref);
  recovery_attempt (src);
}

static void
on_paused (Source *src, GError *error)
{
  if (error != NULL)
    {
      /* QEMU noticed by itself meanwhile, most likely: its status says. */
      g_message ("migration %s: migrate-pause: %s", src->migration_id, error->message);
      g_error_free (error);
    }
}

static void
recovered (Source *src)
{
  g_message ("migration %s: the postcopy stream of %s is back (attempt %u)", src->migration_id,
             md_guest_get_name (src->guest), src->pc_attempts);
  src->pc_paused = src->pc_attempt = src->pc_resume_sent = src->pc_pause_sent = FALSE;
  src->pc_progress_time = g_get_monotonic_time ();
  g_clear_handle_id (&src->pc_deadline_id, g_source_remove);
  g_clear_handle_id (&src->pc_retry_id, g_source_remove);
  md_migration_set_running_state (src->migration, "postcopy");
  md_migration_mark_time (src->migration, "postcopy-recovered");
  if (src->finish_lost)
    {
      /* Finish went out before the stream broke and its answer was lost. */
      src->finish_lost = FALSE;
      source_finish_on_peer (src);
    }
}

/* A stream that moved nothing for peer-timeout seconds is dead (a cut
 * link: QEMU would wait for TCP's own timeout, many minutes). */
static void
check_progress (Source *src, JsonObject *info)
{
  JsonObject *ram =
      json_object_has_member (info, "ram") ? json_object_get_object_member (info, "ram") : NULL;
  guint64 transferred = source_member_uint (ram, "transferred");
  gint64 now = g_get_monotonic_time ();
  guint stall_s = md_manager_get_config (src->manager)->peer_timeout;

  g_debug ("migration %s: postcopy: %" G_GUINT64_FORMAT " bytes sent", src->migration_id,
           transferred);
  if (transferred != src->pc_transferred || src->pc_progress_time == 0)
    {
      src->pc_transferred = transferred;
      src->pc_progress_time = now;
      return;
    }
  if (src->pc_pause_sent || now - src->pc_progress_time < (gint64) stall_s * G_USEC_PER_SEC)
    return;
  /* Until Finish's answer says the destination's QEMU is in postcopy, the
   * switch itself may be what is stuck on the way (a cut link): a paused
   * stream could then never be recovered (that QEMU has no postcopy to
   * recover) and this QEMU could not run the guest again. QEMU's TCP
   * stream survives an outage; it is left to carry on. */
  if (md_machine_get_authority (src->machine) != MD_AUTHORITY_DESTINATION)
    return;
  g_message ("migration %s: the postcopy stream of %s moved nothing for %u s; pausing it to "
             "recover it",
             src->migration_id, md_guest_get_name (src->guest), stall_s);
  src->pc_pause_sent = TRUE;
  source_qmp_step (src, "migrate-pause", NULL, on_paused);
}

/* QEMU's status during postcopy (phase postcopy). */
void
source_recovery_on_status (Source *src, const char *status, JsonObject *info)
{
  if (g_str_equal (status, "postcopy-active"))
    {
      if (src->pc_paused)
        recovered (src);
      else
        check_progress (src, info);
    }
  else if (g_str_equal (status, "postcopy-paused"))
    {
      if (!src->pc_paused)
        enter_paused (src);
      else if (src->pc_resume_sent)
        attempt_failed (src, g_error_new (MD_ERROR, MD_ERROR_QEMU_FAILED,
                                          "QEMU could not resume the stream to host %s",
                                          source_peer_name (src)));
    }
  else if (g_str_equal (status, "postcopy-recover"))
    md_migration_set_running_state (src->migration, "postcopy-recovering");
}

/* Peer1.Finish went out in postcopy and the connection broke before its
 * answer: TRUE when recovery re-sends it (QEMU still in postcopy). */
gboolean
source_recovery_finish_lost (Source *src)
{
  if (md_machine_get_phase (src->machine) != MD_PHASE_POSTCOPY || src->qemu_completed)
    return FALSE;
  src->finish_lost = TRUE;
  return TRUE;
}
