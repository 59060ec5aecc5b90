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

void
source_converge_start (Source *src)
{
  src->convergence = md_convergence_new (src->opts, source_config (src));
  publish_convergence (src);
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
