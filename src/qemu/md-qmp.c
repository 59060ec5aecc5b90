/* migrationd: asynchronous QMP client on json-glib and GIO.
 *
 * One object per QMP connection. Reads are a chain of 64 KiB
 * g_input_stream_read_async() calls into our own line buffer (not
 * GDataInputStream, whose read_line would grow without bound before we
 * could enforce the message size cap). Writes go straight to the GSocket
 * with sendmsg() semantics so a command can carry SCM_RIGHTS; they are
 * queued and flushed from a G_IO_OUT source, never synchronously from the
 * caller, so completion callbacks never run inside md_qmp_execute_async(). */
#include "config.h"

#include "md-qmp.h"

#include "common/md-error.h"
#include "md-qemu-log.h"

#include <gio/gunixfdmessage.h>
#include <gio/gunixsocketaddress.h>
#include <string.h>

#define READ_CHUNK_SIZE 65536
#define LOG_TAIL_LINES 10
#define CONNECT_RETRY_MS 50

typedef struct
{
  GBytes *data;
  gsize offset;
  GSocketControlMessage *fd_message; /* sent with the first bytes, then cleared */
  char *id;
} OutMsg;

typedef struct
{
  MdQmp *qmp; /* unowned: the task below holds a reference */
  char *id;
  char *command;
  GTask *task;
  GSource *cancel_source;
} Pending;

/* The in-flight read. Detached (qmp = NULL) when the connection closes or
 * the object goes away; the read callback then frees it and closes the
 * stream, so a late completion never touches a dead object. */
typedef struct
{
  MdQmp *qmp;
  GIOStream *stream;
  guint8 buf[READ_CHUNK_SIZE];
} Reader;

struct _MdQmp
{
  GObject parent_instance;

  char *socket_path;
  char *log_path;
  GMainContext *context;

  GSocketConnection *conn;
  GSocket *socket; /* owned by conn */
  GCancellable *io_cancellable;
  Reader *reader;

  GByteArray *rbuf;
  gsize scan_pos; /* bytes of rbuf already known to hold no newline */
  gsize max_message_size;

  GQueue outq; /* of OutMsg */
  GSource *out_source;

  guint64 next_id;
  GHashTable *pending; /* id -> Pending */

  JsonObject *greeting;
  GTask *connect_task; /* unowned, set until negotiation ends */

  gboolean closed;
  GError *close_error;
};

G_DEFINE_TYPE (MdQmp, md_qmp, G_TYPE_OBJECT)

enum
{
  SIGNAL_EVENT,
  SIGNAL_CLOSED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

static void connect_fail (GTask *task, GError *error);
static void connect_negotiated (GObject *source, GAsyncResult *res, gpointer user_data);

static char *
with_log_tail (const char *log_path, const char *message)
{
  g_autofree char *tail = md_qemu_log_tail (log_path, LOG_TAIL_LINES);

  if (tail == NULL)
    return g_strdup (message);
  return g_strdup_printf ("%s\nLast lines of QEMU's log %s:\n%s", message, log_path, tail);
}

static GError *qemu_gone_error (MdQmp *self, int code, const char *format, ...)
    G_GNUC_PRINTF (3, 4);

static GError *
qemu_gone_error (MdQmp *self, int code, const char *format, ...)
{
  va_list args;
  g_autofree char *message = NULL;
  g_autofree char *full = NULL;

  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);
  full = with_log_tail (self->log_path, message);
  return g_error_new_literal (MD_ERROR, code, full);
}

static void
out_msg_free (gpointer data)
{
  OutMsg *msg = data;

  g_bytes_unref (msg->data);
  g_clear_object (&msg->fd_message);
  g_free (msg->id);
  g_free (msg);
}

static void
pending_free (Pending *p)
{
  if (p->cancel_source != NULL)
    {
      g_source_destroy (p->cancel_source);
      g_source_unref (p->cancel_source);
    }
  g_free (p->id);
  g_free (p->command);
  g_clear_object (&p->task);
  g_free (p);
}

/* Takes @result or @error. */
static void
pending_complete (Pending *p, JsonNode *result, GError *error)
{
  g_autoptr (GTask) task = g_object_ref (p->task);

  pending_free (p);
  if (error != NULL)
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, result, (GDestroyNotify) json_node_unref);
}

static void
reader_free (Reader *reader)
{
  g_io_stream_close (reader->stream, NULL, NULL);
  g_object_unref (reader->stream);
  g_free (reader);
}

/* Ends the connection: fails every pending command with @error (taken),
 * emits "closed" if @emit. Safe to call more than once. */
static void
close_with_error (MdQmp *self, GError *error, gboolean emit)
{
  GHashTableIter iter;
  gpointer value;
  GPtrArray *failed;

  if (self->closed)
    {
      g_error_free (error);
      return;
    }
  self->closed = TRUE;
  self->close_error = error;
  g_debug ("QMP %s closed: %s", self->socket_path, error->message);

  g_cancellable_cancel (self->io_cancellable);
  if (self->out_source != NULL)
    {
      g_source_destroy (self->out_source);
      g_clear_pointer (&self->out_source, g_source_unref);
    }
  g_queue_clear_full (&self->outq, out_msg_free);
  if (self->socket != NULL)
    g_socket_shutdown (self->socket, TRUE, TRUE, NULL);
  if (self->reader != NULL)
    {
      self->reader->qmp = NULL;
      self->reader = NULL;
    }
  else if (self->conn != NULL)
    g_io_stream_close (G_IO_STREAM (self->conn), NULL, NULL);

  failed = g_ptr_array_new ();
  g_hash_table_iter_init (&iter, self->pending);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      g_ptr_array_add (failed, value);
      g_hash_table_iter_steal (&iter);
    }
  for (guint i = 0; i < failed->len; i++)
    {
      Pending *p = failed->pdata[i];

      pending_complete (p, NULL,
                        g_error_new (error->domain, error->code, "QMP command '%s' failed: %s",
                                     p->command, error->message));
    }
  g_ptr_array_free (failed, TRUE);

  if (self->connect_task != NULL)
    {
      GTask *task = self->connect_task;

      self->connect_task = NULL;
      connect_fail (task, g_error_copy (error));
    }

  if (emit)
    g_signal_emit (self, signals[SIGNAL_CLOSED], 0, self->close_error);
}

static void
protocol_error (MdQmp *self, const char *what)
{
  close_with_error (self,
                    qemu_gone_error (self, MD_ERROR_QEMU_FAILED,
                                     "QMP protocol error on %s: %s; closing the connection",
                                     self->socket_path, what),
                    TRUE);
}

/* ---- output ---- */

static gboolean on_socket_writable (GSocket *socket, GIOCondition condition, gpointer user_data);

static void
wait_writable (MdQmp *self)
{
  if (self->out_source != NULL || self->closed)
    return;
  self->out_source = g_socket_create_source (self->socket, G_IO_OUT, NULL);
  g_source_set_callback (self->out_source, G_SOURCE_FUNC (on_socket_writable), self, NULL);
  g_source_set_static_name (self->out_source, "[migrationd] QMP write");
  g_source_attach (self->out_source, self->context);
}

static void
flush_output (MdQmp *self)
{
  while (!self->closed && !g_queue_is_empty (&self->outq))
    {
      OutMsg *msg = g_queue_peek_head (&self->outq);
      gsize len;
      const guint8 *data = g_bytes_get_data (msg->data, &len);
      GOutputVector vector = { data + msg->offset, len - msg->offset };
      GSocketControlMessage *messages[1] = { msg->fd_message };
      gsize written = 0;
      g_autoptr (GError) error = NULL;
      GPollableReturn ret;

      ret = g_socket_send_message_with_timeout (
          self->socket, NULL, &vector, 1, msg->fd_message != NULL ? messages : NULL,
          msg->fd_message != NULL ? 1 : 0, G_SOCKET_MSG_NONE, 0, &written, NULL, &error);
      if (ret == G_POLLABLE_RETURN_WOULD_BLOCK)
        {
          wait_writable (self);
          return;
        }
      if (ret != G_POLLABLE_RETURN_OK)
        {
          close_with_error (self,
                            qemu_gone_error (self, MD_ERROR_QEMU_FAILED,
                                             "Writing to QEMU's QMP socket %s failed: %s "
                                             "(the QEMU process probably exited)",
                                             self->socket_path,
                                             error != NULL ? error->message : "unknown error"),
                            TRUE);
          return;
        }
      if (written > 0)
        g_clear_object (&msg->fd_message);
      msg->offset += written;
      if (msg->offset >= len)
        out_msg_free (g_queue_pop_head (&self->outq));
    }
}

static gboolean
on_socket_writable (GSocket *socket, GIOCondition condition, gpointer user_data)
{
  MdQmp *self = user_data;

  g_clear_pointer (&self->out_source, g_source_unref);
  g_object_ref (self);
  flush_output (self);
  g_object_unref (self);
  return G_SOURCE_REMOVE;
}

/* ---- input ---- */

static void
handle_greeting (MdQmp *self, JsonObject *message)
{
  JsonNode *qmp = json_object_get_member (message, "QMP");
  GTask *task = self->connect_task;

  if (qmp == NULL || !JSON_NODE_HOLDS_OBJECT (qmp))
    {
      protocol_error (self, "malformed greeting");
      return;
    }
  if (self->greeting != NULL || task == NULL)
    {
      g_debug ("QMP %s: ignoring unexpected greeting", self->socket_path);
      return;
    }
  self->greeting = json_object_ref (json_node_get_object (qmp));
  md_qmp_execute_async (self, "qmp_capabilities", NULL, NULL, connect_negotiated,
                        g_object_ref (task));
}

static void
handle_event (MdQmp *self, JsonObject *message)
{
  const char *name = json_object_get_string_member_with_default (message, "event", NULL);
  JsonNode *data = json_object_get_member (message, "data");
  JsonNode *ts = json_object_get_member (message, "timestamp");
  g_autoptr (JsonObject) empty = NULL;
  JsonObject *data_obj;
  gint64 timestamp_us = 0;

  if (name == NULL)
    {
      protocol_error (self, "event without a name");
      return;
    }
  if (data != NULL && JSON_NODE_HOLDS_OBJECT (data))
    data_obj = json_node_get_object (data);
  else
    data_obj = empty = json_object_new ();
  if (ts != NULL && JSON_NODE_HOLDS_OBJECT (ts))
    {
      JsonObject *t = json_node_get_object (ts);

      timestamp_us = json_object_get_int_member_with_default (t, "seconds", 0) * G_USEC_PER_SEC
                     + json_object_get_int_member_with_default (t, "microseconds", 0);
    }
  g_debug ("QMP %s: event %s", self->socket_path, name);
  g_signal_emit (self, signals[SIGNAL_EVENT], g_quark_from_string (name), name, data_obj,
                 timestamp_us);
}

static void
handle_reply (MdQmp *self, JsonObject *message)
{
  JsonNode *id_node = json_object_get_member (message, "id");
  JsonNode *error_node = json_object_get_member (message, "error");
  const char *id;
  Pending *p;

  if (id_node == NULL || json_node_get_value_type (id_node) != G_TYPE_STRING)
    {
      /* QEMU answers without an id only when it could not parse the
       * command at all, which means we sent something broken. */
      if (error_node != NULL && JSON_NODE_HOLDS_OBJECT (error_node))
        g_warning ("QMP %s: error reply without id: %s", self->socket_path,
                   json_object_get_string_member_with_default (json_node_get_object (error_node),
                                                               "desc", "?"));
      return;
    }
  id = json_node_get_string (id_node);
  p = g_hash_table_lookup (self->pending, id);
  if (p == NULL)
    {
      g_debug ("QMP %s: reply to %s, which nobody waits for (cancelled)", self->socket_path, id);
      return;
    }
  g_hash_table_steal (self->pending, id);

  if (error_node != NULL)
    {
      JsonObject *err =
          JSON_NODE_HOLDS_OBJECT (error_node) ? json_node_get_object (error_node) : NULL;
      const char *desc =
          err != NULL ? json_object_get_string_member_with_default (err, "desc", NULL) : NULL;
      const char *klass =
          err != NULL ? json_object_get_string_member_with_default (err, "class", NULL) : NULL;

      pending_complete (p, NULL,
                        g_error_new (MD_ERROR, MD_ERROR_QEMU_FAILED, "QEMU: %s (%s, command '%s')",
                                     desc != NULL ? desc : "unspecified error",
                                     klass != NULL ? klass : "no error class", p->command));
    }
  else
    {
      JsonNode *ret = json_object_get_member (message, "return");

      pending_complete (p, json_node_copy (ret), NULL);
    }
}

static void
dispatch_line (MdQmp *self, const char *line, gsize len)
{
  g_autoptr (JsonParser) parser = NULL;
  g_autoptr (GError) error = NULL;
  JsonNode *root;
  JsonObject *message;

  while (len > 0 && g_ascii_isspace (line[len - 1]))
    len--;
  if (len == 0)
    return;

  parser = json_parser_new_immutable ();
  if (!json_parser_load_from_data (parser, line, (gssize) len, &error))
    {
      g_autofree char *what = g_strdup_printf ("unparsable message (%s)", error->message);

      protocol_error (self, what);
      return;
    }
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    {
      protocol_error (self, "message is not a JSON object");
      return;
    }
  message = json_node_get_object (root);

  if (json_object_has_member (message, "QMP"))
    handle_greeting (self, message);
  else if (json_object_has_member (message, "event"))
    handle_event (self, message);
  else if (json_object_has_member (message, "return") || json_object_has_member (message, "error"))
    handle_reply (self, message);
  else
    g_debug ("QMP %s: ignoring unknown message", self->socket_path);
}

static void
process_buffer (MdQmp *self)
{
  gsize start = 0;

  while (!self->closed)
    {
      const guint8 *base = self->rbuf->data;
      const guint8 *nl;
      gsize scan_from = MAX (start, self->scan_pos);
      gsize line_len;

      nl = memchr (base + scan_from, '\n', self->rbuf->len - scan_from);
      if (nl == NULL)
        {
          self->scan_pos = self->rbuf->len;
          break;
        }
      line_len = (gsize) (nl - (base + start));
      if (line_len > self->max_message_size)
        {
          g_autofree char *what = g_strdup_printf (
              "a message exceeds the %" G_GSIZE_FORMAT " byte limit", self->max_message_size);

          protocol_error (self, what);
          return;
        }
      dispatch_line (self, (const char *) base + start, line_len);
      start += line_len + 1;
      self->scan_pos = start;
    }
  if (self->closed)
    return;

  g_byte_array_remove_range (self->rbuf, 0, start);
  self->scan_pos -= start;
  if (self->scan_pos > self->max_message_size)
    {
      g_autofree char *what = g_strdup_printf (
          "a message exceeds the %" G_GSIZE_FORMAT " byte limit", self->max_message_size);

      protocol_error (self, what);
    }
}

static void start_read (MdQmp *self);

static void
on_read (GObject *source, GAsyncResult *res, gpointer user_data)
{
  Reader *reader = user_data;
  g_autoptr (GError) error = NULL;
  gssize n = g_input_stream_read_finish (G_INPUT_STREAM (source), res, &error);
  MdQmp *self = reader->qmp;

  if (self == NULL)
    {
      reader_free (reader);
      return;
    }

  g_object_ref (self);
  if (n < 0)
    close_with_error (self,
                      qemu_gone_error (self, MD_ERROR_QEMU_FAILED,
                                       "Reading from QEMU's QMP socket %s failed: %s "
                                       "(the QEMU process probably exited)",
                                       self->socket_path, error->message),
                      TRUE);
  else if (n == 0)
    close_with_error (self,
                      qemu_gone_error (self, MD_ERROR_QEMU_FAILED,
                                       "QEMU closed its QMP connection %s: "
                                       "the QEMU process exited or crashed",
                                       self->socket_path),
                      TRUE);
  else
    {
      g_byte_array_append (self->rbuf, reader->buf, (guint) n);
      process_buffer (self);
    }

  if (reader->qmp == NULL)
    reader_free (reader);
  else
    start_read (self);
  g_object_unref (self);
}

static void
start_read (MdQmp *self)
{
  GInputStream *in = g_io_stream_get_input_stream (G_IO_STREAM (self->conn));

  if (self->reader == NULL)
    {
      self->reader = g_new0 (Reader, 1);
      self->reader->qmp = self;
      self->reader->stream = g_object_ref (G_IO_STREAM (self->conn));
    }
  g_input_stream_read_async (in, self->reader->buf, READ_CHUNK_SIZE, G_PRIORITY_DEFAULT,
                             self->io_cancellable, on_read, self->reader);
}

/* ---- commands ---- */

static gboolean
on_command_cancelled (GCancellable *cancellable, gpointer user_data)
{
  Pending *p = user_data;
  MdQmp *self = p->qmp;

  /* A command not yet written at all can still be withdrawn. */
  for (GList *l = self->outq.head; l != NULL; l = l->next)
    {
      OutMsg *msg = l->data;

      if (msg->offset == 0 && g_strcmp0 (msg->id, p->id) == 0)
        {
          out_msg_free (msg);
          g_queue_delete_link (&self->outq, l);
          break;
        }
    }
  g_hash_table_steal (self->pending, p->id);
  pending_complete (p, NULL,
                    g_error_new (MD_ERROR, MD_ERROR_CANCELLED,
                                 "QMP command '%s' cancelled (QEMU may still run it)", p->command));
  return G_SOURCE_REMOVE;
}

static void
execute_internal (MdQmp *self, const char *command, JsonObject *arguments, int fd,
                  GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GTask) task = NULL;
  g_autoptr (JsonBuilder) builder = NULL;
  g_autoptr (JsonGenerator) generator = NULL;
  g_autoptr (JsonNode) root = NULL;
  g_autoptr (GSocketControlMessage) fd_message = NULL;
  GString *text;
  Pending *p;
  OutMsg *msg;

  g_return_if_fail (MD_IS_QMP (self));
  g_return_if_fail (command != NULL);

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, md_qmp_execute_async);
  g_task_set_check_cancellable (task, FALSE);

  if (self->closed)
    {
      g_task_return_new_error (task, self->close_error->domain, self->close_error->code,
                               "QMP command '%s' failed: %s", command, self->close_error->message);
      return;
    }
  if (g_cancellable_is_cancelled (cancellable))
    {
      g_task_return_new_error (task, MD_ERROR, MD_ERROR_CANCELLED,
                               "QMP command '%s' cancelled before it was sent", command);
      return;
    }
  if (fd >= 0)
    {
      g_autoptr (GUnixFDList) list = g_unix_fd_list_new ();
      g_autoptr (GError) error = NULL;

      if (g_unix_fd_list_append (list, fd, &error) < 0)
        {
          g_task_return_new_error (task, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                                   "Cannot pass file descriptor %d to QEMU with '%s': %s", fd,
                                   command, error->message);
          return;
        }
      fd_message = g_unix_fd_message_new_with_fd_list (list);
    }

  p = g_new0 (Pending, 1);
  p->qmp = self;
  p->id = g_strdup_printf ("md-%" G_GUINT64_FORMAT, ++self->next_id);
  p->command = g_strdup (command);
  p->task = g_object_ref (task);

  builder = json_builder_new_immutable ();
  json_builder_begin_object (builder);
  json_builder_set_member_name (builder, "execute");
  json_builder_add_string_value (builder, command);
  if (arguments != NULL)
    {
      json_builder_set_member_name (builder, "arguments");
      json_builder_add_value (builder, json_node_init_object (json_node_alloc (), arguments));
    }
  json_builder_set_member_name (builder, "id");
  json_builder_add_string_value (builder, p->id);
  json_builder_end_object (builder);
  root = json_builder_get_root (builder);
  generator = json_generator_new ();
  json_generator_set_root (generator, root);
  text = g_string_new (NULL);
  json_generator_to_gstring (generator, text);
  g_string_append_c (text, '\n');

  msg = g_new0 (OutMsg, 1);
  msg->data = g_string_free_to_bytes (text);
  msg->fd_message = g_steal_pointer (&fd_message);
  msg->id = g_strdup (p->id);
  g_queue_push_tail (&self->outq, msg);

  g_hash_table_insert (self->pending, p->id, p);
  if (cancellable != NULL)
    {
      p->cancel_source = g_cancellable_source_new (cancellable);
      g_source_set_callback (p->cancel_source, G_SOURCE_FUNC (on_command_cancelled), p, NULL);
      g_source_attach (p->cancel_source, g_task_get_context (task));
    }
  wait_writable (self);
}

void
md_qmp_execute_async (MdQmp *self, const char *command, JsonObject *arguments,
                      GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
  execute_internal (self, command, arguments, -1, cancellable, callback, user_data);
}

void
md_qmp_execute_with_fd_async (MdQmp *self, const char *command, JsonObject *arguments, int fd,
                              GCancellable *cancellable, GAsyncReadyCallback callback,
                              gpointer user_data)
{
  g_return_if_fail (fd >= 0);
  execute_internal (self, command, arguments, fd, cancellable, callback, user_data);
}

JsonNode *
md_qmp_execute_finish (MdQmp *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == md_qmp_execute_async, NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

/* ---- connecting ---- */

typedef struct
{
  char *socket_path;
  char *log_path;
  guint timeout_ms;
  GSocketClient *client;
  GSocketAddress *address;
  GSource *retry_source;
  GSource *deadline_source;
  GSource *cancel_source;
  GError *last_error;
  MdQmp *qmp;
  gboolean done;
} ConnectData;

static void
destroy_source (GSource **source)
{
  if (*source != NULL)
    {
      g_source_destroy (*source);
      g_clear_pointer (source, g_source_unref);
    }
}

static void
connect_data_free (ConnectData *data)
{
  destroy_source (&data->retry_source);
  destroy_source (&data->deadline_source);
  destroy_source (&data->cancel_source);
  g_free (data->socket_path);
  g_free (data->log_path);
  g_clear_object (&data->client);
  g_clear_object (&data->address);
  g_clear_error (&data->last_error);
  g_clear_object (&data->qmp);
  g_free (data);
}

static void
connect_finish_common (GTask *task, ConnectData *data)
{
  data->done = TRUE;
  destroy_source (&data->retry_source);
  destroy_source (&data->deadline_source);
  destroy_source (&data->cancel_source);
}

/* Takes @error. */
static void
connect_fail (GTask *task, GError *error)
{
  ConnectData *data = g_task_get_task_data (task);
  g_autoptr (MdQmp) qmp = NULL;

  if (data->done)
    {
      g_error_free (error);
      return;
    }
  g_object_ref (task);
  connect_finish_common (task, data);
  qmp = g_steal_pointer (&data->qmp);
  if (qmp != NULL)
    {
      qmp->connect_task = NULL;
      close_with_error (qmp, g_error_copy (error), FALSE);
    }
  g_task_return_error (task, error);
  g_object_unref (task);
}

static void
connect_negotiated (GObject *source, GAsyncResult *res, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  ConnectData *data = g_task_get_task_data (task);
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) ret = md_qmp_execute_finish (MD_QMP (source), res, &error);
  MdQmp *qmp;

  if (data->done)
    return;
  if (ret == NULL)
    {
      connect_fail (task, g_error_new (MD_ERROR, MD_ERROR_QEMU_FAILED,
                                       "QMP capability negotiation on %s failed: %s",
                                       data->socket_path, error->message));
      return;
    }
  connect_finish_common (task, data);
  qmp = g_steal_pointer (&data->qmp);
  qmp->connect_task = NULL;
  g_task_return_pointer (task, qmp, g_object_unref);
}

static void try_connect (GTask *task);

static gboolean
on_retry (gpointer user_data)
{
  GTask *task = user_data;
  ConnectData *data = g_task_get_task_data (task);

  g_clear_pointer (&data->retry_source, g_source_unref);
  try_connect (task);
  return G_SOURCE_REMOVE;
}

static void
on_connected (GObject *source, GAsyncResult *res, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  ConnectData *data = g_task_get_task_data (task);
  g_autoptr (GError) error = NULL;
  g_autoptr (GSocketConnection) conn = NULL;
  MdQmp *qmp;

  conn = g_socket_client_connect_finish (G_SOCKET_CLIENT (source), res, &error);
  if (data->done)
    return;
  if (conn == NULL)
    {
      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND)
          || g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED))
        {
          /* QEMU has not created or not yet listens on its socket. */
          g_clear_error (&data->last_error);
          data->last_error = g_steal_pointer (&error);
          data->retry_source = g_timeout_source_new (CONNECT_RETRY_MS);
          g_source_set_callback (data->retry_source, on_retry, g_object_ref (task), g_object_unref);
          g_source_attach (data->retry_source, g_task_get_context (task));
          return;
        }
      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        {
          connect_fail (task, g_error_new (MD_ERROR, MD_ERROR_CANCELLED,
                                           "Connecting to QEMU's QMP socket %s was cancelled",
                                           data->socket_path));
          return;
        }
      {
        g_autofree char *message = g_strdup_printf ("Cannot connect to QEMU's QMP socket %s: %s",
                                                    data->socket_path, error->message);
        g_autofree char *full = with_log_tail (data->log_path, message);

        connect_fail (task, g_error_new_literal (MD_ERROR, MD_ERROR_QEMU_FAILED, full));
      }
      return;
    }

  qmp = g_object_new (MD_TYPE_QMP, NULL);
  qmp->socket_path = g_strdup (data->socket_path);
  qmp->log_path = g_strdup (data->log_path);
  qmp->conn = g_steal_pointer (&conn);
  qmp->socket = g_socket_connection_get_socket (qmp->conn);
  qmp->connect_task = task;
  data->qmp = qmp;
  start_read (qmp);
}

static void
try_connect (GTask *task)
{
  ConnectData *data = g_task_get_task_data (task);

  g_socket_client_connect_async (data->client, G_SOCKET_CONNECTABLE (data->address),
                                 g_task_get_cancellable (task), on_connected, g_object_ref (task));
}

static gboolean
on_connect_deadline (gpointer user_data)
{
  GTask *task = user_data;
  ConnectData *data = g_task_get_task_data (task);
  g_autofree char *message = NULL;
  g_autofree char *full = NULL;

  g_clear_pointer (&data->deadline_source, g_source_unref);
  if (data->qmp != NULL)
    message = g_strdup_printf ("Timed out after %u ms waiting for QEMU's QMP greeting on %s "
                               "(is another client connected to this monitor, or is QEMU hung?)",
                               data->timeout_ms, data->socket_path);
  else
    message = g_strdup_printf ("Timed out after %u ms connecting to QEMU's QMP socket %s: %s "
                               "(did QEMU start? check its log)",
                               data->timeout_ms, data->socket_path,
                               data->last_error != NULL ? data->last_error->message : "no answer");
  full = with_log_tail (data->log_path, message);
  connect_fail (task, g_error_new_literal (MD_ERROR, MD_ERROR_TIMEOUT, full));
  return G_SOURCE_REMOVE;
}

static gboolean
on_connect_cancelled (GCancellable *cancellable, gpointer user_data)
{
  GTask *task = user_data;
  ConnectData *data = g_task_get_task_data (task);

  g_clear_pointer (&data->cancel_source, g_source_unref);
  connect_fail (task, g_error_new (MD_ERROR, MD_ERROR_CANCELLED,
                                   "Connecting to QEMU's QMP socket %s was cancelled",
                                   data->socket_path));
  return G_SOURCE_REMOVE;
}

void
md_qmp_connect_full_async (const char *socket_path, const char *log_path, guint timeout_ms,
                           GCancellable *cancellable, GAsyncReadyCallback callback,
                           gpointer user_data)
{
  g_autoptr (GTask) task = NULL;
  ConnectData *data;

  g_return_if_fail (socket_path != NULL);

  task = g_task_new (NULL, cancellable, callback, user_data);
  g_task_set_source_tag (task, md_qmp_connect_async);
  g_task_set_check_cancellable (task, FALSE);

  data = g_new0 (ConnectData, 1);
  data->socket_path = g_strdup (socket_path);
  data->log_path = g_strdup (log_path);
  data->timeout_ms = timeout_ms;
  data->client = g_socket_client_new ();
  data->address = g_unix_socket_address_new (socket_path);
  g_task_set_task_data (task, data, (GDestroyNotify) connect_data_free);

  data->deadline_source = g_timeout_source_new (timeout_ms);
  g_source_set_callback (data->deadline_source, on_connect_deadline, g_object_ref (task),
                         g_object_unref);
  g_source_attach (data->deadline_source, g_task_get_context (task));
  if (cancellable != NULL)
    {
      data->cancel_source = g_cancellable_source_new (cancellable);
      g_source_set_callback (data->cancel_source, G_SOURCE_FUNC (on_connect_cancelled),
                             g_object_ref (task), g_object_unref);
      g_source_attach (data->cancel_source, g_task_get_context (task));
    }
  try_connect (task);
}

void
md_qmp_connect_async (const char *socket_path, GCancellable *cancellable,
                      GAsyncReadyCallback callback, gpointer user_data)
{
  md_qmp_connect_full_async (socket_path, NULL, MD_QMP_DEFAULT_CONNECT_TIMEOUT_MS, cancellable,
                             callback, user_data);
}

MdQmp *
md_qmp_connect_finish (GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), NULL);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == md_qmp_connect_async, NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

/* ---- accessors ---- */

void
md_qmp_set_log_path (MdQmp *self, const char *log_path)
{
  g_return_if_fail (MD_IS_QMP (self));
  g_free (self->log_path);
  self->log_path = g_strdup (log_path);
}

const char *
md_qmp_get_log_path (MdQmp *self)
{
  g_return_val_if_fail (MD_IS_QMP (self), NULL);
  return self->log_path;
}

const char *
md_qmp_get_socket_path (MdQmp *self)
{
  g_return_val_if_fail (MD_IS_QMP (self), NULL);
  return self->socket_path;
}

JsonObject *
md_qmp_get_greeting (MdQmp *self)
{
  g_return_val_if_fail (MD_IS_QMP (self), NULL);
  return self->greeting;
}

void
md_qmp_get_qemu_version (MdQmp *self, guint *major, guint *minor, guint *micro)
{
  JsonObject *version = NULL;
  JsonObject *qemu = NULL;

  g_return_if_fail (MD_IS_QMP (self));

  if (self->greeting != NULL && json_object_has_member (self->greeting, "version"))
    version = json_object_get_object_member (self->greeting, "version");
  if (version != NULL && json_object_has_member (version, "qemu"))
    qemu = json_object_get_object_member (version, "qemu");
  if (major != NULL)
    *major = qemu ? (guint) json_object_get_int_member_with_default (qemu, "major", 0) : 0;
  if (minor != NULL)
    *minor = qemu ? (guint) json_object_get_int_member_with_default (qemu, "minor", 0) : 0;
  if (micro != NULL)
    *micro = qemu ? (guint) json_object_get_int_member_with_default (qemu, "micro", 0) : 0;
}

void
md_qmp_set_max_message_size (MdQmp *self, gsize max_size)
{
  g_return_if_fail (MD_IS_QMP (self));
  g_return_if_fail (max_size > 0);
  self->max_message_size = max_size;
}

gboolean
md_qmp_is_closed (MdQmp *self)
{
  g_return_val_if_fail (MD_IS_QMP (self), TRUE);
  return self->closed;
}

const GError *
md_qmp_get_close_error (MdQmp *self)
{
  g_return_val_if_fail (MD_IS_QMP (self), NULL);
  return self->close_error;
}

void
md_qmp_close (MdQmp *self)
{
  g_return_if_fail (MD_IS_QMP (self));
  if (self->closed)
    return;
  g_object_ref (self);
  close_with_error (self,
                    g_error_new (MD_ERROR, MD_ERROR_CANCELLED,
                                 "QMP connection %s closed by migrationd", self->socket_path),
                    TRUE);
  g_object_unref (self);
}

/* ---- GObject ---- */

static void
md_qmp_dispose (GObject *object)
{
  MdQmp *self = MD_QMP (object);

  if (!self->closed && self->conn != NULL)
    close_with_error (self,
                      g_error_new (MD_ERROR, MD_ERROR_CANCELLED,
                                   "QMP connection %s closed by migrationd", self->socket_path),
                      FALSE);
  G_OBJECT_CLASS (md_qmp_parent_class)->dispose (object);
}

static void
md_qmp_finalize (GObject *object)
{
  MdQmp *self = MD_QMP (object);

  g_queue_clear_full (&self->outq, out_msg_free);
  g_hash_table_unref (self->pending);
  g_byte_array_unref (self->rbuf);
  g_clear_object (&self->io_cancellable);
  g_clear_object (&self->conn);
  g_clear_pointer (&self->greeting, json_object_unref);
  g_clear_error (&self->close_error);
  g_clear_pointer (&self->context, g_main_context_unref);
  g_free (self->socket_path);
  g_free (self->log_path);
  G_OBJECT_CLASS (md_qmp_parent_class)->finalize (object);
}

static void
md_qmp_class_init (MdQmpClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = md_qmp_dispose;
  object_class->finalize = md_qmp_finalize;

  signals[SIGNAL_EVENT] =
      g_signal_new ("event", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST | G_SIGNAL_DETAILED, 0,
                    NULL, NULL, NULL, G_TYPE_NONE, 3, G_TYPE_STRING | G_SIGNAL_TYPE_STATIC_SCOPE,
                    JSON_TYPE_OBJECT | G_SIGNAL_TYPE_STATIC_SCOPE, G_TYPE_INT64);
  signals[SIGNAL_CLOSED] =
      g_signal_new ("closed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                    G_TYPE_NONE, 1, G_TYPE_ERROR | G_SIGNAL_TYPE_STATIC_SCOPE);
}

static void
md_qmp_init (MdQmp *self)
{
  self->context = g_main_context_ref_thread_default ();
  self->io_cancellable = g_cancellable_new ();
  self->rbuf = g_byte_array_new ();
  self->max_message_size = MD_QMP_DEFAULT_MAX_MESSAGE_SIZE;
  g_queue_init (&self->outq);
  self->pending = g_hash_table_new (g_str_hash, g_str_equal);
}
