/* migrationd: qemu-storage-daemon as an NBD server for offline copies. */
#include "config.h"

#include "md-nbd-server.h"
#include "common/md-error.h"
#include "qemu/md-qemu.h"

#include <glib/gstdio.h>
#include <unistd.h>

/* Where the server finds an inherited listening socket. */
#define LISTEN_FD 3

struct _MdNbdServer
{
  MdQemuProcess *proc;
  MdQmp *qmp;
  char *qmp_path;
};

static char *
builder_to_json (JsonBuilder *builder)
{
  g_autoptr (JsonGenerator) generator = json_generator_new ();
  g_autoptr (JsonNode) root = json_builder_get_root (builder);

  json_generator_set_root (generator, root);
  return json_generator_to_data (generator, NULL);
}

/* The server's TLS credentials: x509, verifying the client. */
static char *
tls_object_json (const char *tls_dir)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "qom-type");
  json_builder_add_string_value (b, "tls-creds-x509");
  json_builder_set_member_name (b, "id");
  json_builder_add_string_value (b, "tls0");
  json_builder_set_member_name (b, "dir");
  json_builder_add_string_value (b, tls_dir);
  json_builder_set_member_name (b, "endpoint");
  json_builder_add_string_value (b, "server");
  json_builder_set_member_name (b, "verify-peer");
  json_builder_add_boolean_value (b, TRUE);
  json_builder_end_object (b);
  return builder_to_json (b);
}

/* Options as JSON: no escaping of commas in paths to get wrong. */
static GStrv
build_argv (const MdNbdServerOptions *o, const char *qmp_path)
{
  g_autoptr (GStrvBuilder) argv = g_strv_builder_new ();
  g_autofree char *monitor = g_strdup_printf ("socket,id=qmp,path=%s,server=on,wait=off", qmp_path);
  guint n = g_strv_length ((char **) o->targets);

  g_strv_builder_add_many (argv, "qemu-storage-daemon", "--chardev", monitor, "--monitor",
                           "chardev=qmp", NULL);
  if (o->tls_dir != NULL && o->unix_path == NULL)
    {
      g_autofree char *json = tls_object_json (o->tls_dir);
      g_strv_builder_add_many (argv, "--object", json, NULL);
    }
  for (guint i = 0; i < n; i++)
    {
      g_autoptr (JsonBuilder) file = json_builder_new ();
      g_autoptr (JsonBuilder) fmt = json_builder_new ();
      g_autoptr (JsonBuilder) exp = json_builder_new ();
      g_autofree char *file_node = g_strdup_printf ("file%u", i);
      g_autofree char *fmt_node = g_strdup_printf ("disk%u", i);
      g_autofree char *export_id = g_strdup_printf ("export%u", i);
      g_autofree char *file_json = NULL, *fmt_json = NULL, *exp_json = NULL;

      json_builder_begin_object (file);
      json_builder_set_member_name (file, "driver");
      json_builder_add_string_value (
          file, g_file_test (o->paths[i], G_FILE_TEST_IS_REGULAR) ? "file" : "host_device");
      json_builder_set_member_name (file, "node-name");
      json_builder_add_string_value (file, file_node);
      json_builder_set_member_name (file, "filename");
      json_builder_add_string_value (file, o->paths[i]);
      json_builder_set_member_name (file, "read-only");
      json_builder_add_boolean_value (file, !o->writable);
      json_builder_end_object (file);

      json_builder_begin_object (fmt);
      json_builder_set_member_name (fmt, "driver");
      json_builder_add_string_value (fmt, o->formats[i]);
      json_builder_set_member_name (fmt, "node-name");
      json_builder_add_string_value (fmt, fmt_node);
      json_builder_set_member_name (fmt, "file");
      json_builder_add_string_value (fmt, file_node);
      json_builder_set_member_name (fmt, "read-only");
      json_builder_add_boolean_value (fmt, !o->writable);
      json_builder_end_object (fmt);

      json_builder_begin_object (exp);
      json_builder_set_member_name (exp, "type");
      json_builder_add_string_value (exp, "nbd");
      json_builder_set_member_name (exp, "id");
      json_builder_add_string_value (exp, export_id);
      json_builder_set_member_name (exp, "node-name");
      json_builder_add_string_value (exp, fmt_node);
      json_builder_set_member_name (exp, "name");
      json_builder_add_string_value (exp, o->targets[i]);
      json_builder_set_member_name (exp, "writable");
      json_builder_add_boolean_value (exp, o->writable);
      json_builder_end_object (exp);

      file_json = builder_to_json (file);
      fmt_json = builder_to_json (fmt);
      exp_json = builder_to_json (exp);
      g_strv_builder_add_many (argv, "--blockdev", file_json, "--blockdev", fmt_json, NULL);
      if (i == 0)
        {
          g_autoptr (JsonBuilder) server = json_builder_new ();
          g_autofree char *server_json = NULL;
          g_autofree char *port = g_strdup_printf ("%u", o->port);

          json_builder_begin_object (server);
          json_builder_set_member_name (server, "addr");
          json_builder_begin_object (server);
          json_builder_set_member_name (server, "type");
          json_builder_add_string_value (server, o->unix_path != NULL       ? "unix"
                                                 : o->listen_socket != NULL ? "fd"
                                                                            : "inet");
          if (o->unix_path != NULL)
            {
              json_builder_set_member_name (server, "path");
              json_builder_add_string_value (server, o->unix_path);
            }
          else if (o->listen_socket != NULL)
            {
              json_builder_set_member_name (server, "str");
              json_builder_add_string_value (server, G_STRINGIFY (LISTEN_FD));
            }
          else
            {
              json_builder_set_member_name (server, "host");
              json_builder_add_string_value (server, o->host);
              json_builder_set_member_name (server, "port");
              json_builder_add_string_value (server, port);
            }
          json_builder_end_object (server);
          if (o->tls_dir != NULL && o->unix_path == NULL)
            {
              json_builder_set_member_name (server, "tls-creds");
              json_builder_add_string_value (server, "tls0");
            }
          json_builder_end_object (server);
          server_json = builder_to_json (server);
          g_strv_builder_add_many (argv, "--nbd-server", server_json, NULL);
        }
      g_strv_builder_add_many (argv, "--export", exp_json, NULL);
    }
  return g_strv_builder_end (argv);
}

void
md_nbd_server_free (MdNbdServer *server)
{
  if (server == NULL)
    return;
  if (server->proc != NULL && !md_qemu_process_has_exited (server->proc))
    md_qemu_process_kill_async (server->proc, 2000, NULL, NULL, NULL);
  if (server->qmp != NULL)
    md_qmp_close (server->qmp);
  g_clear_object (&server->qmp);
  g_clear_object (&server->proc);
  if (server->qmp_path != NULL)
    g_unlink (server->qmp_path);
  g_free (server->qmp_path);
  g_free (server);
}

static void
on_server_ready (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  MdNbdServer *server = g_task_get_task_data (task);
  g_autoptr (GError) error = NULL;

  /* The task data has no destroy notify: the server goes to the caller
   * on success, and is freed here on failure. */
  server->qmp = md_qmp_connect_finish (result, &error);
  if (server->qmp == NULL)
    {
      g_autofree char *tail = md_qemu_log_tail (md_qemu_process_get_log_path (server->proc), 5);
      g_task_return_new_error (task, MD_ERROR, MD_ERROR_STORAGE_FAILED,
                               "qemu-storage-daemon (NBD server for the disk copy) did not come "
                               "up: %s%s%s",
                               error->message, tail ? "; its log ends with: " : "",
                               tail ? tail : "");
      md_nbd_server_free (server);
      return;
    }
  g_task_return_pointer (task, server, (GDestroyNotify) md_nbd_server_free);
}

/* The options, owned, for the worker that builds the command line. */
typedef struct
{
  MdNbdServerOptions o;
  char *runtime_dir, *id, *unix_path, *host, *tls_dir;
  GStrv targets, paths, formats;
  GSocket *listen_socket;
  char *qmp_path;
  GStrv argv; /* built by the worker */
} StartData;

static void
start_data_free (StartData *data)
{
  g_free (data->runtime_dir);
  g_free (data->id);
  g_free (data->unix_path);
  g_free (data->host);
  g_free (data->tls_dir);
  g_strfreev (data->targets);
  g_strfreev (data->paths);
  g_strfreev (data->formats);
  g_clear_object (&data->listen_socket);
  g_free (data->qmp_path);
  g_strfreev (data->argv);
  g_free (data);
}

static StartData *
start_data_new (const MdNbdServerOptions *options)
{
  StartData *data = g_new0 (StartData, 1);

  data->o = *options;
  data->o.runtime_dir = data->runtime_dir = g_strdup (options->runtime_dir);
  data->o.id = data->id = g_strdup (options->id);
  data->o.unix_path = data->unix_path = g_strdup (options->unix_path);
  data->o.host = data->host = g_strdup (options->host);
  data->o.tls_dir = data->tls_dir = g_strdup (options->tls_dir);
  data->targets = g_strdupv ((char **) options->targets);
  data->paths = g_strdupv ((char **) options->paths);
  data->formats = g_strdupv ((char **) options->formats);
  data->o.targets = (const char *const *) data->targets;
  data->o.paths = (const char *const *) data->paths;
  data->o.formats = (const char *const *) data->formats;
  data->o.listen_socket = data->listen_socket =
      options->listen_socket != NULL ? g_object_ref (options->listen_socket) : NULL;
  data->qmp_path = g_strdup_printf ("%s/%s-nbd.qmp", options->runtime_dir, options->id);
  return data;
}

/* Worker: build_argv looks at each image (file or block device), which
 * must not happen on the main loop. */
static void
build_argv_worker (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  StartData *data = task_data;

  g_unlink (data->qmp_path);
  data->argv = build_argv (&data->o, data->qmp_path);
  g_task_return_boolean (task, TRUE);
}

static void
on_argv_built (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  StartData *data = g_task_get_task_data (G_TASK (result));
  MdNbdServer *server = g_new0 (MdNbdServer, 1);
  g_autofree char *log_path = NULL;
  g_autoptr (GError) error = NULL;
  GCancellable *cancellable;

  g_task_set_task_data (task, server, NULL);
  server->qmp_path = g_strdup (data->qmp_path);
  log_path = g_strdup_printf ("%s/%s-nbd.log", data->runtime_dir, data->id);
  if (data->listen_socket != NULL && data->unix_path == NULL)
    {
      int source_fd = dup (g_socket_get_fd (data->listen_socket));
      int target_fd = LISTEN_FD;

      server->proc = md_qemu_spawn_full ((const char *const *) data->argv, log_path, &source_fd,
                                         &target_fd, 1, &error);
    }
  else
    server->proc = md_qemu_spawn ((const char *const *) data->argv, log_path, &error);
  if (server->proc == NULL)
    {
      g_task_return_new_error (task, MD_ERROR, MD_ERROR_STORAGE_FAILED,
                               "cannot start qemu-storage-daemon (install qemu-system-x86's "
                               "tools): %s",
                               error->message);
      md_nbd_server_free (server);
      return;
    }
  cancellable = g_task_get_cancellable (task);
  md_qmp_connect_full_async (server->qmp_path, log_path, 15000, cancellable, on_server_ready,
                             g_steal_pointer (&task));
}

void
md_nbd_server_start_async (const MdNbdServerOptions *options, GCancellable *cancellable,
                           GAsyncReadyCallback callback, gpointer user_data)
{
  GTask *task = g_task_new (NULL, cancellable, callback, user_data);
  g_autoptr (GTask) worker = g_task_new (NULL, NULL, on_argv_built, task);

  g_task_set_task_data (worker, start_data_new (options), (GDestroyNotify) start_data_free);
  g_task_run_in_thread (worker, build_argv_worker);
}

MdNbdServer *
md_nbd_server_start_finish (GAsyncResult *result, GError **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}

static void
on_server_killed (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  GError *error = NULL;

  if (!md_qemu_process_kill_finish (MD_QEMU_PROCESS (source), result, &error))
    g_task_return_error (task, error);
  else
    g_task_return_boolean (task, TRUE);
}

void
md_nbd_server_stop_async (MdNbdServer *server, GAsyncReadyCallback callback, gpointer user_data)
{
  GTask *task = g_task_new (NULL, NULL, callback, user_data);

  g_task_set_task_data (task, server, (GDestroyNotify) md_nbd_server_free);
  if (server->qmp != NULL)
    md_qmp_close (server->qmp);
  md_qemu_process_kill_async (server->proc, 10000, NULL, on_server_killed, task);
}

gboolean
md_nbd_server_stop_finish (GAsyncResult *result, GError **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}
