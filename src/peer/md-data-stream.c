/* migrationd: tunnel data streams on the peer port (see md-data-stream.h). */
#include "config.h"

#include "md-data-stream.h"

#include "common/md-error.h"
#include "md-peer-private.h"

#include <string.h>

#define HEADER_MAGIC "MDSTREAM1 "
#define HEADER_LEN (sizeof HEADER_MAGIC - 1 + MD_DATA_STREAM_TOKEN_LEN + 1)
#define ANSWER_MAX 512

typedef struct
{
  char *dn;
  char *label;
  MdDataStreamAccepted accepted;
  gpointer user_data;
  gboolean used;
} Token;

struct _MdDataStreamGate
{
  MdPeerListener *listener;
  gulong handler_id;
  char *host_name;
  GHashTable *tokens; /* token -> Token */
  GList *pending;     /* Pending: streams waiting for their header */
  GList *accepting;   /* Accept: OK on its way to an admitted stream */
  guint refused;
};

typedef struct
{
  MdDataStreamGate *gate; /* NULL once the gate is gone */
  GIOStream *stream;
  char *dn;
  char *address;
  GCancellable *cancellable;
  guint timeout_id;
  gboolean timed_out;
  gboolean dropped; /* made room for a newer stream */
  guint8 header[HEADER_LEN];
} Pending;

static void
token_free (gpointer data)
{
  Token *token = data;

  g_free (token->dn);
  g_free (token->label);
  g_free (token);
}

static void
pending_free (Pending *p)
{
  g_clear_handle_id (&p->timeout_id, g_source_remove);
  g_clear_object (&p->stream);
  g_clear_object (&p->cancellable);
  g_free (p->dn);
  g_free (p->address);
  g_free (p);
}

static char *
stream_address (GIOStream *stream)
{
  g_autoptr (GIOStream) base = NULL;
  g_autoptr (GSocketAddress) remote = NULL;

  g_object_get (stream, "base-io-stream", &base, NULL);
  if (!G_IS_SOCKET_CONNECTION (base))
    return g_strdup ("?");
  remote = g_socket_connection_get_remote_address (G_SOCKET_CONNECTION (base), NULL);
  return remote != NULL ? md_peer_address_to_string (remote) : g_strdup ("?");
}

static void
on_closed (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_io_stream_close_finish (G_IO_STREAM (source), result, NULL);
}

static void
on_refusal_sent (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GIOStream) stream = user_data;

  g_output_stream_write_all_finish (G_OUTPUT_STREAM (source), result, NULL, NULL);
  g_io_stream_close_async (stream, G_PRIORITY_DEFAULT, NULL, on_closed, NULL);
}

/* Logs the refusal, tells the client why (it names it in its error) and
 * closes the stream. */
static void
refuse (MdDataStreamGate *gate, GIOStream *stream, const char *address, const char *dn,
        const char *reason)
{
  char *answer =
      g_strdup_printf ("NO host %s refuses the data stream: %s\n", gate->host_name, reason);

  gate->refused++;
  g_message ("Refused data stream from %s (DN '%s'): %s", address, dn ? dn : "", reason);
  /* The answer buffer must outlive the write: tie it to the stream. */
  g_object_set_data_full (G_OBJECT (stream), "md-refusal", answer, g_free);
  g_output_stream_write_all_async (g_io_stream_get_output_stream (stream), answer, strlen (answer),
                                   G_PRIORITY_DEFAULT, NULL, on_refusal_sent,
                                   g_object_ref (stream));
}

static gboolean
valid_token_text (const char *text)
{
  for (guint i = 0; i < MD_DATA_STREAM_TOKEN_LEN; i++)
    if (!g_ascii_isxdigit (text[i]) || g_ascii_isupper (text[i]))
      return FALSE;
  return TRUE;
}

static void
on_ok_sent (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  GError *error = NULL;

  if (!g_output_stream_write_all_finish (G_OUTPUT_STREAM (source), result, NULL, &error))
    g_task_return_error (task, error);
  else
    g_task_return_boolean (task, TRUE);
}

typedef struct
{
  MdDataStreamGate *gate;
  char *token;
} Accept;

static void
accept_free (Accept *a)
{
  g_free (a->token);
  g_free (a);
}

static void
on_accept_ready (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Accept *a = user_data;
  GIOStream *stream = G_IO_STREAM (source);
  g_autoptr (GError) error = NULL;

  Token *token = a->gate != NULL ? g_hash_table_lookup (a->gate->tokens, a->token) : NULL;

  if (a->gate != NULL)
    a->gate->accepting = g_list_remove (a->gate->accepting, a);
  /* The migration (or the daemon) may have ended while OK was on its way. */
  if (token == NULL)
    g_io_stream_close_async (stream, G_PRIORITY_DEFAULT, NULL, on_closed, NULL);
  else if (g_task_propagate_boolean (G_TASK (result), &error))
    token->accepted (stream, a->token, token->user_data);
  else
    g_message ("Data stream lost while answering its header: %s", error->message);
  accept_free (a);
}

static void
judge_header (MdDataStreamGate *gate, Pending *p, gsize got)
{
  g_autofree char *token_text = NULL;
  g_autofree char *reason = NULL;
  Token *token;

  if (got != HEADER_LEN || memcmp (p->header, HEADER_MAGIC, sizeof HEADER_MAGIC - 1) != 0
      || p->header[HEADER_LEN - 1] != '\n')
    {
      reason = got == 0 ? g_strdup ("no token (the stream sent nothing)")
                        : g_strdup ("no token (malformed stream header)");
      refuse (gate, p->stream, p->address, p->dn, reason);
      return;
    }
  token_text =
      g_strndup ((const char *) p->header + sizeof HEADER_MAGIC - 1, MD_DATA_STREAM_TOKEN_LEN);
  token = valid_token_text (token_text) ? g_hash_table_lookup (gate->tokens, token_text) : NULL;
  if (token == NULL)
    reason = g_strdup ("unknown token (no migration prepared here handed it out)");
  else if (token->used)
    reason =
        g_strdup_printf ("token of %s already used (a token is good for one stream)", token->label);
  else if (g_strcmp0 (token->dn, p->dn) != 0)
    reason = g_strdup_printf ("token of %s presented by DN '%s', but handed out to DN '%s'",
                              token->label, p->dn ? p->dn : "", token->dn);
  if (reason != NULL)
    {
      refuse (gate, p->stream, p->address, p->dn, reason);
      return;
    }
  token->used = TRUE;
  g_message ("Data stream from %s admitted: %s", p->address, token->label);
  {
    Accept *a = g_new0 (Accept, 1);
    GTask *task = g_task_new (p->stream, NULL, on_accept_ready, a);

    a->gate = gate;
    gate->accepting = g_list_prepend (gate->accepting, a);
    a->token = g_steal_pointer (&token_text);
    g_output_stream_write_all_async (g_io_stream_get_output_stream (p->stream), "OK\n", 3,
                                     G_PRIORITY_DEFAULT, NULL, on_ok_sent, task);
  }
}

static void
on_header_read (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Pending *p = user_data;
  MdDataStreamGate *gate = p->gate;
  g_autoptr (GError) error = NULL;
  gsize got = 0;

  g_input_stream_read_all_finish (G_INPUT_STREAM (source), result, &got, &error);
  if (gate == NULL)
    {
      g_io_stream_close_async (p->stream, G_PRIORITY_DEFAULT, NULL, on_closed, NULL);
      pending_free (p);
      return;
    }
  gate->pending = g_list_remove (gate->pending, p);
  if (p->dropped)
    {
      g_autofree char *reason =
          g_strdup_printf ("no token yet while %u newer data streams waited; dropped the oldest",
                           (guint) MD_DATA_STREAM_MAX_PENDING);
      refuse (gate, p->stream, p->address, p->dn, reason);
    }
  else if (p->timed_out)
    {
      g_autofree char *reason =
          g_strdup_printf ("no token within %u s", (guint) MD_DATA_STREAM_HEADER_TIMEOUT);
      refuse (gate, p->stream, p->address, p->dn, reason);
    }
  else if (error != NULL)
    {
      gate->refused++;
      g_message ("Refused data stream from %s (DN '%s'): no token (%s)", p->address,
                 p->dn ? p->dn : "", error->message);
      g_io_stream_close_async (p->stream, G_PRIORITY_DEFAULT, NULL, on_closed, NULL);
    }
  else
    judge_header (gate, p, got);
  pending_free (p);
}

static gboolean
on_header_timeout (gpointer user_data)
{
  Pending *p = user_data;

  p->timeout_id = 0;
  p->timed_out = TRUE;
  g_cancellable_cancel (p->cancellable);
  return G_SOURCE_REMOVE;
}

static gboolean
on_data_stream (MdPeerListener *listener, GIOStream *stream, const char *alpn, const char *dn,
                gpointer user_data)
{
  MdDataStreamGate *gate = user_data;
  Pending *p;

  if (g_strcmp0 (alpn, MD_PEER_ALPN_DATA) != 0)
    return FALSE;
  if (g_list_length (gate->pending) >= MD_DATA_STREAM_MAX_PENDING)
    {
      /* The oldest goes, not the newcomer: a real stream sends its token
       * at once and is never the oldest for long, so stalled streams
       * cannot keep it out. */
      Pending *oldest = g_list_last (gate->pending)->data;

      gate->pending = g_list_remove (gate->pending, oldest);
      oldest->dropped = TRUE;
      g_cancellable_cancel (oldest->cancellable);
    }
  p = g_new0 (Pending, 1);
  p->gate = gate;
  p->stream = g_object_ref (stream);
  p->dn = g_strdup (dn);
  p->address = stream_address (stream);
  p->cancellable = g_cancellable_new ();
  p->timeout_id = g_timeout_add_seconds (MD_DATA_STREAM_HEADER_TIMEOUT, on_header_timeout, p);
  gate->pending = g_list_prepend (gate->pending, p);
  g_input_stream_read_all_async (g_io_stream_get_input_stream (stream), p->header, HEADER_LEN,
                                 G_PRIORITY_DEFAULT, p->cancellable, on_header_read, p);
  return TRUE;
}

MdDataStreamGate *
md_data_stream_gate_new (MdPeerListener *listener, const char *host_name)
{
  MdDataStreamGate *gate = g_new0 (MdDataStreamGate, 1);

  gate->listener = g_object_ref (listener);
  gate->host_name = g_strdup (host_name);
  gate->tokens = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, token_free);
  gate->handler_id = g_signal_connect (listener, "data-stream", G_CALLBACK (on_data_stream), gate);
  return gate;
}

void
md_data_stream_gate_free (MdDataStreamGate *gate)
{
  if (gate == NULL)
    return;
  g_clear_signal_handler (&gate->handler_id, gate->listener);
  for (GList *l = gate->pending; l != NULL; l = l->next)
    {
      Pending *p = l->data;
      p->gate = NULL;
      g_cancellable_cancel (p->cancellable);
    }
  g_list_free (gate->pending);
  for (GList *l = gate->accepting; l != NULL; l = l->next)
    ((Accept *) l->data)->gate = NULL;
  g_list_free (gate->accepting);
  g_hash_table_unref (gate->tokens);
  g_object_unref (gate->listener);
  g_free (gate->host_name);
  g_free (gate);
}

char *
md_data_stream_gate_add (MdDataStreamGate *gate, const char *dn, const char *label,
                         MdDataStreamAccepted accepted, gpointer user_data)
{
  GString *text = g_string_sized_new (MD_DATA_STREAM_TOKEN_LEN);
  guint8 raw[MD_DATA_STREAM_TOKEN_LEN / 2];
  Token *token = g_new0 (Token, 1);
  g_autoptr (GError) error = NULL;
  g_autoptr (GFile) urandom = g_file_new_for_path ("/dev/urandom");
  g_autoptr (GFileInputStream) in = g_file_read (urandom, NULL, &error);
  gsize got = 0;

  /* 256 bits from the kernel's CSPRNG: not guessable by a peer that
   * holds a valid certificate but did not prepare this migration. */
  if (in == NULL
      || !g_input_stream_read_all (G_INPUT_STREAM (in), raw, sizeof raw, &got, NULL, &error)
      || got != sizeof raw)
    g_error ("cannot read /dev/urandom for a data stream token: %s",
             error ? error->message : "short read");
  for (guint i = 0; i < sizeof raw; i++)
    g_string_append_printf (text, "%02x", raw[i]);
  token->dn = g_strdup (dn);
  token->label = g_strdup (label);
  token->accepted = accepted;
  token->user_data = user_data;
  g_hash_table_insert (gate->tokens, g_strdup (text->str), token);
  return g_string_free (text, FALSE);
}

void
md_data_stream_gate_revoke (MdDataStreamGate *gate, const char *token)
{
  if (gate != NULL && token != NULL)
    g_hash_table_remove (gate->tokens, token);
}

guint
md_data_stream_gate_get_refused (MdDataStreamGate *gate)
{
  return gate->refused;
}

/* ---- The client ---- */

typedef struct
{
  GIOStream *stream;
  char *header;
  char *label;
  char answer[ANSWER_MAX];
} Open;

static void
open_free (Open *op)
{
  g_clear_object (&op->stream);
  g_free (op->header);
  g_free (op->label);
  g_free (op);
}

static void
on_answer (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  Open *op = g_task_get_task_data (task);
  g_autoptr (GError) error = NULL;
  gssize n = g_input_stream_read_finish (G_INPUT_STREAM (source), result, &error);
  g_autofree char *line = NULL;

  if (n >= 3 && memcmp (op->answer, "OK\n", 3) == 0)
    {
      g_task_return_pointer (task, g_steal_pointer (&op->stream), g_object_unref);
      return;
    }
  if (n < 0)
    {
      g_task_return_new_error (task, MD_ERROR, MD_ERROR_PEER_FAILED,
                               "%s: no answer to the stream's token: %s", op->label,
                               error->message);
      return;
    }
  line = g_strndup (op->answer, (gsize) n);
  g_strchomp (line);
  g_task_return_new_error (task, MD_ERROR, MD_ERROR_PEER_FAILED, "%s: %s", op->label,
                           g_str_has_prefix (line, "NO ") ? line + 3
                           : n == 0 ? "the peer closed the stream without an answer"
                                    : "the peer's answer is garbled");
}

static void
on_header_sent (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  Open *op = g_task_get_task_data (task);
  GError *error = NULL;

  if (!g_output_stream_write_all_finish (G_OUTPUT_STREAM (source), result, NULL, &error))
    {
      g_prefix_error (&error, "%s: sending the token: ", op->label);
      g_task_return_error (task, error);
      return;
    }
  GCancellable *cancellable = g_task_get_cancellable (task);

  g_input_stream_read_async (g_io_stream_get_input_stream (op->stream), op->answer,
                             sizeof op->answer - 1, G_PRIORITY_DEFAULT, cancellable, on_answer,
                             g_steal_pointer (&task));
}

static void
on_stream_open (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  Open *op = g_task_get_task_data (task);
  GError *error = NULL;
  GCancellable *cancellable;

  op->stream = md_peer_open_data_stream_finish (result, &error);
  if (op->stream == NULL)
    {
      g_prefix_error (&error, "%s: ", op->label);
      g_task_return_error (task, error);
      return;
    }
  cancellable = g_task_get_cancellable (task);
  g_output_stream_write_all_async (g_io_stream_get_output_stream (op->stream), op->header,
                                   strlen (op->header), G_PRIORITY_DEFAULT, cancellable,
                                   on_header_sent, g_steal_pointer (&task));
}

void
md_data_stream_open_async (const MdPeerTlsConfig *cfg, const char *host_and_port, const char *token,
                           const char *label, GCancellable *cancellable,
                           GAsyncReadyCallback callback, gpointer user_data)
{
  GTask *task = g_task_new (NULL, cancellable, callback, user_data);
  Open *op = g_new0 (Open, 1);

  g_task_set_source_tag (task, md_data_stream_open_async);
  g_task_set_task_data (task, op, (GDestroyNotify) open_free);
  op->header = g_strdup_printf (HEADER_MAGIC "%s\n", token);
  op->label = g_strdup (label);
  md_peer_open_data_stream_async (cfg, host_and_port, MD_PEER_ALPN_DATA, cancellable,
                                  on_stream_open, task);
}

GIOStream *
md_data_stream_open_finish (GAsyncResult *result, GError **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}
