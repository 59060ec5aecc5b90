/* migrationd: the peer port. Accepts TCP connections, admits them under
 * load caps, runs the TLS handshake and the DN allow-list, and tells the
 * Peer1 control connection from bulk data streams by ALPN. */
#include "config.h"

#include "md-peer.h"

#include "common/md-error.h"
#include "md-peer-private.h"
#include "md-peer-check.h"
#include "md-peer-liveness.h"

#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

/* ---------------------------------------------------------------------- */
/* MdPeerListener */

/* Admission of unauthenticated connections (issue 9): a flood of silent
 * or stalled connections must not keep a real peer out. Pending
 * handshakes are capped per source address and in total; at a cap the
 * oldest pending connection of that address (or of all) is dropped, a
 * silent one (nothing sent yet) before one in its TLS handshake, so a
 * newcomer always gets its turn and a real peer, which speaks at once,
 * finishes long before it becomes the oldest. */
#define MAX_PENDING_HANDSHAKES 64
#define MAX_PENDING_PER_ADDRESS 16
/* Established (authenticated) connections per certificate DN. */
#define MAX_CONNECTIONS_PER_DN 32

guint md_peer_listener_signals[MD_PEER_LISTENER_N_SIGNALS];

G_DEFINE_TYPE (MdPeerListener, md_peer_listener, G_TYPE_OBJECT)

void
md_peer_listener_refuse (MdPeerListener *self, const char *address, const char *reason)
{
  g_message ("Refused peer connection from %s: %s", address, reason);
  g_signal_emit (self, md_peer_listener_signals[MD_PEER_LISTENER_SIGNAL_PEER_REFUSED], 0, address,
                 reason);
}

/* A flood is dropped by the thousand: say so in the log once in a while,
 * not once per connection. */
static void
listener_refuse_for_load (MdPeerListener *self, const char *address, const char *reason)
{
  gint64 now = g_get_monotonic_time ();

  if (now - self->load_logged_at >= 5 * G_USEC_PER_SEC)
    {
      g_message ("Refused peer connection from %s: %s (%" G_GUINT64_FORMAT
                 " dropped for load so far)",
                 address, reason, self->dropped_for_load);
      self->load_logged_at = now;
    }
  g_signal_emit (self, md_peer_listener_signals[MD_PEER_LISTENER_SIGNAL_PEER_REFUSED], 0, address,
                 reason);
}

/* ---- Incoming connections ---- */

typedef struct
{
  MdPeerListener *listener; /* strong */
  GSocketConnection *socket;
  GIOStream *tls;
  GCancellable *cancellable;
  char *address;
  char *ip;      /* the source address without port: the per-address cap */
  char *refusal; /* from accept-certificate */
  guint timeout_id;
  gboolean timed_out;
  char *busy;             /* why it was dropped at a cap; the client is told in plain text */
  gboolean authenticated; /* TLS done, certificate allowed: never dropped for load */
} Incoming;

static void
incoming_free (Incoming *in)
{
  g_clear_handle_id (&in->timeout_id, g_source_remove);
  g_clear_object (&in->cancellable);
  /* The stream may live on (D-Bus, data-stream owner); we do not. */
  if (in->tls != NULL)
    g_signal_handlers_disconnect_by_data (in->tls, in);
  g_clear_object (&in->tls);
  g_clear_object (&in->socket);
  g_clear_object (&in->listener);
  g_free (in->address);
  g_free (in->ip);
  g_free (in->busy);
  g_free (in->refusal);
  g_free (in);
}

static gboolean
close_socket_later (gpointer user_data)
{
  /* Closing a TCP socket does not block. */
  g_io_stream_close (G_IO_STREAM (user_data), NULL, NULL);
  return G_SOURCE_REMOVE;
}

/* Ends the incoming attempt; with @reason, refuses and drops it. */
static void
incoming_done (Incoming *in, const char *reason)
{
  MdPeerListener *self = in->listener;

  self->pending = g_list_remove (self->pending, in);
  if (reason != NULL)
    {
      if (!self->stopped && in->busy != NULL)
        listener_refuse_for_load (self, in->address, reason);
      else if (!self->stopped)
        md_peer_listener_refuse (self, in->address, reason);
      /* No TLS yet: the client's handshake reads this line instead of a
       * TLS record, and can say "peer busy" rather than guess. */
      if (in->busy != NULL && in->tls == NULL)
        {
          g_autofree char *line =
              g_strdup_printf (MD_PEER_BUSY_LINE " host %s: %s\n", self->cfg->host_name, reason);
          g_socket_send (g_socket_connection_get_socket (in->socket), line, strlen (line), NULL,
                         NULL);
        }
      /* Send FIN now but close a little later: closing a socket with
       * unread input makes the kernel send a reset, and the client would
       * lose the TLS alert that says why it was refused. */
      g_socket_shutdown (g_socket_connection_get_socket (in->socket), FALSE, TRUE, NULL);
      /* Nothing unread: no reset to fear, and a flood must not pile up
       * sockets for a second each. */
      if (in->busy != NULL
          && g_socket_get_available_bytes (g_socket_connection_get_socket (in->socket)) <= 0)
        close_socket_later (in->socket);
      else
        g_timeout_add_seconds_full (G_PRIORITY_DEFAULT, 1, close_socket_later,
                                    g_object_ref (in->socket), g_object_unref);
    }
  incoming_free (in);
}

static gboolean
incoming_timeout (gpointer user_data)
{
  Incoming *in = user_data;

  in->timeout_id = 0;
  in->timed_out = TRUE;
  g_cancellable_cancel (in->cancellable);
  return G_SOURCE_REMOVE;
}

/* Everything about the client certificate, also checked again after the
 * handshake in case the TLS backend skipped the signal for a valid one. */
static char *
check_client_certificate (MdPeerListener *self, GTlsCertificate *cert, GTlsCertificateFlags errors)
{
  g_autofree char *dn = NULL;

  if (cert == NULL)
    return g_strdup ("no client certificate");
  if (errors != 0)
    return g_strdup (md_peer_cert_flags_reason (errors));
  dn = md_peer_cert_subject_dn (cert);
  if (dn == NULL || !md_peer_dn_allowed (self->cfg, dn))
    return g_strdup_printf ("certificate DN '%s' not in [tls] allowed-dns", dn ? dn : "");
  return NULL;
}

static gboolean
on_server_accept_certificate (GTlsConnection *tls, GTlsCertificate *cert,
                              GTlsCertificateFlags errors, gpointer user_data)
{
  Incoming *in = user_data;

  g_free (in->refusal);
  in->refusal = check_client_certificate (in->listener, cert, errors);
  return in->refusal == NULL;
}

static void
on_hello_timeout_close (MdPeerConnection *conn)
{
  MdPeerListener *self = conn->listener;
  g_autofree char *msg = NULL;

  conn->hello_timeout_id = 0;
  if (self == NULL)
    return;
  msg = g_strdup_printf ("no Hello within %u s", self->cfg->timeout);
  md_peer_listener_refuse (self, conn->address, msg);
  md_peer_connection_close (conn);
}

static gboolean
hello_timeout (gpointer user_data)
{
  on_hello_timeout_close (user_data);
  return G_SOURCE_REMOVE;
}

static void
on_incoming_closed (MdPeerConnection *conn, gpointer user_data)
{
  MdPeerListener *self = user_data;
  GList *link;

  if ((link = g_list_find (self->unhelloed, conn)) != NULL)
    self->unhelloed = g_list_delete_link (self->unhelloed, link);
  else if ((link = g_list_find (self->connections, conn)) != NULL)
    self->connections = g_list_delete_link (self->connections, link);
  else
    return;
  g_signal_handlers_disconnect_by_data (conn, self);
  g_object_unref (conn);
}

static guint
connections_of_dn (MdPeerListener *self, const char *dn)
{
  GList *lists[] = { self->unhelloed, self->connections };
  guint n = 0;

  for (guint i = 0; i < G_N_ELEMENTS (lists); i++)
    for (GList *l = lists[i]; l != NULL; l = l->next)
      {
        MdPeerConnection *conn = l->data;
        if (!conn->closed && conn->refusal == NULL && g_strcmp0 (conn->dn, dn) == 0)
          n++;
      }
  return n;
}

static void
on_server_dbus_ready (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Incoming *in = user_data;
  MdPeerListener *self = in->listener;
  g_autoptr (GError) error = NULL;
  g_autoptr (GDBusConnection) dbus = g_dbus_connection_new_finish (result, &error);
  GTlsCertificate *cert;
  g_autofree char *dn = NULL;
  MdPeerConnection *conn;

  if (dbus == NULL)
    {
      g_autofree char *reason =
          in->busy != NULL ? g_strdup (in->busy)
          : in->timed_out  ? g_strdup_printf ("D-Bus authentication not finished within %u s",
                                              self->cfg->timeout)
                           : g_strdup_printf ("D-Bus authentication failed: %s", error->message);
      incoming_done (in, reason);
      return;
    }

  cert = g_tls_connection_get_peer_certificate (G_TLS_CONNECTION (in->tls));
  dn = cert ? md_peer_cert_subject_dn (cert) : NULL;
  conn = md_peer_connection_new_internal (dbus, in->address, dn, TRUE, self->cfg->max_message_size,
                                          self->cfg->liveness_timeout);
  g_set_weak_pointer (&conn->listener, self);

  conn->skeleton = md_peer_skeleton_new (conn, self->cfg);
  if (!g_dbus_interface_skeleton_export (conn->skeleton, dbus, MD_PEER_OBJECT_PATH, &error))
    {
      g_autofree char *reason = g_strdup_printf ("cannot export Peer1: %s", error->message);
      g_object_unref (conn);
      incoming_done (in, reason);
      return;
    }

  if (connections_of_dn (self, dn) >= MAX_CONNECTIONS_PER_DN)
    conn->refusal = g_strdup_printf (
        "peer busy: host %s already has %u connections from DN '%s'; close some (or wait for "
        "running migrations) and retry",
        self->cfg->host_name, MAX_CONNECTIONS_PER_DN, dn ? dn : "");
  self->unhelloed = g_list_prepend (self->unhelloed, conn);
  g_signal_connect (conn, "closed", G_CALLBACK (on_incoming_closed), self);
  conn->hello_timeout_id = g_timeout_add_seconds (self->cfg->timeout, hello_timeout, conn);
  g_dbus_connection_start_message_processing (dbus);
  incoming_done (in, NULL);
}

static void
on_server_handshake (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Incoming *in = user_data;
  MdPeerListener *self = in->listener;
  GTlsConnection *tls = G_TLS_CONNECTION (source);
  g_autoptr (GError) error = NULL;
  g_autoptr (GTlsCertificate) cert = NULL;
  g_autofree char *reason = NULL;
  g_autofree char *dn = NULL;
  const char *alpn;

  if (!g_tls_connection_handshake_finish (tls, result, &error))
    {
      if (in->busy != NULL)
        reason = g_strdup (in->busy);
      else if (in->timed_out)
        reason = g_strdup_printf ("TLS handshake not finished within %u s", self->cfg->timeout);
      else if (in->refusal != NULL)
        reason = g_strdup (in->refusal);
      else if (g_error_matches (error, G_TLS_ERROR, G_TLS_ERROR_NOT_TLS))
        /* It did start with a TLS record, so the client gave up. */
        reason = g_strdup_printf ("the client aborted the TLS handshake (does it trust this "
                                  "host's certificate? see its error): %s",
                                  error->message);
      else if (g_error_matches (error, G_TLS_ERROR, G_TLS_ERROR_CERTIFICATE_REQUIRED))
        reason = g_strdup ("no client certificate");
      else
        reason = g_strdup_printf ("TLS handshake failed: %s", error->message);
      incoming_done (in, reason);
      return;
    }

  if (g_tls_connection_get_protocol_version (tls) != G_TLS_PROTOCOL_VERSION_TLS_1_3)
    {
      static const char *const names[] = { "unknown", "SSL 3.0", "TLS 1.0", "TLS 1.1", "TLS 1.2" };
      guint v = g_tls_connection_get_protocol_version (tls);

      reason = g_strdup_printf ("TLS version below 1.3 (%s); upgrade GnuTLS on the client",
                                v < G_N_ELEMENTS (names) ? names[v] : "other");
      incoming_done (in, reason);
      return;
    }
  cert = g_tls_connection_get_peer_certificate (tls);
  if (cert != NULL)
    g_object_ref (cert);
  reason = check_client_certificate (self, cert,
                                     cert ? g_tls_connection_get_peer_certificate_errors (tls) : 0);
  if (reason != NULL)
    {
      incoming_done (in, reason);
      return;
    }
  dn = md_peer_cert_subject_dn (cert);
  in->authenticated = TRUE;

  alpn = g_tls_connection_get_negotiated_protocol (tls);
  if (alpn == NULL)
    {
      incoming_done (in, "no ALPN protocol negotiated (not a migrationd peer?)");
      return;
    }
  if (strcmp (alpn, MD_PEER_ALPN_CONTROL) != 0)
    {
      gboolean handled = FALSE;
      g_autofree char *alpn_copy = g_strdup (alpn);

      g_clear_handle_id (&in->timeout_id, g_source_remove);
      g_signal_emit (self, md_peer_listener_signals[MD_PEER_LISTENER_SIGNAL_DATA_STREAM], 0,
                     in->tls, alpn_copy, dn, &handled);
      if (!handled)
        {
          g_autofree char *msg =
              g_strdup_printf ("no handler for data streams of protocol '%s'", alpn_copy);
          incoming_done (in, msg);
          return;
        }
      incoming_done (in, NULL);
      return;
    }

  g_dbus_connection_new (in->tls, self->guid,
                         G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_SERVER
                             | G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_ALLOW_ANONYMOUS
                             | G_DBUS_CONNECTION_FLAGS_DELAY_MESSAGE_PROCESSING,
                         self->observer, in->cancellable, on_server_dbus_ready, in);
}

static gboolean
on_first_bytes (GSocket *socket, GIOCondition condition, gpointer user_data)
{
  Incoming *in = user_data;
  MdPeerListener *self = in->listener;
  const char *protocols[] = { MD_PEER_ALPN_CONTROL, MD_PEER_ALPN_DATA, NULL };
  g_autoptr (GError) error = NULL;
  guint8 first = 0;
  GInputVector vec = { &first, 1 };
  int flags = G_SOCKET_MSG_PEEK;
  gssize n;

  if (g_cancellable_is_cancelled (in->cancellable))
    {
      g_autofree char *reason =
          in->busy != NULL
              ? g_strdup (in->busy)
              : g_strdup_printf ("TLS handshake not finished within %u s", self->cfg->timeout);
      incoming_done (in, reason);
      return G_SOURCE_REMOVE;
    }
  n = g_socket_receive_message (socket, NULL, &vec, 1, NULL, NULL, &flags, NULL, &error);
  if (n < 0 && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
    return G_SOURCE_CONTINUE;
  if (n <= 0)
    {
      incoming_done (in, "closed before the TLS handshake");
      return G_SOURCE_REMOVE;
    }
  /* Every TLS connection starts with a handshake record (content type 22). */
  if (first != 0x16)
    {
      g_autofree char *reason = g_strdup_printf ("plaintext/not TLS (first byte 0x%02x)", first);
      incoming_done (in, reason);
      return G_SOURCE_REMOVE;
    }

  in->tls = g_tls_server_connection_new (G_IO_STREAM (in->socket), self->server_cert, &error);
  if (in->tls == NULL)
    {
      g_autofree char *reason = g_strdup_printf ("cannot set up TLS: %s", error->message);
      incoming_done (in, reason);
      return G_SOURCE_REMOVE;
    }
  g_tls_connection_set_database (G_TLS_CONNECTION (in->tls), self->database);
  g_object_set (in->tls, "authentication-mode", G_TLS_AUTHENTICATION_REQUIRED, NULL);
  g_tls_connection_set_advertised_protocols (G_TLS_CONNECTION (in->tls), protocols);
  g_signal_connect (in->tls, "accept-certificate", G_CALLBACK (on_server_accept_certificate), in);
  g_tls_connection_handshake_async (G_TLS_CONNECTION (in->tls), G_PRIORITY_DEFAULT, in->cancellable,
                                    on_server_handshake, in);
  return G_SOURCE_REMOVE;
}

/* Nothing sent and nothing waiting to be read: not (yet) a TLS client. */
static gboolean
incoming_is_silent (Incoming *in)
{
  return in->tls == NULL
         && g_socket_get_available_bytes (g_socket_connection_get_socket (in->socket)) <= 0;
}

/* The pending connection to drop to make room, of @ip or of anyone
 * (NULL): the oldest silent one, else the oldest one; never @keep. */
static Incoming *
pick_pending_victim (MdPeerListener *self, const char *ip, Incoming *keep, guint *count)
{
  Incoming *oldest = NULL, *oldest_silent = NULL;

  *count = 0;
  /* self->pending is newest first: the last match is the oldest. */
  for (GList *l = self->pending; l != NULL; l = l->next)
    {
      Incoming *in = l->data;

      if (ip != NULL && g_strcmp0 (in->ip, ip) != 0)
        continue;
      (*count)++;
      if (in == keep || in->authenticated)
        continue;
      oldest = in;
      if (incoming_is_silent (in))
        oldest_silent = in;
    }
  return oldest_silent != NULL ? oldest_silent : oldest;
}

/* Out of the pending list at once (the caps count it no more); its
 * callback, woken by the cancellation, refuses it with @victim->busy. */
static void
drop_for_load (MdPeerListener *self, Incoming *victim, const char *why)
{
  self->dropped_for_load++;
  self->pending = g_list_remove (self->pending, victim);
  victim->busy =
      g_strdup_printf ("peer busy: %s; dropped this unauthenticated connection to make room", why);
  g_cancellable_cancel (victim->cancellable);
}

/* Makes room for @in under both caps by dropping older pending
 * connections: first of its own address, then of anyone. */
static void
admit (MdPeerListener *self, Incoming *in)
{
  Incoming *victim;
  guint count;

  while ((victim = pick_pending_victim (self, in->ip, in, &count)) != NULL
         && count > MAX_PENDING_PER_ADDRESS)
    drop_for_load (self, victim, "too many pending connections from this address");
  while ((victim = pick_pending_victim (self, NULL, in, &count)) != NULL
         && count > MAX_PENDING_HANDSHAKES)
    drop_for_load (self, victim, "too many pending connections");
}

static gboolean
on_incoming (GSocketService *service, GSocketConnection *socket, GObject *source_object,
             gpointer user_data)
{
  MdPeerListener *self = user_data;
  g_autoptr (GSocketAddress) remote = g_socket_connection_get_remote_address (socket, NULL);
  g_autoptr (GSource) source = NULL;
  Incoming *in = g_new0 (Incoming, 1);

  in->listener = g_object_ref (self);
  in->socket = g_object_ref (socket);
  in->address = md_peer_address_to_string (remote);
  in->ip = G_IS_INET_SOCKET_ADDRESS (remote) ? g_inet_address_to_string (
               g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (remote)))
                                             : g_strdup (in->address);
  in->cancellable = g_cancellable_new ();
  self->pending = g_list_prepend (self->pending, in);
  admit (self, in);

  in->timeout_id = g_timeout_add_seconds (self->cfg->timeout, incoming_timeout, in);
  /* Look at the first byte before TLS gets it, so that a plaintext client
   * (e.g. a D-Bus client pointed at the wrong port) is named as such. */
  source = g_socket_create_source (g_socket_connection_get_socket (socket), G_IO_IN | G_IO_HUP,
                                   in->cancellable);
  g_source_set_callback (source, G_SOURCE_FUNC (on_first_bytes), in, NULL);
  g_source_attach (source, NULL);
  return TRUE;
}

static void
md_peer_listener_init (MdPeerListener *self)
{
}

void
md_peer_listener_stop (MdPeerListener *self)
{
  g_return_if_fail (MD_IS_PEER_LISTENER (self));

  if (self->service != NULL)
    {
      g_socket_service_stop (self->service);
      g_socket_listener_close (G_SOCKET_LISTENER (self->service));
      g_signal_handlers_disconnect_by_data (self->service, self);
      g_clear_object (&self->service);
    }
  self->stopped = TRUE;
  for (GList *l = self->pending; l != NULL; l = l->next)
    g_cancellable_cancel (((Incoming *) l->data)->cancellable);
}

static void
md_peer_listener_dispose (GObject *object)
{
  MdPeerListener *self = MD_PEER_LISTENER (object);
  GList *conns;

  md_peer_listener_stop (self);
  conns = g_list_concat (g_steal_pointer (&self->unhelloed), g_steal_pointer (&self->connections));
  for (GList *l = conns; l != NULL; l = l->next)
    {
      MdPeerConnection *conn = l->data;

      g_signal_handlers_disconnect_by_data (conn, self);
      md_peer_connection_close (conn);
      g_object_unref (conn);
    }
  g_list_free (conns);
  g_clear_object (&self->server_cert);
  g_clear_object (&self->database);
  g_clear_object (&self->observer);
  G_OBJECT_CLASS (md_peer_listener_parent_class)->dispose (object);
}

static void
md_peer_listener_finalize (GObject *object)
{
  MdPeerListener *self = MD_PEER_LISTENER (object);

  g_clear_pointer (&self->cfg, md_peer_config_unref);
  g_free (self->guid);
  G_OBJECT_CLASS (md_peer_listener_parent_class)->finalize (object);
}

static void
md_peer_listener_class_init (MdPeerListenerClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GType type = G_TYPE_FROM_CLASS (klass);

  object_class->dispose = md_peer_listener_dispose;
  object_class->finalize = md_peer_listener_finalize;

  md_peer_listener_signals[MD_PEER_LISTENER_SIGNAL_NEW_CONNECTION] =
      g_signal_new ("new-connection", type, G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL, G_TYPE_NONE, 1,
                    MD_TYPE_PEER_CONNECTION);
  md_peer_listener_signals[MD_PEER_LISTENER_SIGNAL_PEER_REFUSED] =
      g_signal_new ("peer-refused", type, G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL, G_TYPE_NONE, 2,
                    G_TYPE_STRING, G_TYPE_STRING);
  md_peer_listener_signals[MD_PEER_LISTENER_SIGNAL_DATA_STREAM] =
      g_signal_new ("data-stream", type, G_SIGNAL_RUN_LAST, 0, g_signal_accumulator_true_handled,
                    NULL, NULL, G_TYPE_BOOLEAN, 3, G_TYPE_IO_STREAM, G_TYPE_STRING, G_TYPE_STRING);
  md_peer_listener_signals[MD_PEER_LISTENER_SIGNAL_HANDLE_PREPARE] =
      g_signal_new ("handle-prepare", type, G_SIGNAL_RUN_LAST, 0, g_signal_accumulator_true_handled,
                    NULL, NULL, G_TYPE_BOOLEAN, 5, MD_TYPE_PEER_CONNECTION,
                    G_TYPE_DBUS_METHOD_INVOCATION, G_TYPE_STRING, G_TYPE_STRING, G_TYPE_VARIANT);
  md_peer_listener_signals[MD_PEER_LISTENER_SIGNAL_HANDLE_FINISH] =
      g_signal_new ("handle-finish", type, G_SIGNAL_RUN_LAST, 0, g_signal_accumulator_true_handled,
                    NULL, NULL, G_TYPE_BOOLEAN, 5, MD_TYPE_PEER_CONNECTION,
                    G_TYPE_DBUS_METHOD_INVOCATION, G_TYPE_STRING, G_TYPE_BOOLEAN, G_TYPE_VARIANT);
  md_peer_listener_signals[MD_PEER_LISTENER_SIGNAL_HANDLE_ABORT] =
      g_signal_new ("handle-abort", type, G_SIGNAL_RUN_LAST, 0, g_signal_accumulator_true_handled,
                    NULL, NULL, G_TYPE_BOOLEAN, 4, MD_TYPE_PEER_CONNECTION,
                    G_TYPE_DBUS_METHOD_INVOCATION, G_TYPE_STRING, G_TYPE_STRING);
  md_peer_listener_signals[MD_PEER_LISTENER_SIGNAL_HANDLE_CHECK_PATHS] = g_signal_new (
      "handle-check-paths", type, G_SIGNAL_RUN_LAST, 0, g_signal_accumulator_true_handled, NULL,
      NULL, G_TYPE_BOOLEAN, 3, MD_TYPE_PEER_CONNECTION, G_TYPE_DBUS_METHOD_INVOCATION, G_TYPE_STRV);
  md_peer_listener_signals[MD_PEER_LISTENER_SIGNAL_HANDLE_RESOLVE] = g_signal_new (
      "handle-resolve", type, G_SIGNAL_RUN_LAST, 0, g_signal_accumulator_true_handled, NULL, NULL,
      G_TYPE_BOOLEAN, 3, MD_TYPE_PEER_CONNECTION, G_TYPE_DBUS_METHOD_INVOCATION, G_TYPE_STRING);
  md_peer_listener_signals[MD_PEER_LISTENER_SIGNAL_HANDLE_RECOVER] =
      g_signal_new ("handle-recover", type, G_SIGNAL_RUN_LAST, 0, g_signal_accumulator_true_handled,
                    NULL, NULL, G_TYPE_BOOLEAN, 4, MD_TYPE_PEER_CONNECTION,
                    G_TYPE_DBUS_METHOD_INVOCATION, G_TYPE_STRING, G_TYPE_VARIANT);
}

MdPeerListener *
md_peer_listener_new (const MdPeerTlsConfig *cfg, GError **error)
{
  g_autoptr (MdPeerListener) self = NULL;
  g_autoptr (GError) local = NULL;

  g_return_val_if_fail (cfg != NULL, NULL);

  self = g_object_new (MD_TYPE_PEER_LISTENER, NULL);
  self->cfg = md_peer_config_new (cfg);
  self->guid = g_dbus_generate_guid ();
  self->database = md_peer_load_ca (self->cfg, &local);
  if (self->database != NULL)
    self->server_cert =
        md_peer_load_cert (self->cfg, MD_PEER_SERVER_CERT, MD_PEER_SERVER_KEY, &local);
  if (local != NULL)
    {
      md_peer_set_config_error (error, local, self->cfg);
      return NULL;
    }
  if (self->cfg->allowed_dns[0] == NULL)
    g_message ("The peer port allows no certificate DN ([tls] allowed-dns is empty): incoming "
               "migrations will be refused");
  self->observer = g_dbus_auth_observer_new ();
  g_signal_connect (self->observer, "allow-mechanism", G_CALLBACK (md_peer_allow_anonymous_only),
                    NULL);
  return g_steal_pointer (&self);
}

void
md_peer_listener_set_allowed_dns (MdPeerListener *self, const char *const *allowed_dns)
{
  g_autoptr (GStrvBuilder) dns = g_strv_builder_new ();

  g_return_if_fail (MD_IS_PEER_LISTENER (self));
  for (guint i = 0; allowed_dns != NULL && allowed_dns[i] != NULL; i++)
    {
      g_autofree char *norm = md_peer_normalize_dn (allowed_dns[i]);
      g_strv_builder_add (dns, norm);
    }
  /* Only the main context reads the list, so a swap is enough; a
   * handshake under way is judged by the list when its certificate
   * arrives. */
  g_strfreev (self->cfg->allowed_dns);
  self->cfg->allowed_dns = g_strv_builder_end (dns);
}

/* A TLS client speaks first. With TCP_DEFER_ACCEPT the kernel hands us a
 * connection when its first bytes arrive, so a real peer is never
 * "silent" when admit() looks, and a silent one reaches us only after a
 * few seconds (then admit() and the handshake timeout deal with it). */
static void
on_listener_event (GSocketListener *listener, GSocketListenerEvent event, GSocket *socket,
                   gpointer user_data)
{
  MdPeerListener *self = user_data;
  g_autoptr (GError) error = NULL;

  if (event == G_SOCKET_LISTENER_BOUND
      && !g_socket_set_option (socket, IPPROTO_TCP, TCP_DEFER_ACCEPT,
                               (gint) MIN (self->cfg->timeout, 5), &error))
    g_warning ("peer listener: cannot set TCP_DEFER_ACCEPT: %s", error->message);
}

gboolean
md_peer_listener_listen (MdPeerListener *self, const char *address, guint16 port, GError **error)
{
  g_autoptr (GError) local = NULL;
  g_autoptr (GSocketAddress) effective = NULL;
  guint16 bound = port;
  gboolean ok;

  g_return_val_if_fail (MD_IS_PEER_LISTENER (self), FALSE);

  if (self->service == NULL)
    {
      self->service = g_socket_service_new ();
      /* A flood fills the accept queue before we run: keep it deep enough
       * that a real peer still gets through to admit(). */
      g_socket_listener_set_backlog (G_SOCKET_LISTENER (self->service), 512);
      g_signal_connect (self->service, "event", G_CALLBACK (on_listener_event), self);
      g_signal_connect (self->service, "incoming", G_CALLBACK (on_incoming), self);
    }

  if (address == NULL || address[0] == '\0')
    {
      if (port == 0)
        {
          bound =
              g_socket_listener_add_any_inet_port (G_SOCKET_LISTENER (self->service), NULL, &local);
          ok = bound != 0;
        }
      else
        ok =
            g_socket_listener_add_inet_port (G_SOCKET_LISTENER (self->service), port, NULL, &local);
    }
  else
    {
      g_autoptr (GInetAddress) ia = g_inet_address_new_from_string (address);
      g_autoptr (GSocketAddress) sa = NULL;

      if (ia == NULL)
        {
          g_set_error (error, MD_ERROR, MD_ERROR_CONFIG,
                       "peer listen address '%s' is not an IP address; give an IPv4 or IPv6 "
                       "address, or leave it empty for all",
                       address);
          return FALSE;
        }
      sa = g_inet_socket_address_new (ia, port);
      ok = g_socket_listener_add_address (G_SOCKET_LISTENER (self->service), sa,
                                          G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, NULL,
                                          &effective, &local);
      if (ok)
        bound = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (effective));
    }
  if (!ok)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_CONFIG,
                   "cannot listen on %s port %u for peers: %s; choose another [peer] port or "
                   "stop what uses it",
                   address && *address ? address : "all addresses", port, local->message);
      return FALSE;
    }
  self->port = bound;
  self->stopped = FALSE;
  g_socket_service_start (self->service);
  return TRUE;
}

guint16
md_peer_listener_get_port (MdPeerListener *self)
{
  g_return_val_if_fail (MD_IS_PEER_LISTENER (self), 0);
  return self->port;
}

GList *
md_peer_listener_get_connections (MdPeerListener *self)
{
  g_return_val_if_fail (MD_IS_PEER_LISTENER (self), NULL);
  return self->connections;
}

void
md_peer_connection_set_proxy (MdPeerConnection *self, MdDbusPeer1 *proxy)
{
  g_set_object (&self->proxy, proxy);
}
