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

gboolean
md_peer_dn_allowed (MdPeerConfig *cfg, const char *dn)
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
      md_peer_skeleton_detach (self->skeleton);
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
