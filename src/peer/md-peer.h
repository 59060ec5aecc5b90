/* migrationd: the daemon-to-daemon channel. TLS 1.3 listener and connector
 * on one port, peer identity by certificate DN allow-list, and the Peer1
 * protocol (D-Bus peer-to-peer over the TLS stream) up to Hello. */
#pragma once

#include <gio/gio.h>

#include "md-dbus-generated.h"

G_BEGIN_DECLS

#define MD_PEER_DEFAULT_PORT 49200
#define MD_PEER_DEFAULT_HANDSHAKE_TIMEOUT 30                /* seconds */
#define MD_PEER_DEFAULT_MAX_MESSAGE_SIZE (16 * 1024 * 1024) /* bytes */
#define MD_PEER_PROTOCOL_VERSION 1
#define MD_PEER_OBJECT_PATH "/org/migrationd/peer"

/* ALPN protocol names. Control carries Peer1; anything else the listener
 * advertises is handed to the "data-stream" signal. */
#define MD_PEER_ALPN_CONTROL "migrationd-control/1"
#define MD_PEER_ALPN_DATA "migrationd-data/1"

/* Everything md-peer needs from the configuration; the listener and the
 * connect calls copy what they keep.
 *
 * @tls_dir holds ca-cert.pem, server-cert.pem, server-key.pem,
 * client-cert.pem, client-key.pem (as QEMU's tls-creds-x509 dir-path).
 *
 * @allowed_dns lists the certificate subject DNs that may connect in, in
 * RFC 4514 form (most specific RDN first, comma-separated), e.g.
 * "CN=hostB,O=migrationd": what `certtool -i` shows as "Subject:" and
 * migrationd-tls-setup prints. (GLib's g_tls_certificate_get_subject_name()
 * lists the RDNs the other way round, "O=migrationd,CN=hostB"; md-peer reads
 * the DN with gnutls instead, so the certtool form is the one that counts.)
 * Whitespace around ',' and '=' is ignored when comparing; otherwise the
 * match is exact and case-sensitive. NULL or empty: nobody may connect. */
typedef struct
{
  const char *tls_dir;
  const char *const *allowed_dns;
  const char *host_uuid;
  const char *host_name;
  guint handshake_timeout; /* seconds; 0: MD_PEER_DEFAULT_HANDSHAKE_TIMEOUT */
  gsize max_message_size;  /* bytes; 0: MD_PEER_DEFAULT_MAX_MESSAGE_SIZE */
  guint peer_timeout;      /* seconds without a sign of life before a connection
                            * counts as lost; 0: MD_PEER_DEFAULT_LIVENESS_TIMEOUT */
} MdPeerTlsConfig;

/* DN normalisation used for the allow-list comparison. */
char *md_peer_normalize_dn (const char *dn);

/* MdPeerConnection: one authenticated control connection, either end. */
#define MD_TYPE_PEER_CONNECTION (md_peer_connection_get_type ())
G_DECLARE_FINAL_TYPE (MdPeerConnection, md_peer_connection, MD, PEER_CONNECTION, GObject)

/* "host:port" (or "[v6]:port") of the other end. */
const char *md_peer_connection_get_address (MdPeerConnection *self);
/* The other end's certificate subject DN. */
const char *md_peer_connection_get_dn (MdPeerConnection *self);
/* From Hello; NULL before Hello completed. */
const char *md_peer_connection_get_host_uuid (MdPeerConnection *self);
const char *md_peer_connection_get_host_name (MdPeerConnection *self);
guint md_peer_connection_get_version (MdPeerConnection *self);
const char *const *md_peer_connection_get_capabilities (MdPeerConnection *self);
/* TRUE on the end that accepted the connection (the destination). */
gboolean md_peer_connection_is_incoming (MdPeerConnection *self);
GDBusConnection *md_peer_connection_get_dbus (MdPeerConnection *self);
/* Outgoing connections: a Peer1 proxy for /org/migrationd/peer on the
 * other end. NULL on incoming connections. */
MdDbusPeer1 *md_peer_connection_get_proxy (MdPeerConnection *self);
gboolean md_peer_connection_is_closed (MdPeerConnection *self);
/* Closes the D-Bus connection and the TLS stream; "closed" follows. */
void md_peer_connection_close (MdPeerConnection *self);

/* Signals:
 *   "closed" (void): the connection is gone (either end closed it, the
 *     network dropped, the peer said nothing for peer_timeout seconds
 *     (md-peer-liveness.h) or an oversized message arrived). Emitted once. */

/* MdPeerListener: the peer port. */
#define MD_TYPE_PEER_LISTENER (md_peer_listener_get_type ())
G_DECLARE_FINAL_TYPE (MdPeerListener, md_peer_listener, MD, PEER_LISTENER, GObject)

/* Loads the server certificate and CA from @cfg->tls_dir. */
MdPeerListener *md_peer_listener_new (const MdPeerTlsConfig *cfg, GError **error);
/* @address: an IP literal, or NULL for all addresses; @port 0 picks one. */
gboolean md_peer_listener_listen (MdPeerListener *self, const char *address, guint16 port,
                                  GError **error);
/* The port of the last successful listen(), 0 before. */
guint16 md_peer_listener_get_port (MdPeerListener *self);
/* Replaces the DNs allowed to connect (Manager1.AddPeer/RemovePeer). */
void md_peer_listener_set_allowed_dns (MdPeerListener *self, const char *const *allowed_dns);
/* Stops accepting and drops handshakes in progress (each holds a reference
 * on the listener until it ends); established connections stay until the
 * listener is disposed, which closes them. */
void md_peer_listener_stop (MdPeerListener *self);
/* Live incoming connections that completed Hello (transfer none). */
GList *md_peer_listener_get_connections (MdPeerListener *self);

/* Signals:
 *   "new-connection" (MdPeerConnection *conn): an incoming control
 *     connection passed TLS, the DN allow-list and Hello. The listener
 *     keeps a reference until the connection closes.
 *   "peer-refused" (const char *address, const char *reason): a connection
 *     was refused (also logged), e.g. "certificate DN 'CN=x' not in [tls]
 *     allowed-dns", "certificate signed by an unknown CA", "certificate
 *     expired", "plaintext/not TLS".
 *   "data-stream" (GIOStream *stream, const char *alpn, const char *dn)
 *     -> gboolean: an authenticated TLS stream that negotiated another
 *     protocol than control (MD_PEER_ALPN_DATA). Return TRUE to take it (ref
 *     it); unhandled streams are closed.
 *   Peer1 calls after Hello, forwarded to the owner; each handler returns
 *   TRUE when it took the invocation (like gdbus-codegen's handle-*), and
 *   unhandled calls answer org.migrationd.Error.NotSupported:
 *   "handle-prepare" (MdPeerConnection *, GDBusMethodInvocation *,
 *       const char *migration_id, const char *xml, GVariant *options)
 *   "handle-finish" (MdPeerConnection *, GDBusMethodInvocation *,
 *       const char *migration_id, gboolean success, GVariant *options)
 *   "handle-abort" (MdPeerConnection *, GDBusMethodInvocation *,
 *       const char *migration_id, const char *reason)
 *   "handle-check-paths" (MdPeerConnection *, GDBusMethodInvocation *,
 *       const char *const *paths)
 *   Answer with md_dbus_peer1_complete_*(NULL, invocation, ...). */

/* Connects to @host_and_port ("host", "host:port", "[v6]:port"; default
 * port 49200), authenticates with client-cert.pem, checks the server's
 * certificate against ca-cert.pem and the host name, opens the control
 * D-Bus connection and says Hello. The whole sequence is bounded by
 * @cfg->handshake_timeout. Errors: MD_ERROR_PEER_FAILED, MD_ERROR_TLS_FAILED,
 * MD_ERROR_TIMEOUT, MD_ERROR_INVALID_ARGUMENT (reached this host itself),
 * MD_ERROR_NOT_SUPPORTED (no common protocol version), MD_ERROR_CANCELLED. */
void md_peer_connect_async (const MdPeerTlsConfig *cfg, const char *host_and_port,
                            GCancellable *cancellable, GAsyncReadyCallback callback,
                            gpointer user_data);
MdPeerConnection *md_peer_connect_finish (GAsyncResult *result, GError **error);

/* A further TLS stream to the peer port for bulk data, with the same
 * checks, negotiating @alpn (e.g. MD_PEER_ALPN_DATA). */
void md_peer_open_data_stream_async (const MdPeerTlsConfig *cfg, const char *host_and_port,
                                     const char *alpn, GCancellable *cancellable,
                                     GAsyncReadyCallback callback, gpointer user_data);
GIOStream *md_peer_open_data_stream_finish (GAsyncResult *result, GError **error);

G_END_DECLS
