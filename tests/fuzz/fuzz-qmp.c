/* libFuzzer target: the QMP client's input side (md-qmp.c: line framing,
 * JSON parsing, greeting/event/reply dispatch), driven through a real
 * MdQmp connected to a fake QEMU on a unix socket in this process. For
 * each input the client has one command in flight; the input is what
 * "QEMU" answers, with every "md-ID" replaced by that command's id so
 * that replies can match. Whatever QEMU sends, the command completes
 * (with a result, QEMU's error, or the connection's error) and nothing
 * crashes; a connection closed as a protocol error is made anew. */
#include "config.h"

#include "qemu/md-qmp.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static int listen_fd = -1;
static int qemu_fd = -1; /* the fake QEMU's end */
static char *socket_path;
static MdQmp *qmp;
static GString *from_client; /* what the client sent, not yet consumed */

/* The client's warnings about what "QEMU" sent are expected here by the
 * thousand; errors and criticals still abort (G_DEBUG=fatal-criticals). */
static GLogWriterOutput
quiet_writer (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer user_data)
{
  if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL))
    return g_log_writer_default (level, fields, n_fields, user_data);
  return G_LOG_WRITER_HANDLED;
}

static void
fake_qemu_listen (void)
{
  g_log_set_writer_func (quiet_writer, NULL, NULL);
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  g_autofree char *dir = g_dir_make_tmp ("md-fuzz-qmp-XXXXXX", NULL);

  g_assert_nonnull (dir);
  socket_path = g_build_filename (dir, "qmp.sock", NULL);
  g_strlcpy (addr.sun_path, socket_path, sizeof addr.sun_path);
  listen_fd = socket (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  g_assert_cmpint (listen_fd, >=, 0);
  g_assert_cmpint (bind (listen_fd, (struct sockaddr *) &addr, sizeof addr), ==, 0);
  g_assert_cmpint (listen (listen_fd, 4), ==, 0);
  from_client = g_string_new (NULL);
}

static void
qemu_write (const char *text, gsize len)
{
  while (len > 0)
    {
      ssize_t n = write (qemu_fd, text, len);

      if (n < 0 && (errno == EAGAIN || errno == EINTR))
        {
          g_main_context_iteration (NULL, FALSE);
          continue;
        }
      if (n < 0) /* the client hung up: it closed on a protocol error */
        return;
      text += n;
      len -= (gsize) n;
    }
}

/* The next command line the client sent (its id), running the loop
 * until it arrives; NULL when the client went away. */
static char *
qemu_read_command_id (void)
{
  for (int spins = 0; spins < 100000; spins++)
    {
      char buf[4096];
      ssize_t n = read (qemu_fd, buf, sizeof buf);
      const char *nl;

      if (n > 0)
        g_string_append_len (from_client, buf, n);
      else if (n == 0)
        return NULL;
      nl = strchr (from_client->str, '\n');
      if (nl != NULL)
        {
          const char *id = strstr (from_client->str, "\"id\":\"");
          char *result = NULL;

          if (id != NULL && id < nl)
            {
              const char *end = strchr (id + 6, '"');
              result = g_strndup (id + 6, (gsize) (end - id - 6));
            }
          g_string_erase (from_client, 0, nl - from_client->str + 1);
          g_assert_nonnull (result);
          return result;
        }
      g_main_context_iteration (NULL, n <= 0 && spins > 1000);
    }
  g_error ("the QMP client sent no command");
}

static void
store_result (GObject *source, GAsyncResult *result, gpointer user_data)
{
  *(GAsyncResult **) user_data = g_object_ref (result);
}

static void
connect_client (void)
{
  g_autoptr (GAsyncResult) result = NULL;
  g_autofree char *id = NULL;
  g_autofree char *reply = NULL;
  static const char greeting[] = "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, "
                                 "\"major\": 7}, \"package\": \"\"}, \"capabilities\": []}}\n";

  g_clear_object (&qmp);
  if (qemu_fd >= 0)
    close (qemu_fd);
  qemu_fd = -1;
  g_string_truncate (from_client, 0);
  md_qmp_connect_async (socket_path, NULL, store_result, &result);
  while (qemu_fd < 0)
    {
      qemu_fd = accept4 (listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (qemu_fd < 0)
        g_main_context_iteration (NULL, FALSE);
    }
  qemu_write (greeting, sizeof greeting - 1);
  id = qemu_read_command_id ();
  g_assert_nonnull (id);
  reply = g_strdup_printf ("{\"return\": {}, \"id\": \"%s\"}\n", id);
  qemu_write (reply, strlen (reply));
  while (result == NULL)
    g_main_context_iteration (NULL, TRUE);
  qmp = md_qmp_connect_finish (result, NULL);
  g_assert_nonnull (qmp);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  g_autoptr (GAsyncResult) result = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) node = NULL;
  g_autofree char *id = NULL;
  g_autofree char *input = NULL;
  g_auto (GStrv) parts = NULL;

  if (listen_fd < 0)
    fake_qemu_listen ();
  if (qmp == NULL || md_qmp_is_closed (qmp))
    connect_client ();

  md_qmp_execute_async (qmp, "query-fuzz", NULL, cancellable, store_result, &result);
  id = qemu_read_command_id ();
  g_assert_nonnull (id);
  input = g_strndup ((const char *) data, size);
  parts = g_strsplit (input, "md-ID", -1);
  g_free (input);
  input = g_strjoinv (id, parts);
  qemu_write (input, strlen (input));
  qemu_write ("\n", 1);
  /* Let the client read and dispatch everything it was sent. */
  for (int i = 0; i < 64 && g_main_context_iteration (NULL, FALSE); i++)
    ;
  g_cancellable_cancel (cancellable);
  while (result == NULL)
    g_main_context_iteration (NULL, TRUE);
  node = md_qmp_execute_finish (qmp, result, &error);
  /* A result or an error, never both or neither. */
  g_assert_true ((node == NULL) != (error == NULL));
  return 0;
}
