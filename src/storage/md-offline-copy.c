/* migrationd: offline disk copy, one disk after the other. */
#include "config.h"

#include "md-offline-copy.h"
#include "common/md-error.h"
#include "md-nbd-copy.h"
#include "md-nbd-server.h"

#include <glib/gstdio.h>

typedef struct
{
  GStrv targets;
  GStrv fresh_targets;
  GStrv dest_sockets; /* NULL: dest_host:dest_port */
  char *unix_path;
  char *dest_host;
  guint16 dest_port;
  char *tls_dir;
  gboolean verify;
  char *source_host_name;
  char *dest_host_name;
  MdOfflineCopyProgress progress;
  gpointer progress_data;

  MdNbdServer *server;
  MdNbdCopy *copy;
  gulong progress_id;
  guint index;
  guint64 done_before; /* virtual bytes of the disks already finished */
  guint64 total;       /* sum of virtual sizes, known after each connect */
  guint64 copied;
  GError *error;
} CopyData;

static void
copy_data_free (CopyData *data)
{
  if (data->copy != NULL && data->progress_id != 0)
    g_signal_handler_disconnect (data->copy, data->progress_id);
  g_clear_object (&data->copy);
  g_clear_pointer (&data->server, md_nbd_server_free);
  if (data->unix_path != NULL)
    g_unlink (data->unix_path);
  g_strfreev (data->targets);
  g_strfreev (data->fresh_targets);
  g_strfreev (data->dest_sockets);
  g_free (data->unix_path);
  g_free (data->dest_host);
  g_free (data->tls_dir);
  g_free (data->source_host_name);
  g_free (data->dest_host_name);
  g_clear_error (&data->error);
  g_free (data);
}

static void copy_next (GTask *task);

static void
on_server_stopped (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  CopyData *data = g_task_get_task_data (task);
  g_autoptr (GError) error = NULL;

  if (!md_nbd_server_stop_finish (result, &error))
    g_warning ("stopping the local NBD server of the disk copy: %s", error->message);
  if (data->error != NULL)
    g_task_return_error (task, g_steal_pointer (&data->error));
  else
    g_task_return_boolean (task, TRUE);
}

static void
finish (GTask *task)
{
  CopyData *data = g_task_get_task_data (task);

  if (data->server == NULL)
    {
      if (data->error != NULL)
        g_task_return_error (task, g_steal_pointer (&data->error));
      else
        g_task_return_boolean (task, TRUE);
      g_object_unref (task);
      return;
    }
  md_nbd_server_stop_async (g_steal_pointer (&data->server), on_server_stopped, task);
}

static void
on_copy_progress (MdNbdCopy *copy, guint64 done, guint64 total, gpointer user_data)
{
  CopyData *data = user_data;

  if (data->progress != NULL)
    data->progress (data->done_before + done, MAX (data->total, data->done_before + total),
                    data->progress_data);
}

static void
on_disk_copied (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GTask *task = user_data;
  CopyData *data = g_task_get_task_data (task);
  MdNbdCopy *copy = MD_NBD_COPY (source);

  if (!md_nbd_copy_run_finish (copy, result, &data->error))
    {
      finish (task);
      return;
    }
  data->copied += md_nbd_copy_get_bytes_copied (copy);
  data->done_before += md_nbd_copy_get_bytes_total (copy);
  g_message ("disk %s: copied %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT " bytes to host %s%s",
             data->targets[data->index], md_nbd_copy_get_bytes_copied (copy),
             md_nbd_copy_get_bytes_total (copy), data->dest_host_name,
             data->verify ? ", verified" : "");
  g_signal_handler_disconnect (copy, data->progress_id);
  data->progress_id = 0;
  g_clear_object (&data->copy);
  data->index++;
  copy_next (task);
}

static void
copy_next (GTask *task)
{
  CopyData *data = g_task_get_task_data (task);
  const char *target = data->targets[data->index];
  g_autofree char *src_uri = NULL;
  g_autofree char *dst_uri = NULL;

  if (target == NULL)
    {
      finish (task);
      return;
    }
  src_uri = g_strdup_printf ("nbd+unix:///%s?socket=%s", target, data->unix_path);
  if (data->dest_sockets != NULL)
    dst_uri = g_strdup_printf ("nbd+unix:///%s?socket=%s", target, data->dest_sockets[data->index]);
  else
    dst_uri = g_strdup_printf ("%s://%s%s%s:%u/%s", data->tls_dir ? "nbds" : "nbd",
                               strchr (data->dest_host, ':') ? "[" : "", data->dest_host,
                               strchr (data->dest_host, ':') ? "]" : "", data->dest_port, target);
  data->copy = md_nbd_copy_new (src_uri, dst_uri);
  md_nbd_copy_set_labels (data->copy, target, data->source_host_name, data->dest_host_name);
  md_nbd_copy_set_verify (data->copy, data->verify);
  /* Through the tunnel: one data stream per disk, already encrypted. */
  if (data->dest_sockets != NULL)
    md_nbd_copy_set_connections (data->copy, 1);
  else if (data->tls_dir != NULL)
    md_nbd_copy_set_tls_certificates (data->copy, data->tls_dir);
  if (data->fresh_targets != NULL
      && g_strv_contains ((const char *const *) data->fresh_targets, target))
    md_nbd_copy_set_destination_is_zero (data->copy, TRUE);
  data->progress_id =
      g_signal_connect (data->copy, "progress", G_CALLBACK (on_copy_progress), data);
  md_nbd_copy_run_async (data->copy, g_task_get_cancellable (task), on_disk_copied, task);
}

static void
on_server_started (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GTask *task = user_data;
  CopyData *data = g_task_get_task_data (task);

  data->server = md_nbd_server_start_finish (result, &data->error);
  if (data->server == NULL)
    {
      finish (task);
      return;
    }
  copy_next (task);
}

void
md_offline_copy_async (const MdOfflineCopyOptions *o, MdOfflineCopyProgress progress,
                       gpointer progress_data, GCancellable *cancellable,
                       GAsyncReadyCallback callback, gpointer user_data)
{
  GTask *task = g_task_new (NULL, cancellable, callback, user_data);
  CopyData *data = g_new0 (CopyData, 1);
  MdNbdServerOptions server = { 0 };

  data->targets = g_strdupv ((char **) o->targets);
  data->fresh_targets = g_strdupv ((char **) o->fresh_targets);
  data->dest_sockets = g_strdupv ((char **) o->dest_sockets);
  data->unix_path = g_strdup_printf ("%s/%s-src-nbd.sock", o->runtime_dir, o->id);
  data->dest_host = g_strdup (o->dest_host);
  data->dest_port = o->dest_port;
  data->tls_dir = g_strdup (o->tls_dir);
  data->verify = o->verify;
  data->total = o->total_bytes;
  data->source_host_name = g_strdup (o->source_host_name);
  data->dest_host_name = g_strdup (o->dest_host_name);
  data->progress = progress;
  data->progress_data = progress_data;
  g_task_set_task_data (task, data, (GDestroyNotify) copy_data_free);

  /* The source side: the images read-only on a socket only we can reach. */
  server.runtime_dir = o->runtime_dir;
  server.id = o->id;
  server.targets = o->targets;
  server.paths = o->paths;
  server.formats = o->formats;
  server.writable = FALSE;
  server.unix_path = data->unix_path;
  md_nbd_server_start_async (&server, cancellable, on_server_started, task);
}

gboolean
md_offline_copy_finish (GAsyncResult *result, guint64 *bytes_copied, GError **error)
{
  CopyData *data = g_task_get_task_data (G_TASK (result));

  if (bytes_copied != NULL && data != NULL)
    *bytes_copied = data->copied;
  return g_task_propagate_boolean (G_TASK (result), error);
}
