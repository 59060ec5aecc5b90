/* migrationd: the outgoing side of a migration.
 *
 * Read in this order: md_migration_source_start() (Begin), Prepare on
 * the peer, Perform (QEMU, driven by its MIGRATION events), Finish on the
 * peer, Confirm. The phases, who holds the guest, and what undoes each
 * step live in the state machine (md-migration-machine.h); every failure
 * goes through source_fail() -> md_machine_fail(), which runs the undo
 * list: the guest keeps running here unless the destination already
 * holds it. The first error wins; later ones become detail. */
#include "config.h"

#include "md-migration-source.h"
#include "common/md-error.h"
#include "common/md-fault.h"
#include "common/md-options.h"
#include "md-migration-ask.h"
#include "md-migration-source-private.h"
#include "md-address.h"
#include "qemu/md-qemu-files.h"

/* QEMU may say "completed" a moment before it fills in its final figures. */
#define TOTAL_TIME_TRIES 40
#define TOTAL_TIME_RETRY_MS 25

static void source_prepare (Source *src);
static void on_peer_closed (MdPeerConnection *peer, Source *src);
static void on_peer_aborted (MdDbusPeer1 *proxy, const char *id, const char *name,
                             const char *message, Source *src);
static void on_block_nodes (GObject *source, GAsyncResult *result, gpointer user_data);
static void on_peer_connected (GObject *source, GAsyncResult *result, gpointer user_data);
static gboolean on_peer_reused (gpointer user_data);
static void undo_resume_here (gpointer owner, gpointer data);
static void source_poll (Source *src);

/* ---- undo steps ----------------------------------------------------------- */

/* ---- small helpers ------------------------------------------------------- */

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
  return md_machine_get_phase_name (src->machine);
}

static void
source_clear (Source *src)
{
  g_clear_object (&src->peer);
  g_clear_object (&src->cancellable);
  g_clear_object (&src->guest);
  g_clear_pointer (&src->machine, md_machine_free);
  g_clear_object (&src->migration);
  g_clear_pointer (&src->opts, md_migrate_options_free);
  g_clear_pointer (&src->dest_def, md_domain_free);
  g_clear_pointer (&src->plan, g_ptr_array_unref);
  g_clear_pointer (&src->disks_info, g_variant_unref);
  g_free (src->nbd_host);
  g_free (src->uri);
  g_strfreev (src->fresh_targets);
  g_free (src->destination);
  g_free (src->migration_id);
  g_free (src->tag);
  g_free (src->peer_token);
  g_clear_error (&src->mirror_error);
  g_clear_error (&src->tunnel_error);
  g_clear_error (&src->held_failure);
  g_clear_pointer (&src->tunnel, md_tunnel_out_free);
  g_free (src->tls_object);
  g_clear_pointer (&src->convergence, md_convergence_free);
  g_clear_object (&src->pc_cancellable);
  g_free (src->pc_last_error);
}

Source *
source_ref (Source *src)
{
  return g_rc_box_acquire (src);
}

void
source_unref (Source *src)
{
  g_rc_box_release_full (src, (GDestroyNotify) source_clear);
}

gboolean
source_is_stale (Source *src)
{
  return md_machine_is_ended (src->machine) || md_machine_is_failing (src->machine);
}

JsonObject *
source_json_args (void)
{
  return json_object_new ();
}

guint64
source_member_uint (JsonObject *obj, const char *name)
{
  if (obj == NULL || !json_object_has_member (obj, name))
    return 0;
  return (guint64) MAX (json_object_get_int_member (obj, name), 0);
}

guint
source_timeout_add (Source *src, guint ms, GSourceFunc func)
{
  return g_timeout_add_full (G_PRIORITY_DEFAULT, ms, func, source_ref (src),
                             (GDestroyNotify) source_unref);
}

static char *
gone_message (Source *src)
{
  return g_strdup_printf ("host %s, phase %s: QEMU of guest %s is gone", source_host_name (src),
                          source_phase (src), md_guest_get_name (src->guest));
}

typedef struct
{
  Source *src;
  StepFunc next;
  gboolean undo;
} SourceStep;

static gpointer
step_ref (gpointer step)
{
  return step;
}

static void
step_free (gpointer data)
{
  SourceStep *step = data;

  source_unref (step->src);
  g_free (step);
}

static void
on_source_step (gpointer owner, GError *error)
{
  SourceStep *step = owner;
  Source *src = step->src;

  if (step->undo)
    {
      source_ignore_result (src, error);
      md_machine_undo_done (src->machine);
      return;
    }
  if (source_is_stale (src))
    {
      g_clear_error (&error);
      return;
    }
  step->next (src, error);
}

static void
run_step (Source *src, const char *command, JsonObject *args, StepFunc next, gboolean undo)
{
  SourceStep *step = g_new0 (SourceStep, 1);
  g_autofree char *gone = gone_message (src);

  step->src = source_ref (src);
  step->next = next;
  step->undo = undo;
  md_migration_qemu_step (md_guest_get_qmp (src->guest), command, args, step, step_ref, step_free,
                          on_source_step, gone);
}

void
source_qmp_step (Source *src, const char *command, JsonObject *args, StepFunc next)
{
  run_step (src, command, args, next, FALSE);
}

typedef struct
{
  Source *src;
  char *command;
  JsonObject *args;
  StepFunc next;
} WrittenStep;

static void
written_step_free (gpointer data)
{
  WrittenStep *step = data;

  source_unref (step->src);
  g_free (step->command);
  if (step->args != NULL)
    json_object_unref (step->args);
  g_free (step);
}

static void
on_step_written (gpointer data)
{
  WrittenStep *step = data;

  if (!source_is_stale (step->src))
    run_step (step->src, step->command, g_steal_pointer (&step->args), step->next, FALSE);
}

void
source_qmp_step_written (Source *src, const char *command, JsonObject *args, StepFunc next)
{
  WrittenStep *step = g_new0 (WrittenStep, 1);

  step->src = source_ref (src);
  step->command = g_strdup (command);
  step->args = args;
  step->next = next;
  md_machine_when_written (src->machine, on_step_written, step, written_step_free);
}

void
source_undo_step (Source *src, const char *command, JsonObject *args)
{
  run_step (src, command, args, NULL, TRUE);
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

/* ---- Begin -------------------------------------------------------------------------- */

MdMigration *
md_migration_source_start (MdManager *manager, MdGuest *guest, const char *destination,
                           GVariant *options, guint owner_uid, GError **error)
{
  Source *src = source_begin (manager, guest, destination, options, owner_uid, error);

  if (src == NULL)
    return NULL;
  md_migration_set_max_downtime_property (src->migration, src->opts->max_downtime);
  md_migration_set_bandwidth_property (src->migration, src->opts->bandwidth);
  md_migration_set_control (src->migration, &source_control, src);
  source_converge_start (src);
  md_manager_add_migration (manager, md_migration_get_object_path (src->migration),
                            MD_DBUS_MIGRATION1 (src->migration));
  md_guest_begin_migration (guest, md_migration_get_object_path (src->migration), FALSE);
  md_migration_set_running_state (src->migration, "running");
  /* The first undo step, so the last to run: the guest runs here again. */
  md_machine_push_undo (src->machine, "resume-here", MD_UNDO_GUEST, undo_resume_here, NULL, NULL);
  md_machine_advance (src->machine, MD_PHASE_PREPARE);
  g_message ("migration %s: %s to %s started", md_migration_get_object_path (src->migration),
             md_guest_get_name (guest), src->destination);

  src->peer = md_peer_pool_take (md_manager_get_peer_pool (manager), src->destination);
  if (src->peer != NULL)
    g_idle_add_full (G_PRIORITY_DEFAULT, on_peer_reused, source_ref (src),
                     (GDestroyNotify) source_unref);
  else
    md_peer_connect_async (md_manager_get_peer_tls_config (manager), src->destination,
                           src->cancellable, on_peer_connected, source_ref (src));
  return g_object_ref (src->migration);
}

static gboolean on_cont_retry (gpointer user_data);

/* A destination QEMU killed at the switch-over may still hold the image's
 * write lock for a moment while the kernel tears it down. The lock is the
 * guard against two running copies, so cont is only tried again, never
 * forced: a live holder keeps refusing it. */
#define CONT_RETRY_MS 100
#define CONT_TRIES 50

/* Undo of Begin: the guest runs here again (or stays paused if it was). */
static void
on_resumed_after_failure (Source *src, GError *error)
{
  if (error != NULL && strstr (error->message, "lock") != NULL && src->cont_tries++ < CONT_TRIES)
    {
      g_debug ("migration %s: cont refused (%s); trying again", src->migration_id, error->message);
      g_error_free (error);
      g_timeout_add_full (G_PRIORITY_DEFAULT, CONT_RETRY_MS, on_cont_retry, source_ref (src),
                          (GDestroyNotify) source_unref);
      return;
    }
  if (error != NULL)
    {
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
  md_machine_undo_done (src->machine);
}

static void
resume_here_now (Source *src)
{
  if (src->offline || !md_guest_is_active (src->guest) || !src->was_running)
    {
      md_guest_end_migration (src->guest, FALSE);
      md_machine_undo_done (src->machine);
      return;
    }
  src->cont_tries = 0;
  on_cont_retry (src);
}

static gboolean
on_cont_retry (gpointer user_data)
{
  Source *src = user_data;
  g_autofree char *gone = gone_message (src);

  md_migration_qemu_step (md_guest_get_qmp (src->guest), "cont", NULL, src,
                          (gpointer (*) (gpointer)) source_ref, (GDestroyNotify) source_unref,
                          (MdQemuStepFunc) on_resumed_after_failure, gone);
  return G_SOURCE_REMOVE;
}

/* migrate_cancel returns at once, while QEMU's status stays "cancelling"
 * until its stream notices; a migration started before then is refused
 * ("There's a migration process in progress"). So the failure's last undo
 * step waits for the status to settle, at most CANCEL_WAIT_TRIES times
 * CANCEL_WAIT_MS. */
#define CANCEL_WAIT_MS 50
#define CANCEL_WAIT_TRIES 200

static gboolean
migration_in_progress (const char *status)
{
  static const char *const busy[] = { "setup",          "active",      "cancelling", "device",
                                      "pre-switchover", "wait-unplug", NULL };

  return g_strv_contains (busy, status);
}

static gboolean on_cancel_wait (gpointer user_data);

/* The last undo step: the migration's other undo steps (mirror jobs and
 * the NBD client nodes among them, whose I/O on a dead link can hold
 * QEMU in "cancelling") are done; QEMU's migration settles, then the
 * guest runs here again. */
static void
undo_resume_here (gpointer owner, gpointer data)
{
  Source *src = owner;

  src->cancel_waits = 0;
  on_cancel_wait (src);
}

static void
on_cancel_status (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (SourceRef) src = user_data;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, NULL);
  const char *status = "";

  if (node != NULL && JSON_NODE_HOLDS_OBJECT (node))
    status = json_object_get_string_member_with_default (json_node_get_object (node), "status", "");
  if (migration_in_progress (status) && src->cancel_waits++ < CANCEL_WAIT_TRIES)
    {
      g_timeout_add_full (G_PRIORITY_DEFAULT, CANCEL_WAIT_MS, on_cancel_wait, source_ref (src),
                          (GDestroyNotify) source_unref);
      return;
    }
  if (migration_in_progress (status))
    g_message ("migration %s: QEMU's migration is still '%s' %d ms after migrate_cancel; going on",
               src->migration_id, status, CANCEL_WAIT_MS * CANCEL_WAIT_TRIES);
  resume_here_now (src);
}

static gboolean
on_cancel_wait (gpointer user_data)
{
  Source *src = user_data;
  MdQmp *qmp = md_guest_get_qmp (src->guest);

  if (qmp == NULL)
    resume_here_now (src);
  else
    md_qmp_execute_async (qmp, "query-migrate", NULL, NULL, on_cancel_status, source_ref (src));
  return G_SOURCE_REMOVE;
}

static void
on_migrate_cancel_sent (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (SourceRef) src = user_data;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, NULL);

  md_machine_undo_done (src->machine);
}

static void
undo_migrate_cancel (gpointer owner, gpointer data)
{
  Source *src = owner;
  MdQmp *qmp = md_guest_get_qmp (src->guest);

  if (qmp == NULL)
    {
      md_machine_undo_done (src->machine);
      return;
    }
  md_qmp_execute_async (qmp, "migrate_cancel", NULL, NULL, on_migrate_cancel_sent,
                        source_ref (src));
}

static void
undo_tls_object (gpointer owner, gpointer data)
{
  Source *src = owner;
  JsonObject *args = source_json_args ();

  json_object_set_string_member (args, "id", src->tls_object);
  source_undo_step (src, "object-del", args);
}

static void
on_peer_abort_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (SourceRef) src = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) out = NULL;

  if (!md_dbus_peer1_call_finish_finish (MD_DBUS_PEER1 (source), &out, result, &error))
    {
      /* Not fatal for the guest: the peer kills what it prepared when the
       * connection drops anyway (autokill). */
      g_autoptr (GError) converted = md_error_convert (error, MD_ERROR_PEER_FAILED);
      g_prefix_error (&converted, "host %s: Finish (cleanup) failed: ", source_peer_name (src));
      md_migration_add_error_detail (src->migration, converted);
    }
  md_machine_undo_done (src->machine);
}

/* Undo of Prepare: the peer removes what it made for us. */
static void
undo_peer_prepare (gpointer owner, gpointer data)
{
  Source *src = owner;
  GVariantBuilder opts;
  g_autoptr (GError) converted = NULL;

  if (src->peer == NULL || md_peer_connection_is_closed (src->peer))
    {
      md_machine_undo_done (src->machine);
      return;
    }
  converted = md_error_convert (md_machine_get_error (src->machine), MD_ERROR_FAILED);
  g_variant_builder_init (&opts, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&opts, "{sv}", "error-name",
                         g_variant_new_string (md_error_code_to_dbus_name (converted->code)));
  g_variant_builder_add (&opts, "{sv}", "error-message", g_variant_new_string (converted->message));
  if (src->peer_token != NULL)
    g_variant_builder_add (&opts, "{sv}", "token", g_variant_new_string (src->peer_token));
  md_dbus_peer1_call_finish (md_peer_connection_get_proxy (src->peer), src->migration_id, FALSE,
                             g_variant_builder_end (&opts), NULL, on_peer_abort_done,
                             source_ref (src));
}

/* ---- Perform: following QEMU ---------------------------------------------- */

static void take_final_figures (Source *src, JsonObject *info);

/* QEMU never filled in total-time (or went first): the span between its
 * MIGRATION events "setup" and "completed" is the same clock. */
static void
give_up_final_figures (Source *src)
{
  src->final_figures_pending = FALSE;
  if (src->qemu_setup_us > 0 && src->qemu_completed_us > src->qemu_setup_us)
    md_migration_set_statistic (
        src->migration, "qemu-total-time-ms",
        g_variant_new_uint64 ((guint64) (src->qemu_completed_us - src->qemu_setup_us) / 1000));
}

static void
after_final_figures (Source *src)
{
  if (src->final_figures_pending)
    return;
  if (src->destroy_deferred)
    source_destroy_qemu (src);
  else if (src->done_deferred)
    {
      src->done_deferred = FALSE;
      source_done (src);
    }
}

static void
on_final_figures (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (SourceRef) src = user_data;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, NULL);

  if (node != NULL && JSON_NODE_HOLDS_OBJECT (node))
    take_final_figures (src, json_node_get_object (node));
  else
    give_up_final_figures (src); /* QEMU is gone */
  after_final_figures (src);
}

static gboolean
on_final_figures_retry (gpointer user_data)
{
  Source *src = user_data;
  MdQmp *qmp = md_guest_get_qmp (src->guest);

  if (qmp == NULL)
    {
      give_up_final_figures (src);
      after_final_figures (src);
      return G_SOURCE_REMOVE;
    }
  md_qmp_execute_async (qmp, "query-migrate", NULL, NULL, on_final_figures, source_ref (src));
  return G_SOURCE_REMOVE;
}

/* QEMU 7.2 says "completed" a moment before it fills in total-time and
 * downtime: the migration goes on at once (Finish does not wait for
 * figures) and QEMU is asked again until they are there; stopping the
 * source QEMU and source_done() wait for them (at most TOTAL_TIME_TRIES). */
static void
take_final_figures (Source *src, JsonObject *info)
{
  guint64 total = source_member_uint (info, "total-time");

  src->downtime = source_member_uint (info, "downtime");
  md_migration_set_statistic (src->migration, "qemu-setup-time-ms",
                              g_variant_new_uint64 (source_member_uint (info, "setup-time")));
  if (total != 0)
    {
      src->final_figures_pending = FALSE;
      md_migration_set_statistic (src->migration, "qemu-total-time-ms",
                                  g_variant_new_uint64 (total));
      return;
    }
  if (src->total_time_tries++ >= TOTAL_TIME_TRIES)
    {
      give_up_final_figures (src);
      return;
    }
  src->final_figures_pending = TRUE;
  g_timeout_add_full (G_PRIORITY_DEFAULT, TOTAL_TIME_RETRY_MS, on_final_figures_retry,
                      source_ref (src), (GDestroyNotify) source_unref);
}

/* All memory is on the peer. Precopy: the disks, then Finish. Postcopy:
 * confirm once the peer said it runs the guest. */
static void
on_qemu_completed (Source *src, JsonObject *info)
{
  src->qemu_completed = TRUE;
  md_migration_mark_time (src->migration, "qemu-completed");
  md_machine_drop_undo (src->machine, "migrate-cancel");
  take_final_figures (src, info);
  g_clear_handle_id (&src->progress_id, g_source_remove);
  g_clear_handle_id (&src->abort_id, g_source_remove);
  if (md_machine_get_authority (src->machine) == MD_AUTHORITY_DESTINATION)
    source_confirm_success (src);
  else if (src->finish_lost)
    source_finish_on_peer (src); /* fails at once on a dead peer: then the peer is asked */
  else if (md_machine_get_phase (src->machine) == MD_PHASE_POSTCOPY
           || md_machine_get_phase (src->machine) == MD_PHASE_RESOLVING)
    return; /* Finish or the peer's answer decides */
  else if (src->mirrors_added > 0)
    source_stop_mirrors (src);
  else
    source_finish_on_peer (src);
}

/* From here the guest's newest state lives on the peer: it resumes it at
 * once (as libvirt does), and neither QEMU is stopped or resumed alone. */
static void
on_qemu_postcopy (Source *src)
{
  if (!md_machine_advance (src->machine, MD_PHASE_POSTCOPY))
    return;
  md_machine_set_authority (src->machine, MD_AUTHORITY_SPLIT);
  g_clear_handle_id (&src->abort_id, g_source_remove);
  md_migration_set_running_state (src->migration, "postcopy");
  source_converge_note_postcopy (src, "switched to postcopy by StartPostcopy");
  md_fault_point ("source-postcopy-started");
  source_finish_on_peer (src);
}

static void
on_query_migrate (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (SourceRef) src = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, &error);
  JsonObject *info;
  const char *status;
  gboolean completed;

  src->query_pending = FALSE;
  if (source_is_stale (src) || src->qemu_completed)
    return;
  if (node == NULL)
    {
      g_prefix_error (&error, "host %s, phase %s: ", source_host_name (src), source_phase (src));
      source_fail (src, g_steal_pointer (&error));
      return;
    }
  info = json_node_get_object (node);
  status = json_object_get_string_member_with_default (info, "status", "");
  source_publish_migrate_stats (src, info, status);
  completed = g_str_equal (status, "completed");
  if (completed)
    on_qemu_completed (src, info);
  else if (g_str_equal (status, "postcopy-active")
           && md_machine_get_phase (src->machine) == MD_PHASE_PERFORM)
    on_qemu_postcopy (src);
  else if (g_str_equal (status, "active")
           && md_machine_get_phase (src->machine) == MD_PHASE_PERFORM)
    source_converge (src, info);
  else if (g_str_has_prefix (status, "postcopy-")
           && md_machine_get_phase (src->machine) == MD_PHASE_POSTCOPY)
    source_recovery_on_status (src, status, info);
  else if (g_str_equal (status, "failed") || g_str_equal (status, "cancelled"))
    {
      const char *desc = json_object_get_string_member_with_default (info, "error-desc", NULL);

      GError *failure = g_error_new (
          MD_ERROR, g_str_equal (status, "cancelled") ? MD_ERROR_CANCELLED : MD_ERROR_QEMU_FAILED,
          "host %s, phase %s: QEMU's migration %s%s%s", source_host_name (src), source_phase (src),
          status, desc ? ": " : "", desc ? desc : "");

      if (g_str_equal (status, "failed"))
        source_fail_naming_stream (src, failure);
      else
        source_fail (src, failure);
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
  if (src->query_pending)
    return;
  src->query_pending = TRUE;
  md_qmp_execute_async (qmp, command, NULL, NULL, callback, source_ref (src));
}

static void
source_poll (Source *src)
{
  if (!source_is_stale (src))
    source_query (src, "query-migrate", on_query_migrate);
}

static gboolean
on_progress_timer (gpointer user_data)
{
  source_poll (user_data);
  return G_SOURCE_CONTINUE;
}

/* QEMU's MIGRATION event says its status changed: act on it now. */
static void
on_migration_event (MdQmp *qmp, const char *name, JsonObject *data, gint64 timestamp, Source *src)
{
  const char *status = json_object_get_string_member_with_default (data, "status", "");

  if (g_str_equal (status, "setup"))
    src->qemu_setup_us = timestamp;
  else if (g_str_equal (status, "completed"))
    src->qemu_completed_us = timestamp;
  /* The switch-over began: QEMU stopped the guest here and sends its
   * last pages and device state. "finish" goes to the journal now, while
   * QEMU works, so that Finish need not wait for the disk once QEMU
   * completes. (A daemon restarted from here asks the peer, which never
   * started the guest without Finish.) */
  if (g_str_equal (status, "device") && !source_is_stale (src)
      && md_machine_get_phase (src->machine) == MD_PHASE_PERFORM
      && md_machine_get_authority (src->machine) == MD_AUTHORITY_SOURCE)
    md_machine_advance (src->machine, MD_PHASE_FINISH);
  source_poll (src);
}

static void
on_block_job_event (MdQmp *qmp, const char *name, JsonObject *data, gint64 timestamp, Source *src)
{
  source_on_block_job_event (src);
}

static gboolean
on_abort_timer (gpointer user_data)
{
  Source *src = user_data;
  guint32 seconds = src->opts->abort_after;

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
                            src->opts->auto_converge
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
  if (!md_machine_advance (src->machine, MD_PHASE_PERFORM))
    return;
  md_migration_set_running_state (src->migration, "running");
  md_migration_mark_time (src->migration, "migrate-started");
  md_fault_point ("source-ram-started");
  src->progress_id = source_timeout_add (src, PROGRESS_INTERVAL_MS, on_progress_timer);
  abort_after = src->opts->abort_after;
  if (abort_after > 0)
    src->abort_id = g_timeout_add_seconds_full (G_PRIORITY_DEFAULT, abort_after, on_abort_timer,
                                                source_ref (src), (GDestroyNotify) source_unref);
  source_poll (src);
}

static void
start_migrate (Source *src, GError *error)
{
  JsonObject *args;

  if (error != NULL)
    {
      g_prefix_error (&error, "host %s, phase %s: setting up QEMU: ", source_host_name (src),
                      source_phase (src));
      source_fail (src, error);
      return;
    }
  md_machine_push_undo (src->machine, "migrate-cancel", MD_UNDO_GUEST, undo_migrate_cancel, NULL,
                        NULL);
  md_machine_commit (src->machine);
  md_migration_mark_time (src->migration, "migrate-sent");
  args = source_json_args ();
  json_object_set_string_member (args, "uri", src->uri);
  source_qmp_step (src, "migrate", args, on_migrate_started);
}

static void
set_parameters (Source *src, GError *error)
{
  JsonObject *args;

  if (error != NULL)
    {
      start_migrate (src, error);
      return;
    }
  md_migration_set_bandwidth_property (src->migration, src->opts->bandwidth);
  args = md_migration_qemu_parameters (
      src->opts, TRUE, src->tls_object,
      src->peer != NULL ? md_peer_connection_get_host_name (src->peer) : NULL);
  source_converge_parameters (src, args);
  source_qmp_step (src, "migrate-set-parameters", args, start_migrate);
}

void
source_set_capabilities (Source *src, GError *error)
{
  JsonObject *args;

  if (error != NULL)
    {
      start_migrate (src, error);
      return;
    }
  args = md_migration_qemu_capabilities (src->opts);
  source_converge_capabilities (src, args);
  source_qmp_step (src, "migrate-set-capabilities", args, set_parameters);
}

static GPid
source_qemu_pid (Source *src)
{
  MdQemuProcess *proc = md_guest_get_process (src->guest);

  return proc != NULL ? md_qemu_process_get_pid (proc) : 0;
}

static void
after_tls_object (Source *src, GError *error)
{
  md_qemu_revoke_tls_dir (source_qemu_pid (src), src->tls_object);
  source_start_mirrors (src, error);
}

static void
add_tls_object (Source *src, GError *error)
{
  g_autofree char *granted = NULL;

  /* The tunnel encrypts: QEMU's own TLS stays off on the local leg. */
  if (error != NULL || !src->opts->tls || src->tunnel != NULL)
    {
      source_start_mirrors (src, error);
      return;
    }
  /* Named (unique across daemon restarts: QEMU keeps the object of a
   * migration the previous daemon did not finish) and journaled at Begin. */
  md_machine_push_undo (src->machine, "tls-object", MD_UNDO_CLEANUP, undo_tls_object, NULL, NULL);
  /* A confined QEMU reads a copy in its private /tmp, removed again in
   * after_tls_object(). */
  granted = md_qemu_grant_tls_dir (source_qemu_pid (src), src->tls_object,
                                   md_manager_get_config (src->manager)->tls_dir, FALSE, &error);
  if (granted == NULL)
    {
      source_start_mirrors (src, error);
      return;
    }
  source_qmp_step_written (src, "object-add",
                           md_migration_qemu_tls_object (src->tls_object, granted, FALSE),
                           after_tls_object);
}

void
source_perform (Source *src, const char *uri)
{
  g_free (src->uri);
  src->uri = g_strdup (uri);
  /* QEMU's events drive what follows: MIGRATION for the memory,
   * BLOCK_JOB_READY and friends for the disk mirrors. */
  src->event_qmp = g_object_ref (md_guest_get_qmp (src->guest));
  src->event_ids[0] =
      g_signal_connect (src->event_qmp, "event::MIGRATION", G_CALLBACK (on_migration_event), src);
  src->event_ids[1] =
      g_signal_connect (src->event_qmp, "event", G_CALLBACK (on_block_job_event), src);
  if (!src->opts->live && src->was_running)
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

  if (!md_dbus_peer1_call_prepare_finish (MD_DBUS_PEER1 (source), &out, result, &error))
    {
      GError *converted;

      if (source_is_stale (src))
        return;
      converted = md_error_convert (error, MD_ERROR_PEER_FAILED);
      /* The peer's own refusals already say where they happened. */
      g_autofree char *where = g_strdup_printf ("host %s, phase prepare: ", source_peer_name (src));
      if (!g_str_has_prefix (converted->message, where))
        g_prefix_error (&converted, "%s", where);
      source_fail (src, converted);
      return;
    }
  if (source_is_stale (src))
    return;
  g_variant_lookup (out, "migration-uri", "&s", &uri);
  g_variant_lookup (out, "nbd-address", "s", &src->nbd_host);
  g_variant_lookup (out, "nbd-port", "q", &src->nbd_port);
  g_variant_lookup (out, "fresh-targets", "^as", &src->fresh_targets);
  g_variant_lookup (out, "token", "s", &src->peer_token);
  /* A daemon restarted in postcopy proves itself with it (journal: 0600). */
  if (src->peer_token != NULL)
    md_journal_set_string (md_machine_get_journal (src->machine), "peer-token", src->peer_token);
  if (g_variant_lookup (out, "migration", "&o", &incoming))
    md_migration_set_statistic (src->migration, "peer-migration", g_variant_new_string (incoming));
  if (src->opts->transport == MD_MIGRATE_TRANSPORT_TUNNEL && !src->offline)
    {
      source_perform_tunnelled (src, out);
      return;
    }
  if (src->opts->transport == MD_MIGRATE_TRANSPORT_TUNNEL && src->plan->len > 0)
    {
      source_copy_offline_tunnelled (src, out);
      return;
    }
  if (src->plan->len > 0 && (src->nbd_host == NULL || src->nbd_port == 0))
    {
      source_fail (src, g_error_new (MD_ERROR, MD_ERROR_PEER_FAILED,
                                     "host %s, phase prepare: the peer offered no NBD server "
                                     "for the disks to copy",
                                     source_peer_name (src)));
      return;
    }
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
  md_migration_mark_time (src->migration, "prepared");
  md_fault_point ("source-prepare-done");
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

  if (g_strcmp0 (id, src->migration_id) != 0
      || md_machine_get_authority (src->machine) != MD_AUTHORITY_SOURCE)
    return;
  remote = g_dbus_error_new_for_dbus_error (name, message);
  source_fail_naming_stream (src, md_error_convert (remote, MD_ERROR_PEER_FAILED));
}

static void
on_peer_closed (MdPeerConnection *peer, Source *src)
{
  MdPhase phase = md_machine_get_phase (src->machine);

  /* At the switch-over the pending Finish fails by itself and the peer is
   * asked what it did; before it, the guest is ours. */
  if (src->finish_pending || phase == MD_PHASE_POSTCOPY || phase == MD_PHASE_RESOLVING
      || md_machine_get_authority (src->machine) != MD_AUTHORITY_SOURCE)
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
  g_variant_iter_init (&iter, src->opts->given);
  while (g_variant_iter_loop (&iter, "{&sv}", &key, &value))
    if (!g_str_equal (key, "destination-xml") && !g_str_equal (key, "transport")
        && !g_str_equal (key, "parallel-connections"))
      g_variant_builder_add (&builder, "{sv}", key, value);
  g_variant_builder_add (&builder, "{sv}", "parallel-connections",
                         g_variant_new_uint32 (src->opts->parallel_connections));
  /* As settled here (the caller may have left it to our config). */
  g_variant_builder_add (
      &builder, "{sv}", "transport",
      g_variant_new_string (md_migrate_transport_to_string (src->opts->transport)));
  g_variant_builder_add (&builder, "{sv}", "source-persistent",
                         g_variant_new_boolean (src->src_persistent));
  g_variant_builder_add (&builder, "{sv}", "source-host",
                         g_variant_new_string (source_host_name (src)));
  g_variant_builder_add (&builder, "{sv}", "source-migration",
                         g_variant_new_string (md_migration_get_object_path (src->migration)));
  if (src->disks_info != NULL)
    g_variant_builder_add (&builder, "{sv}", "disks-info", src->disks_info);
  return g_variant_builder_end (&builder);
}

static void
source_prepare (Source *src)
{
  g_autofree char *xml = md_domain_format (src->dest_def);

  md_migration_mark_time (src->migration, "prepare-sent");
  md_machine_push_undo (src->machine, "peer-prepare", MD_UNDO_GUEST, undo_peer_prepare, NULL, NULL);
  md_machine_commit (src->machine);
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

  if (src->offline)
    src->disks_info = md_storage_describe_offline_finish (result, &error);
  else if (node != NULL)
    src->disks_info = md_storage_describe (src->plan, node, src->storage_mode, &error);
  if (source_is_stale (src))
    return;
  if (src->disks_info == NULL)
    {
      g_prefix_error (&error, "host %s, phase begin: ", source_host_name (src));
      source_fail (src, g_steal_pointer (&error));
      return;
    }
  g_variant_ref_sink (src->disks_info);
  source_prepare (src);
}

static void source_peer_ready (Source *src, GError *error);

static void
on_peer_connected (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (SourceRef) src = user_data;
  GError *error = NULL;

  src->peer = md_peer_connect_finish (result, &error);
  source_peer_ready (src, error);
}

static void
on_reused_peer_pinged (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (SourceRef) src = user_data;
  g_autoptr (GVariant) reply =
      g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, NULL);

  if (reply != NULL || source_is_stale (src))
    {
      source_peer_ready (src, NULL);
      return;
    }
  /* The kept connection died meanwhile (the peer restarted?): a new one. */
  g_clear_object (&src->peer);
  md_peer_connect_async (md_manager_get_peer_tls_config (src->manager), src->destination,
                         src->cancellable, on_peer_connected, source_ref (src));
}

/* A connection kept from an earlier migration to this peer: one round
 * trip proves it still works, far cheaper than TLS and Hello. */
static gboolean
on_peer_reused (gpointer user_data)
{
  Source *src = user_data;

  g_dbus_connection_call (md_peer_connection_get_dbus (src->peer), NULL, "/",
                          "org.freedesktop.DBus.Peer", "Ping", NULL, NULL, G_DBUS_CALL_FLAGS_NONE,
                          5000, src->cancellable, on_reused_peer_pinged, source_ref (src));
  return G_SOURCE_REMOVE;
}

static void
source_peer_ready (Source *src, GError *error_in)
{
  g_autoptr (GError) error = error_in;
  g_autofree char *peer_label = NULL;

  if (source_is_stale (src))
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
  md_migration_mark_time (src->migration, "peer-connected");
  peer_label = g_strdup_printf ("%s (%s)", md_peer_connection_get_host_name (src->peer),
                                md_peer_connection_get_address (src->peer));
  md_migration_set_peer (src->migration, peer_label);
  md_journal_set_string (md_machine_get_journal (src->machine), "peer-name",
                         md_peer_connection_get_host_name (src->peer));
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
