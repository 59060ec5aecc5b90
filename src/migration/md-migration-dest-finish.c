/* migrationd: the end of an incoming migration: Finish (resume the guest
 * here once QEMU's MIGRATION event says all arrived; journal first that
 * this host holds it), Abort, and Resolve (what became of a migration,
 * for a source that lost us at the switch-over). */
#include "config.h"

#include "common/md-error.h"
#include "common/md-fault.h"
#include "common/md-options.h"
#include "md-migration-dest-private.h"
#include "storage/md-storage.h"

/* ---- Finish ------------------------------------------------------------------ */

/* The persist/undefine-source table, destination half: a definition is
 * kept or created here if persist was asked, or if the source guest was
 * persistent and a definition existed here already; otherwise the guest
 * is transient here and a definition that existed is removed. */
static gboolean
apply_persist_table (Incoming *in, GError **error)
{
  MdManager *manager = in->dest->manager;
  gboolean persist = in->opts->persist_destination || in->offline;
  gboolean source_persistent = in->opts->source_persistent;

  if (persist)
    {
      if (!md_manager_save_definition (manager, in->def, error))
        return FALSE;
      md_guest_set_definition (in->guest, md_domain_copy (in->def));
      md_guest_set_persistent (in->guest, TRUE);
    }
  else if (source_persistent && in->dest_had_config)
    md_guest_set_persistent (in->guest, TRUE);
  else
    {
      if (in->dest_had_config && !md_manager_delete_definition (manager, in->def->name, error))
        return FALSE;
      md_guest_set_persistent (in->guest, FALSE);
    }
  return TRUE;
}

static void
on_tls_object_dropped (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autofree char *id = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, &error);

  if (node == NULL)
    g_warning ("incoming migration %s: removing its TLS object from QEMU: %s", id, error->message);
}

/* The TLS credentials served the incoming stream only: the guest's QEMU
 * runs on here and must not keep them (the fault suite looks; a postcopy
 * stream still using them holds its own reference). */
void
drop_tls_object (Incoming *in)
{
  MdQmp *qmp = in->guest != NULL ? md_guest_get_qmp (in->guest) : NULL;
  g_autoptr (JsonObject) args = NULL;

  if (in->tls_object == NULL || qmp == NULL)
    return;
  args = json_object_new ();
  json_object_set_string_member (args, "id", in->tls_object);
  md_qmp_execute_async (qmp, "object-del", args, NULL, on_tls_object_dropped, g_strdup (in->id));
}

/* Finish's answer: the definition as it runs here. */
GVariant *
finish_result (Incoming *in)
{
  g_autofree char *xml = md_domain_format (in->def);
  GVariantBuilder result;

  g_variant_builder_init (&result, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&result, "{sv}", "xml", g_variant_new_string (xml));
  g_variant_builder_add (&result, "{sv}", "persisted",
                         g_variant_new_boolean (md_guest_is_persistent (in->guest)));
  return g_variant_builder_end (&result);
}

static void
finish_reply (Incoming *in, gboolean running)
{
  GDBusMethodInvocation *invocation = g_steal_pointer (&in->finish_invocation);
  g_autoptr (GError) error = NULL;

  if (!apply_persist_table (in, &error))
    md_migration_add_error_detail (in->migration, error);
  md_guest_end_migration (in->guest, running);
  g_clear_pointer (&in->created, g_strfreev); /* the guest's disks now */
  if (in->postcopy)
    {
      /* QEMU still pulls pages: the migration (and the TLS object a
       * recovered stream needs) lasts until it says completed. */
      md_fault_point ("dest-finish-done");
      if (invocation != NULL)
        md_dbus_peer1_complete_finish (NULL, invocation, finish_result (in));
      dest_recovery_watch (in);
      return;
    }
  drop_tls_object (in);
  in->ended = TRUE;
  md_migration_complete (in->migration, NULL, 0);
  g_message ("incoming migration %s: %s now runs on host %s", in->id, in->def->name,
             host_name (in->dest));
  if (invocation == NULL)
    {
      /* Adopted after the source went away: nobody to answer. */
      incoming_end (in, "running");
      return;
    }
  md_fault_point ("dest-finish-done");
  md_dbus_peer1_complete_finish (NULL, invocation, finish_result (in));
  incoming_end (in, "running");
}

static void
finish_failed (Incoming *in, GError *error)
{
  incoming_stop_events (in);
  if (in->finish_invocation == NULL)
    {
      g_prefix_error (&error, "host %s, phase finish: ", host_name (in->dest));
      incoming_abort (in, error);
      g_error_free (error);
      return;
    }
  call_failed (in, &in->finish_invocation, "finish", error);
}

static void
on_resume_event (MdQmp *qmp, const char *name, JsonObject *data, gint64 timestamp, Incoming *in)
{
  in->resume_seen = TRUE;
}

static void
stop_resume_watch (Incoming *in)
{
  if (in->resume_qmp != NULL)
    g_clear_signal_handler (&in->resume_id, in->resume_qmp);
  g_clear_object (&in->resume_qmp);
}

static void
after_cont (Incoming *in, GError *error)
{
  MdQmp *qmp = in->resume_qmp;

  if (error != NULL && !in->ended && !in->resume_seen && (qmp == NULL || md_qmp_is_closed (qmp)))
    {
      /* QEMU emits RESUME before any vCPU runs, and events it wrote are
       * read before its socket's end: without one, the guest never ran
       * here, so the source's paused copy is still the only guest. */
      md_machine_set_authority (in->machine, MD_AUTHORITY_SOURCE);
      g_prefix_error (&error, "the destination QEMU went away before the guest ran there: ");
    }
  stop_resume_watch (in);
  if (error != NULL)
    {
      finish_failed (in, error);
      return;
    }
  md_migration_mark_time (in->migration, "resumed");
  finish_reply (in, TRUE);
}

static void finish_wait (Incoming *in);

static void
resume_or_stay_paused (Incoming *in, GError *error)
{
  if (error != NULL)
    {
      /* The source already dropped its NBD client; a failure to stop our
       * server is a leak to report, not a reason to lose the guest. */
      g_warning ("incoming migration %s: stopping the NBD server: %s", in->id, error->message);
      g_error_free (error);
    }
  md_fault_point ("dest-resume");
  /* Write-ahead: from here on the guest is this copy, whatever happens to
   * either daemon; a source that asks is told so. */
  md_machine_set_authority (in->machine, MD_AUTHORITY_DESTINATION);
  if (in->opts->paused_on_destination)
    {
      finish_reply (in, FALSE);
      return;
    }
  in->resume_qmp = in->guest != NULL ? md_guest_get_qmp (in->guest) : NULL;
  if (in->resume_qmp != NULL)
    {
      g_object_ref (in->resume_qmp);
      in->resume_id =
          g_signal_connect (in->resume_qmp, "event::RESUME", G_CALLBACK (on_resume_event), in);
    }
  in_qmp (in, "cont", NULL, after_cont);
}

static void
on_export_deleted (Incoming *in, GError *error)
{
  if (error != NULL)
    {
      g_warning ("incoming migration %s: removing an NBD export: %s", in->id, error->message);
      g_error_free (error);
    }
  if (--in->exports_added == 0)
    in_qmp (in, "nbd-server-stop", NULL, resume_or_stay_paused);
}

/* The disks arrived (the source has cancelled its mirrors and dropped
 * its NBD nodes): the exports and the server go before the guest runs. */
static void
stop_exports (Incoming *in)
{
  guint n = in->exports_added;

  if (n == 0)
    {
      resume_or_stay_paused (in, NULL);
      return;
    }
  for (guint i = 0; i < n; i++)
    {
      g_autoptr (GVariant) info = g_variant_get_child_value (in->disks_info, i);
      const char *target = NULL;
      g_autofree char *id = NULL;
      JsonObject *args = json_object_new ();

      g_variant_lookup (info, "target", "&s", &target);
      id = g_strdup_printf ("md-export-%s", target);
      json_object_set_string_member (args, "id", id);
      in_qmp (in, "block-export-del", args, on_export_deleted);
    }
}

/* QEMU's incoming status decides: completed (precopy) or postcopy-active
 * (the rest follows on demand) lets the guest run here. */
static void
finish_on_status (Incoming *in, const char *status)
{
  if (in->ended || in->event_qmp == NULL)
    return;
  /* A stream that broke in postcopy (paused, recovering) still leaves the
   * newest state here: the guest runs here and waits for its pages. */
  if (g_str_equal (status, "completed") || g_str_has_prefix (status, "postcopy-"))
    {
      in->postcopy = g_str_has_prefix (status, "postcopy-");
      if (in->postcopy)
        md_machine_set_authority (in->machine, MD_AUTHORITY_SPLIT);
      incoming_stop_events (in);
      stop_exports (in);
      return;
    }
  if (g_str_equal (status, "failed") || g_str_equal (status, "cancelled"))
    finish_failed (in, g_error_new (MD_ERROR, MD_ERROR_QEMU_FAILED,
                                    "the incoming QEMU of %s did not complete the migration "
                                    "(status '%s')",
                                    in->def->name, status));
}

static void
on_finish_event (MdQmp *qmp, const char *name, JsonObject *data, gint64 timestamp, Incoming *in)
{
  finish_on_status (in, json_object_get_string_member_with_default (data, "status", ""));
}

static void
on_dest_query_migrate (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (IncomingRef) in = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, &error);

  if (in->ended)
    return;
  if (node == NULL)
    {
      finish_failed (in, g_steal_pointer (&error));
      return;
    }
  finish_on_status (
      in, json_object_get_string_member_with_default (json_node_get_object (node), "status", ""));
}

static gboolean
on_finish_timeout (gpointer user_data)
{
  Incoming *in = user_data;

  in->finish_timeout_id = 0;
  if (!in->ended)
    finish_failed (in, g_error_new (MD_ERROR, MD_ERROR_TIMEOUT,
                                    "the incoming QEMU of %s did not complete the migration "
                                    "within %d s",
                                    in->def->name, FINISH_WAIT_MS / 1000));
  return G_SOURCE_REMOVE;
}

/* Waits for QEMU's MIGRATION event (asking once at first, in case the
 * status changed before Finish arrived), with a deadline. */
static void
finish_wait (Incoming *in)
{
  MdQmp *qmp = md_guest_get_qmp (in->guest);

  if (qmp == NULL)
    {
      finish_failed (in, g_error_new (MD_ERROR, MD_ERROR_QEMU_FAILED,
                                      "the incoming QEMU of %s died", in->def->name));
      return;
    }
  incoming_stop_events (in);
  in->event_qmp = g_object_ref (qmp);
  in->event_id = g_signal_connect (qmp, "event::MIGRATION", G_CALLBACK (on_finish_event), in);
  in->finish_timeout_id = g_timeout_add_full (G_PRIORITY_DEFAULT, FINISH_WAIT_MS, on_finish_timeout,
                                              incoming_ref (in), (GDestroyNotify) incoming_unref);
  md_qmp_execute_async (qmp, "query-migrate", NULL, NULL, on_dest_query_migrate, incoming_ref (in));
}

/* The source's daemon went away after the switch-over: this copy is the
 * guest, so Finish runs here without being asked. */
void
adopt_after_lost_source (Incoming *in)
{
  g_message ("incoming migration %s: the source of %s went away after the switch-over; "
             "finishing here",
             in->id, in->def->name);
  in->finishing = TRUE;
  if (md_machine_get_phase (in->machine) != MD_PHASE_FINISH)
    md_machine_advance (in->machine, MD_PHASE_FINISH);
  finish_wait (in);
}

static void
finish_offline (Incoming *in)
{
  g_autoptr (GError) error = NULL;

  if (in->guest == NULL)
    {
      MdGuest *existing = md_manager_find_guest (in->dest->manager, in->def->name);
      if (existing != NULL)
        in->guest = g_object_ref (existing);
      else
        {
          in->guest = md_guest_new (md_manager_get_host (in->dest->manager),
                                    md_domain_copy (in->def), TRUE);
          in->guest_created = TRUE;
          md_manager_add_guest (in->dest->manager, in->guest);
        }
    }
  finish_reply (in, FALSE);
}

static void
on_offline_server_stopped (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (IncomingRef) in = user_data;
  GError *error = NULL;

  /* A clean exit flushed the images; anything else and they are suspect. */
  if (!md_nbd_server_stop_finish (result, &error))
    {
      finish_failed (in, error);
      return;
    }
  finish_offline (in);
}

gboolean
dest_handle_finish (MdPeerListener *listener, MdPeerConnection *conn,
                    GDBusMethodInvocation *invocation, const char *id, gboolean success,
                    GVariant *options, MdMigrationDest *dest)
{
  g_autoptr (GError) refused = NULL;
  Incoming *in = incoming_for_call (dest, conn, id, md_options_get_string (options, "token"),
                                    "Finish", &refused);

  if (refused != NULL)
    {
      md_error_return (invocation, g_steal_pointer (&refused));
      return TRUE;
    }
  if ((in == NULL || in->ended) && !success)
    {
      /* Already gone (we aborted it ourselves): the cleanup is done. */
      md_dbus_peer1_complete_finish (NULL, invocation, g_variant_new ("a{sv}", NULL));
      return TRUE;
    }
  if (in == NULL || in->ended)
    {
      g_dbus_method_invocation_return_error (invocation, MD_ERROR, MD_ERROR_NOT_FOUND,
                                             "host %s: no migration %s is prepared here",
                                             host_name (dest), id);
      return TRUE;
    }
  if (!success)
    {
      const char *name = md_options_get_string (options, "error-name");
      const char *message = md_options_get_string (options, "error-message");
      g_autoptr (GError) error = g_error_new (
          MD_ERROR, MD_ERROR_FAILED, "the source host reported: %s%s%s",
          message != NULL ? message : "failure", name != NULL ? " " : "", name != NULL ? name : "");
      GError *remote = NULL;

      if (name != NULL)
        {
          /* Keep the source's error name on this host's Migration1 too. */
          remote = g_dbus_error_new_for_dbus_error (name, message != NULL ? message : "");
          g_clear_error (&error);
          error = md_error_convert (remote, MD_ERROR_FAILED);
          g_error_free (remote);
        }
      md_dbus_peer1_complete_finish (NULL, invocation, g_variant_new ("a{sv}", NULL));
      if (in->prepare_invocation != NULL)
        {
          if (in->abort_error == NULL)
            in->abort_error = g_error_copy (error);
        }
      else
        incoming_abort (in, error);
      return TRUE;
    }
  if (in->postcopy_watch)
    {
      /* Again, after a postcopy recovery: the guest already runs here. */
      md_dbus_peer1_complete_finish (NULL, invocation, finish_result (in));
      return TRUE;
    }
  if (!in->prepared || in->finish_invocation != NULL)
    {
      g_dbus_method_invocation_return_error (invocation, MD_ERROR, MD_ERROR_INVALID_STATE,
                                             "host %s: migration %s is not ready to finish",
                                             host_name (dest), id);
      return TRUE;
    }
  in->finish_invocation = invocation;
  md_migration_mark_time (in->migration, "finish-received");
  md_fault_point ("dest-finish-received");
  in->finishing = TRUE;
  md_machine_advance (in->machine, MD_PHASE_FINISH);
  if (in->offline && in->nbd_server != NULL)
    {
      md_nbd_server_stop_async (g_steal_pointer (&in->nbd_server), on_offline_server_stopped,
                                incoming_ref (in));
      return TRUE;
    }
  if (in->offline)
    {
      finish_offline (in);
      return TRUE;
    }
  finish_wait (in);
  return TRUE;
}

gboolean
dest_handle_abort (MdPeerListener *listener, MdPeerConnection *conn,
                   GDBusMethodInvocation *invocation, const char *id, const char *reason,
                   MdMigrationDest *dest)
{
  g_autoptr (GError) error = NULL;
  /* Abort carries no token: after a reconnect the source ends the
   * migration with Finish(false) and the token instead. */
  Incoming *in = incoming_for_call (dest, conn, id, NULL, "Abort", &error);

  if (error != NULL)
    {
      md_error_return (invocation, g_steal_pointer (&error));
      return TRUE;
    }
  md_dbus_peer1_complete_abort (NULL, invocation);
  if (in == NULL || in->ended)
    return TRUE; /* idempotent */
  error = g_error_new (MD_ERROR, MD_ERROR_CANCELLED, "aborted by the source host: %s", reason);
  if (in->prepare_invocation != NULL)
    {
      if (in->abort_error == NULL)
        in->abort_error = g_steal_pointer (&error);
    }
  else
    incoming_abort (in, error);
  return TRUE;
}

/* What became of migration @id here: from the running migration, or from
 * the journal (an ended one's outcome, or what a restart resolved). */
static const char *
outcome_of (MdMigrationDest *dest, MdPeerConnection *conn, const char *id, const char **phase,
            const char **authority, GPtrArray **records)
{
  g_autofree char *key = incoming_key (conn, id);
  g_autofree char *dn = md_peer_normalize_dn (
      md_peer_connection_get_dn (conn) != NULL ? md_peer_connection_get_dn (conn) : "");
  Incoming *in = g_hash_table_lookup (dest->incoming, key);

  if (in != NULL && in->machine != NULL)
    {
      *phase = md_machine_get_phase_name (in->machine);
      *authority = md_authority_to_string (md_machine_get_authority (in->machine));
      if (md_machine_get_authority (in->machine) == MD_AUTHORITY_DESTINATION)
        return "running";
      return "pending";
    }
  *records = md_journal_list (md_manager_get_config (dest->manager)->state_dir);
  for (guint i = 0; i < (*records)->len; i++)
    {
      MdJournal *journal = g_ptr_array_index (*records, i);
      const char *outcome = md_journal_get_string (journal, "outcome");

      /* Only the peer that prepared it learns about it. */
      if (!g_str_equal (md_journal_get_direction (journal), "incoming")
          || g_strcmp0 (md_journal_get_id (journal), id) != 0
          || g_strcmp0 (md_journal_get_string (journal, "owner-dn"), dn) != 0)
        continue;
      *phase = md_journal_get_string (journal, "phase");
      *authority = md_journal_get_string (journal, "authority");
      return outcome != NULL ? outcome : "pending";
    }
  return "unknown";
}

gboolean
dest_handle_resolve (MdPeerListener *listener, MdPeerConnection *conn,
                     GDBusMethodInvocation *invocation, const char *id, MdMigrationDest *dest)
{
  g_autoptr (GPtrArray) records = NULL;
  const char *phase = NULL;
  const char *authority = NULL;
  const char *outcome;
  GVariantBuilder result;

  if (md_manager_is_recovering (dest->manager))
    outcome = "pending";
  else
    outcome = outcome_of (dest, conn, id, &phase, &authority, &records);
  g_message ("host %s asked about migration %s: %s", md_peer_connection_get_host_name (conn), id,
             outcome);
  g_variant_builder_init (&result, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&result, "{sv}", "outcome", g_variant_new_string (outcome));
  if (phase != NULL)
    g_variant_builder_add (&result, "{sv}", "phase", g_variant_new_string (phase));
  if (authority != NULL)
    g_variant_builder_add (&result, "{sv}", "authority", g_variant_new_string (authority));
  md_dbus_peer1_complete_resolve (NULL, invocation, g_variant_builder_end (&result));
  return TRUE;
}

static void
on_paths_checked (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GDBusMethodInvocation) invocation = user_data;
  GError *error = NULL;
  g_autoptr (GVariant) visible = md_image_admission_check_paths_finish (result, &error);

  if (visible == NULL)
    {
      md_error_return (g_steal_pointer (&invocation), error);
      return;
    }
  md_dbus_peer1_complete_check_paths (NULL, g_steal_pointer (&invocation), visible);
}

/* Answers only for paths inside the image directories, off the main
 * loop: anything else gets no answer, so a peer cannot probe this host's
 * files. */
gboolean
dest_handle_check_paths (MdPeerListener *listener, MdPeerConnection *conn,
                         GDBusMethodInvocation *invocation, const char *const *paths,
                         MdMigrationDest *dest)
{
  const char *none[] = { NULL };

  md_image_admission_check_paths_async (dest->admission, paths != NULL ? paths : none,
                                        on_paths_checked, g_object_ref (invocation));
  return TRUE;
}
