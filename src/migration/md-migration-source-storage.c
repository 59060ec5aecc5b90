/* migrationd: the storage half of an outgoing migration — disks mirrored
 * over NBD while the guest runs, or copied with libnbd when it is off. */
#include "config.h"

#include "md-migration-source-private.h"
#include "common/md-error.h"
#include "common/md-fault.h"
#include "common/md-options.h"
#include "qemu/md-qemu-argv.h"

/* ---- Perform: disks mirrored over NBD ------------------------------------------ */

/* Names inside QEMU carry the migration's tag: unique across daemon
 * restarts, so a retry never meets the nodes of an interrupted attempt. */
static char *
nbd_node_name (Source *src, const MdDomainDisk *disk)
{
  return g_strdup_printf ("md-nbd-%s-%s", src->tag, disk->target);
}

char *
source_mirror_job_name (Source *src, const MdDomainDisk *disk)
{
  return g_strdup_printf ("md-mirror-%s-%s", src->tag, disk->target);
}

static char *
mirror_job_prefix (Source *src)
{
  return g_strdup_printf ("md-mirror-%s-", src->tag);
}

static void on_block_jobs (GObject *source, GAsyncResult *result, gpointer user_data);

/* A mirror that ends with an error vanishes from query-block-jobs; its
 * event keeps QEMU's reason (e.g. the destination's disk is full). */
static void
on_block_job_completed (MdQmp *qmp, const char *name, JsonObject *data, gint64 timestamp,
                        Source *src)
{
  const char *device = json_object_get_string_member_with_default (data, "device", "");
  const char *error = json_object_get_string_member_with_default (data, "error", NULL);
  g_autofree char *prefix = mirror_job_prefix (src);
  const char *target = device + strlen (prefix);
  const char *path = NULL;

  if (error == NULL || !g_str_has_prefix (device, prefix) || src->mirror_error != NULL)
    return;
  for (guint i = 0; src->dest_def != NULL && i < src->dest_def->disks->len; i++)
    {
      const MdDomainDisk *disk = g_ptr_array_index (src->dest_def->disks, i);
      if (g_str_equal (disk->target, target))
        path = disk->source;
    }
  src->mirror_error = md_storage_mirror_error (error, target, source_peer_name (src), path);
}

static void
poll_block_jobs (Source *src)
{
  if (!source_is_stale (src) && !src->mirrors_ready && src->mirrors_added > 0)
    source_query (src, "query-block-jobs", on_block_jobs);
}

/* Progress figures; readiness comes with BLOCK_JOB_READY. */
static gboolean
on_block_poll_timer (gpointer user_data)
{
  poll_block_jobs (user_data);
  return G_SOURCE_CONTINUE;
}

void
source_on_block_job_event (Source *src)
{
  poll_block_jobs (src);
}

/* Our jobs in a query-block-jobs reply: counts them, sums their progress,
 * and tells whether all are ready. */
static guint
scan_jobs (Source *src, JsonArray *jobs, guint64 *total, guint64 *done, gboolean *all_ready,
           GError **error)
{
  guint n = 0;
  g_autofree char *prefix = mirror_job_prefix (src);

  *total = *done = 0;
  *all_ready = TRUE;
  for (guint i = 0; i < json_array_get_length (jobs); i++)
    {
      JsonObject *job = json_array_get_object_element (jobs, i);
      const char *device = json_object_get_string_member_with_default (job, "device", "");
      const char *status = json_object_get_string_member_with_default (job, "status", "");

      if (!g_str_has_prefix (device, prefix))
        continue;
      n++;
      *total += source_member_uint (job, "len");
      *done += source_member_uint (job, "offset");
      if (!json_object_get_boolean_member_with_default (job, "ready", FALSE))
        *all_ready = FALSE;
      if ((g_str_equal (status, "concluded") || g_str_equal (status, "aborting"))
          && json_object_has_member (job, "error") && error != NULL && *error == NULL)
        g_set_error (error, MD_ERROR, MD_ERROR_STORAGE_FAILED,
                     "disk %s: mirroring to the NBD export on host %s failed: %s",
                     device + strlen (prefix), source_peer_name (src),
                     json_object_get_string_member (job, "error"));
    }
  return n;
}

static void
on_block_jobs (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (SourceRef) src = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, &error);
  MdMigrationStats stats = { 0 };
  gboolean all_ready;
  guint64 total, done;
  guint n;
  gint64 now = g_get_monotonic_time ();

  src->query_pending = FALSE;
  if (source_is_stale (src) || src->mirrors_ready)
    return;
  if (node == NULL)
    {
      g_prefix_error (&error, "host %s, phase mirror-disks: ", source_host_name (src));
      source_fail (src, g_steal_pointer (&error));
      return;
    }
  n = scan_jobs (src, json_node_get_array (node), &total, &done, &all_ready, &error);
  if (error != NULL || n < src->plan->len)
    {
      if (error == NULL && src->mirror_error != NULL)
        error = g_error_copy (src->mirror_error);
      if (error == NULL)
        error = g_error_new (MD_ERROR, MD_ERROR_STORAGE_FAILED,
                             "host %s, phase mirror-disks: a disk mirror to host %s stopped "
                             "(the destination QEMU or its NBD server went away?)",
                             source_host_name (src), source_peer_name (src));
      source_fail (src, g_steal_pointer (&error));
      return;
    }
  if (src->tunnel != NULL)
    {
      /* What moved, not how far the mirrors got through the disks: the
       * rest of the way still counts as to do. */
      guint64 moved = md_tunnel_out_get_disk_bytes (src->tunnel);
      total = moved + (total - MIN (done, total));
      done = moved;
    }
  if (src->disk_sample_time > 0 && now > src->disk_sample_time && done >= src->disk_processed)
    src->disk_rate = (guint64) ((double) (done - src->disk_processed) * G_USEC_PER_SEC
                                / (double) (now - src->disk_sample_time));
  src->disk_sample_time = now;
  src->disk_total = total;
  src->disk_processed = done;
  stats.disk_total = total;
  stats.disk_processed = done;
  stats.disk_remaining = total - MIN (done, total);
  stats.disk_rate = src->disk_rate;
  md_migration_update_stats (src->migration, &stats);
  if (!all_ready)
    return;
  /* Every disk is in sync and stays so (writes go to both sides): now
   * the memory. */
  src->mirrors_ready = TRUE;
  md_fault_point ("source-mirrors-ready");
  g_clear_handle_id (&src->progress_id, g_source_remove);
  source_set_capabilities (src, NULL);
}

static void add_next_mirror (Source *src, GError *error);

static void
on_mirror_started (Source *src, GError *error)
{
  if (error != NULL)
    {
      const MdDomainDisk *disk = g_ptr_array_index (src->plan, src->mirrors_added - 1);
      g_prefix_error (&error, "host %s, phase mirror-disks: disk %s: ", source_host_name (src),
                      disk->target);
      source_fail (src, error);
      return;
    }
  add_next_mirror (src, NULL);
}

static void
on_nbd_node_added (Source *src, GError *error)
{
  const MdDomainDisk *disk = g_ptr_array_index (src->plan, src->mirrors_added - 1);
  g_autofree char *device = md_qemu_disk_node_name (disk, TRUE);
  g_autofree char *target = nbd_node_name (src, disk);
  g_autofree char *job = source_mirror_job_name (src, disk);
  JsonObject *args;

  if (error != NULL)
    {
      g_prefix_error (&error,
                      "host %s, phase mirror-disks: disk %s: connecting to the NBD "
                      "export on host %s: ",
                      source_host_name (src), disk->target, source_peer_name (src));
      source_fail (src, error);
      return;
    }
  if (src->mirror_qmp == NULL && md_guest_get_qmp (src->guest) != NULL)
    {
      src->mirror_qmp = g_object_ref (md_guest_get_qmp (src->guest));
      src->mirror_event_id = g_signal_connect (src->mirror_qmp, "event::BLOCK_JOB_COMPLETED",
                                               G_CALLBACK (on_block_job_completed), src);
    }
  args = source_json_args ();
  json_object_set_string_member (args, "job-id", job);
  json_object_set_string_member (args, "device", device);
  json_object_set_string_member (args, "target", target);
  json_object_set_string_member (args, "sync",
                                 src->storage_mode == MD_STORAGE_COPY_INCREMENTAL ? "top" : "full");
  /* The bandwidth limit covers the disks too, as in libvirt. */
  if (src->opts->bandwidth > 0)
    json_object_set_int_member (args, "speed", (gint64) src->opts->bandwidth);
  source_qmp_step (src, "blockdev-mirror", args, on_mirror_started);
}

static void
add_next_mirror (Source *src, GError *error)
{
  const MdDomainDisk *disk;
  g_autofree char *node = NULL;
  g_autofree char *port = NULL;
  JsonObject *args, *server;

  if (error != NULL)
    {
      source_fail (src, error);
      return;
    }
  if (src->mirrors_added == src->plan->len)
    {
      src->progress_id = source_timeout_add (src, PROGRESS_INTERVAL_MS, on_block_poll_timer);
      poll_block_jobs (src);
      return;
    }
  disk = g_ptr_array_index (src->plan, src->mirrors_added++);
  node = nbd_node_name (src, disk);
  md_journal_list_add (md_machine_get_journal (src->machine), "qemu-nodes", node);
  {
    g_autofree char *job = source_mirror_job_name (src, disk);
    md_journal_list_add (md_machine_get_journal (src->machine), "qemu-jobs", job);
  }
  md_machine_commit (src->machine);
  server = json_object_new ();
  if (src->tunnel != NULL)
    {
      /* A unix socket of ours: the connection becomes a data stream. */
      json_object_set_string_member (server, "type", "unix");
      json_object_set_string_member (server, "path",
                                     md_tunnel_out_get_nbd_path (src->tunnel, disk->target));
    }
  else
    {
      port = g_strdup_printf ("%u", src->nbd_port);
      json_object_set_string_member (server, "type", "inet");
      json_object_set_string_member (server, "host", src->nbd_host);
      json_object_set_string_member (server, "port", port);
    }
  args = source_json_args ();
  json_object_set_string_member (args, "driver", "nbd");
  json_object_set_string_member (args, "node-name", node);
  json_object_set_object_member (args, "server", server);
  json_object_set_string_member (args, "export", disk->target);
  if (src->tls_object != NULL)
    {
      json_object_set_string_member (args, "tls-creds", src->tls_object);
      json_object_set_string_member (args, "tls-hostname",
                                     md_peer_connection_get_host_name (src->peer));
    }
  source_qmp_step_written (src, "blockdev-add", args, on_nbd_node_added);
}

static void
undo_mirrors (gpointer owner, gpointer data)
{
  Source *src = owner;

  source_cancel_mirrors (src);
  md_machine_undo_done (src->machine);
}

void
source_start_mirrors (Source *src, GError *error)
{
  if (error != NULL || src->plan == NULL || src->plan->len == 0)
    {
      source_set_capabilities (src, error);
      return;
    }
  md_fault_point ("source-mirrors-started");
  if (!md_machine_advance (src->machine, MD_PHASE_MIRROR_DISKS))
    return;
  md_machine_push_undo (src->machine, "mirrors", MD_UNDO_CLEANUP, undo_mirrors, NULL, NULL);
  md_migration_set_running_state (src->migration, "running");
  add_next_mirror (src, NULL);
}

/* After RAM: cancel each mirror (a cancel once READY leaves the target a
 * consistent copy), wait for the jobs to go, then drop the NBD client
 * nodes before the peer stops its NBD server. */
static void on_mirrors_gone (GObject *source, GAsyncResult *result, gpointer user_data);

static void
check_mirrors_gone (Source *src)
{
  MdQmp *qmp = md_guest_get_qmp (src->guest);

  if (qmp == NULL)
    {
      source_fail (src, g_error_new (MD_ERROR, MD_ERROR_QEMU_FAILED,
                                     "host %s: QEMU of guest %s died while its disk mirrors "
                                     "were being completed",
                                     source_host_name (src), md_guest_get_name (src->guest)));
      return;
    }
  md_qmp_execute_async (qmp, "query-block-jobs", NULL, NULL, on_mirrors_gone, source_ref (src));
}

static gboolean
on_check_mirrors_timer (gpointer user_data)
{
  check_mirrors_gone (user_data);
  return G_SOURCE_REMOVE;
}

static void
delete_nbd_nodes (Source *src)
{
  for (guint i = 0; i < src->mirrors_added; i++)
    {
      JsonObject *args = source_json_args ();
      g_autofree char *node = nbd_node_name (src, g_ptr_array_index (src->plan, i));

      json_object_set_string_member (args, "node-name", node);
      source_qmp_step (src, "blockdev-del", args, source_ignore_result);
      md_journal_list_remove (md_machine_get_journal (src->machine), "qemu-nodes", node);
    }
  src->mirrors_added = 0;
}

static void
on_mirrors_gone (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (SourceRef) src = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, &error);
  guint64 total, done;
  gboolean ready;

  if (source_is_stale (src))
    return;
  if (node == NULL)
    {
      source_fail (src, g_steal_pointer (&error));
      return;
    }
  if (scan_jobs (src, json_node_get_array (node), &total, &done, &ready, NULL) > 0)
    {
      /* The timer holds a reference: the migration may end meanwhile. */
      source_timeout_add (src, 50, on_check_mirrors_timer);
      return;
    }
  delete_nbd_nodes (src);
  md_machine_drop_undo (src->machine, "mirrors");
  md_machine_commit (src->machine);
  source_finish_on_peer (src);
}

void
source_stop_mirrors (Source *src)
{
  for (guint i = 0; i < src->mirrors_added; i++)
    {
      JsonObject *args = source_json_args ();
      g_autofree char *job = source_mirror_job_name (src, g_ptr_array_index (src->plan, i));

      json_object_set_string_member (args, "device", job);
      source_qmp_step (src, "block-job-cancel", args, source_ignore_result);
    }
  check_mirrors_gone (src);
}

/* Failure path: stop the mirrors at once; the peer removes its images. */
void
source_cancel_mirrors (Source *src)
{
  if (src->mirrors_added == 0 || md_guest_get_qmp (src->guest) == NULL)
    return;
  for (guint i = 0; i < src->mirrors_added; i++)
    {
      JsonObject *args = source_json_args ();
      g_autofree char *job = source_mirror_job_name (src, g_ptr_array_index (src->plan, i));

      json_object_set_string_member (args, "device", job);
      json_object_set_boolean_member (args, "force", TRUE);
      source_qmp_step (src, "block-job-cancel", args, source_ignore_result);
    }
  delete_nbd_nodes (src);
}

/* ---- offline: the disks of a shut-off guest, copied with libnbd ---------------- */

static void
on_offline_progress (guint64 done, guint64 total, gpointer user_data)
{
  Source *src = user_data;
  MdMigrationStats stats = { 0 };
  gint64 now = g_get_monotonic_time ();

  if (source_is_stale (src))
    return;
  if (src->disk_sample_time > 0 && now > src->disk_sample_time + G_USEC_PER_SEC / 4
      && done >= src->disk_processed)
    {
      src->disk_rate = (guint64) ((double) (done - src->disk_processed) * G_USEC_PER_SEC
                                  / (double) (now - src->disk_sample_time));
      src->disk_sample_time = now;
      src->disk_processed = done;
    }
  else if (src->disk_sample_time == 0)
    src->disk_sample_time = now;
  src->disk_total = total;
  stats.disk_total = total;
  stats.disk_processed = done;
  stats.disk_remaining = total - MIN (done, total);
  stats.disk_rate = src->disk_rate;
  md_migration_update_stats (src->migration, &stats);
}

static void
on_offline_copied (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (SourceRef) src = user_data;
  g_autoptr (GError) error = NULL;
  guint64 copied = 0;

  if (!md_offline_copy_finish (result, &copied, &error))
    {
      if (!source_is_stale (src))
        {
          g_prefix_error (&error, "host %s, phase copy-disks: ", source_host_name (src));
          /* Through the tunnel a broken connection is usually a data
           * stream that ended: the relay names it a moment later. */
          source_fail_naming_stream (src, g_steal_pointer (&error));
        }
      return;
    }
  if (source_is_stale (src))
    return;
  md_migration_set_statistic (src->migration, "disk-bytes-copied", g_variant_new_uint64 (copied));
  on_offline_progress (src->disk_total, src->disk_total, src);
  source_finish_on_peer (src);
}

void
source_copy_offline (Source *src)
{
  g_autoptr (GPtrArray) targets = g_ptr_array_new ();
  g_autoptr (GPtrArray) paths = g_ptr_array_new ();
  g_autoptr (GPtrArray) formats = g_ptr_array_new ();
  g_autoptr (GPtrArray) sockets = g_ptr_array_new ();
  g_autofree char *id = g_strdup_printf (
      "migration-%s", strrchr (md_migration_get_object_path (src->migration), '/') + 1);
  MdOfflineCopyOptions options = { 0 };
  guint64 total = 0;

  for (guint i = 0; i < src->plan->len; i++)
    {
      const MdDomainDisk *disk = g_ptr_array_index (src->plan, i);
      g_autoptr (GVariant) info = g_variant_get_child_value (src->disks_info, i);
      guint64 size = 0;

      g_variant_lookup (info, "virtual-size", "t", &size);
      total += size;
      g_ptr_array_add (targets, disk->target);
      g_ptr_array_add (paths, disk->source);
      g_ptr_array_add (formats, (gpointer) md_domain_disk_format_to_string (disk->format));
      if (src->tunnel != NULL)
        g_ptr_array_add (sockets,
                         (gpointer) md_tunnel_out_get_nbd_path (src->tunnel, disk->target));
    }
  g_ptr_array_add (targets, NULL);
  g_ptr_array_add (paths, NULL);
  g_ptr_array_add (formats, NULL);
  g_ptr_array_add (sockets, NULL);
  if (!md_machine_advance (src->machine, MD_PHASE_COPY_DISKS))
    return;
  src->disk_total = total;
  options.runtime_dir = md_manager_get_config (src->manager)->runtime_dir;
  options.id = id;
  options.targets = (const char *const *) targets->pdata;
  options.paths = (const char *const *) paths->pdata;
  options.formats = (const char *const *) formats->pdata;
  options.dest_host = src->nbd_host;
  options.dest_port = src->nbd_port;
  options.dest_sockets = src->tunnel != NULL ? (const char *const *) sockets->pdata : NULL;
  options.tls_dir = src->opts->tls ? md_manager_get_config (src->manager)->tls_dir : NULL;
  options.fresh_targets = (const char *const *) src->fresh_targets;
  options.verify = src->opts->verify;
  options.total_bytes = total;
  options.source_host_name = source_host_name (src);
  options.dest_host_name = source_peer_name (src);
  md_offline_copy_async (&options, on_offline_progress, src, src->cancellable, on_offline_copied,
                         source_ref (src));
}

/* SetBandwidth mid-flight: the mirrors follow the new limit (0: none). */
void
source_set_mirror_speed (Source *src, guint64 bytes_per_second)
{
  for (guint i = 0; i < src->mirrors_added && md_guest_get_qmp (src->guest) != NULL; i++)
    {
      JsonObject *args = source_json_args ();
      g_autofree char *job = source_mirror_job_name (src, g_ptr_array_index (src->plan, i));

      json_object_set_string_member (args, "device", job);
      json_object_set_int_member (args, "speed", (gint64) bytes_per_second);
      source_qmp_step (src, "block-job-set-speed", args, source_ignore_result);
    }
}
