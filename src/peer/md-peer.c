/* migrationd: the daemon-to-daemon channel (DESIGN.md "Daemon-to-daemon
 * channel"): the listening side and the connections; the connecting side is
 * md-peer-connect.c. One TCP port; TLS 1.3 with client and server
 * certificates from one CA; the client's subject DN must be on the
 * allow-list; ALPN tells the Peer1 control connection (D-Bus peer-to-peer
 * over the TLS stream) from bulk data streams, which go to the owner. */
#include "config.h"

#include "md-peer.h"

#include "common/md-error.h"
#include "md-peer-private.h"
#include "md-peer-check.h"
#include "md-peer-liveness.h"

#include <gnutls/x509.h>
#include <stdio.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

static void
peer_config_clear (gpointer data)
{
  MdPeerConfig *cfg = data;

  g_free (cfg->tls_dir);
  g_strfreev (cfg->allowed_dns);
  g_free (cfg->host_uuid);
  g_free (cfg->host_name);
}

MdPeerConfig *
md_peer_config_new (const MdPeerTlsConfig *in)
{
  MdPeerConfig *cfg = g_atomic_rc_box_new0 (MdPeerConfig);
  g_autoptr (GStrvBuilder) dns = g_strv_builder_new ();

  cfg->tls_dir = g_strdup (in->tls_dir ? in->tls_dir : MD_SYSCONFDIR "/tls");
  for (guint i = 0; in->allowed_dns != NULL && in->allowed_dns[i] != NULL; i++)
    {
      g_autofree char *norm = md_peer_normalize_dn (in->allowed_dns[i]);
      g_strv_builder_add (dns, norm);
    }
  cfg->allowed_dns = g_strv_builder_end (dns);
  cfg->host_uuid = g_strdup (in->host_uuid ? in->host_uuid : "");
  cfg->host_name = g_strdup (in->host_name ? in->host_name : g_get_host_name ());
  cfg->timeout = in->handshake_timeout ? in->handshake_timeout : MD_PEER_DEFAULT_HANDSHAKE_TIMEOUT;
  cfg->max_message_size =
      in->max_message_size ? in->max_message_size : MD_PEER_DEFAULT_MAX_MESSAGE_SIZE;
  cfg->liveness_timeout = in->peer_timeout ? in->peer_timeout : MD_PEER_DEFAULT_LIVENESS_TIMEOUT;
  return cfg;
}

MdPeerConfig *
md_peer_config_ref (MdPeerConfig *cfg)
{
  return g_atomic_rc_box_acquire (cfg);
}

void
md_peer_config_unref (MdPeerConfig *cfg)
{
  g_atomic_rc_box_release_full (cfg, peer_config_clear);
}

char *
md_peer_tls_path (MdPeerConfig *cfg, const char *file)
{
  return g_build_filename (cfg->tls_dir, file, NULL);
}

char *
md_peer_normalize_dn (const char *dn)
{
  GString *out = g_string_new (NULL);
  gboolean pending_space = FALSE;

  g_return_val_if_fail (dn != NULL, NULL);

  /* Drop whitespace at both ends and around ',' and '=', collapse the rest:
   * "CN = hostB, O=migrationd" and "CN=hostB,O=migrationd" are the same. */
  for (const char *p = dn; *p != '\0'; p++)
    {
      if (g_ascii_isspace (*p))
        {
          pending_space = out->len > 0;
          continue;
        }
      if (pending_space && *p != ',' && *p != '=' && out->str[out->len - 1] != ','
          && out->str[out->len - 1] != '=')
        g_string_append_c (out, ' ');
      pending_space = FALSE;
      g_string_append_c (out, *p);
    }
  return g_string_free (out, FALSE);
}

/* The subject DN in RFC 4514 form ("CN=hostB,O=migrationd"), as certtool
 * prints it. g_tls_certificate_get_subject_name() gives the RDNs in
 * encoding order instead ("O=migrationd,CN=hostB"), which would not match
 * what administrators copy from certtool or migrationd-tls-setup. */
char *
md_peer_cert_subject_dn (GTlsCertificate *cert)
{
  g_autoptr (GByteArray) der = NULL;
  gnutls_x509_crt_t crt = NULL;
  gnutls_datum_t in, out = { NULL, 0 };
  char *dn = NULL;

  if (cert == NULL)
    return NULL;
  g_object_get (cert, "certificate", &der, NULL);
  if (der != NULL && gnutls_x509_crt_init (&crt) == GNUTLS_E_SUCCESS)
    {
      in.data = der->data;
      in.size = der->len;
      if (gnutls_x509_crt_import (crt, &in, GNUTLS_X509_FMT_DER) == GNUTLS_E_SUCCESS
          && gnutls_x509_crt_get_dn3 (crt, &out, 0) == GNUTLS_E_SUCCESS)
        {
          dn = g_strndup ((const char *) out.data, out.size);
          gnutls_free (out.data);
        }
      gnutls_x509_crt_deinit (crt);
    }
  return dn ? dn : g_tls_certificate_get_subject_name (cert);
}

static gboolean
dn_allowed (MdPeerConfig *cfg, const char *dn)
{
  g_autofree char *norm = md_peer_normalize_dn (dn);

  return g_strv_contains ((const char *const *) cfg->allowed_dns, norm);
}

/* Why a certificate was refused, in the words of the log and the errors. */
const char *
md_peer_cert_flags_reason (GTlsCertificateFlags flags)
{
  if (flags & G_TLS_CERTIFICATE_UNKNOWN_CA)
    return "certificate signed by an unknown CA";
  if (flags & G_TLS_CERTIFICATE_EXPIRED)
    return "certificate expired";
  if (flags & G_TLS_CERTIFICATE_NOT_ACTIVATED)
    return "certificate not yet valid (check the clocks)";
  if (flags & G_TLS_CERTIFICATE_BAD_IDENTITY)
    return "certificate does not match the host name";
  if (flags & G_TLS_CERTIFICATE_REVOKED)
    return "certificate revoked";
  if (flags & G_TLS_CERTIFICATE_INSECURE)
    return "certificate uses an insecure algorithm";
  return "certificate invalid";
}

char *
md_peer_address_to_string (GSocketAddress *address)
{
  if (G_IS_INET_SOCKET_ADDRESS (address))
    {
      GInetSocketAddress *isa = G_INET_SOCKET_ADDRESS (address);
      GInetAddress *ia = g_inet_socket_address_get_address (isa);
      g_autofree char *ip = g_inet_address_to_string (ia);

      if (g_inet_address_get_family (ia) == G_SOCKET_FAMILY_IPV6)
        return g_strdup_printf ("[%s]:%u", ip, g_inet_socket_address_get_port (isa));
      return g_strdup_printf ("%s:%u", ip, g_inet_socket_address_get_port (isa));
    }
  return g_strdup ("(unknown address)");
}

gboolean
md_peer_allow_anonymous_only (GDBusAuthObserver *observer, const char *mechanism,
                              gpointer user_data)
{
  /* TLS already authenticated both ends. */
  return g_strcmp0 (mechanism, "ANONYMOUS") == 0;
}

/* ---------------------------------------------------------------------- */
/* Message size cap. GDBusConnection has none of its own besides the D-Bus
 * limit of 128 MiB per message, and it reads a whole message before anyone
 * sees it; the filter therefore bounds what gets dispatched, not what gets
 * buffered: a message whose body exceeds the cap is dropped and the
 * connection closed. */

typedef struct
{
  gsize max;
  char *address;
} SizeFilter;

static void
size_filter_free (gpointer data)
{
  SizeFilter *f = data;

  g_free (f->address);
  g_free (f);
}

static GDBusMessage *
size_filter (GDBusConnection *connection, GDBusMessage *message, gboolean incoming,
             gpointer user_data)
{
  SizeFilter *f = user_data;
  GVariant *body;
  gsize size;

  if (!incoming)
    return message;
  body = g_dbus_message_get_body (message);
  size = body ? g_variant_get_size (body) : 0;
  if (size <= f->max)
    return message;

  /* Runs in GDBus's worker thread; closing is thread-safe. */
  g_message ("Peer %s: closing the connection: a %" G_GSIZE_FORMAT " byte message exceeds the "
             "limit of %" G_GSIZE_FORMAT " bytes",
             f->address, size, f->max);
  g_dbus_connection_close (connection, NULL, NULL, NULL);
  g_object_unref (message);
  return NULL;
}

static void
add_size_filter (GDBusConnection *dbus, gsize max, const char *address)
{
  SizeFilter *f = g_new0 (SizeFilter, 1);

  f->max = max;
  f->address = g_strdup (address);
  g_dbus_connection_add_filter (dbus, size_filter, f, size_filter_free);
}

/* ---------------------------------------------------------------------- */
/* MdPeerConnection */

struct _MdPeerConnection
{
  GObject parent_instance;

  char *address;
  char *dn;
  char *host_uuid;
  char *host_name;
  guint version;
  GStrv capabilities;
  gboolean incoming;
  gboolean hello_done;
  gboolean closed;
  char *refusal; /* incoming: Hello is refused with this (per-DN limit) */

  GDBusConnection *dbus;
  gulong closed_id;
  MdDbusPeer1 *proxy;               /* outgoing */
  GDBusInterfaceSkeleton *skeleton; /* incoming */
  MdPeerListener *listener;         /* incoming, weak */
  guint hello_timeout_id;           /* incoming, until Hello */
  MdPeerLiveness *liveness;         /* keepalives, until closed */
};

enum
{
  CONN_SIGNAL_CLOSED,
  CONN_N_SIGNALS
};

static guint conn_signals[CONN_N_SIGNALS];

G_DEFINE_TYPE (MdPeerConnection, md_peer_connection, G_TYPE_OBJECT)

static void
md_peer_connection_init (MdPeerConnection *self)
{
}

static void skeleton_detach (GDBusInterfaceSkeleton *skeleton);

static void
unexport_skeleton (MdPeerConnection *self)
{
  if (self->skeleton != NULL
      && g_dbus_interface_skeleton_has_connection (self->skeleton, self->dbus))
    g_dbus_interface_skeleton_unexport_from_connection (self->skeleton, self->dbus);
}

static void
connection_mark_closed (MdPeerConnection *self)
{
  if (self->closed)
    return;
  self->closed = TRUE;
  g_clear_pointer (&self->liveness, md_peer_liveness_stop);
  g_clear_handle_id (&self->hello_timeout_id, g_source_remove);
  if (self->skeleton != NULL)
    unexport_skeleton (self);
  g_signal_emit (self, conn_signals[CONN_SIGNAL_CLOSED], 0);
}

static void
on_dbus_closed (GDBusConnection *dbus, gboolean remote_peer_vanished, GError *error,
                gpointer user_data)
{
  MdPeerConnection *self = user_data;

  g_info ("Peer %s (%s): connection closed%s%s", self->address,
          self->host_name ? self->host_name : self->dn, error ? ": " : "",
          error ? error->message : "");
  g_object_ref (self);
  connection_mark_closed (self);
  g_object_unref (self);
}

static void
md_peer_connection_dispose (GObject *object)
{
  MdPeerConnection *self = MD_PEER_CONNECTION (object);

  g_clear_pointer (&self->liveness, md_peer_liveness_stop);
  g_clear_handle_id (&self->hello_timeout_id, g_source_remove);
  if (self->skeleton != NULL)
    {
      unexport_skeleton (self);
      skeleton_detach (self->skeleton);
      g_clear_object (&self->skeleton);
    }
  if (self->dbus != NULL)
    {
      g_clear_signal_handler (&self->closed_id, self->dbus);
      if (!g_dbus_connection_is_closed (self->dbus))
        g_dbus_connection_close (self->dbus, NULL, NULL, NULL);
    }
  g_clear_object (&self->proxy);
  g_clear_object (&self->dbus);
  g_clear_weak_pointer (&self->listener);
  G_OBJECT_CLASS (md_peer_connection_parent_class)->dispose (object);
}

static void
md_peer_connection_finalize (GObject *object)
{
  MdPeerConnection *self = MD_PEER_CONNECTION (object);

  g_free (self->address);
  g_free (self->dn);
  g_free (self->host_uuid);
  g_free (self->host_name);
  g_free (self->refusal);
  g_strfreev (self->capabilities);
  G_OBJECT_CLASS (md_peer_connection_parent_class)->finalize (object);
}

static void
md_peer_connection_class_init (MdPeerConnectionClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = md_peer_connection_dispose;
  object_class->finalize = md_peer_connection_finalize;

  conn_signals[CONN_SIGNAL_CLOSED] = g_signal_new (
      "closed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL, G_TYPE_NONE, 0);
}

/* The peer said nothing for the whole timeout; md-peer-liveness closed
 * the GDBus connection, but its "closed" signal waits for the stream to
 * close: say it now. */
static void
on_peer_dead (const char *reason, gpointer user_data)
{
  MdPeerConnection *self = user_data;

  g_object_ref (self);
  connection_mark_closed (self);
  g_object_unref (self);
}

MdPeerConnection *
md_peer_connection_new_internal (GDBusConnection *dbus, const char *address, const char *dn,
                                 gboolean incoming, gsize max_message_size, guint liveness_timeout)
{
  MdPeerConnection *self = g_object_new (MD_TYPE_PEER_CONNECTION, NULL);

  self->dbus = g_object_ref (dbus);
  self->address = g_strdup (address);
  self->dn = g_strdup (dn);
  self->incoming = incoming;
  self->closed_id = g_signal_connect (dbus, "closed", G_CALLBACK (on_dbus_closed), self);
  add_size_filter (dbus, max_message_size, address);
  self->liveness = md_peer_liveness_start (dbus, address, liveness_timeout, on_peer_dead, self);
  return self;
}

void
md_peer_connection_set_identity (MdPeerConnection *self, guint version, const char *uuid,
                                 const char *name, GVariant *info)
{
  const char **caps = NULL;

  self->version = version;
  g_free (self->host_uuid);
  self->host_uuid = g_strdup (uuid);
  g_free (self->host_name);
  self->host_name = g_strdup (name);
  g_strfreev (self->capabilities);
  if (info == NULL || !g_variant_lookup (info, "capabilities", "^a&s", &caps))
    self->capabilities = g_new0 (char *, 1);
  else
    {
      self->capabilities = g_strdupv ((char **) caps);
      g_free (caps);
    }
  self->hello_done = TRUE;
}

const char *
md_peer_connection_get_address (MdPeerConnection *self)
{
  g_return_val_if_fail (MD_IS_PEER_CONNECTION (self), NULL);
  return self->address;
}

const char *
md_peer_connection_get_dn (MdPeerConnection *self)
{
  g_return_val_if_fail (MD_IS_PEER_CONNECTION (self), NULL);
  return self->dn;
}

const char *
md_peer_connection_get_host_uuid (MdPeerConnection *self)
{
  g_return_val_if_fail (MD_IS_PEER_CONNECTION (self), NULL);
  return self->host_uuid;
}

const char *
md_peer_connection_get_host_name (MdPeerConnection *self)
{
  g_return_val_if_fail (MD_IS_PEER_CONNECTION (self), NULL);
  return self->host_name;
}

guint
md_peer_connection_get_version (MdPeerConnection *self)
{
  g_return_val_if_fail (MD_IS_PEER_CONNECTION (self), 0);
  return self->version;
}

const char *const *
md_peer_connection_get_capabilities (MdPeerConnection *self)
{
  g_return_val_if_fail (MD_IS_PEER_CONNECTION (self), NULL);
  return (const char *const *) self->capabilities;
}

gboolean
md_peer_connection_is_incoming (MdPeerConnection *self)
{
  g_return_val_if_fail (MD_IS_PEER_CONNECTION (self), FALSE);
  return self->incoming;
}

GDBusConnection *
md_peer_connection_get_dbus (MdPeerConnection *self)
{
  g_return_val_if_fail (MD_IS_PEER_CONNECTION (self), NULL);
  return self->dbus;
}

MdDbusPeer1 *
md_peer_connection_get_proxy (MdPeerConnection *self)
{
  g_return_val_if_fail (MD_IS_PEER_CONNECTION (self), NULL);
  return self->proxy;
}

gboolean
md_peer_connection_is_closed (MdPeerConnection *self)
{
  g_return_val_if_fail (MD_IS_PEER_CONNECTION (self), TRUE);
  return self->closed;
}

void
md_peer_connection_close (MdPeerConnection *self)
{
  g_return_if_fail (MD_IS_PEER_CONNECTION (self));

  /* The GDBusConnection's "closed" signal follows and marks us closed. */
  if (!g_dbus_connection_is_closed (self->dbus))
    g_dbus_connection_close (self->dbus, NULL, NULL, NULL);
}

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

struct _MdPeerListener
{
  GObject parent_instance;

  MdPeerConfig *cfg;
  GTlsCertificate *server_cert;
  GTlsDatabase *database;
  GDBusAuthObserver *observer;
  guint64 dropped_for_load; /* pending connections dropped at a cap */
  gint64 load_logged_at;    /* monotonic time of the last such log line */
  char *guid;
  GSocketService *service;
  guint16 port;
  gboolean stopped;
  GList *pending;     /* Incoming *: TLS handshake / D-Bus authentication */
  GList *unhelloed;   /* MdPeerConnection *: waiting for Hello */
  GList *connections; /* MdPeerConnection *: after Hello */
};

enum
{
  SIGNAL_NEW_CONNECTION,
  SIGNAL_PEER_REFUSED,
  SIGNAL_DATA_STREAM,
  SIGNAL_HANDLE_PREPARE,
  SIGNAL_HANDLE_FINISH,
  SIGNAL_HANDLE_ABORT,
  SIGNAL_HANDLE_CHECK_PATHS,
  SIGNAL_HANDLE_RESOLVE,
  SIGNAL_HANDLE_RECOVER,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

G_DEFINE_TYPE (MdPeerListener, md_peer_listener, G_TYPE_OBJECT)

static void
listener_refuse (MdPeerListener *self, const char *address, const char *reason)
{
  g_message ("Refused peer connection from %s: %s", address, reason);
  g_signal_emit (self, signals[SIGNAL_PEER_REFUSED], 0, address, reason);
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
  g_signal_emit (self, signals[SIGNAL_PEER_REFUSED], 0, address, reason);
}

/* ---- The Peer1 skeleton of an incoming connection ---- */

#define MD_TYPE_PEER_SKELETON (md_peer_skeleton_get_type ())
G_DECLARE_FINAL_TYPE (MdPeerSkeleton, md_peer_skeleton, MD, PEER_SKELETON, MdDbusPeer1Skeleton)

struct _MdPeerSkeleton
{
  MdDbusPeer1Skeleton parent_instance;
  MdPeerConnection *conn; /* weak: the connection owns us */
  MdPeerConfig *cfg;
};

static void md_peer_skeleton_iface_init (MdDbusPeer1Iface *iface);

/* An invocation in flight may outlive the connection. */
static void
skeleton_detach (GDBusInterfaceSkeleton *skeleton)
{
  ((MdPeerSkeleton *) skeleton)->conn = NULL;
}

G_DEFINE_TYPE_WITH_CODE (MdPeerSkeleton, md_peer_skeleton, MD_DBUS_TYPE_PEER1_SKELETON,
                         G_IMPLEMENT_INTERFACE (MD_DBUS_TYPE_PEER1, md_peer_skeleton_iface_init))

static void
md_peer_skeleton_init (MdPeerSkeleton *self)
{
}

static void
md_peer_skeleton_finalize (GObject *object)
{
  MdPeerSkeleton *self = MD_PEER_SKELETON (object);

  g_clear_pointer (&self->cfg, md_peer_config_unref);
  G_OBJECT_CLASS (md_peer_skeleton_parent_class)->finalize (object);
}

static void
md_peer_skeleton_class_init (MdPeerSkeletonClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = md_peer_skeleton_finalize;
}

static gboolean
close_after_flush (gpointer user_data)
{
  GDBusConnection *dbus = user_data;

  g_dbus_connection_close (dbus, NULL, NULL, NULL);
  return G_SOURCE_REMOVE;
}

static void
on_flushed_close (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GDBusConnection *dbus = G_DBUS_CONNECTION (source);

  g_dbus_connection_flush_finish (dbus, result, NULL);
  close_after_flush (dbus);
}

static void
refuse_and_close (MdPeerSkeleton *self, GDBusMethodInvocation *invocation, MdError code,
                  const char *message)
{
  MdPeerConnection *conn = self->conn;

  if (conn->listener != NULL)
    listener_refuse (conn->listener, conn->address, message);
  g_dbus_method_invocation_return_error_literal (invocation, MD_ERROR, code, message);
  /* Let the error reach the caller before the connection goes. */
  g_dbus_connection_flush (conn->dbus, NULL, on_flushed_close, NULL);
}

/* Arguments are checked (types, sizes, a{sv} contents) before any
 * handler runs; a peer that sends garbage gets InvalidArgument. */
static gboolean
checked_call (MdPeerSkeleton *self, GDBusMethodInvocation *invocation)
{
  GError *error = NULL;

  if (md_peer_check_call (g_dbus_method_invocation_get_method_name (invocation),
                          g_dbus_method_invocation_get_parameters (invocation), &error))
    return TRUE;
  g_prefix_error (&error, "host %s refuses the call: ", self->cfg->host_name);
  g_dbus_method_invocation_take_error (invocation, error);
  return FALSE;
}

static gboolean
skeleton_handle_hello (MdDbusPeer1 *object, GDBusMethodInvocation *invocation, guint version,
                       const char *host_uuid, const char *host_name, GVariant *info)
{
  MdPeerSkeleton *self = MD_PEER_SKELETON (object);
  MdPeerConnection *conn = self->conn;
  MdPeerListener *listener;
  g_autoptr (GVariantDict) peer_info = NULL;
  const char *no_caps[] = { NULL };

  if (conn == NULL || conn->closed)
    {
      g_dbus_method_invocation_return_error (invocation, MD_ERROR, MD_ERROR_INVALID_STATE,
                                             "the connection to host %s is closing",
                                             self->cfg->host_name);
      return TRUE;
    }
  listener = conn->listener;
  if (!checked_call (self, invocation))
    return TRUE;
  if (conn->refusal != NULL)
    {
      refuse_and_close (self, invocation, MD_ERROR_PEER_FAILED, conn->refusal);
      return TRUE;
    }
  if (conn->hello_done)
    {
      g_dbus_method_invocation_return_error (invocation, MD_ERROR, MD_ERROR_INVALID_STATE,
                                             "Hello was already called on this connection "
                                             "(host %s)",
                                             self->cfg->host_name);
      return TRUE;
    }
  if (version < MD_PEER_PROTOCOL_VERSION)
    {
      g_autofree char *msg = g_strdup_printf (
          "no common protocol version: host %s speaks up to version %u, host %s needs %u; "
          "upgrade migrationd on host %s",
          host_name, version, self->cfg->host_name, MD_PEER_PROTOCOL_VERSION, host_name);
      refuse_and_close (self, invocation, MD_ERROR_NOT_SUPPORTED, msg);
      return TRUE;
    }
  if (host_uuid[0] == '\0')
    {
      g_autofree char *msg =
          g_strdup_printf ("Hello from host %s without a host UUID; set one in its "
                           "migrationd.conf or /etc/machine-id",
                           host_name);
      refuse_and_close (self, invocation, MD_ERROR_INVALID_ARGUMENT, msg);
      return TRUE;
    }
  if (g_ascii_strcasecmp (host_uuid, self->cfg->host_uuid) == 0)
    {
      g_autofree char *msg = g_strdup_printf (
          "refusing to migrate to itself: host %s has this host's UUID %s", host_name, host_uuid);
      refuse_and_close (self, invocation, MD_ERROR_INVALID_ARGUMENT, msg);
      return TRUE;
    }

  md_peer_connection_set_identity (conn, MIN (version, MD_PEER_PROTOCOL_VERSION), host_uuid,
                                   host_name, info);
  g_clear_handle_id (&conn->hello_timeout_id, g_source_remove);

  peer_info = g_variant_dict_new (NULL);
  g_variant_dict_insert_value (peer_info, "capabilities", g_variant_new_strv (no_caps, 0));
  md_dbus_peer1_complete_hello (object, invocation, conn->version, self->cfg->host_uuid,
                                self->cfg->host_name, g_variant_dict_end (peer_info));

  g_message ("Peer %s connected: host %s (UUID %s, DN '%s')", conn->address, host_name, host_uuid,
             conn->dn);
  if (listener != NULL)
    {
      GList *link = g_list_find (listener->unhelloed, conn);

      if (link != NULL)
        {
          listener->unhelloed = g_list_delete_link (listener->unhelloed, link);
          listener->connections = g_list_prepend (listener->connections, conn);
        }
      g_signal_emit (listener, signals[SIGNAL_NEW_CONNECTION], 0, conn);
    }
  return TRUE;
}

/* Common gate for everything but Hello. Returns the listener to forward to,
 * or NULL when the invocation was answered. */
static MdPeerListener *
skeleton_gate (MdPeerSkeleton *self, GDBusMethodInvocation *invocation)
{
  MdPeerConnection *conn = self->conn;

  if (conn == NULL || conn->closed)
    {
      g_dbus_method_invocation_return_error (invocation, MD_ERROR, MD_ERROR_INVALID_STATE,
                                             "the connection to host %s is closing",
                                             self->cfg->host_name);
      return NULL;
    }
  if (!conn->hello_done)
    {
      g_dbus_method_invocation_return_error (
          invocation, MD_ERROR, MD_ERROR_INVALID_STATE,
          "%s before Hello on the connection to host %s: call Hello first",
          g_dbus_method_invocation_get_method_name (invocation), self->cfg->host_name);
      return NULL;
    }
  if (conn->listener == NULL)
    {
      g_dbus_method_invocation_return_error (invocation, MD_ERROR, MD_ERROR_INVALID_STATE,
                                             "host %s is shutting down its peer port",
                                             self->cfg->host_name);
      return NULL;
    }
  if (!checked_call (self, invocation))
    return NULL;
  return conn->listener;
}

static void
not_handled (MdPeerSkeleton *self, GDBusMethodInvocation *invocation)
{
  g_dbus_method_invocation_return_error (
      invocation, MD_ERROR, MD_ERROR_NOT_SUPPORTED,
      "%s is not supported by migrationd on host %s (no incoming migration handler)",
      g_dbus_method_invocation_get_method_name (invocation), self->cfg->host_name);
}

static gboolean
skeleton_handle_prepare (MdDbusPeer1 *object, GDBusMethodInvocation *invocation,
                         const char *migration_id, const char *xml, GVariant *options)
{
  MdPeerSkeleton *self = MD_PEER_SKELETON (object);
  MdPeerListener *listener = skeleton_gate (self, invocation);
  gboolean handled = FALSE;

  if (listener == NULL)
    return TRUE;
  g_signal_emit (listener, signals[SIGNAL_HANDLE_PREPARE], 0, self->conn, invocation, migration_id,
                 xml, options, &handled);
  if (!handled)
    not_handled (self, invocation);
  return TRUE;
}

static gboolean
skeleton_handle_finish (MdDbusPeer1 *object, GDBusMethodInvocation *invocation,
                        const char *migration_id, gboolean success, GVariant *options)
{
  MdPeerSkeleton *self = MD_PEER_SKELETON (object);
  MdPeerListener *listener = skeleton_gate (self, invocation);
  gboolean handled = FALSE;

  if (listener == NULL)
    return TRUE;
  g_signal_emit (listener, signals[SIGNAL_HANDLE_FINISH], 0, self->conn, invocation, migration_id,
                 success, options, &handled);
  if (!handled)
    not_handled (self, invocation);
  return TRUE;
}

static gboolean
skeleton_handle_abort (MdDbusPeer1 *object, GDBusMethodInvocation *invocation,
                       const char *migration_id, const char *reason)
{
  MdPeerSkeleton *self = MD_PEER_SKELETON (object);
  MdPeerListener *listener = skeleton_gate (self, invocation);
  gboolean handled = FALSE;

  if (listener == NULL)
    return TRUE;
  g_signal_emit (listener, signals[SIGNAL_HANDLE_ABORT], 0, self->conn, invocation, migration_id,
                 reason, &handled);
  if (!handled)
    not_handled (self, invocation);
  return TRUE;
}

static gboolean
skeleton_handle_check_paths (MdDbusPeer1 *object, GDBusMethodInvocation *invocation,
                             const char *const *paths)
{
  MdPeerSkeleton *self = MD_PEER_SKELETON (object);
  MdPeerListener *listener = skeleton_gate (self, invocation);
  gboolean handled = FALSE;

  if (listener == NULL)
    return TRUE;
  g_signal_emit (listener, signals[SIGNAL_HANDLE_CHECK_PATHS], 0, self->conn, invocation, paths,
                 &handled);
  if (!handled)
    not_handled (self, invocation);
  return TRUE;
}

static gboolean
skeleton_handle_resolve (MdDbusPeer1 *object, GDBusMethodInvocation *invocation,
                         const char *migration_id)
{
  MdPeerSkeleton *self = MD_PEER_SKELETON (object);
  MdPeerListener *listener = skeleton_gate (self, invocation);
  gboolean handled = FALSE;

  if (listener == NULL)
    return TRUE;
  g_signal_emit (listener, signals[SIGNAL_HANDLE_RESOLVE], 0, self->conn, invocation, migration_id,
                 &handled);
  if (!handled)
    not_handled (self, invocation);
  return TRUE;
}

static gboolean
skeleton_handle_recover (MdDbusPeer1 *object, GDBusMethodInvocation *invocation,
                         const char *migration_id, GVariant *options)
{
  MdPeerSkeleton *self = MD_PEER_SKELETON (object);
  MdPeerListener *listener = skeleton_gate (self, invocation);
  gboolean handled = FALSE;

  if (listener == NULL)
    return TRUE;
  g_signal_emit (listener, signals[SIGNAL_HANDLE_RECOVER], 0, self->conn, invocation, migration_id,
                 options, &handled);
  if (!handled)
    not_handled (self, invocation);
  return TRUE;
}

/* MemTotal and MemAvailable of /proc/meminfo, in bytes (0 when the file
 * cannot be read: the caller then places by the other peers' figures). A
 * small procfs read, as cheap as the stat calls the loop makes anyway. */
static void
read_meminfo (guint64 *total, guint64 *available)
{
  g_autofree char *text = NULL;
  g_auto (GStrv) lines = NULL;

  *total = *available = 0;
  if (!g_file_get_contents ("/proc/meminfo", &text, NULL, NULL))
    return;
  lines = g_strsplit (text, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++)
    {
      guint64 kib;

      if (sscanf (lines[i], "MemTotal: %" G_GUINT64_FORMAT " kB", &kib) == 1)
        *total = kib * 1024;
      else if (sscanf (lines[i], "MemAvailable: %" G_GUINT64_FORMAT " kB", &kib) == 1)
        *available = kib * 1024;
    }
}

static gboolean
skeleton_handle_host_info (MdDbusPeer1 *object, GDBusMethodInvocation *invocation)
{
  MdPeerSkeleton *self = MD_PEER_SKELETON (object);
  g_auto (GVariantBuilder) result = G_VARIANT_BUILDER_INIT (G_VARIANT_TYPE_VARDICT);
  guint64 total, available;

  if (skeleton_gate (self, invocation) == NULL)
    return TRUE;
  read_meminfo (&total, &available);
  g_variant_builder_add (&result, "{sv}", "memory-total", g_variant_new_uint64 (total));
  g_variant_builder_add (&result, "{sv}", "memory-available", g_variant_new_uint64 (available));
  md_dbus_peer1_complete_host_info (object, invocation, g_variant_builder_end (&result));
  return TRUE;
}

static void
md_peer_skeleton_iface_init (MdDbusPeer1Iface *iface)
{
  iface->handle_recover = skeleton_handle_recover;
  iface->handle_host_info = skeleton_handle_host_info;
  iface->handle_resolve = skeleton_handle_resolve;
  iface->handle_hello = skeleton_handle_hello;
  iface->handle_prepare = skeleton_handle_prepare;
  iface->handle_finish = skeleton_handle_finish;
  iface->handle_abort = skeleton_handle_abort;
  iface->handle_check_paths = skeleton_handle_check_paths;
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
        listener_refuse (self, in->address, reason);
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
  if (dn == NULL || !dn_allowed (self->cfg, dn))
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
  listener_refuse (self, conn->address, msg);
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
  MdPeerSkeleton *skeleton;

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

  skeleton = g_object_new (MD_TYPE_PEER_SKELETON, NULL);
  skeleton->conn = conn;
  skeleton->cfg = md_peer_config_ref (self->cfg);
  conn->skeleton = G_DBUS_INTERFACE_SKELETON (skeleton);
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
      g_signal_emit (self, signals[SIGNAL_DATA_STREAM], 0, in->tls, alpn_copy, dn, &handled);
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

  signals[SIGNAL_NEW_CONNECTION] =
      g_signal_new ("new-connection", type, G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL, G_TYPE_NONE, 1,
                    MD_TYPE_PEER_CONNECTION);
  signals[SIGNAL_PEER_REFUSED] =
      g_signal_new ("peer-refused", type, G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL, G_TYPE_NONE, 2,
                    G_TYPE_STRING, G_TYPE_STRING);
  signals[SIGNAL_DATA_STREAM] =
      g_signal_new ("data-stream", type, G_SIGNAL_RUN_LAST, 0, g_signal_accumulator_true_handled,
                    NULL, NULL, G_TYPE_BOOLEAN, 3, G_TYPE_IO_STREAM, G_TYPE_STRING, G_TYPE_STRING);
  signals[SIGNAL_HANDLE_PREPARE] =
      g_signal_new ("handle-prepare", type, G_SIGNAL_RUN_LAST, 0, g_signal_accumulator_true_handled,
                    NULL, NULL, G_TYPE_BOOLEAN, 5, MD_TYPE_PEER_CONNECTION,
                    G_TYPE_DBUS_METHOD_INVOCATION, G_TYPE_STRING, G_TYPE_STRING, G_TYPE_VARIANT);
  signals[SIGNAL_HANDLE_FINISH] =
      g_signal_new ("handle-finish", type, G_SIGNAL_RUN_LAST, 0, g_signal_accumulator_true_handled,
                    NULL, NULL, G_TYPE_BOOLEAN, 5, MD_TYPE_PEER_CONNECTION,
                    G_TYPE_DBUS_METHOD_INVOCATION, G_TYPE_STRING, G_TYPE_BOOLEAN, G_TYPE_VARIANT);
  signals[SIGNAL_HANDLE_ABORT] =
      g_signal_new ("handle-abort", type, G_SIGNAL_RUN_LAST, 0, g_signal_accumulator_true_handled,
                    NULL, NULL, G_TYPE_BOOLEAN, 4, MD_TYPE_PEER_CONNECTION,
                    G_TYPE_DBUS_METHOD_INVOCATION, G_TYPE_STRING, G_TYPE_STRING);
  signals[SIGNAL_HANDLE_CHECK_PATHS] = g_signal_new (
      "handle-check-paths", type, G_SIGNAL_RUN_LAST, 0, g_signal_accumulator_true_handled, NULL,
      NULL, G_TYPE_BOOLEAN, 3, MD_TYPE_PEER_CONNECTION, G_TYPE_DBUS_METHOD_INVOCATION, G_TYPE_STRV);
  signals[SIGNAL_HANDLE_RESOLVE] = g_signal_new (
      "handle-resolve", type, G_SIGNAL_RUN_LAST, 0, g_signal_accumulator_true_handled, NULL, NULL,
      G_TYPE_BOOLEAN, 3, MD_TYPE_PEER_CONNECTION, G_TYPE_DBUS_METHOD_INVOCATION, G_TYPE_STRING);
  signals[SIGNAL_HANDLE_RECOVER] =
      g_signal_new ("handle-recover", type, G_SIGNAL_RUN_LAST, 0, g_signal_accumulator_true_handled,
                    NULL, NULL, G_TYPE_BOOLEAN, 4, MD_TYPE_PEER_CONNECTION,
                    G_TYPE_DBUS_METHOD_INVOCATION, G_TYPE_STRING, G_TYPE_VARIANT);
}

GTlsDatabase *
md_peer_load_ca (MdPeerConfig *cfg, GError **error)
{
  g_autofree char *path = md_peer_tls_path (cfg, MD_PEER_CA_CERT);
  GTlsDatabase *db = g_tls_file_database_new (path, error);

  if (db == NULL)
    {
      g_prefix_error (error, "cannot load the CA certificate %s: ", path);
      return NULL;
    }
  return db;
}

GTlsCertificate *
md_peer_load_cert (MdPeerConfig *cfg, const char *cert_file, const char *key_file, GError **error)
{
  g_autofree char *cert_path = md_peer_tls_path (cfg, cert_file);
  g_autofree char *key_path = md_peer_tls_path (cfg, key_file);
  GTlsCertificate *cert = g_tls_certificate_new_from_files (cert_path, key_path, error);

  if (cert == NULL)
    g_prefix_error (error, "cannot load the certificate %s with key %s: ", cert_path, key_path);
  return cert;
}

void
md_peer_set_config_error (GError **error, GError *cause, MdPeerConfig *cfg)
{
  g_set_error (error, MD_ERROR, MD_ERROR_TLS_FAILED,
               "%s; create the TLS files with migrationd-tls-setup and copy the host's directory "
               "to %s",
               cause->message, cfg->tls_dir);
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
