/* migrationd: the outgoing migration's side of the convergence policy
 * (md-migration-convergence.h decides, this file tells QEMU) and the
 * figures of QEMU's query-migrate it reads. */
#include "config.h"

#include "common/md-error.h"
#include "md-migration-source-private.h"

static const MdConfig *
source_config (Source *src)
{
  return md_manager_get_config (src->manager);
}

static void
publish_convergence (Source *src)
{
  md_convergence_record (src->convergence, md_migration_elapsed_ms (src->migration));
  md_migration_set_convergence (
      src->migration, md_convergence_step_to_string (md_convergence_get_step (src->convergence)),
      md_convergence_get_reason (src->convergence));
  md_migration_set_statistic (src->migration, "convergence-steps",
                              md_convergence_get_steps (src->convergence));
}

static void start_sample (Source *src);

void
source_converge_start (Source *src)
{
  src->convergence = md_convergence_new (src->opts, source_config (src));
  publish_convergence (src);
  /* The guest runs already: the sample is ready when the first pass has
   * its first transfer rate, while the peer prepares. */
  start_sample (src);
}

void
source_converge_capabilities (Source *src, JsonObject *args)
{
  md_convergence_hold_capabilities (src->opts, source_config (src), args);
}

void
source_converge_parameters (Source *src, JsonObject *args)
{
  md_convergence_hold_parameters (src->opts, source_config (src), args);
}

void
source_converge_note_postcopy (Source *src, const char *reason)
{
  if (src->convergence == NULL
      || md_convergence_get_step (src->convergence) == MD_CONVERGENCE_POSTCOPY)
    return;
  md_convergence_note_postcopy (src->convergence, reason);
  publish_convergence (src);
}

static void
on_step_applied (Source *src, GError *error)
{
  src->converge_pending = FALSE;
  if (error != NULL)
    {
      g_prefix_error (&error, "host %s, phase %s: QEMU refused the convergence step %s (%s): ",
                      source_host_name (src), source_phase (src),
                      md_convergence_step_to_string (md_convergence_get_step (src->convergence)),
                      md_convergence_get_reason (src->convergence));
      source_fail (src, error);
      return;
    }
  if (md_convergence_get_step (src->convergence) == MD_CONVERGENCE_DOWNTIME_RAISED)
    md_migration_set_max_downtime_property (src->migration, src->converge_downtime);
}

static void
give_up (Source *src)
{
  g_autofree char *rates = md_convergence_failure_message (src->convergence);

  source_fail (src, g_error_new (MD_ERROR, MD_ERROR_TIMEOUT,
                                 "host %s, phase perform: migration of %s does not converge: %s. "
                                 "The guest keeps running here",
                                 source_host_name (src), md_guest_get_name (src->guest), rates));
}

static void
apply (Source *src, const MdConvergenceAction *action)
{
  JsonObject *args;

  g_message ("migration %s: convergence: %s (%s)", src->migration_id,
             md_convergence_step_to_string (action->step),
             md_convergence_get_reason (src->convergence));
  publish_convergence (src);
  switch (action->step)
    {
    case MD_CONVERGENCE_DOWNTIME_RAISED:
      args = source_json_args ();
      json_object_set_int_member (args, "downtime-limit", (gint64) action->downtime);
      src->converge_downtime = action->downtime;
      src->converge_pending = TRUE;
      source_qmp_step (src, "migrate-set-parameters", args, on_step_applied);
      break;
    case MD_CONVERGENCE_THROTTLING:
      args = source_json_args ();
      json_object_set_int_member (args, "max-cpu-throttle", MD_CONVERGENCE_THROTTLE_MAX);
      json_object_set_int_member (args, "cpu-throttle-increment",
                                  MD_CONVERGENCE_THROTTLE_INCREMENT);
      src->converge_pending = TRUE;
      source_qmp_step (src, "migrate-set-parameters", args, on_step_applied);
      break;
    case MD_CONVERGENCE_POSTCOPY:
      src->converge_pending = TRUE;
      source_qmp_step (src, "migrate-start-postcopy", NULL, on_step_applied);
      break;
    case MD_CONVERGENCE_GAVE_UP:
      give_up (src);
      break;
    default:
      break;
    }
}

/* ---- The early check: one dirty-rate sample as the migration starts -------- */

/* The sample is advice: when QEMU cannot give it (another measurement
 * under way, a QEMU without page sampling), the ladder goes on as if it
 * had never been asked. */
static void
sample_skipped (Source *src, GError *error)
{
  g_message ("migration %s: host %s: QEMU gave no early dirty-rate sample (calc-dirty-rate: %s); "
             "the convergence ladder decides after the first pass, as without the sample",
             src->migration_id, source_host_name (src), error->message);
}

static gboolean sample_due (Source *src);

static void
on_dirty_rate (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (SourceRef) src = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, &error);
  JsonObject *info;
  guint64 dirty;

  if (source_is_stale (src))
    return;
  if (node == NULL)
    {
      sample_skipped (src, error);
      return;
    }
  info = json_node_get_object (node);
  if (!g_str_equal (json_object_get_string_member_with_default (info, "status", ""), "measured"))
    {
      /* Still measuring: QEMU's sampling thread is late on a busy host. */
      if (++src->converge_sample_polls < 20)
        src->converge_sample_id =
            g_timeout_add_full (G_PRIORITY_DEFAULT, 250, (GSourceFunc) sample_due, source_ref (src),
                                (GDestroyNotify) source_unref);
      return;
    }
  /* QEMU's "MB/s" is MiB/s: sampled pages * RAM MiB / sample count. The
   * next query-migrate in the first pass decides with it. */
  dirty = source_member_uint (info, "dirty-rate") * 1024 * 1024;
  md_migration_set_statistic (src->migration, "sampled-dirty-rate", g_variant_new_uint64 (dirty));
  md_convergence_set_sample (src->convergence, dirty);
}

static gboolean
sample_due (Source *src)
{
  MdQmp *qmp = md_guest_get_qmp (src->guest);

  src->converge_sample_id = 0;
  if (!source_is_stale (src) && qmp != NULL)
    md_qmp_execute_async (qmp, "query-dirty-rate", NULL, src->cancellable, on_dirty_rate,
                          source_ref (src));
  return G_SOURCE_REMOVE;
}

static void
on_sample_started (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (SourceRef) src = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, &error);

  if (source_is_stale (src))
    return;
  if (node == NULL)
    {
      sample_skipped (src, error);
      return;
    }
  src->converge_sample_id = g_timeout_add_full (
      G_PRIORITY_DEFAULT, src->converge_sample_seconds * 1000 + 100, (GSourceFunc) sample_due,
      source_ref (src), (GDestroyNotify) source_unref);
}

static void
start_sample (Source *src)
{
  guint seconds = md_convergence_start_sample (src->convergence);
  MdQmp *qmp = md_guest_get_qmp (src->guest);
  g_autoptr (JsonObject) args = NULL;

  if (seconds == 0 || qmp == NULL)
    return;
  args = source_json_args ();
  json_object_set_int_member (args, "calc-time", seconds);
  json_object_set_string_member (args, "mode", "page-sampling");
  /* QEMU's most (default 512): 2048 pages of a 512 MiB guest, hashed
   * twice, cost nothing and steady the estimate of a small range. */
  json_object_set_int_member (args, "sample-pages", 4096);
  src->converge_sample_seconds = seconds;
  md_qmp_execute_async (qmp, "calc-dirty-rate", args, src->cancellable, on_sample_started,
                        source_ref (src));
}

/* One query-migrate answer while QEMU copies memory ("active"). */
void
source_converge (Source *src, JsonObject *info)
{
  JsonObject *ram =
      json_object_has_member (info, "ram") ? json_object_get_object_member (info, "ram") : NULL;
  MdConvergenceSample sample = { 0 };
  MdConvergenceAction action = { 0 };

  if (ram == NULL || src->convergence == NULL || src->converge_pending)
    return;
  sample.iteration = source_member_uint (ram, "dirty-sync-count");
  sample.remaining = source_member_uint (ram, "remaining");
  sample.transferred = source_member_uint (ram, "transferred");
  sample.rate =
      (guint64) (json_object_get_double_member_with_default (ram, "mbps", 0) * 1000000 / 8);
  sample.dirty_rate = source_member_uint (ram, "dirty-pages-rate")
                      * MAX (source_member_uint (ram, "page-size"), 4096);
  sample.throttle = (guint) source_member_uint (info, "cpu-throttle-percentage");
  sample.elapsed_ms = md_migration_elapsed_ms (src->migration);
  if (md_convergence_feed (src->convergence, &sample, &action))
    apply (src, &action);
}

/* ---- QEMU's figures ------------------------------------------------------- */

void
source_publish_migrate_stats (Source *src, JsonObject *info, const char *status)
{
  JsonObject *ram =
      json_object_has_member (info, "ram") ? json_object_get_object_member (info, "ram") : NULL;
  MdMigrationStats stats = { 0 };

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
  if (ram == NULL)
    return;
  md_migration_set_statistic (src->migration, "pages-duplicate",
                              g_variant_new_uint64 (source_member_uint (ram, "duplicate")));
  md_migration_set_statistic (src->migration, "pages-normal",
                              g_variant_new_uint64 (source_member_uint (ram, "normal")));
  md_migration_set_statistic (src->migration, "postcopy-requests",
                              g_variant_new_uint64 (source_member_uint (ram, "postcopy-requests")));
}
