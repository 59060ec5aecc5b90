/* migrationd: what md-peer.c (listener, connections) and md-peer-connect.c
 * (outgoing side) share. Not for other modules: use md-peer.h. */
#pragma once

#include "md-peer.h"
#include "md-peer-liveness.h"

G_BEGIN_DECLS

/* Files in the TLS directory, as QEMU's tls-creds-x509 names them. */
#define MD_PEER_CA_CERT "ca-cert.pem"
#define MD_PEER_SERVER_CERT "server-cert.pem"
#define MD_PEER_SERVER_KEY "server-key.pem"
#define MD_PEER_CLIENT_CERT "client-cert.pem"
#define MD_PEER_CLIENT_KEY "client-key.pem"

/* First bytes a listener sends, in plain text, to a connection it drops
 * at a load cap before TLS started ("MIGRATIOND-BUSY host B: why\n"). */
#define MD_PEER_BUSY_LINE "MIGRATIOND-BUSY"

/* Configuration copy, shared by the listener, its connections and the
 * connect operations. */

typedef struct
{
  char *tls_dir;
  GStrv allowed_dns; /* normalised */
  char *host_uuid;
  char *host_name;
  guint timeout;
  gsize max_message_size;
  guint liveness_timeout; /* s */
} MdPeerConfig;

MdPeerConfig *md_peer_config_new (const MdPeerTlsConfig *in);
MdPeerConfig *md_peer_config_ref (MdPeerConfig *cfg);
void md_peer_config_unref (MdPeerConfig *cfg);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MdPeerConfig, md_peer_config_unref)

char *md_peer_tls_path (MdPeerConfig *cfg, const char *file);
GTlsDatabase *md_peer_load_ca (MdPeerConfig *cfg, GError **error);
GTlsCertificate *md_peer_load_cert (MdPeerConfig *cfg, const char *cert_file, const char *key_file,
                                    GError **error);
/* MD_ERROR_TLS_FAILED from a loading error, saying how to make the files. */
void md_peer_set_config_error (GError **error, GError *cause, MdPeerConfig *cfg);

char *md_peer_cert_subject_dn (GTlsCertificate *cert);
/* Whether @dn (as md_peer_cert_subject_dn gives it) is on the allow-list. */
gboolean md_peer_dn_allowed (MdPeerConfig *cfg, const char *dn);
const char *md_peer_cert_flags_reason (GTlsCertificateFlags flags);
char *md_peer_address_to_string (GSocketAddress *address);
gboolean md_peer_allow_anonymous_only (GDBusAuthObserver *observer, const char *mechanism,
                                       gpointer user_data);

MdPeerConnection *md_peer_connection_new_internal (GDBusConnection *dbus, const char *address,
                                                   const char *dn, gboolean incoming,
                                                   gsize max_message_size, guint liveness_timeout);
void md_peer_connection_set_identity (MdPeerConnection *self, guint version, const char *uuid,
                                      const char *name, GVariant *info);
void md_peer_connection_set_proxy (MdPeerConnection *self, MdDbusPeer1 *proxy);

/* Shared by md-peer.c (connections), md-peer-skeleton.c (Peer1 calls)
 * and md-peer-listener.c (the port). */
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
  MD_PEER_LISTENER_SIGNAL_NEW_CONNECTION,
  MD_PEER_LISTENER_SIGNAL_PEER_REFUSED,
  MD_PEER_LISTENER_SIGNAL_DATA_STREAM,
  MD_PEER_LISTENER_SIGNAL_HANDLE_PREPARE,
  MD_PEER_LISTENER_SIGNAL_HANDLE_FINISH,
  MD_PEER_LISTENER_SIGNAL_HANDLE_ABORT,
  MD_PEER_LISTENER_SIGNAL_HANDLE_CHECK_PATHS,
  MD_PEER_LISTENER_SIGNAL_HANDLE_RESOLVE,
  MD_PEER_LISTENER_SIGNAL_HANDLE_RECOVER,
  MD_PEER_LISTENER_N_SIGNALS
};

extern guint md_peer_listener_signals[MD_PEER_LISTENER_N_SIGNALS];

/* Logs a refused connection and emits "peer-refused". */
void md_peer_listener_refuse (MdPeerListener *self, const char *address, const char *reason);

/* md-peer-skeleton.c: the Peer1 object exported on an incoming connection. */
#define MD_TYPE_PEER_SKELETON (md_peer_skeleton_get_type ())
G_DECLARE_FINAL_TYPE (MdPeerSkeleton, md_peer_skeleton, MD, PEER_SKELETON, MdDbusPeer1Skeleton)
GDBusInterfaceSkeleton *md_peer_skeleton_new (MdPeerConnection *conn, MdPeerConfig *cfg);
/* An invocation in flight may outlive the connection: forget it. */
void md_peer_skeleton_detach (GDBusInterfaceSkeleton *skeleton);

G_END_DECLS
