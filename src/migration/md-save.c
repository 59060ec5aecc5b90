/* migrationd: Guest1.Save and ManagedSave — the guest's state into a file
 * the daemon opened, through QEMU's fd: migration, with a Migration1 object
 * (Direction "save") for progress and Cancel.
 *
 * The guest is in exactly one place at every step: QEMU stops only after
 * the file is complete, flushed and has its name; any failure before that
 * removes the partial file and resumes the guest as it was. */
#include "config.h"

#include "md-save-private.h"
#include "common/md-error.h"
#include "common/md-file-remove.h"
#include "common/md-fault.h"
#include "md-address.h"
#include "md-migration-journal.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <fcntl.h>
#include <glib-unix.h>
#include <unistd.h>

#define SAVE_FD_NAME "md-save"
/* How long a compressor may take to finish after QEMU sent its last byte. */
#define FILTER_DRAIN_SECONDS 120

/* clang-format off */
const MdOptionSpec md_save_option_specs[] = {
  { "overwrite", "b" },
  { "compression", "s" },
  { "bypass-cache", "b" },
  { "running", "b" },
  { "paused", "b" },
  { "bandwidth", "t" },
  { "auth.no_user_interaction", "b" },
  { NULL, NULL },
};

const MdOptionSpec md_managed_save_option_specs[] = {
  { "compression", "s" },
  { "bypass-cache", "b" },
  { "running", "b" },
  { "paused", "b" },
  { "bandwidth", "t" },
  { "auth.no_user_interaction", "b" },
  { NULL, NULL },
};
/* clang-format on */

typedef struct
{
  MdManager *manager;
  MdGuest *guest;
  MdMigration *migration;
  char *path;
  char *tmp_path;
  char *xml;
  gboolean overwrite;
  gboolean bypass_cache;
  gboolean managed;
  gboolean was_running;
  gboolean save_running; /* the state a restore resumes in */
  MdSaveCompression compression;

  int file_fd;
  int qemu_fd; /* our copy of what QEMU gets, closed once QEMU has it */
  GSubprocess *filter;
  char *filter_stderr;
  /* bypass-cache: a worker copies the stream into the file with O_DIRECT */
  GCancellable *direct_cancel;
  gboolean direct_running;
  gboolean stream_done; /* QEMU (and the compressor) wrote everything */
  guint drain_id;

  gboolean stopped_cpus;
  gboolean qemu_migrating;
  gboolean committing; /* the file is being flushed and named */
  gboolean finishing;
  gboolean done;
  guint poll_id;
  gboolean poll_pending;
  GError *error;
  MdJournal *journal; /* from stopping the guest until the save ended */
  gint refs;
} Save;

static Save *
save_ref (Save *save)
{
  g_atomic_int_inc (&save->refs);
  return save;
}

static void
save_unref (Save *save)
{
  if (!g_atomic_int_dec_and_test (&save->refs))
    return;
  if (save->file_fd >= 0)
    close (save->file_fd);
  if (save->qemu_fd >= 0)
    close (save->qemu_fd);
  g_clear_object (&save->filter);
  g_clear_object (&save->direct_cancel);
  g_clear_object (&save->guest);
  g_clear_object (&save->migration);
  g_clear_error (&save->error);
  g_clear_pointer (&save->journal, md_journal_free);
  g_free (save->path);
  g_free (save->tmp_path);
  g_free (save->xml);
  g_free (save->filter_stderr);
  g_free (save);
}

static Save *validate_and_create (MdManager *manager, MdGuest *guest, const char *path,
                                  GVariant *options, guint owner_uid, gboolean managed,
                                  GError **error);

static const char *
host_name (Save *save)
{
  return md_manager_get_config (save->manager)->host_name;
}

char *
md_save_managed_path (MdManager *manager, const char *name)
{
  return md_guest_managed_save_path (md_manager_get_config (manager), name);
}

GSubprocess *
md_save_spawn_filter (const char *const *argv, int stdin_fd, int stdout_fd, GError **error)
{
  g_autoptr (GSubprocessLauncher) launcher =
      g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDERR_PIPE);
  g_autoptr (GError) local_error = NULL;
  GSubprocess *proc;

  g_subprocess_launcher_take_stdin_fd (launcher, stdin_fd);
  g_subprocess_launcher_take_stdout_fd (launcher, stdout_fd);
  proc = g_subprocess_launcher_spawnv (launcher, argv, &local_error);
  if (proc == NULL)
    g_set_error (error, MD_ERROR, MD_ERROR_FAILED, "cannot run %s: %s", argv[0],
                 local_error->message);
  return proc;
}

void
md_save_filter_error (const char *program, const char *stderr_text, int status, GError **error)
{
  g_autofree char *text = g_strstrip (g_strdup (stderr_text ? stderr_text : ""));

  g_set_error (error, MD_ERROR, MD_ERROR_STORAGE_FAILED, "%s failed (exit status %d)%s%s", program,
               status, *text ? ": " : "", text);
}

/* ---- the end: failure or success ---------------------------------------- */

static void save_fail (Save *save, GError *error);

static void
remove_tmp (Save *save)
{
  if (save->tmp_path != NULL)
    md_file_remove_in_background (g_steal_pointer (&save->tmp_path));
}

static void
save_done (Save *save, GError *error)
{
  save->done = TRUE;
  g_clear_handle_id (&save->poll_id, g_source_remove);
  g_clear_handle_id (&save->drain_id, g_source_remove);
  if (save->journal != NULL)
    md_journal_remove (save->journal);
  md_migration_complete (save->migration, error, 0);
  save_unref (save);
}

static void
on_resumed_after_failure (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Save *save = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, &error);

  if (node == NULL)
    {
      g_prefix_error (&error, "host %s: guest %s could not be resumed after the failed save: ",
                      host_name (save), md_guest_get_name (save->guest));
      md_migration_add_error_detail (save->migration, error);
    }
  md_guest_end_migration (save->guest, node != NULL);
  save_done (save, NULL);
}

static void
on_migrate_cancelled (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, NULL);
}

/* Stops everything this save started, removes the partial file and leaves
 * the guest as it was. */
static void
save_fail (Save *save, GError *error)
{
  MdQmp *qmp = md_guest_get_qmp (save->guest);

  if (save->finishing)
    {
      md_migration_add_error_detail (save->migration, error);
      g_error_free (error);
      return;
    }
  save->finishing = TRUE;
  g_clear_handle_id (&save->poll_id, g_source_remove);
  g_clear_handle_id (&save->drain_id, g_source_remove);
  md_migration_add_error_detail (save->migration, error);
  g_warning ("host %s: saving guest %s to %s failed: %s", host_name (save),
             md_guest_get_name (save->guest), save->path, error->message);
  g_error_free (error);

  if (qmp != NULL && save->qemu_migrating)
    md_qmp_execute_async (qmp, "migrate_cancel", NULL, NULL, on_migrate_cancelled, NULL);
  if (save->filter != NULL)
    g_subprocess_force_exit (save->filter);
  if (save->direct_cancel != NULL)
    g_cancellable_cancel (save->direct_cancel);
  remove_tmp (save);
  if (qmp != NULL && save->stopped_cpus && save->was_running)
    {
      md_qmp_execute_async (qmp, "cont", NULL, NULL, on_resumed_after_failure, save);
      return;
    }
  md_guest_end_migration (save->guest, save->was_running && !save->stopped_cpus);
  save_done (save, NULL);
}

static void
on_qemu_stopped (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Save *save = user_data;
  g_autoptr (GError) error = NULL;

  /* The state is safe on disk: QEMU going away is the goal. */
  if (!md_guest_destroy_finish (MD_GUEST (source), result, &error))
    g_warning ("host %s: guest %s is saved to %s, but stopping its QEMU failed: %s",
               host_name (save), md_guest_get_name (save->guest), save->path, error->message);
  md_guest_mark_saved (save->guest, save->managed);
  g_message ("host %s: guest %s saved to %s", host_name (save), md_guest_get_name (save->guest),
             save->path);
  save_done (save, NULL);
}

static void
commit_in_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  Save *save = task_data;
  GError *error = NULL;

  if (!md_save_file_commit (save->file_fd, save->tmp_path, save->path,
                            save->overwrite || save->managed, save->bypass_cache, &error))
    g_task_return_error (task, error);
  else
    g_task_return_boolean (task, TRUE);
}

static void
on_committed (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Save *save = user_data;
  GError *error = NULL;

  if (save->finishing)
    {
      save_unref (save);
      return;
    }
  save->committing = FALSE;
  if (!g_task_propagate_boolean (G_TASK (result), &error))
    {
      save_fail (save, error);
      save_unref (save);
      return;
    }
  /* The file has its name now: a failure from here on must not remove
   * it, and a daemon that dies from here on finishes the save at its
   * restart. */
  g_clear_pointer (&save->tmp_path, g_free);
  md_journal_set_string (save->journal, "phase", "committed");
  if (!md_journal_commit (save->journal, &error))
    g_warning ("host %s: %s", host_name (save), error->message);
  g_clear_error (&error);
  md_fault_point ("save-committed");
  save->finishing = TRUE;
  md_guest_destroy_async (save->guest, on_qemu_stopped, save);
  save_unref (save);
}

static void
commit_file (Save *save)
{
  /* With bypass-cache the worker may still write what the stream left in
   * the pipe: the file is complete only when it is done too. */
  save->stream_done = TRUE;
  if (save->direct_running)
    return;
  g_autoptr (GTask) task = g_task_new (NULL, NULL, on_committed, save_ref (save));

  save->committing = TRUE;
  md_migration_set_phase (save->migration, "finish");
  g_task_set_task_data (task, save, NULL);
  g_task_run_in_thread (task, commit_in_thread);
}

static void
on_filter_exited (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Save *save = user_data;
  g_autoptr (GError) error = NULL;
  g_autofree char *err_text = NULL;
  GSubprocess *filter = G_SUBPROCESS (source);

  g_subprocess_communicate_utf8_finish (filter, result, NULL, &err_text, &error);
  g_clear_handle_id (&save->drain_id, g_source_remove);
  if (save->finishing)
    {
      save_unref (save);
      return;
    }
  if (error == NULL
      && !(g_subprocess_get_if_exited (filter) && g_subprocess_get_exit_status (filter) == 0))
    md_save_filter_error (
        md_save_compression_to_string (save->compression), err_text,
        g_subprocess_get_if_exited (filter) ? g_subprocess_get_exit_status (filter) : -1, &error);
  if (error != NULL)
    {
      g_prefix_error (&error, "host %s, phase finish: writing %s: ", host_name (save), save->path);
      save_fail (save, g_steal_pointer (&error));
      save_unref (save);
      return;
    }
  commit_file (save);
  save_unref (save);
}

static gboolean
on_drain_timeout (gpointer user_data)
{
  Save *save = user_data;

  save->drain_id = 0;
  save_fail (save, g_error_new (MD_ERROR, MD_ERROR_TIMEOUT,
                                "host %s, phase finish: the %s compressor did not finish within "
                                "%d s after QEMU's last byte; the guest keeps running",
                                host_name (save), md_save_compression_to_string (save->compression),
                                FILTER_DRAIN_SECONDS));
  return G_SOURCE_REMOVE;
}

/* QEMU's stream is complete: the compressor (if any) ends with it. */
static void
after_stream_complete (Save *save)
{
  save->qemu_migrating = FALSE;
  if (save->filter == NULL)
    {
      commit_file (save);
      return;
    }
  md_migration_set_phase (save->migration, "finish");
  save->drain_id = g_timeout_add_seconds (FILTER_DRAIN_SECONDS, on_drain_timeout, save);
  g_subprocess_communicate_utf8_async (save->filter, NULL, NULL, on_filter_exited, save_ref (save));
}

/* ---- Perform: QEMU writes the stream ---------------------------------- */

static void save_poll (Save *save);

static gboolean
on_poll_timer (gpointer user_data)
{
  Save *save = user_data;

  save->poll_id = 0;
  save_poll (save);
  return G_SOURCE_REMOVE;
}

static void
update_stats (Save *save, JsonObject *info)
{
  JsonObject *ram =
      json_object_has_member (info, "ram") ? json_object_get_object_member (info, "ram") : NULL;
  MdMigrationStats stats = { 0 };

  if (ram == NULL)
    return;
  stats.memory_total = (guint64) json_object_get_int_member_with_default (ram, "total", 0);
  stats.memory_processed =
      (guint64) json_object_get_int_member_with_default (ram, "transferred", 0);
  stats.memory_remaining = (guint64) json_object_get_int_member_with_default (ram, "remaining", 0);
  stats.rate = (guint64) (json_object_get_double_member_with_default (ram, "mbps", 0) * 1e6 / 8);
  stats.iteration = (guint64) json_object_get_int_member_with_default (ram, "dirty-sync-count", 0);
  md_migration_update_stats (save->migration, &stats);
}

static void
on_query_migrate (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Save *save = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, &error);
  JsonObject *info;
  const char *status;

  save->poll_pending = FALSE;
  if (save->finishing || save->done)
    {
      save_unref (save);
      return;
    }
  if (node == NULL)
    {
      g_prefix_error (&error, "host %s, phase perform: ", host_name (save));
      save_fail (save, g_steal_pointer (&error));
      save_unref (save);
      return;
    }
  info = json_node_get_object (node);
  status = json_object_get_string_member_with_default (info, "status", "");
  update_stats (save, info);
  if (g_str_equal (status, "completed"))
    after_stream_complete (save);
  else if (g_str_equal (status, "failed") || g_str_equal (status, "cancelled"))
    {
      save->qemu_migrating = FALSE;
      save_fail (save,
                 g_error_new (
                     MD_ERROR,
                     g_str_equal (status, "failed") ? MD_ERROR_STORAGE_FAILED : MD_ERROR_CANCELLED,
                     "host %s, phase perform: QEMU could not write the guest "
                     "state to %s: %s",
                     host_name (save), save->path,
                     json_object_get_string_member_with_default (info, "error-desc", status)));
    }
  else
    save->poll_id = g_timeout_add (MD_SAVE_POLL_INTERVAL_MS, on_poll_timer, save);
  save_unref (save);
}

static void
save_poll (Save *save)
{
  MdQmp *qmp = md_guest_get_qmp (save->guest);

  if (qmp == NULL)
    {
      save_fail (save, g_error_new (MD_ERROR, MD_ERROR_QEMU_FAILED,
                                    "host %s, phase perform: QEMU of guest %s went away during "
                                    "the save",
                                    host_name (save), md_guest_get_name (save->guest)));
      return;
    }
  if (save->poll_pending)
    return;
  save->poll_pending = TRUE;
  md_qmp_execute_async (qmp, "query-migrate", NULL, NULL, on_query_migrate, save_ref (save));
}

/* One QMP command whose answer only matters as success or not. */
typedef void (*SaveStep) (Save *save);

typedef struct
{
  Save *save;
  SaveStep next;
  const char *command;
} StepCall;

static void
on_step_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  StepCall *call = user_data;
  Save *save = call->save;
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, &error);

  if (save->finishing)
    ;
  else if (node == NULL)
    {
      g_prefix_error (&error, "host %s, phase perform: %s: ", host_name (save), call->command);
      save_fail (save, g_steal_pointer (&error));
    }
  else
    call->next (save);
  save_unref (save);
  g_free (call);
}

static void
step (Save *save, const char *command, JsonObject *args, int fd, SaveStep next)
{
  MdQmp *qmp = md_guest_get_qmp (save->guest);
  StepCall *call;

  if (save->finishing)
    return;
  if (qmp == NULL)
    {
      save_fail (save, g_error_new (MD_ERROR, MD_ERROR_QEMU_FAILED,
                                    "host %s: QEMU of guest %s went away during the save",
                                    host_name (save), md_guest_get_name (save->guest)));
      return;
    }
  call = g_new0 (StepCall, 1);
  call->save = save_ref (save);
  call->next = next;
  call->command = command;
  if (fd >= 0)
    md_qmp_execute_with_fd_async (qmp, command, args, fd, NULL, on_step_done, call);
  else
    md_qmp_execute_async (qmp, command, args, NULL, on_step_done, call);
}

static void
after_migrate (Save *save)
{
  md_fault_point ("save-streaming");
  md_migration_set_running_state (save->migration, "running");
  save_poll (save);
}

static void
after_getfd (Save *save)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (MdAddress) address = md_address_new_file (SAVE_FD_NAME, 0, &error);
  g_autofree char *uri = address != NULL ? md_address_to_uri (address, &error) : NULL;
  JsonObject *args;

  /* QEMU holds its own copy now; ours would keep the compressor's input
   * open forever. */
  close (save->qemu_fd);
  save->qemu_fd = -1;
  if (uri == NULL)
    {
      save_fail (save, g_steal_pointer (&error));
      return;
    }
  args = json_object_new ();
  json_object_set_string_member (args, "uri", uri);
  save->qemu_migrating = TRUE;
  step (save, "migrate", args, -1, after_migrate);
  json_object_unref (args);
}

static void
after_parameters (Save *save)
{
  JsonObject *args = json_object_new ();

  json_object_set_string_member (args, "fdname", SAVE_FD_NAME);
  step (save, "getfd", args, save->qemu_fd, after_getfd);
  json_object_unref (args);
}

static void
after_capabilities (Save *save)
{
  JsonObject *args = json_object_new ();
  guint64 bandwidth = md_dbus_migration1_get_bandwidth (MD_DBUS_MIGRATION1 (save->migration));

  /* A file is no network: QEMU's default 128 MiB/s cap does not apply,
   * and what an earlier live migration left set must not either. */
  json_object_set_int_member (args, "max-bandwidth",
                              bandwidth > 0 ? (gint64) bandwidth : G_GINT64_CONSTANT (1) << 40);
  json_object_set_string_member (args, "tls-creds", "");
  json_object_set_string_member (args, "tls-hostname", "");
  step (save, "migrate-set-parameters", args, -1, after_parameters);
  json_object_unref (args);
}

static void
after_stop (Save *save)
{
  JsonObject *args = json_object_new ();
  JsonArray *caps = json_array_new ();
  const char *const off[] = { "multifd", "postcopy-ram", "auto-converge", "xbzrle", NULL };

  save->stopped_cpus = TRUE;
  /* The fd: transport streams once: none of the live-migration
   * capabilities an earlier migration may have set fits it. */
  for (guint i = 0; off[i] != NULL; i++)
    {
      JsonObject *cap = json_object_new ();
      json_object_set_string_member (cap, "capability", off[i]);
      json_object_set_boolean_member (cap, "state", FALSE);
      json_array_add_object_element (caps, cap);
    }
  json_object_set_array_member (args, "capabilities", caps);
  step (save, "migrate-set-capabilities", args, -1, after_capabilities);
  json_object_unref (args);
}

/* Write-ahead, before QEMU may stop the guest: a restarted daemon finds
 * what to undo (md-save-recover.c). */
static gboolean
journal_save (Save *save, GError **error)
{
  const MdConfig *config = md_manager_get_config (save->manager);
  g_autofree char *id = g_uuid_string_random ();

  save->journal = md_journal_new (config->state_dir, id, MD_SAVE_JOURNAL_DIRECTION);
  md_journal_set_string (save->journal, "guest", md_guest_get_name (save->guest));
  md_journal_set_string (save->journal, "path", save->path);
  md_journal_set_string (save->journal, "partial", save->tmp_path);
  md_journal_set_string (save->journal, "phase", "perform");
  md_journal_set_int (save->journal, "was-running", save->was_running);
  md_journal_set_int (save->journal, "managed", save->managed);
  if (save->filter != NULL)
    {
      GPid pid = (GPid) g_ascii_strtoll (g_subprocess_get_identifier (save->filter), NULL, 10);

      md_journal_set_int (save->journal, "filter-pid", pid);
      md_journal_set_int (save->journal, "filter-start", (gint64) md_save_process_start_time (pid));
    }
  if (md_journal_commit (save->journal, error))
    return TRUE;
  g_prefix_error (error, "host %s: cannot save guest %s: ", host_name (save),
                  md_guest_get_name (save->guest));
  return FALSE;
}

typedef struct
{
  int in_fd;
  int out_fd;
  char *path;
} DirectCopy;

static void
direct_copy_free (DirectCopy *copy)
{
  close (copy->in_fd);
  g_free (copy->path);
  g_free (copy);
}

static void
direct_copy_in_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  DirectCopy *copy = task_data;
  GError *error = NULL;

  if (md_save_file_copy_direct (copy->in_fd, copy->out_fd, copy->path, cancellable, &error))
    g_task_return_boolean (task, TRUE);
  else
    g_task_return_error (task, error);
}

static void
on_direct_copy_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Save *save = user_data;
  GError *error = NULL;

  save->direct_running = FALSE;
  if (save->finishing || save->done)
    ;
  else if (!g_task_propagate_boolean (G_TASK (result), &error))
    {
      g_prefix_error (&error, "host %s, phase perform: ", host_name (save));
      save_fail (save, error);
    }
  else if (save->stream_done)
    commit_file (save);
  save_unref (save);
}

/* bypass-cache: QEMU (or the compressor) writes into a pipe, and a worker
 * copies it into the file with O_DIRECT; returns the pipe's write end. */
static int
start_direct_copy (Save *save, GError **error)
{
  g_autoptr (GTask) task = NULL;
  DirectCopy *copy;
  int fds[2];

  if (!g_unix_open_pipe (fds, FD_CLOEXEC, NULL))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_FAILED, "host %s: no pipe: %s", host_name (save),
                   g_strerror (errno));
      return -1;
    }
  copy = g_new0 (DirectCopy, 1);
  copy->in_fd = fds[0];
  copy->out_fd = save->file_fd;
  copy->path = g_strdup (save->path);
  save->direct_cancel = g_cancellable_new ();
  save->direct_running = TRUE;
  task = g_task_new (NULL, save->direct_cancel, on_direct_copy_done, save_ref (save));
  g_task_set_task_data (task, copy, (GDestroyNotify) direct_copy_free);
  g_task_run_in_thread (task, direct_copy_in_thread);
  return fds[1];
}

/* The file exists with our header: start the compressor and QEMU. */
static void
start_stream (Save *save)
{
  GError *error = NULL;
  const char *const *argv = md_save_compressor_argv (save->compression, FALSE);
  int sink;

  md_migration_set_phase (save->migration, "perform");
  sink = save->bypass_cache ? start_direct_copy (save, &error) : dup (save->file_fd);
  if (sink < 0 && error != NULL)
    {
      save_fail (save, error);
      return;
    }
  if (argv == NULL)
    save->qemu_fd = sink;
  else
    {
      int fds[2];
      int out = sink;

      if (out < 0 || !g_unix_open_pipe (fds, FD_CLOEXEC, NULL))
        {
          if (out >= 0)
            close (out);
          save_fail (save, g_error_new (MD_ERROR, MD_ERROR_FAILED, "host %s: no pipe: %s",
                                        host_name (save), g_strerror (errno)));
          return;
        }
      save->filter = md_save_spawn_filter (argv, fds[0], out, &error);
      save->qemu_fd = fds[1];
      if (save->filter == NULL)
        {
          save_fail (save, error);
          return;
        }
    }
  if (!journal_save (save, &error))
    {
      save_fail (save, error);
      return;
    }
  if (save->was_running)
    step (save, "stop", NULL, -1, after_stop);
  else
    after_stop (save);
}

static void
create_in_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  Save *save = task_data;
  MdSaveHeader header = { save->save_running, save->compression, save->xml, 0 };
  g_autoptr (GBytes) bytes = md_save_header_encode (&header);
  g_autofree char *dir = g_path_get_dirname (save->path);
  GError *error = NULL;
  int fd;

  if (save->managed && g_mkdir_with_parents (dir, 0700) < 0)
    {
      g_task_return_new_error (task, MD_ERROR, MD_ERROR_STORAGE_FAILED, "cannot create %s: %s", dir,
                               g_strerror (errno));
      return;
    }
  fd = md_save_file_create (save->path, save->overwrite || save->managed, &save->tmp_path, &error);
  if (fd < 0)
    {
      g_task_return_error (task, error);
      return;
    }
  save->file_fd = fd;
  if (!md_save_file_write (fd, bytes, save->path, &error))
    {
      g_task_return_error (task, error);
      return;
    }
  g_task_return_boolean (task, TRUE);
}

/* The file exists (or could not be made): only now does the caller get
 * the Migration1 object, so a refused path is an error of Save() itself. */
static void
on_file_created (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GTask *caller = user_data;
  Save *save = g_task_get_task_data (caller);
  GError *error = NULL;

  if (!g_task_propagate_boolean (G_TASK (result), &error))
    {
      g_prefix_error (&error, "host %s: cannot save guest %s: ", host_name (save),
                      md_guest_get_name (save->guest));
      if (save->tmp_path != NULL)
        remove_tmp (save);
      save->done = TRUE;
      md_guest_end_migration (save->guest, save->was_running);
      g_task_return_error (caller, error);
      g_object_unref (caller);
      save_unref (save);
      return;
    }
  md_manager_add_migration (save->manager, md_migration_get_object_path (save->migration),
                            MD_DBUS_MIGRATION1 (save->migration));
  g_task_return_pointer (caller, g_object_ref (save->migration), g_object_unref);
  g_object_unref (caller);
  start_stream (save);
}

/* ---- Migration1 controls ------------------------------------------------- */

static gboolean
control_cancel (gpointer engine, GError **error)
{
  Save *save = engine;

  if (save->committing || save->finishing)
    {
      /* Once the file is being named, the guest's state is going there:
       * stopping now could leave it in neither place. */
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_STATE,
                   "the save of %s is being finished (file flushed and named); too late to "
                   "cancel",
                   md_guest_get_name (save->guest));
      return FALSE;
    }
  save_fail (save, g_error_new (MD_ERROR, MD_ERROR_CANCELLED,
                                "host %s: saving guest %s was cancelled; the guest keeps its "
                                "state and %s was not written",
                                host_name (save), md_guest_get_name (save->guest), save->path));
  return TRUE;
}

typedef struct
{
  Save *save;
  guint64 value;
  MdMigrationTuned done;
  gpointer user_data;
} Tuning;

static void
on_bandwidth_set (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Tuning *t = user_data;
  GError *error = NULL;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, &error);

  if (node != NULL)
    md_migration_set_bandwidth_property (t->save->migration, t->value);
  t->done (error, t->user_data);
  save_unref (t->save);
  g_free (t);
}

static gboolean
control_set_bandwidth (gpointer engine, guint64 bps, MdMigrationTuned done, gpointer user_data,
                       GError **error)
{
  Save *save = engine;
  MdQmp *qmp = md_guest_get_qmp (save->guest);
  g_autoptr (JsonObject) args = json_object_new ();
  Tuning *t;

  if (qmp == NULL || save->finishing || bps > G_MAXINT64)
    {
      g_set_error (
          error, MD_ERROR,
          qmp == NULL || save->finishing ? MD_ERROR_INVALID_STATE : MD_ERROR_INVALID_ARGUMENT,
          "cannot change the bandwidth of the save of %s now", md_guest_get_name (save->guest));
      return FALSE;
    }
  json_object_set_int_member (args, "max-bandwidth",
                              bps > 0 ? (gint64) bps : G_GINT64_CONSTANT (1) << 40);
  t = g_new0 (Tuning, 1);
  t->save = save_ref (save);
  t->value = bps;
  t->done = done;
  t->user_data = user_data;
  md_qmp_execute_async (qmp, "migrate-set-parameters", args, NULL, on_bandwidth_set, t);
  return TRUE;
}

static gboolean
control_set_max_downtime (gpointer engine, guint64 ms, MdMigrationTuned done, gpointer user_data,
                          GError **error)
{
  g_set_error (error, MD_ERROR, MD_ERROR_NOT_SUPPORTED,
               "a save stops the guest's CPUs first, so there is no downtime to limit");
  return FALSE;
}

static gboolean
control_start_postcopy (gpointer engine, GError **error)
{
  g_set_error (error, MD_ERROR, MD_ERROR_INVALID_STATE, "a save to a file has no post-copy phase");
  return FALSE;
}

static const MdMigrationControl save_control = {
  control_cancel,
  control_set_bandwidth,
  control_set_max_downtime,
  control_start_postcopy,
};

/* ---- Begin ----------------------------------------------------------------- */

static gboolean
check_guest (MdManager *manager, MdGuest *guest, GError **error)
{
  MdGuestState state = md_guest_get_state (guest);

  if (g_strcmp0 (md_dbus_guest1_get_migration (MD_DBUS_GUEST1 (guest)), "/") != 0)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_STATE,
                   "guest %s is already migrating or saving (%s)", md_guest_get_name (guest),
                   md_dbus_guest1_get_migration (MD_DBUS_GUEST1 (guest)));
      return FALSE;
    }
  if ((state != MD_GUEST_STATE_RUNNING && state != MD_GUEST_STATE_PAUSED)
      || md_guest_get_qmp (guest) == NULL || md_guest_is_busy (guest))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_STATE,
                   "guest %s is %s%s on host %s; only a running or paused guest can be saved",
                   md_guest_get_name (guest), md_guest_state_to_string (state),
                   md_guest_is_busy (guest) ? " and busy" : "",
                   md_manager_get_config (manager)->host_name);
      return FALSE;
    }
  return TRUE;
}

void
md_save_start_async (MdManager *manager, MdGuest *guest, const char *path, GVariant *options,
                     guint owner_uid, gboolean managed, GAsyncReadyCallback callback,
                     gpointer user_data)
{
  GTask *caller = g_task_new (guest, NULL, callback, user_data);
  GError *local_error = NULL;
  Save *save =
      validate_and_create (manager, guest, path, options, owner_uid, managed, &local_error);
  g_autoptr (GTask) task = NULL;

  g_task_set_source_tag (caller, md_save_start_async);
  if (save == NULL)
    {
      g_task_return_error (caller, local_error);
      g_object_unref (caller);
      return;
    }
  /* The run's reference: dropped by on_file_created() when the file could
   * not be made, by save_done() otherwise. */
  g_task_set_task_data (caller, save, NULL);
  task = g_task_new (NULL, NULL, on_file_created, caller);
  g_task_set_task_data (task, save, NULL);
  g_task_run_in_thread (task, create_in_thread);
}

MdMigration *
md_save_start_finish (GAsyncResult *result, GError **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}

static Save *
validate_and_create (MdManager *manager, MdGuest *guest, const char *path, GVariant *options,
                     guint owner_uid, gboolean managed, GError **error)
{
  Save *save;
  MdSaveCompression compression;
  const char *const *argv;
  g_autofree char *program = NULL;
  gboolean running = md_guest_get_state (guest) == MD_GUEST_STATE_RUNNING;

  if (!md_options_check (options, managed ? md_managed_save_option_specs : md_save_option_specs,
                         managed ? "ManagedSave" : "Save", error)
      || !md_save_compression_parse (md_options_get_string (options, "compression"), &compression,
                                     error)
      || !check_guest (manager, guest, error))
    return NULL;
  if (md_options_get_boolean (options, "running", FALSE)
      && md_options_get_boolean (options, "paused", FALSE))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "options 'running' and 'paused' exclude each other");
      return NULL;
    }
  if (managed && !md_guest_is_persistent (guest))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_STATE,
                   "guest %s is transient: it would be gone once stopped, and its managed save "
                   "with it; use Save with a file, or define the guest first",
                   md_guest_get_name (guest));
      return NULL;
    }
  if (md_options_get_uint64 (options, "bandwidth", 0) > G_MAXINT64)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "option 'bandwidth' is too large; 0 means unlimited");
      return NULL;
    }
  if (!managed && (path == NULL || !g_path_is_absolute (path)))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "the save file must be an absolute path, not '%s'", path ? path : "");
      return NULL;
    }
  argv = md_save_compressor_argv (compression, FALSE);
  if (argv != NULL && (program = g_find_program_in_path (argv[0])) == NULL)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_NOT_SUPPORTED,
                   "compression %s needs the program '%s', which host %s does not have; install "
                   "it or choose another compression",
                   md_save_compression_to_string (compression), argv[0],
                   md_manager_get_config (manager)->host_name);
      return NULL;
    }

  save = g_new0 (Save, 1);
  save->refs = 1;
  save->file_fd = -1;
  save->qemu_fd = -1;
  save->manager = manager;
  save->guest = g_object_ref (guest);
  save->managed = managed;
  save->path =
      managed ? md_save_managed_path (manager, md_guest_get_name (guest)) : g_strdup (path);
  save->overwrite = md_options_get_boolean (options, "overwrite", FALSE);
  save->bypass_cache = md_options_get_boolean (options, "bypass-cache", FALSE);
  save->compression = compression;
  save->was_running = running;
  save->save_running = md_options_get_boolean (options, "running", FALSE)  ? TRUE
                       : md_options_get_boolean (options, "paused", FALSE) ? FALSE
                                                                           : running;
  save->xml = md_domain_format (md_guest_get_live_definition (guest));
  save->migration = md_migration_new (manager, md_manager_next_migration_number (manager),
                                      MD_MIGRATION_SAVE, md_guest_get_object_path (guest),
                                      md_guest_get_name (guest), save->path, owner_uid, options);
  md_migration_set_control (save->migration, &save_control, save);
  md_migration_set_bandwidth_property (save->migration,
                                       md_options_get_uint64 (options, "bandwidth", 0));
  md_guest_begin_migration (guest, md_migration_get_object_path (save->migration), FALSE);
  g_message ("host %s: saving guest %s to %s (compression %s)",
             md_manager_get_config (manager)->host_name, md_guest_get_name (guest), save->path,
             md_save_compression_to_string (compression));
  return save;
}
