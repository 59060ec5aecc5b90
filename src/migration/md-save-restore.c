/* migrationd: Manager1.Restore, Guest1.Restore and Start of a guest with a
 * managed save — QEMU started with -incoming defer reads the stream from
 * an fd the daemon opened, after the header was checked.
 *
 * Nothing is left half-started: any failure kills the QEMU this restore
 * started and removes a guest it created. */
#include "config.h"

#include "md-save-private.h"
#include "common/md-error.h"
#include "md-address.h"

#include <errno.h>
#include <fcntl.h>
#include <glib-unix.h>
#include <string.h>
#include <unistd.h>

#define RESTORE_FD_NAME "md-restore"

const MdOptionSpec md_restore_option_specs[] = {
  { "xml", "s" },
  { "paused", "b" },
  { "running", "b" },
  { "start-paused", "b" },
  { "auth.no_user_interaction", "b" },
  { NULL, NULL },
};

typedef struct
{
  MdManager *manager;
  char *path;
  GVariant *options;
  MdGuest *expected;
  MdGuest *guest;
  gboolean created; /* the guest exists because of this restore */
  MdSaveHeader *header;
  gboolean resume;
  int file_fd;
  int qemu_fd;
  GSubprocess *filter;
  guint poll_id;
  gboolean failing;
} Restore;

static void
restore_free (Restore *restore)
{
  if (restore->file_fd >= 0)
    close (restore->file_fd);
  if (restore->qemu_fd >= 0)
    close (restore->qemu_fd);
  g_clear_handle_id (&restore->poll_id, g_source_remove);
  g_clear_object (&restore->filter);
  g_clear_object (&restore->expected);
  g_clear_object (&restore->guest);
  g_clear_pointer (&restore->header, md_save_header_free);
  g_clear_pointer (&restore->options, g_variant_unref);
  g_free (restore->path);
  g_free (restore);
}

static const char *
host_name (Restore *restore)
{
  return md_manager_get_config (restore->manager)->host_name;
}

/* ---- failure: nothing left behind -------------------------------------- */

static void
drop_guest (GTask *task)
{
  Restore *restore = g_task_get_task_data (task);

  if (restore->guest != NULL)
    md_guest_settle_stopped (restore->guest);
  if (restore->created && restore->guest != NULL && !md_guest_is_active (restore->guest)
      && md_manager_find_guest (restore->manager, md_guest_get_name (restore->guest))
             == restore->guest)
    md_manager_remove_guest (restore->manager, restore->guest);
}

static void
on_failed_qemu_gone (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  GError *error = g_object_steal_data (G_OBJECT (task), "md-error");

  md_guest_destroy_finish (MD_GUEST (source), result, NULL);
  drop_guest (task);
  g_task_return_error (task, error);
}

static void
restore_fail (GTask *task, GError *error)
{
  Restore *restore = g_task_get_task_data (task);
  g_autofree char *tail = NULL;

  if (restore->failing)
    {
      g_error_free (error);
      g_object_unref (task);
      return;
    }
  restore->failing = TRUE;
  g_clear_handle_id (&restore->poll_id, g_source_remove);
  if (restore->filter != NULL)
    g_subprocess_force_exit (restore->filter);
  if (restore->guest != NULL && md_guest_get_process (restore->guest) != NULL)
    tail =
        md_qemu_log_tail (md_qemu_process_get_log_path (md_guest_get_process (restore->guest)), 3);
  if (tail != NULL && strstr (error->message, tail) == NULL)
    {
      g_autofree char *message =
          g_strdup_printf ("%s\nQEMU log ends with:\n%s", error->message, tail);
      g_free (error->message);
      error->message = g_steal_pointer (&message);
    }
  g_warning ("host %s: restoring from %s failed: %s", host_name (restore), restore->path,
             error->message);
  if (restore->guest != NULL && md_guest_is_active (restore->guest))
    {
      g_object_set_data_full (G_OBJECT (task), "md-error", error, (GDestroyNotify) g_error_free);
      md_guest_destroy_async (restore->guest, on_failed_qemu_gone, task);
      return;
    }
  drop_guest (task);
  g_task_return_error (task, error);
  g_object_unref (task);
}

/* ---- the stream ----------------------------------------------------------- */

static void
on_resumed (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GTask *task = user_data;
  Restore *restore = g_task_get_task_data (task);
  GError *error = NULL;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, &error);

  if (node == NULL)
    {
      g_prefix_error (&error,
                      "host %s: guest %s is restored but could not resume: ", host_name (restore),
                      md_guest_get_name (restore->guest));
      restore_fail (task, error);
      return;
    }
  md_guest_end_migration (restore->guest, TRUE);
  g_message ("host %s: guest %s restored from %s", host_name (restore),
             md_guest_get_name (restore->guest), restore->path);
  g_task_return_pointer (task, g_object_ref (restore->guest), g_object_unref);
  g_object_unref (task);
}

static void
restore_loaded (GTask *task)
{
  Restore *restore = g_task_get_task_data (task);
  MdQmp *qmp = md_guest_get_qmp (restore->guest);

  if (restore->resume && qmp != NULL)
    {
      md_qmp_execute_async (qmp, "cont", NULL, NULL, on_resumed, task);
      return;
    }
  md_guest_end_migration (restore->guest, FALSE);
  g_message ("host %s: guest %s restored (paused) from %s", host_name (restore),
             md_guest_get_name (restore->guest), restore->path);
  g_task_return_pointer (task, g_object_ref (restore->guest), g_object_unref);
  g_object_unref (task);
}

static void
on_filter_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GTask *task = user_data;
  Restore *restore = g_task_get_task_data (task);
  GSubprocess *filter = G_SUBPROCESS (source);
  g_autofree char *err_text = NULL;
  GError *error = NULL;

  g_subprocess_communicate_utf8_finish (filter, result, NULL, &err_text, &error);
  if (restore->failing)
    {
      g_clear_error (&error);
      g_object_unref (task);
      return;
    }
  if (error == NULL
      && !(g_subprocess_get_if_exited (filter) && g_subprocess_get_exit_status (filter) == 0))
    md_save_filter_error (
        md_save_compression_to_string (restore->header->compression), err_text,
        g_subprocess_get_if_exited (filter) ? g_subprocess_get_exit_status (filter) : -1, &error);
  if (error != NULL)
    {
      g_prefix_error (&error, "host %s: reading %s: ", host_name (restore), restore->path);
      restore_fail (task, error);
      return;
    }
  restore_loaded (task);
}

static void restore_poll (GTask *task);

static gboolean
on_poll_timer (gpointer user_data)
{
  GTask *task = user_data;
  Restore *restore = g_task_get_task_data (task);

  restore->poll_id = 0;
  restore_poll (task);
  return G_SOURCE_REMOVE;
}

static void
on_query_migrate (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GTask *task = user_data;
  Restore *restore = g_task_get_task_data (task);
  GError *error = NULL;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, &error);
  const char *status;

  if (restore->failing)
    {
      g_clear_error (&error);
      g_object_unref (task);
      return;
    }
  if (node == NULL)
    {
      g_prefix_error (&error,
                      "host %s: QEMU could not load the guest state from %s: ", host_name (restore),
                      restore->path);
      restore_fail (task, error);
      return;
    }
  status = json_object_get_string_member_with_default (json_node_get_object (node), "status", "");
  if (g_str_equal (status, "completed"))
    {
      if (restore->filter != NULL)
        g_subprocess_communicate_utf8_async (restore->filter, NULL, NULL, on_filter_done, task);
      else
        restore_loaded (task);
      return;
    }
  if (g_str_equal (status, "failed") || g_str_equal (status, "cancelled"))
    {
      restore_fail (task, g_error_new (MD_ERROR, MD_ERROR_QEMU_FAILED,
                                       "host %s: QEMU could not load the guest state from %s "
                                       "(the file is truncated or corrupted): %s",
                                       host_name (restore), restore->path,
                                       json_object_get_string_member_with_default (
                                           json_node_get_object (node), "error-desc", status)));
      return;
    }
  restore->poll_id = g_timeout_add (MD_SAVE_POLL_INTERVAL_MS, on_poll_timer, task);
}

static void
restore_poll (GTask *task)
{
  Restore *restore = g_task_get_task_data (task);
  MdQmp *qmp = md_guest_get_qmp (restore->guest);

  if (qmp == NULL)
    {
      restore_fail (task, g_error_new (MD_ERROR, MD_ERROR_QEMU_FAILED,
                                       "host %s: QEMU exited while loading the guest state from "
                                       "%s (the file is truncated or corrupted)",
                                       host_name (restore), restore->path));
      return;
    }
  md_qmp_execute_async (qmp, "query-migrate", NULL, NULL, on_query_migrate, task);
}

static void
on_incoming_started (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GTask *task = user_data;
  GError *error = NULL;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, &error);

  if (node == NULL)
    {
      restore_fail (task, error);
      return;
    }
  restore_poll (task);
}

static void
on_getfd (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GTask *task = user_data;
  Restore *restore = g_task_get_task_data (task);
  GError *error = NULL;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, &error);
  g_autoptr (MdAddress) address = NULL;
  g_autofree char *uri = NULL;
  g_autoptr (JsonObject) args = json_object_new ();

  /* QEMU has its own copy: ours would keep the decompressor's output
   * open after QEMU is done. */
  close (restore->qemu_fd);
  restore->qemu_fd = -1;
  if (node == NULL || (address = md_address_new_file (RESTORE_FD_NAME, 0, &error)) == NULL
      || (uri = md_address_to_uri (address, &error)) == NULL)
    {
      restore_fail (task, error);
      return;
    }
  json_object_set_string_member (args, "uri", uri);
  md_qmp_execute_async (MD_QMP (source), "migrate-incoming", args, NULL, on_incoming_started, task);
}

static gboolean
open_stream (Restore *restore, GError **error)
{
  const char *const *argv = md_save_compressor_argv (restore->header->compression, TRUE);
  int fds[2];

  if (argv == NULL)
    {
      restore->qemu_fd = restore->file_fd;
      restore->file_fd = -1;
      return TRUE;
    }
  if (!g_unix_open_pipe (fds, FD_CLOEXEC, error))
    return FALSE;
  restore->filter = md_save_spawn_filter (argv, restore->file_fd, fds[1], error);
  restore->file_fd = -1;
  restore->qemu_fd = fds[0];
  return restore->filter != NULL;
}

static void
on_qemu_started (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GTask *task = user_data;
  Restore *restore = g_task_get_task_data (task);
  GError *error = NULL;
  g_autoptr (JsonObject) args = json_object_new ();

  if (!md_guest_start_finish (MD_GUEST (source), result, &error) || !open_stream (restore, &error))
    {
      restore_fail (task, error);
      return;
    }
  json_object_set_string_member (args, "fdname", RESTORE_FD_NAME);
  md_qmp_execute_with_fd_async (md_guest_get_qmp (restore->guest), "getfd", args, restore->qemu_fd,
                                NULL, on_getfd, task);
}

/* ---- Begin: the file, the definition, the guest ---------------------------- */

static gboolean
pick_definition (Restore *restore, MdDomain **out, GError **error)
{
  g_autoptr (MdDomain) saved = NULL;
  g_autoptr (MdDomain) changed = NULL;
  const char *xml = md_options_get_string (restore->options, "xml");

  saved = md_manager_prepare_definition (restore->manager, restore->header->xml, error);
  if (saved == NULL)
    {
      g_prefix_error (error, "the definition saved in %s: ", restore->path);
      return FALSE;
    }
  if (xml != NULL)
    {
      changed = md_manager_prepare_definition (restore->manager, xml, error);
      if (changed == NULL || !md_domain_check_abi_compatible (saved, changed, error))
        {
          g_prefix_error (error, "option 'xml': ");
          return FALSE;
        }
    }
  *out = changed != NULL ? g_steal_pointer (&changed) : g_steal_pointer (&saved);
  return TRUE;
}

static gboolean
pick_guest (Restore *restore, const MdDomain *def, GError **error)
{
  MdManager *manager = restore->manager;
  MdGuest *by_name = md_manager_find_guest (manager, def->name);
  MdGuest *by_uuid = md_manager_find_guest (manager, def->uuid);
  MdGuest *guest = restore->expected != NULL ? restore->expected : by_name;

  if ((by_name != NULL && by_name != guest) || (by_uuid != NULL && by_uuid != guest)
      || (guest != NULL && g_ascii_strcasecmp (md_guest_get_uuid (guest), def->uuid) != 0))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "%s holds guest %s (%s), which does not match %s here", restore->path, def->name,
                   def->uuid, guest != NULL ? md_guest_get_name (guest) : "the guests defined");
      return FALSE;
    }
  if (guest != NULL && (md_guest_is_active (guest) || md_guest_is_busy (guest)))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_STATE,
                   "guest %s is %s on host %s; only a shut-off guest can be restored",
                   md_guest_get_name (guest), md_guest_state_to_string (md_guest_get_state (guest)),
                   host_name (restore));
      return FALSE;
    }
  if (guest == NULL)
    {
      guest = md_guest_new (md_manager_get_host (manager), md_domain_copy (def), FALSE);
      md_manager_add_guest (manager, guest);
      restore->created = TRUE;
      restore->guest = guest;
    }
  else
    restore->guest = g_object_ref (guest);
  return TRUE;
}

static void
open_in_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  Restore *restore = task_data;
  GError *error = NULL;
  int fd = open (restore->path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

  if (fd < 0)
    {
      g_task_return_new_error (task, MD_ERROR,
                               errno == ENOENT ? MD_ERROR_NOT_FOUND : MD_ERROR_STORAGE_FAILED,
                               "cannot open %s: %s", restore->path, g_strerror (errno));
      return;
    }
  restore->header = md_save_header_read (fd, restore->path, &error);
  if (restore->header == NULL)
    {
      close (fd);
      g_task_return_error (task, error);
      return;
    }
  restore->file_fd = fd;
  g_task_return_boolean (task, TRUE);
}

static void
on_file_open (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GTask *task = user_data;
  Restore *restore = g_task_get_task_data (task);
  g_autoptr (MdDomain) def = NULL;
  GError *error = NULL;
  const char *const *argv;
  g_autofree char *program = NULL;

  if (!g_task_propagate_boolean (G_TASK (result), &error)
      || !pick_definition (restore, &def, &error) || !pick_guest (restore, def, &error))
    {
      g_prefix_error (&error, "host %s: cannot restore from %s: ", host_name (restore),
                      restore->path);
      restore_fail (task, error);
      return;
    }
  argv = md_save_compressor_argv (restore->header->compression, TRUE);
  if (argv != NULL && (program = g_find_program_in_path (argv[0])) == NULL)
    {
      restore_fail (task, g_error_new (MD_ERROR, MD_ERROR_NOT_SUPPORTED,
                                       "host %s: %s is compressed with %s, and this host has no "
                                       "'%s' to read it",
                                       host_name (restore), restore->path,
                                       md_save_compression_to_string (restore->header->compression),
                                       argv[0]));
      return;
    }
  restore->resume = md_options_get_boolean (restore->options, "running", FALSE) ? TRUE
                    : (md_options_get_boolean (restore->options, "paused", FALSE)
                       || md_options_get_boolean (restore->options, "start-paused", FALSE))
                        ? FALSE
                        : restore->header->running;
  md_guest_start_incoming_async (restore->guest, g_steal_pointer (&def), NULL, on_qemu_started,
                                 task);
}

void
md_save_restore_async (MdManager *manager, const char *path, GVariant *options, MdGuest *expected,
                       GAsyncReadyCallback callback, gpointer user_data)
{
  GTask *task = g_task_new (manager, NULL, callback, user_data);
  g_autoptr (GTask) open_task = NULL;
  Restore *restore = g_new0 (Restore, 1);
  GError *error = NULL;

  restore->manager = manager;
  restore->path = g_strdup (path);
  restore->options = g_variant_ref (options);
  restore->expected = expected != NULL ? g_object_ref (expected) : NULL;
  restore->file_fd = -1;
  restore->qemu_fd = -1;
  g_task_set_task_data (task, restore, (GDestroyNotify) restore_free);
  g_task_set_source_tag (task, md_save_restore_async);

  if (!md_options_check (options, md_restore_option_specs, "Restore", &error))
    {
      restore_fail (task, error);
      return;
    }
  if (path == NULL || !g_path_is_absolute (path))
    {
      restore_fail (task, g_error_new (MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                                       "the save file must be an absolute path, not '%s'",
                                       path ? path : ""));
      return;
    }
  if (md_options_get_boolean (options, "running", FALSE)
      && md_options_get_boolean (options, "paused", FALSE))
    {
      restore_fail (task, g_error_new (MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                                       "options 'running' and 'paused' exclude each other"));
      return;
    }
  open_task = g_task_new (NULL, NULL, on_file_open, task);
  g_task_set_task_data (open_task, restore, NULL);
  g_task_run_in_thread (open_task, open_in_thread);
}

MdGuest *
md_save_restore_finish (GAsyncResult *result, GError **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}
