/* migrationd: the outgoing side of the daemon-to-daemon channel: connect to
 * a peer's port, check its certificate against our CA and its name, open
 * the Peer1 control connection and say Hello; or open a bulk data stream. */
#include "config.h"

#include "md-peer.h"

#include <string.h>

#include "common/md-error.h"
#include "md-peer-private.h"

/* ---- The first bytes the peer sent ----
 *
 * A pollable filter over the socket's input that keeps the first bytes
 * read, so that a failed TLS handshake can say what the peer sent
 * instead of guessing: the busy line of a loaded migrationd, or the
 * banner of another service. */

#define RECORD_MAX 160

#define MD_TYPE_RECORDING_INPUT (md_recording_input_get_type ())
G_DECLARE_FINAL_TYPE (MdRecordingInput, md_recording_input, MD, RECORDING_INPUT, GFilterInputStream)

struct _MdRecordingInput
{
  GFilterInputStream parent_instance;
  guint8 first[RECORD_MAX];
  gsize recorded;
};

static void md_recording_input_pollable_init (GPollableInputStreamInterface *iface);

G_DEFINE_TYPE_WITH_CODE (MdRecordingInput, md_recording_input, G_TYPE_FILTER_INPUT_STREAM,
                         G_IMPLEMENT_INTERFACE (G_TYPE_POLLABLE_INPUT_STREAM,
                                                md_recording_input_pollable_init))

static GInputStream *
recording_base (gpointer self)
{
  return g_filter_input_stream_get_base_stream (G_FILTER_INPUT_STREAM (self));
}

static void
record (MdRecordingInput *self, const void *buffer, gssize n)
{
  gsize take;

  if (n <= 0 || self->recorded >= RECORD_MAX)
    return;
  take = MIN ((gsize) n, RECORD_MAX - self->recorded);
  memcpy (self->first + self->recorded, buffer, take);
  self->recorded += take;
}

static gssize
recording_read (GInputStream *stream, void *buffer, gsize count, GCancellable *cancellable,
                GError **error)
{
  gssize n = g_input_stream_read (recording_base (stream), buffer, count, cancellable, error);

  record (MD_RECORDING_INPUT (stream), buffer, n);
  return n;
}

static gboolean
recording_can_poll (GPollableInputStream *stream)
{
  return g_pollable_input_stream_can_poll (G_POLLABLE_INPUT_STREAM (recording_base (stream)));
}

static gboolean
recording_is_readable (GPollableInputStream *stream)
{
  return g_pollable_input_stream_is_readable (G_POLLABLE_INPUT_STREAM (recording_base (stream)));
}

static GSource *
recording_create_source (GPollableInputStream *stream, GCancellable *cancellable)
{
  g_autoptr (GSource) base = g_pollable_input_stream_create_source (
      G_POLLABLE_INPUT_STREAM (recording_base (stream)), NULL);

  return g_pollable_source_new_full (stream, base, cancellable);
}

static gssize
recording_read_nonblocking (GPollableInputStream *stream, void *buffer, gsize count, GError **error)
{
  gssize n = g_pollable_input_stream_read_nonblocking (
      G_POLLABLE_INPUT_STREAM (recording_base (stream)), buffer, count, NULL, error);

  record (MD_RECORDING_INPUT (stream), buffer, n);
  return n;
}

static void
md_recording_input_pollable_init (GPollableInputStreamInterface *iface)
{
  iface->can_poll = recording_can_poll;
  iface->is_readable = recording_is_readable;
  iface->create_source = recording_create_source;
  iface->read_nonblocking = recording_read_nonblocking;
}

static void
md_recording_input_init (MdRecordingInput *self)
{
}

static void
md_recording_input_class_init (MdRecordingInputClass *klass)
{
  G_INPUT_STREAM_CLASS (klass)->read_fn = recording_read;
}

/* What the peer sent, for a message: printable ASCII, the rest as '.'. */
static char *
recorded_text (MdRecordingInput *self)
{
  GString *text = g_string_new (NULL);

  for (gsize i = 0; i < self->recorded && self->first[i] != '\n'; i++)
    g_string_append_c (text, g_ascii_isprint (self->first[i]) ? (char) self->first[i] : '.');
  return g_string_free (text, FALSE);
}

typedef struct
{
  MdPeerConfig *cfg;
  char *target; /* as given */
  char *alpn;
  gboolean control;
  GSocketConnectable *identity;
  GTlsCertificate *client_cert;
  GTlsDatabase *database;
  GCancellable *cancellable; /* ours, cancelled by the caller's or the timer */
  GCancellable *caller_cancellable;
  gulong caller_cancel_id;
  guint timeout_id;
  gboolean timed_out;
  const char *stage;
  GTlsCertificateFlags server_errors;
  char *server_dn;
  GIOStream *tls;
  MdRecordingInput *recorder; /* what the peer sent first */
  GSocketConnection *socket;
  char *address;
  MdPeerConnection *conn;
} Connect;

static void
connect_free (Connect *op)
{
  g_clear_handle_id (&op->timeout_id, g_source_remove);
  if (op->caller_cancellable != NULL)
    g_cancellable_disconnect (op->caller_cancellable, op->caller_cancel_id);
  g_clear_object (&op->caller_cancellable);
  g_clear_object (&op->cancellable);
  g_clear_object (&op->identity);
  g_clear_object (&op->client_cert);
  g_clear_object (&op->database);
  g_clear_object (&op->tls);
  g_clear_object (&op->recorder);
  g_clear_object (&op->socket);
  g_clear_object (&op->conn);
  g_clear_pointer (&op->cfg, md_peer_config_unref);
  g_free (op->target);
  g_free (op->alpn);
  g_free (op->server_dn);
  g_free (op->address);
  g_free (op);
}

static void
on_caller_cancelled (GCancellable *caller, gpointer user_data)
{
  g_cancellable_cancel (user_data);
}

static gboolean
connect_timeout (gpointer user_data)
{
  Connect *op = user_data;

  op->timeout_id = 0;
  op->timed_out = TRUE;
  g_cancellable_cancel (op->cancellable);
  return G_SOURCE_REMOVE;
}

static char *
our_dn (Connect *op)
{
  g_autofree char *dn = md_peer_cert_subject_dn (op->client_cert);

  return g_strdup (dn ? dn : "?");
}

/* The peer refuses an expired certificate without telling why (TLS 1.3
 * gives the client no alert here), so look at our own. */
static char *
own_certificate_problem (Connect *op)
{
  g_autoptr (GDateTime) not_before = NULL;
  g_autoptr (GDateTime) not_after = NULL;
  g_autoptr (GDateTime) now = g_date_time_new_now_utc ();
  g_autofree char *path = md_peer_tls_path (op->cfg, MD_PEER_CLIENT_CERT);

  g_object_get (op->client_cert, "not-valid-before", &not_before, "not-valid-after", &not_after,
                NULL);
  if (not_after != NULL && g_date_time_compare (now, not_after) > 0)
    {
      g_autofree char *when = g_date_time_format_iso8601 (not_after);
      return g_strdup_printf ("this host's certificate %s expired on %s; renew it with "
                              "migrationd-tls-setup",
                              path, when);
    }
  if (not_before != NULL && g_date_time_compare (now, not_before) < 0)
    {
      g_autofree char *when = g_date_time_format_iso8601 (not_before);
      return g_strdup_printf ("this host's certificate %s is valid only from %s; check the "
                              "clocks",
                              path, when);
    }
  return NULL;
}

/* The TLS layer stops at the first record header (5 bytes) that is not
 * TLS; the rest of what a non-TLS peer sent is still in the socket. */
static void
record_rest (Connect *op)
{
  MdRecordingInput *rec = op->recorder;
  gssize n;

  if (rec == NULL || op->socket == NULL || rec->recorded == 0 || rec->recorded >= RECORD_MAX
      || (rec->first[0] >= 0x14 && rec->first[0] <= 0x17))
    return;
  n = g_socket_receive_with_blocking (g_socket_connection_get_socket (op->socket),
                                      (char *) rec->first + rec->recorded,
                                      RECORD_MAX - rec->recorded, FALSE, NULL, NULL);
  if (n > 0)
    rec->recorded += n;
}

static gboolean
recorder_starts_with (Connect *op, const char *prefix)
{
  gsize len = strlen (prefix);

  return op->recorder != NULL && op->recorder->recorded >= len
         && memcmp (op->recorder->first, prefix, len) == 0;
}

/* Turns what went wrong into an MD_ERROR that names the peer and what to do,
 * and fails the task. */
static void
connect_fail (GTask *task, GError *cause)
{
  Connect *op = g_task_get_task_data (task);
  g_autofree char *ca = md_peer_tls_path (op->cfg, MD_PEER_CA_CERT);
  g_autofree char *mine = NULL;
  GError *error;

  record_rest (op);
  if (op->conn != NULL)
    md_peer_connection_close (op->conn);
  else if (op->tls != NULL)
    g_io_stream_close_async (op->tls, G_PRIORITY_DEFAULT, NULL, NULL, NULL);

  if (op->timed_out)
    error = g_error_new (MD_ERROR, MD_ERROR_TIMEOUT,
                         "peer %s did not answer within %u s (%s); check that migrationd runs "
                         "there and that the peer port is reachable",
                         op->target, op->cfg->timeout, op->stage);
  else if (g_cancellable_is_cancelled (op->caller_cancellable))
    error =
        g_error_new (MD_ERROR, MD_ERROR_CANCELLED, "connection to peer %s cancelled", op->target);
  else if (cause->domain == MD_ERROR || g_dbus_error_is_remote_error (cause))
    {
      /* Errors of ours from the other daemon arrive as MD_ERROR (the domain
       * is registered with GDBus) but with "GDBus.Error:name: " in front. */
      g_autoptr (GError) copy = g_error_copy (cause);

      g_dbus_error_strip_remote_error (copy);
      error = md_error_convert (copy, MD_ERROR_PEER_FAILED);
      g_prefix_error (&error, "peer %s: ", op->target);
    }
  else if (op->server_errors != 0)
    {
      const char *what = md_peer_cert_flags_reason (op->server_errors);

      if (op->server_errors & G_TLS_CERTIFICATE_UNKNOWN_CA)
        error = g_error_new (MD_ERROR, MD_ERROR_TLS_FAILED,
                             "peer %s: %s (DN '%s'); check that host %s's certificate is "
                             "signed by the CA in %s",
                             op->target, what, op->server_dn, op->target, ca);
      else if (op->server_errors & G_TLS_CERTIFICATE_BAD_IDENTITY)
        error = g_error_new (
            MD_ERROR, MD_ERROR_TLS_FAILED,
            "peer %s: %s (DN '%s'); reach it by a name or address in its certificate's subject "
            "alternative names, or regenerate it with migrationd-tls-setup NAME=ADDRESS",
            op->target, what, op->server_dn);
      else
        error = g_error_new (MD_ERROR, MD_ERROR_TLS_FAILED,
                             "peer %s: %s (DN '%s'); renew host %s's certificate with "
                             "migrationd-tls-setup",
                             op->target, what, op->server_dn, op->target);
    }
  else if (recorder_starts_with (op, MD_PEER_BUSY_LINE))
    {
      g_autofree char *line = recorded_text (op->recorder);
      error = g_error_new (MD_ERROR, MD_ERROR_PEER_FAILED,
                           "peer %s is busy and refused the connection (%s); try again later",
                           op->target, line + strlen (MD_PEER_BUSY_LINE " "));
    }
  /* TLS records start with content type 20-23. */
  else if (op->recorder != NULL && op->recorder->recorded > 0
           && (op->recorder->first[0] < 0x14 || op->recorder->first[0] > 0x17))
    {
      g_autofree char *line = recorded_text (op->recorder);
      error = g_error_new (MD_ERROR, MD_ERROR_TLS_FAILED,
                           "peer %s is not TLS on this port: it sent '%s' (%s); is it "
                           "migrationd's peer port?",
                           op->target, line, cause->message);
    }
  else if (op->recorder != NULL && op->recorder->recorded == 0
           && g_str_equal (op->stage, "TLS handshake"))
    error = g_error_new (MD_ERROR, MD_ERROR_PEER_FAILED,
                         "peer %s closed the connection before answering the TLS handshake "
                         "(%s); see migrationd's log there",
                         op->target, cause->message);
  else if (g_error_matches (cause, G_TLS_ERROR, G_TLS_ERROR_NOT_TLS))
    error = g_error_new (MD_ERROR, MD_ERROR_TLS_FAILED,
                         "peer %s does not speak TLS on this port (%s); is it migrationd's peer "
                         "port?",
                         op->target, cause->message);
  else if (g_str_equal (op->stage, "TCP connect"))
    error = g_error_new (MD_ERROR, MD_ERROR_PEER_FAILED,
                         "cannot connect to peer %s: %s; check that migrationd runs there and "
                         "that the peer port is open",
                         op->target, cause->message);
  else
    {
      /* With TLS 1.3 the server judges our certificate after our side of
       * the handshake finished, so its refusal shows up as an alert or EOF
       * in the handshake or in D-Bus authentication. */
      g_autofree char *own = own_certificate_problem (op);

      mine = our_dn (op);
      if (own != NULL)
        error = g_error_new (MD_ERROR, MD_ERROR_TLS_FAILED,
                             "peer %s closed the connection during %s (%s): %s", op->target,
                             op->stage, cause->message, own);
      else
        error = g_error_new (MD_ERROR, MD_ERROR_TLS_FAILED,
                             "peer %s closed the connection during %s (%s): it probably refused "
                             "this host's certificate; check that '%s' is in [tls] allowed-dns "
                             "on %s, that it trusts the CA that signed this host's "
                             "client-cert.pem, and see migrationd's log there",
                             op->target, op->stage, cause->message, mine, op->target);
    }
  g_task_return_error (task, error);
  g_object_unref (task);
}

static void
on_hello_reply (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GTask *task = user_data;
  Connect *op = g_task_get_task_data (task);
  g_autoptr (GError) error = NULL;
  g_autofree char *uuid = NULL;
  g_autofree char *name = NULL;
  g_autoptr (GVariant) info = NULL;
  guint version = 0;

  if (!md_dbus_peer1_call_hello_finish (MD_DBUS_PEER1 (source), &version, &uuid, &name, &info,
                                        result, &error))
    {
      connect_fail (task, error);
      return;
    }
  if (g_ascii_strcasecmp (uuid, op->cfg->host_uuid) == 0)
    {
      g_autoptr (GError) same = g_error_new (
          MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
          "refusing to migrate to itself: host %s has this host's UUID %s", name, uuid);
      connect_fail (task, same);
      return;
    }
  if (version != MD_PEER_PROTOCOL_VERSION)
    {
      g_autoptr (GError) ver =
          g_error_new (MD_ERROR, MD_ERROR_NOT_SUPPORTED,
                       "no common protocol version: host %s answered version %u, this host "
                       "speaks %u; install the same migrationd version on both hosts",
                       name, version, MD_PEER_PROTOCOL_VERSION);
      connect_fail (task, ver);
      return;
    }
  md_peer_connection_set_identity (op->conn, version, uuid, name, info);
  g_clear_handle_id (&op->timeout_id, g_source_remove);
  g_task_return_pointer (task, g_steal_pointer (&op->conn), g_object_unref);
  g_object_unref (task);
}

static void
on_proxy_ready (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GTask *task = user_data;
  Connect *op = g_task_get_task_data (task);
  g_autoptr (GError) error = NULL;
  MdDbusPeer1 *proxy = md_dbus_peer1_proxy_new_finish (result, &error);
  const char *no_caps[] = { NULL };
  g_autoptr (GVariantDict) info = g_variant_dict_new (NULL);

  if (proxy == NULL)
    {
      connect_fail (task, error);
      return;
    }
  md_peer_connection_set_proxy (op->conn, proxy);
  op->stage = "Hello";
  g_variant_dict_insert_value (info, "capabilities", g_variant_new_strv (no_caps, 0));
  md_dbus_peer1_call_hello (proxy, MD_PEER_PROTOCOL_VERSION, op->cfg->host_uuid, op->cfg->host_name,
                            g_variant_dict_end (info), op->cancellable, on_hello_reply, task);
}

static void
on_client_dbus_ready (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GTask *task = user_data;
  Connect *op = g_task_get_task_data (task);
  g_autoptr (GError) error = NULL;
  g_autoptr (GDBusConnection) dbus = g_dbus_connection_new_finish (result, &error);

  if (dbus == NULL)
    {
      connect_fail (task, error);
      return;
    }
  op->conn = md_peer_connection_new_internal (dbus, op->address, op->server_dn, FALSE,
                                              op->cfg->max_message_size, op->cfg->liveness_timeout);
  op->stage = "Peer1 setup";
  md_dbus_peer1_proxy_new (dbus,
                           G_DBUS_PROXY_FLAGS_DO_NOT_LOAD_PROPERTIES
                               | G_DBUS_PROXY_FLAGS_DO_NOT_CONNECT_SIGNALS
                               | G_DBUS_PROXY_FLAGS_DO_NOT_AUTO_START,
                           NULL, MD_PEER_OBJECT_PATH, op->cancellable, on_proxy_ready, task);
}

static gboolean
on_client_accept_certificate (GTlsConnection *tls, GTlsCertificate *cert,
                              GTlsCertificateFlags errors, gpointer user_data)
{
  Connect *op = user_data;

  op->server_errors = errors;
  g_free (op->server_dn);
  op->server_dn = cert ? md_peer_cert_subject_dn (cert) : NULL;
  return errors == 0;
}

static void
on_client_handshake (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GTask *task = user_data;
  Connect *op = g_task_get_task_data (task);
  GTlsConnection *tls = G_TLS_CONNECTION (source);
  g_autoptr (GError) error = NULL;
  const char *alpn;

  if (!g_tls_connection_handshake_finish (tls, result, &error))
    {
      connect_fail (task, error);
      return;
    }
  if (op->server_dn == NULL)
    {
      GTlsCertificate *cert = g_tls_connection_get_peer_certificate (tls);
      op->server_dn = cert ? md_peer_cert_subject_dn (cert) : g_strdup ("?");
    }
  if (g_tls_connection_get_protocol_version (tls) != G_TLS_PROTOCOL_VERSION_TLS_1_3)
    {
      g_autoptr (GError) old = g_error_new (
          MD_ERROR, MD_ERROR_TLS_FAILED,
          "the TLS version is below 1.3; upgrade GnuTLS/glib-networking on the peer host");
      connect_fail (task, old);
      return;
    }
  alpn = g_tls_connection_get_negotiated_protocol (tls);
  if (g_strcmp0 (alpn, op->alpn) != 0)
    {
      g_autoptr (GError) proto = g_error_new (
          MD_ERROR, MD_ERROR_PEER_FAILED,
          "the peer did not agree to the protocol '%s' (answered '%s'); is it a migrationd "
          "peer port of the same version?",
          op->alpn, alpn ? alpn : "none");
      connect_fail (task, proto);
      return;
    }

  if (!op->control)
    {
      g_clear_handle_id (&op->timeout_id, g_source_remove);
      g_task_return_pointer (task, g_steal_pointer (&op->tls), g_object_unref);
      g_object_unref (task);
      return;
    }

  op->stage = "D-Bus authentication";
  {
    g_autoptr (GDBusAuthObserver) observer = g_dbus_auth_observer_new ();

    g_signal_connect (observer, "allow-mechanism", G_CALLBACK (md_peer_allow_anonymous_only), NULL);
    g_dbus_connection_new (op->tls, NULL, G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT, observer,
                           op->cancellable, on_client_dbus_ready, task);
  }
}

static void
on_tcp_connected (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GTask *task = user_data;
  Connect *op = g_task_get_task_data (task);
  g_autoptr (GError) error = NULL;
  g_autoptr (GSocketConnection) socket =
      g_socket_client_connect_finish (G_SOCKET_CLIENT (source), result, &error);
  g_autoptr (GSocketAddress) remote = NULL;
  const char *protocols[] = { op->alpn, NULL };

  if (socket == NULL)
    {
      connect_fail (task, error);
      return;
    }
  remote = g_socket_connection_get_remote_address (socket, NULL);
  op->address = md_peer_address_to_string (remote);

  op->stage = "TLS handshake";
  op->socket = g_object_ref (socket);
  op->recorder = g_object_new (MD_TYPE_RECORDING_INPUT, "base-stream",
                               g_io_stream_get_input_stream (G_IO_STREAM (socket)),
                               "close-base-stream", FALSE, NULL);
  {
    /* The socket stays referenced by the GSimpleIOStream's output. */
    g_autoptr (GIOStream) recorded = g_simple_io_stream_new (
        G_INPUT_STREAM (op->recorder), g_io_stream_get_output_stream (G_IO_STREAM (socket)));

    g_object_set_data_full (G_OBJECT (recorded), "md-socket", g_object_ref (socket),
                            g_object_unref);
    op->tls = g_tls_client_connection_new (recorded, op->identity, &error);
  }
  if (op->tls == NULL)
    {
      connect_fail (task, error);
      return;
    }
  g_tls_connection_set_certificate (G_TLS_CONNECTION (op->tls), op->client_cert);
  g_tls_connection_set_database (G_TLS_CONNECTION (op->tls), op->database);
  g_tls_connection_set_advertised_protocols (G_TLS_CONNECTION (op->tls), protocols);
  g_signal_connect (op->tls, "accept-certificate", G_CALLBACK (on_client_accept_certificate), op);
  g_tls_connection_handshake_async (G_TLS_CONNECTION (op->tls), G_PRIORITY_DEFAULT, op->cancellable,
                                    on_client_handshake, task);
}

static void
connect_start (const MdPeerTlsConfig *cfg, const char *host_and_port, const char *alpn,
               gboolean control, gpointer source_tag, GCancellable *cancellable,
               GAsyncReadyCallback callback, gpointer user_data)
{
  GTask *task = g_task_new (NULL, cancellable, callback, user_data);
  Connect *op = g_new0 (Connect, 1);
  g_autoptr (GError) error = NULL;
  g_autoptr (GSocketClient) client = NULL;

  g_task_set_source_tag (task, source_tag);
  g_task_set_task_data (task, op, (GDestroyNotify) connect_free);
  g_task_set_check_cancellable (task, FALSE);
  op->cfg = md_peer_config_new (cfg);
  op->target = g_strdup (host_and_port);
  op->alpn = g_strdup (alpn);
  op->control = control;
  op->stage = "TCP connect";
  op->cancellable = g_cancellable_new ();
  if (cancellable != NULL)
    {
      op->caller_cancellable = g_object_ref (cancellable);
      op->caller_cancel_id = g_cancellable_connect (cancellable, G_CALLBACK (on_caller_cancelled),
                                                    op->cancellable, NULL);
    }

  op->identity = g_network_address_parse (host_and_port, MD_PEER_DEFAULT_PORT, &error);
  if (op->identity == NULL)
    {
      g_task_return_new_error (task, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                               "invalid peer address '%s': %s; use HOST, HOST:PORT or "
                               "[IPv6]:PORT",
                               host_and_port, error->message);
      g_object_unref (task);
      return;
    }
  op->database = md_peer_load_ca (op->cfg, &error);
  if (op->database != NULL)
    op->client_cert = md_peer_load_cert (op->cfg, MD_PEER_CLIENT_CERT, MD_PEER_CLIENT_KEY, &error);
  if (error != NULL)
    {
      GError *config_error = NULL;

      md_peer_set_config_error (&config_error, error, op->cfg);
      g_task_return_error (task, config_error);
      g_object_unref (task);
      return;
    }

  op->timeout_id = g_timeout_add_seconds (op->cfg->timeout, connect_timeout, op);
  client = g_socket_client_new ();
  /* Peers talk directly; a desktop-style proxy setting must not apply. */
  g_socket_client_set_enable_proxy (client, FALSE);
  g_socket_client_connect_async (client, op->identity, op->cancellable, on_tcp_connected, task);
}

void
md_peer_connect_async (const MdPeerTlsConfig *cfg, const char *host_and_port,
                       GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
  g_return_if_fail (cfg != NULL && host_and_port != NULL);

  connect_start (cfg, host_and_port, MD_PEER_ALPN_CONTROL, TRUE, md_peer_connect_async, cancellable,
                 callback, user_data);
}

MdPeerConnection *
md_peer_connect_finish (GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

void
md_peer_open_data_stream_async (const MdPeerTlsConfig *cfg, const char *host_and_port,
                                const char *alpn, GCancellable *cancellable,
                                GAsyncReadyCallback callback, gpointer user_data)
{
  g_return_if_fail (cfg != NULL && host_and_port != NULL && alpn != NULL);

  connect_start (cfg, host_and_port, alpn, FALSE, md_peer_open_data_stream_async, cancellable,
                 callback, user_data);
}

GIOStream *
md_peer_open_data_stream_finish (GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}
