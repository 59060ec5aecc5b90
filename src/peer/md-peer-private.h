/* migrationd: what md-peer.c (listener, connections) and md-peer-connect.c
 * (outgoing side) share. Not for other modules: use md-peer.h. */
#pragma once

#include "md-peer.h"

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

G_END_DECLS
