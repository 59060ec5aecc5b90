/* migrationd: the outgoing side of a migration.
 *
 * Begin (here), Prepare (on the peer), Perform (here, QEMU over QMP),
 * Finish (on the peer), Confirm (here). The invariant: until the peer has
 * resumed the guest, the source QEMU is never stopped for good; any
 * failure before that resumes the guest here and has the peer remove what
 * it prepared. The first error wins; later ones become detail. */
#include "config.h"

#include "md-migration-source.h"
#include "common/md-error.h"
#include "common/md-options.h"
#include "qemu/md-qemu-argv.h"
#include "md-migration-source-private.h"
#include "md-address.h"

/* QEMU 7.2 caps migration at 128 MiB/s unless told otherwise; "unlimited"
 * is this much (bytes/s), as libvirt does. */
#define UNLIMITED_BANDWIDTH (G_GUINT64_CONSTANT (1) << 40)

const MdOptionSpec md_migration_option_specs[] = {
  { "live", "b" },
  { "offline", "b" },
  { "tls", "b" },
  { "bandwidth", "t" },
  { "max-downtime", "t" },
  { "auto-converge", "b" },
  { "postcopy", "b" },
  { "parallel-connections", "u" },
  { "compression", "s" },
  { "persist-destination", "b" },
  { "undefine-source", "b" },
  { "destination-xml", "s" },
  { "destination-name", "s" },
  { "migration-address", "s" },
  { "migration-port", "q" },
  { "paused-on-destination", "b" },
  { "abort-after", "u" },
  { "copy-storage", "s" },
  { "disks", "as" },
  { "nbd-port", "q" },
  { "nbd-address", "s" },
  { "verify", "b" },
  { "auth.no_user_interaction", "b" },
  { NULL, NULL },
};

static void source_poll (Source *src);

const char *
source_host_name (Source *src)
{
  return md_manager_get_config (src->manager)->host_name;
}

const char *
source_peer_name (Source *src)
{
  if (src->peer != NULL && md_peer_connection_get_host_name (src->peer) != NULL)
    return md_peer_connection_get_host_name (src->peer);
  return src->destination;
}

const char *
source_phase (Source *src)
{
  return md_dbus_migration1_get_phase (MD_DBUS_MIGRATION1 (src->migration));
}

static void source_free (Source *src);

Source *
source_ref (Source *src)
{
  src->refs++;
  return src;
}

void
source_unref (Source *src)
{
  if (--src->refs == 0)
    source_free (src);
}

static void
source_free (Source *src)
{
  g_clear_object (&src->peer);
  g_clear_object (&src->cancellable);
  g_clear_object (&src->guest);
  g_clear_object (&src->migration);
  g_clear_pointer (&src->options, g_variant_unref);
  g_clear_pointer (&src->dest_def, md_domain_free);
  g_clear_pointer (&src->plan, g_ptr_array_unref);
  g_clear_pointer (&src->disks_info, g_variant_unref);
  g_free (src->nbd_host);
  g_free (src->uri);
  g_strfreev (src->fresh_targets);
  g_free (src->destination);
  g_free (src->migration_id);
  g_free (src->tls_object);
  g_clear_error (&src->error);
  g_free (src);
}

JsonObject *
source_json_args (void)
{
  return json_object_new ();
}

/* Commands whose answer only matters as success or failure. */

typedef struct
{
  Source *src;
  StepFunc next;
} Step;

static void
on_step_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Step *step = user_data;
  GError *error = NULL;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, &error);

  if (!step->src->done)
    step->next (step->src, error);
  else if (error != NULL)
    g_error_free (error);
  source_unref (step->src);
  g_free (step);
}

void
source_qmp_step (Source *src, const char *command, JsonObject *args, StepFunc next)
{
  MdQmp *qmp = md_guest_get_qmp (src->guest);
  Step *step;

  if (qmp == NULL)
    {
      next (src, g_error_new (MD_ERROR, MD_ERROR_QEMU_FAILED, "QEMU of guest %s is gone on host %s",
                              md_guest_get_name (src->guest), source_host_name (src)));
      if (args != NULL)
        json_object_unref (args);
      return;
    }
  step = g_new0 (Step, 1);
  step->src = source_ref (src);
  step->next = next;
  md_qmp_execute_async (qmp, command, args, NULL, on_step_done, step);
  if (args != NULL)
    json_object_unref (args);
}

void
source_ignore_result (Source *src, GError *error)
{
  if (error != NULL)
    {
      g_debug ("migration %s: cleanup step failed: %s", src->migration_id, error->message);
      g_error_free (error);
    }
}

/* ---- the end: success or failure ---------------------------------------- */

/* The migration is over: publish the result and let go; callbacks still
 * pending hold their own reference and find done set. */
static void
source_done (Source *src)
{
  if (src->done)
    return;
  src->done = TRUE;
  if (src->event_qmp != NULL)
    g_clear_signal_handler (&src->event_id, src->event_qmp);
  g_clear_object (&src->event_qmp);
  g_clear_handle_id (&src->poll_id, g_source_remove);
  g_clear_handle_id (&src->abort_id, g_source_remove);
  if (src->peer != NULL && src->peer_closed_id != 0)
    g_clear_signal_handler (&src->peer_closed_id, src->peer);
  if (src->peer != NULL && src->peer_aborted_id != 0)
    g_clear_signal_handler (&src->peer_aborted_id, md_peer_connection_get_proxy (src->peer));
  if (src->peer != NULL)
    md_peer_connection_close (src->peer);
  md_migration_set_control (src->migration, NULL, NULL);
  md_migration_complete (src->migration, src->error, src->downtime);
  source_unref (src);
}

static void
on_source_qemu_gone (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (SourceRef) src = user_data;
  g_autoptr (GError) error = NULL;

  if (src->done)
    return;
  if (!md_guest_destroy_finish (MD_GUEST (source), result, &error))
    g_warning ("migration %s: stopping the source QEMU after success: %s", src->migration_id,
               error->message);
  source_done (src);
}

/* Confirm after success: the guest runs on the peer; the source QEMU goes
 * and the source definition follows the persist/undefine table. */
static void
source_confirm_success (Source *src)
{
  gboolean undefine = md_options_get_boolean (src->options, "undefine-source", FALSE);
  g_autoptr (GError) error = NULL;

  md_migration_set_phase (src->migration, "confirm");
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
  md_guest_destroy_async (src->guest, on_source_qemu_gone, source_ref (src));
}

static void
on_resumed_after_failure (Source *src, GError *error)
{
  if (error != NULL)
    {
      /* The guest stays here, paused: say so rather than hide it. */
      g_prefix_error (&error,
                      "host %s: could not resume guest %s after the failed migration "
                      "(it is paused here; resume it with Guest1.Resume): ",
                      source_host_name (src), md_guest_get_name (src->guest));
      md_migration_add_error_detail (src->migration, error);
      g_error_free (error);
      md_guest_end_migration (src->guest, FALSE);
    }
  else
    md_guest_end_migration (src->guest, TRUE);
  source_done (src);
}

static void
source_resume_here (Source *src)
{
  md_migration_set_phase (src->migration, "confirm");
  if (src->tls_object != NULL && md_guest_get_qmp (src->guest) != NULL)
    {
      JsonObject *args = source_json_args ();
      json_object_set_string_member (args, "id", src->tls_object);
      source_qmp_step (src, "object-del", args, source_ignore_result);
    }
  if (src->offline || !md_guest_is_active (src->guest))
    {
      md_guest_end_migration (src->guest, FALSE);
      source_done (src);
      return;
    }
  if (src->was_running)
    source_qmp_step (src, "cont", NULL, on_resumed_after_failure);
  else
    {
      md_guest_end_migration (src->guest, FALSE);
      source_done (src);
    }
}

static void
on_peer_finish_failed (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (SourceRef) src = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) out = NULL;

  if (!md_dbus_peer1_call_finish_finish (MD_DBUS_PEER1 (source), &out, result, &error)
      && !src->done)
    {
      /* Not fatal for the guest: the peer kills what it prepared when the
       * connection drops anyway (autokill). */
      g_autoptr (GError) converted = md_error_convert (error, MD_ERROR_PEER_FAILED);
      g_prefix_error (&converted, "host %s: Finish (cleanup) failed: ", source_peer_name (src));
      md_migration_add_error_detail (src->migration, converted);
    }
  if (!src->done)
    source_resume_here (src);
}

static void
on_migrate_cancelled (Source *src, GError *error)
{
  source_ignore_result (src, error);
  src->qemu_migrating = FALSE;
  source_cancel_mirrors (src);
  if (src->peer != NULL && !md_peer_connection_is_closed (src->peer))
    {
      GVariantBuilder opts;
      g_autoptr (GError) converted = md_error_convert (src->error, MD_ERROR_FAILED);

      g_variant_builder_init (&opts, G_VARIANT_TYPE_VARDICT);
      g_variant_builder_add (&opts, "{sv}", "error-name",
                             g_variant_new_string (md_error_code_to_dbus_name (converted->code)));
      g_variant_builder_add (&opts, "{sv}", "error-message",
                             g_variant_new_string (converted->message));
      md_migration_set_phase (src->migration, "finish");
      md_dbus_peer1_call_finish (md_peer_connection_get_proxy (src->peer), src->migration_id, FALSE,
                                 g_variant_builder_end (&opts), NULL, on_peer_finish_failed,
                                 source_ref (src));
      return;
    }
  source_resume_here (src);
}

/* The failure path, whatever the phase: stop QEMU's migration, have the
 * peer remove what it prepared, resume the guest here. */
void
source_fail (Source *src, GError *error)
{
  if (src->error == NULL)
    {
      src->error = md_error_convert (error, MD_ERROR_FAILED);
      md_migration_add_error_detail (src->migration, src->error);
    }
  else
    md_migration_add_error_detail (src->migration, error);
  g_error_free (error);
  if (src->finishing)
    return;
  src->finishing = TRUE;
  g_clear_handle_id (&src->poll_id, g_source_remove);
  g_clear_handle_id (&src->abort_id, g_source_remove);
  g_cancellable_cancel (src->cancellable);

  if (src->peer_resumed)
    {
      /* The guest already runs on the peer; the source must not resume.
       * This only happens when post-copy broke after the switch. */
      md_guest_end_migration (src->guest, FALSE);
      source_done (src);
      return;
    }
  if (src->qemu_migrating)
    source_qmp_step (src, "migrate_cancel", NULL, on_migrate_cancelled);
  else
    on_migrate_cancelled (src, NULL);
}

/* ---- Finish (peer) and Confirm --------------------------------------------- */

static void
on_peer_finished (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (SourceRef) src = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) out = NULL;

  if (src->done)
    return;
  if (!md_dbus_peer1_call_finish_finish (MD_DBUS_PEER1 (source), &out, result, &error))
    {
      GError *converted = md_error_convert (error, MD_ERROR_PEER_FAILED);
      g_prefix_error (&converted, "host %s, phase finish: ", source_peer_name (src));
      source_fail (src, converted);
      return;
    }
  src->peer_resumed = TRUE;
  if (src->postcopy_started && src->qemu_migrating)
    return; /* Confirm once the rest of the memory has been pulled */
  source_confirm_success (src);
}

void
source_finish_on_peer (Source *src)
{
  md_migration_set_phase (src->migration, "finish");
  md_dbus_peer1_call_finish (md_peer_connection_get_proxy (src->peer), src->migration_id, TRUE,
                             g_variant_new ("a{sv}", NULL), NULL, on_peer_finished,
                             source_ref (src));
}

/* ---- Perform: following QEMU ---------------------------------------------- */

guint64
source_member_uint (JsonObject *obj, const char *name)
{
  if (obj == NULL || !json_object_has_member (obj, name))
    return 0;
  return (guint64) MAX (json_object_get_int_member (obj, name), 0);
}

static void
on_query_migrate (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (SourceRef) src = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, &error);
  JsonObject *info, *ram;
  const char *status;
  MdMigrationStats stats = { 0 };

  src->poll_pending = FALSE;
  if (src->done || src->finishing || src->error != NULL)
    return;
  if (node == NULL)
    {
      g_prefix_error (&error, "host %s, phase perform: ", source_host_name (src));
      source_fail (src, g_steal_pointer (&error));
      return;
    }
  info = json_node_get_object (node);
  status = json_object_get_string_member_with_default (info, "status", "");
  ram = json_object_has_member (info, "ram") ? json_object_get_object_member (info, "ram") : NULL;
  stats.memory_total = source_member_uint (ram, "total");
  stats.memory_processed = source_member_uint (ram, "transferred");
  stats.memory_remaining = source_member_uint (ram, "remaining");
  stats.rate = (guint64) ((ram != NULL && json_object_has_member (ram, "mbps")
                               ? json_object_get_double_member (ram, "mbps")
                               : 0)
                          * 1000000 / 8);
  stats.dirty_rate = source_member_uint (ram, "dirty-pages-rate")
                     * MAX (source_member_uint (ram, "page-size"), 4096);
  stats.iteration = source_member_uint (ram, "dirty-sync-count");
  stats.expected_downtime = source_member_uint (info, "expected-downtime");
  stats.disk_total = src->disk_total;
  stats.disk_processed = src->disk_processed;
  stats.disk_remaining = src->disk_total - MIN (src->disk_processed, src->disk_total);
  md_migration_update_stats (src->migration, &stats);
  md_migration_set_statistic (src->migration, "qemu-status", g_variant_new_string (status));
  md_migration_set_statistic (
      src->migration, "cpu-throttle-percentage",
      g_variant_new_uint64 (source_member_uint (info, "cpu-throttle-percentage")));
  if (ram != NULL)
    {
      md_migration_set_statistic (src->migration, "pages-duplicate",
                                  g_variant_new_uint64 (source_member_uint (ram, "duplicate")));
      md_migration_set_statistic (src->migration, "pages-normal",
                                  g_variant_new_uint64 (source_member_uint (ram, "normal")));
      md_migration_set_statistic (
          src->migration, "postcopy-requests",
          g_variant_new_uint64 (source_member_uint (ram, "postcopy-requests")));
    }

  if (g_str_equal (status, "completed") && source_member_uint (info, "total-time") == 0
      && !src->asked_again)
    {
      /* QEMU 7.2 may say completed a moment before it fills in its final
       * figures; ask once more for them. */
      src->asked_again = TRUE;
      source_poll (src);
      return;
    }
  if (g_str_equal (status, "completed"))
    {
      src->qemu_migrating = FALSE;
      src->downtime = source_member_uint (info, "downtime");
      md_migration_set_statistic (src->migration, "qemu-total-time-ms",
                                  g_variant_new_uint64 (source_member_uint (info, "total-time")));
      md_migration_set_statistic (src->migration, "qemu-setup-time-ms",
                                  g_variant_new_uint64 (source_member_uint (info, "setup-time")));
      g_clear_handle_id (&src->poll_id, g_source_remove);
      g_clear_handle_id (&src->abort_id, g_source_remove);
      if (src->peer_resumed)
        source_confirm_success (src); /* post-copy: the peer already runs it */
      else if (src->mirrors_added > 0)
        source_stop_mirrors (src);
      else
        source_finish_on_peer (src);
    }
  else if (g_str_equal (status, "postcopy-active") && !src->postcopy_started)
    {
      /* From here the guest's newest state lives on the peer: resume it
       * there at once, as libvirt does, and confirm when QEMU is done. */
      src->postcopy_started = TRUE;
      g_clear_handle_id (&src->abort_id, g_source_remove);
      md_migration_set_running_state (src->migration, "postcopy");
      md_migration_set_phase (src->migration, "postcopy");
      source_finish_on_peer (src);
    }
  else if (g_str_equal (status, "failed") || g_str_equal (status, "cancelled"))
    {
      const char *desc = json_object_get_string_member_with_default (info, "error-desc", NULL);

      src->qemu_migrating = FALSE;
      if (g_str_equal (status, "cancelled") && src->error != NULL)
        return;
      source_fail (src, g_error_new (MD_ERROR,
                                     g_str_equal (status, "cancelled") ? MD_ERROR_CANCELLED
                                                                       : MD_ERROR_QEMU_FAILED,
                                     "host %s, phase perform: QEMU's migration %s%s%s",
                                     source_host_name (src), status, desc ? ": " : "",
                                     desc ? desc : ""));
    }
}

/* One status query at a time: a slow QEMU must not pile them up. */
void
source_query (Source *src, const char *command, GAsyncReadyCallback callback)
{
  MdQmp *qmp = md_guest_get_qmp (src->guest);

  if (qmp == NULL)
    {
      source_fail (src,
                   g_error_new (MD_ERROR, MD_ERROR_QEMU_FAILED,
                                "host %s, phase %s: QEMU of guest %s died", source_host_name (src),
                                source_phase (src), md_guest_get_name (src->guest)));
      return;
    }
  if (src->poll_pending)
    return;
  src->poll_pending = TRUE;
  md_qmp_execute_async (qmp, command, NULL, NULL, callback, source_ref (src));
}

static void
source_poll (Source *src)
{
  source_query (src, "query-migrate", on_query_migrate);
}

static gboolean
on_poll_timer (gpointer user_data)
{
  source_poll (user_data);
  return G_SOURCE_CONTINUE;
}

static gboolean
on_abort_timer (gpointer user_data)
{
  Source *src = user_data;
  guint32 seconds = md_options_get_uint32 (src->options, "abort-after", 0);

  src->abort_id = 0;
  source_fail (src,
               g_error_new (MD_ERROR, MD_ERROR_TIMEOUT,
                            "host %s, phase perform: migration of %s did not converge "
                            "within abort-after=%u s (guest dirty rate %" G_GUINT64_FORMAT
                            " B/s, transfer rate %" G_GUINT64_FORMAT
                            " B/s); the guest keeps running here. Try %s",
                            source_host_name (src), md_guest_get_name (src->guest), seconds,
                            md_dbus_migration1_get_dirty_rate (MD_DBUS_MIGRATION1 (src->migration)),
                            md_dbus_migration1_get_rate (MD_DBUS_MIGRATION1 (src->migration)),
                            md_options_get_boolean (src->options, "auto-converge", FALSE)
                                ? "postcopy, a higher bandwidth or a longer max-downtime"
                                : "auto-converge, postcopy, a higher bandwidth or a longer "
                                  "max-downtime"));
  return G_SOURCE_REMOVE;
}

static void
on_migrate_started (Source *src, GError *error)
{
  guint32 abort_after;

  if (error != NULL)
    {
      g_prefix_error (&error, "host %s, phase perform: ", source_host_name (src));
      source_fail (src, error);
      return;
    }
  if (src->finishing)
    return;
  src->qemu_migrating = TRUE;
  /* QEMU says when its status changes; the timer is for progress only. */
  src->event_qmp = g_object_ref (md_guest_get_qmp (src->guest));
  src->event_id =
      g_signal_connect_swapped (src->event_qmp, "event::MIGRATION", G_CALLBACK (source_poll), src);
  md_migration_set_phase (src->migration, "perform");
  md_migration_set_running_state (src->migration, "running");
  src->poll_id = g_timeout_add (POLL_INTERVAL_MS, on_poll_timer, src);
  abort_after = md_options_get_uint32 (src->options, "abort-after", 0);
  if (abort_after > 0)
    src->abort_id = g_timeout_add_seconds (abort_after, on_abort_timer, src);
}

static void
start_migrate (Source *src, GError *error)
{
  JsonObject *args;

  if (error != NULL)
    {
      g_prefix_error (&error, "host %s, phase perform: setting up QEMU: ", source_host_name (src));
      source_fail (src, error);
      return;
    }
  if (src->finishing)
    return;
  args = source_json_args ();
  json_object_set_string_member (args, "uri", src->uri);
  source_qmp_step (src, "migrate", args, on_migrate_started);
}

static void
set_parameters (Source *src, GError *error)
{
  JsonObject *args;
  guint64 bandwidth = md_options_get_uint64 (src->options, "bandwidth", 0);
  guint32 channels = md_options_get_uint32 (src->options, "parallel-connections", 0);
  const char *compression = md_options_get_string (src->options, "compression");

  if (error != NULL)
    {
      start_migrate (src, error);
      return;
    }
  args = source_json_args ();
  json_object_set_int_member (args, "max-bandwidth",
                              (gint64) (bandwidth > 0 ? bandwidth : UNLIMITED_BANDWIDTH));
  if (md_options_get_uint64 (src->options, "max-downtime", 0) > 0)
    json_object_set_int_member (args, "downtime-limit",
                                (gint64) md_options_get_uint64 (src->options, "max-downtime", 0));
  json_object_set_string_member (args, "tls-creds", src->tls_object ? src->tls_object : "");
  json_object_set_string_member (
      args, "tls-hostname", src->tls_object ? md_peer_connection_get_host_name (src->peer) : "");
  if (channels > 0)
    json_object_set_int_member (args, "multifd-channels", channels);
  if (compression != NULL && channels > 0)
    json_object_set_string_member (args, "multifd-compression", compression);
  md_migration_set_bandwidth_property (src->migration, bandwidth);
  source_qmp_step (src, "migrate-set-parameters", args, start_migrate);
}

/* Every capability is set explicitly, on or off: QEMU keeps them from an
 * earlier attempt, and both ends must agree. */
JsonObject *
md_migration_capabilities_args (GVariant *options)
{
  JsonObject *args = json_object_new ();
  JsonArray *caps = json_array_new ();
  const struct
  {
    const char *name;
    gboolean on;
  } list[] = {
    { "events", TRUE },
    { "auto-converge", md_options_get_boolean (options, "auto-converge", FALSE) },
    { "postcopy-ram", md_options_get_boolean (options, "postcopy", FALSE) },
    { "multifd", md_options_get_uint32 (options, "parallel-connections", 0) > 0 },
    { "pause-before-switchover", FALSE },
  };

  for (guint i = 0; i < G_N_ELEMENTS (list); i++)
    {
      JsonObject *cap = json_object_new ();
      json_object_set_string_member (cap, "capability", list[i].name);
      json_object_set_boolean_member (cap, "state", list[i].on);
      json_array_add_object_element (caps, cap);
    }
  json_object_set_array_member (args, "capabilities", caps);
  return args;
}

void
source_set_capabilities (Source *src, GError *error)
{
  if (error != NULL)
    {
      start_migrate (src, error);
      return;
    }
  source_qmp_step (src, "migrate-set-capabilities", md_migration_capabilities_args (src->options),
                   set_parameters);
}

static void
add_tls_object (Source *src, GError *error)
{
  JsonObject *args;

  if (error != NULL || !md_options_get_boolean (src->options, "tls", TRUE))
    {
      source_start_mirrors (src, error);
      return;
    }
  /* QEMU reads the same PKI the daemons use (tls-creds-x509 layout). */
  src->tls_object = g_strdup_printf (
      "md-tls-%s", strrchr (md_migration_get_object_path (src->migration), '/') + 1);
  args = source_json_args ();
  json_object_set_string_member (args, "qom-type", "tls-creds-x509");
  json_object_set_string_member (args, "id", src->tls_object);
  json_object_set_string_member (args, "dir", md_manager_get_config (src->manager)->tls_dir);
  json_object_set_string_member (args, "endpoint", "client");
  json_object_set_boolean_member (args, "verify-peer", TRUE);
  source_qmp_step (src, "object-add", args, source_start_mirrors);
}

static void
source_perform (Source *src, const char *uri)
{
  /* Disks first: RAM moves only once every mirror is in sync. Phase
   * perform starts when QEMU's migration does. */
  if (src->plan != NULL && src->plan->len > 0)
    md_migration_set_phase (src->migration, "mirror-disks");
  g_free (src->uri);
  src->uri = g_strdup (uri);
  if (!md_options_get_boolean (src->options, "live", TRUE) && src->was_running)
    source_qmp_step (src, "stop", NULL, add_tls_object);
  else
    add_tls_object (src, NULL);
}

/* ---- Prepare (peer) ---------------------------------------------------------- */

static void
on_peer_prepared (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (SourceRef) src = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) out = NULL;
  const char *uri = NULL;
  const char *incoming = NULL;

  if (src->done)
    return;
  if (!md_dbus_peer1_call_prepare_finish (MD_DBUS_PEER1 (source), &out, result, &error))
    {
      GError *converted = md_error_convert (error, MD_ERROR_PEER_FAILED);
      if (src->error != NULL)
        {
          /* Cancelled meanwhile: the peer may have prepared; have it undo. */
          source_fail (src, converted);
          return;
        }
      g_prefix_error (&converted, "host %s, phase prepare: ", source_peer_name (src));
      source_fail (src, converted);
      return;
    }
  if (src->finishing)
    return;
  g_variant_lookup (out, "migration-uri", "&s", &uri);
  g_variant_lookup (out, "nbd-address", "s", &src->nbd_host);
  g_variant_lookup (out, "nbd-port", "q", &src->nbd_port);
  g_variant_lookup (out, "fresh-targets", "^as", &src->fresh_targets);
  if (src->plan->len > 0 && (src->nbd_host == NULL || src->nbd_port == 0))
    {
      source_fail (src, g_error_new (MD_ERROR, MD_ERROR_PEER_FAILED,
                                     "host %s, phase prepare: the peer offered no NBD server "
                                     "for the disks to copy",
                                     source_peer_name (src)));
      return;
    }
  if (g_variant_lookup (out, "migration", "&o", &incoming))
    md_migration_set_statistic (src->migration, "peer-migration", g_variant_new_string (incoming));
  if (src->offline)
    {
      if (src->plan->len > 0)
        source_copy_offline (src);
      else
        source_finish_on_peer (src);
      return;
    }
  if (uri == NULL)
    {
      source_fail (src, g_error_new (MD_ERROR, MD_ERROR_PEER_FAILED,
                                     "host %s, phase prepare: the peer gave no migration URI",
                                     source_peer_name (src)));
      return;
    }
  {
    /* A peer's string never reaches QEMU as is: parsed, checked, and
     * rendered by us (an exec: URI would run a shell on this host). */
    g_autoptr (MdAddress) address = md_address_parse_tcp_uri (uri, &error);
    g_autofree char *checked = address != NULL ? md_address_to_uri (address, &error) : NULL;
    if (checked == NULL)
      {
        source_fail (src, g_error_new (MD_ERROR, MD_ERROR_PEER_FAILED,
                                       "host %s, phase prepare: the peer's migration URI is "
                                       "refused: %s",
                                       source_peer_name (src), error->message));
        return;
      }
    source_perform (src, checked);
  }
}

static void
on_peer_aborted (MdDbusPeer1 *proxy, const char *id, const char *name, const char *message,
                 Source *src)
{
  g_autoptr (GError) remote = NULL;

  if (g_strcmp0 (id, src->migration_id) != 0 || src->peer_resumed)
    return;
  remote = g_dbus_error_new_for_dbus_error (name, message);
  source_fail (src, md_error_convert (remote, MD_ERROR_PEER_FAILED));
}

static void
on_peer_closed (MdPeerConnection *peer, Source *src)
{
  if (src->peer_resumed && !src->postcopy_started)
    return;
  source_fail (src,
               g_error_new (MD_ERROR, MD_ERROR_PEER_FAILED,
                            "host %s: lost the connection to the migrationd of host %s in "
                            "phase %s; the guest keeps running here",
                            source_host_name (src), source_peer_name (src), source_phase (src)));
}

static GVariant *
prepare_options (Source *src)
{
  GVariantBuilder builder;
  GVariantIter iter;
  const char *key;
  GVariant *value;

  g_variant_builder_init (&builder, G_VARIANT_TYPE_VARDICT);
  g_variant_iter_init (&iter, src->options);
  while (g_variant_iter_loop (&iter, "{&sv}", &key, &value))
    if (!g_str_equal (key, "destination-xml"))
      g_variant_builder_add (&builder, "{sv}", key, value);
  g_variant_builder_add (&builder, "{sv}", "source-persistent",
                         g_variant_new_boolean (src->src_persistent));
  g_variant_builder_add (&builder, "{sv}", "source-host",
                         g_variant_new_string (source_host_name (src)));
  g_variant_builder_add (&builder, "{sv}", "source-migration",
                         g_variant_new_string (md_migration_get_object_path (src->migration)));
  if (src->offline)
    g_variant_builder_add (&builder, "{sv}", "offline", g_variant_new_boolean (TRUE));
  if (src->disks_info != NULL)
    g_variant_builder_add (&builder, "{sv}", "disks-info", src->disks_info);
  return g_variant_builder_end (&builder);
}

static void
source_prepare (Source *src)
{
  g_autofree char *xml = md_domain_format (src->dest_def);

  md_dbus_peer1_call_prepare (md_peer_connection_get_proxy (src->peer), src->migration_id, xml,
                              prepare_options (src), src->cancellable, on_peer_prepared,
                              source_ref (src));
}

static void
on_block_nodes (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (SourceRef) src = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) node =
      src->offline ? NULL : md_qmp_execute_finish (MD_QMP (source), result, &error);

  if (src->done || src->finishing)
    return;
  if (src->offline)
    src->disks_info = md_storage_describe_offline_finish (result, &error);
  else if (node != NULL)
    src->disks_info = md_storage_describe (src->plan, node, src->storage_mode, &error);
  if (src->disks_info == NULL)
    {
      g_prefix_error (&error, "host %s, phase begin: ", source_host_name (src));
      source_fail (src, g_steal_pointer (&error));
      return;
    }
  g_variant_ref_sink (src->disks_info);
  source_prepare (src);
}

static void
on_peer_connected (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (SourceRef) src = user_data;
  g_autoptr (GError) error = NULL;
  g_autofree char *peer_label = NULL;

  src->peer = md_peer_connect_finish (result, &error);
  if (src->done)
    return;
  if (src->peer == NULL)
    {
      GError *converted = md_error_convert (error, MD_ERROR_PEER_FAILED);
      g_prefix_error (&converted,
                      "host %s, phase prepare: connecting to %s: ", source_host_name (src),
                      src->destination);
      source_fail (src, converted);
      return;
    }
  if (src->finishing)
    return;
  peer_label = g_strdup_printf ("%s (%s)", md_peer_connection_get_host_name (src->peer),
                                md_peer_connection_get_address (src->peer));
  md_migration_set_peer (src->migration, peer_label);
  src->peer_closed_id = g_signal_connect (src->peer, "closed", G_CALLBACK (on_peer_closed), src);
  src->peer_aborted_id = g_signal_connect (md_peer_connection_get_proxy (src->peer), "aborted",
                                           G_CALLBACK (on_peer_aborted), src);
  if (src->plan->len > 0 && src->offline)
    {
      md_storage_describe_offline_async (src->plan, src->storage_mode, src->cancellable,
                                         on_block_nodes, source_ref (src));
      return;
    }
  if (src->plan->len > 0)
    {
      g_autoptr (JsonObject) args = source_json_args ();
      json_object_set_boolean_member (args, "flat", TRUE);
      md_qmp_execute_async (md_guest_get_qmp (src->guest), "query-named-block-nodes", args, NULL,
                            on_block_nodes, source_ref (src));
      return;
    }
  source_prepare (src);
}

/* ---- controls ------------------------------------------------------------------ */

static gboolean
control_cancel (gpointer engine, GError **error)
{
  Source *src = engine;

  if (src->peer_resumed)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_STATE,
                   "migration of %s can no longer be cancelled: the guest already runs on %s",
                   md_guest_get_name (src->guest), source_peer_name (src));
      return FALSE;
    }
  source_fail (src, g_error_new (MD_ERROR, MD_ERROR_CANCELLED,
                                 "migration of %s to %s was cancelled in phase %s; the guest "
                                 "keeps running on host %s",
                                 md_guest_get_name (src->guest), source_peer_name (src),
                                 source_phase (src), source_host_name (src)));
  return TRUE;
}

static void
on_param_set (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, &error);

  if (node == NULL)
    g_warning ("setting a migration parameter failed: %s", error->message);
}

static gboolean
set_live_parameter (Source *src, const char *name, guint64 value, GError **error)
{
  MdQmp *qmp = md_guest_get_qmp (src->guest);
  g_autoptr (JsonObject) args = json_object_new ();

  if (qmp == NULL || src->offline)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_STATE,
                   "migration of %s has no running QEMU to tune", md_guest_get_name (src->guest));
      return FALSE;
    }
  json_object_set_int_member (args, name, (gint64) value);
  md_qmp_execute_async (qmp, "migrate-set-parameters", args, NULL, on_param_set, NULL);
  return TRUE;
}

static gboolean
control_set_bandwidth (gpointer engine, guint64 bps, GError **error)
{
  Source *src = engine;

  if (!set_live_parameter (src, "max-bandwidth", bps > 0 ? bps : UNLIMITED_BANDWIDTH, error))
    return FALSE;
  source_set_mirror_speed (src, bps);
  md_migration_set_bandwidth_property (src->migration, bps);
  return TRUE;
}

static gboolean
control_set_max_downtime (gpointer engine, guint64 ms, GError **error)
{
  Source *src = engine;

  if (!set_live_parameter (src, "downtime-limit", ms, error))
    return FALSE;
  md_migration_set_max_downtime_property (src->migration, ms);
  return TRUE;
}

static gboolean
control_start_postcopy (gpointer engine, GError **error)
{
  Source *src = engine;
  MdQmp *qmp = md_guest_get_qmp (src->guest);

  if (!md_options_get_boolean (src->options, "postcopy", FALSE))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_STATE,
                   "migration of %s was not started with the postcopy option",
                   md_guest_get_name (src->guest));
      return FALSE;
    }
  if (!src->qemu_migrating || qmp == NULL || src->postcopy_started)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_STATE,
                   src->postcopy_started
                       ? "migration of %s is already in post-copy (phase %s)"
                       : "migration of %s has no memory transfer under way to switch (phase %s)",
                   md_guest_get_name (src->guest), source_phase (src));
      return FALSE;
    }
  md_qmp_execute_async (qmp, "migrate-start-postcopy", NULL, NULL, on_param_set, NULL);
  return TRUE;
}

static const MdMigrationControl source_control = {
  control_cancel,
  control_set_bandwidth,
  control_set_max_downtime,
  control_start_postcopy,
};

/* ---- Begin -------------------------------------------------------------------------- */

/* Host names or IP literals the destination listens on. */
static const char *const address_options[] = { "migration-address", "nbd-address" };

static gboolean
validate_options (GVariant *options, GError **error)
{
  const char *compression = md_options_get_string (options, "compression");
  MdStorageCopyMode mode;

  if (!md_options_check (options, md_migration_option_specs, "Migrate", error)
      || !md_storage_parse_mode (md_options_get_string (options, "copy-storage"), &mode, error))
    return FALSE;
  if (compression != NULL && !g_str_equal (compression, "none")
      && !g_str_equal (compression, "zlib") && !g_str_equal (compression, "zstd"))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "option 'compression' must be none, zlib or zstd, not '%s'", compression);
      return FALSE;
    }
  if (compression != NULL && !g_str_equal (compression, "none")
      && md_options_get_uint32 (options, "parallel-connections", 0) == 0)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "option 'compression' needs 'parallel-connections' (QEMU compresses multifd "
                   "streams only)");
      return FALSE;
    }
  for (guint i = 0; i < G_N_ELEMENTS (address_options); i++)
    {
      const char *value = md_options_get_string (options, address_options[i]);
      g_autofree char *what = g_strdup_printf ("option '%s'", address_options[i]);
      g_autofree char *host = value != NULL ? md_address_parse_host (value, what, error) : NULL;
      if (value != NULL && host == NULL)
        return FALSE;
    }
  if (md_options_get_uint64 (options, "max-downtime", 1) == 0)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "option 'max-downtime' must be at least 1 ms");
      return FALSE;
    }
  return TRUE;
}

/* "host", "host:port" or "[v6]:port" with a port in range, or a peer name
 * from the configuration. */
static char *
resolve_destination (MdManager *manager, const char *destination, GError **error)
{
  const MdConfigPeer *peer = md_manager_find_peer (manager, destination);
  g_autoptr (GNetworkAddress) address = NULL;
  g_autoptr (GError) local_error = NULL;

  if (peer != NULL)
    return g_strdup (peer->address);
  if (destination == NULL || *destination == '\0')
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "destination is empty; give host[:port] of the peer migrationd or a peer name");
      return NULL;
    }
  address =
      (GNetworkAddress *) g_network_address_parse (destination, MD_DEFAULT_PEER_PORT, &local_error);
  if (address == NULL)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "destination '%s' is neither host[:port] nor a known peer name: %s", destination,
                   local_error->message);
      return NULL;
    }
  if (g_network_address_get_port (address) == 0)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "destination '%s': port 0 is not a valid port", destination);
      return NULL;
    }
  return g_strdup (destination);
}

/* The cheap part of refusing to migrate to ourselves, before any TLS: our
 * own listen address (or name, or loopback) and peer port. The peer's
 * host UUID check in Hello catches every other way of reaching us. */
static gboolean
is_this_host (MdManager *manager, const char *destination)
{
  const MdConfig *config = md_manager_get_config (manager);
  g_autoptr (GSocketConnectable) parsed =
      g_network_address_parse (destination, MD_DEFAULT_PEER_PORT, NULL);
  const char *host;

  if (parsed == NULL
      || g_network_address_get_port (G_NETWORK_ADDRESS (parsed)) != config->peer_port)
    return FALSE;
  host = g_network_address_get_hostname (G_NETWORK_ADDRESS (parsed));
  return g_strcmp0 (host, config->listen_address) == 0 || g_strcmp0 (host, config->host_name) == 0
         || g_strcmp0 (host, "localhost") == 0 || g_str_has_prefix (host, "127.")
         || g_strcmp0 (host, "::1") == 0;
}

static MdDomain *
build_destination_definition (MdManager *manager, MdGuest *guest, GVariant *options, GError **error)
{
  const MdDomain *current = md_guest_get_live_definition (guest) != NULL
                                ? md_guest_get_live_definition (guest)
                                : md_guest_get_definition (guest);
  const char *dest_xml = md_options_get_string (options, "destination-xml");
  const char *dest_name = md_options_get_string (options, "destination-name");
  g_autoptr (MdDomain) def = NULL;

  if (dest_xml != NULL)
    {
      def = md_domain_parse (dest_xml, error);
      if (def == NULL)
        {
          g_prefix_error (error, "option 'destination-xml': ");
          return NULL;
        }
      if (!md_domain_check_abi_compatible (current, def, error))
        {
          g_prefix_error (error, "option 'destination-xml': ");
          return NULL;
        }
    }
  else
    def = md_domain_copy (current);
  if (dest_name != NULL)
    {
      if (!md_domain_validate_name (dest_name, error))
        {
          g_prefix_error (error, "option 'destination-name': ");
          return NULL;
        }
      g_free (def->name);
      def->name = g_strdup (dest_name);
    }
  return g_steal_pointer (&def);
}

MdMigration *
md_migration_source_start (MdManager *manager, MdGuest *guest, const char *destination,
                           GVariant *options, guint owner_uid, GError **error)
{
  const MdConfig *config = md_manager_get_config (manager);
  g_autofree char *resolved = NULL;
  g_autoptr (MdDomain) dest_def = NULL;
  MdGuestState state = md_guest_get_state (guest);
  MdStorageCopyMode storage_mode = MD_STORAGE_COPY_NONE;
  g_autoptr (GPtrArray) plan = NULL;
  gboolean offline;
  Source *src;

  if (!validate_options (options, error))
    return NULL;
  offline = md_options_get_boolean (options, "offline", FALSE);
  if (offline && state != MD_GUEST_STATE_SHUT_OFF)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_STATE,
                   "option 'offline' needs guest %s shut off; it is %s on host %s",
                   md_guest_get_name (guest), md_guest_state_to_string (state), config->host_name);
      return NULL;
    }
  if (offline && !md_guest_is_persistent (guest))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_STATE,
                   "guest %s is transient: an offline migration moves a definition",
                   md_guest_get_name (guest));
      return NULL;
    }
  if (!offline && state != MD_GUEST_STATE_RUNNING && state != MD_GUEST_STATE_PAUSED)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_STATE,
                   "guest %s is %s on host %s; only a running or paused guest can migrate live "
                   "(use the 'offline' option for a shut-off one)",
                   md_guest_get_name (guest), md_guest_state_to_string (state), config->host_name);
      return NULL;
    }
  resolved = resolve_destination (manager, destination, error);
  if (resolved == NULL)
    return NULL;
  if (is_this_host (manager, resolved))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "refusing to migrate to itself: destination '%s' is host %s's own peer "
                   "port; give another host",
                   destination, config->host_name);
      return NULL;
    }
  dest_def = build_destination_definition (manager, guest, options, error);
  if (dest_def == NULL)
    return NULL;
  md_storage_parse_mode (md_options_get_string (options, "copy-storage"), &storage_mode, NULL);
  {
    g_autofree const char **targets = NULL;
    g_variant_lookup (options, "disks", "^a&s", &targets);
    plan = md_storage_plan (md_guest_get_live_definition (guest) != NULL
                                ? md_guest_get_live_definition (guest)
                                : md_guest_get_definition (guest),
                            storage_mode, targets, error);
    if (plan == NULL)
      return NULL;
  }

  src = g_new0 (Source, 1);
  src->manager = manager;
  src->guest = g_object_ref (guest);
  src->options = g_variant_ref_sink (g_variant_ref (options));
  src->destination = g_steal_pointer (&resolved);
  src->dest_def = g_steal_pointer (&dest_def);
  src->cancellable = g_cancellable_new ();
  src->offline = offline;
  src->storage_mode = storage_mode;
  src->plan = g_steal_pointer (&plan);
  src->was_running = state == MD_GUEST_STATE_RUNNING;
  src->src_persistent = md_guest_is_persistent (guest);
  src->migration =
      md_migration_new (manager, md_manager_next_migration_number (manager), MD_MIGRATION_OUTGOING,
                        md_guest_get_object_path (guest), md_guest_get_name (guest),
                        src->destination, owner_uid, options);
  src->migration_id =
      g_strdup_printf ("%s:%s", md_dbus_manager1_get_host_uuid (MD_DBUS_MANAGER1 (manager)),
                       md_migration_get_object_path (src->migration));
  md_migration_set_max_downtime_property (src->migration,
                                          md_options_get_uint64 (options, "max-downtime", 300));
  md_migration_set_bandwidth_property (src->migration,
                                       md_options_get_uint64 (options, "bandwidth", 0));
  md_migration_set_control (src->migration, &source_control, src);
  md_manager_add_migration (manager, src->migration);
  md_guest_begin_migration (guest, md_migration_get_object_path (src->migration), FALSE);
  md_migration_set_running_state (src->migration, "running");
  md_migration_set_phase (src->migration, "prepare");
  g_message ("migration %s: %s to %s started", md_migration_get_object_path (src->migration),
             md_guest_get_name (guest), src->destination);

  src->refs = 1;
  md_peer_connect_async (md_manager_get_peer_tls_config (manager), src->destination,
                         src->cancellable, on_peer_connected, source_ref (src));
  return g_object_ref (src->migration);
}
