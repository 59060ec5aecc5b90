/* migrationd: removing a file in a worker thread. */
#include "config.h"

#include "md-file-remove.h"

#include <errno.h>
#include <glib/gstdio.h>

#include "md-error.h"

static void
remove_in_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  if (g_unlink (task_data) < 0 && errno != ENOENT)
    g_task_return_new_error (task, MD_ERROR, MD_ERROR_STORAGE_FAILED, "cannot remove %s: %s",
                             (const char *) task_data, g_strerror (errno));
  else
    g_task_return_boolean (task, TRUE);
}

void
md_file_remove_async (char *path, gpointer source_object, GAsyncReadyCallback callback,
                      gpointer user_data)
{
  g_autoptr (GTask) task = g_task_new (source_object, NULL, callback, user_data);

  g_task_set_source_tag (task, md_file_remove_async);
  g_task_set_task_data (task, path, g_free);
  g_task_run_in_thread (task, remove_in_thread);
}

gboolean
md_file_remove_finish (GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == md_file_remove_async, FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}

static void
on_removed_in_background (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GError) error = NULL;

  if (!md_file_remove_finish (result, &error))
    g_warning ("%s", error->message);
}

void
md_file_remove_in_background (char *path)
{
  md_file_remove_async (path, NULL, on_removed_in_background, NULL);
}
