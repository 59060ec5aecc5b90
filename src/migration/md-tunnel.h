/* migrationd: transport=tunnel — a migration's streams (QEMU's main
 * migration channel, its multifd channels, one NBD connection per mirrored
 * disk) carried as TLS data streams through the peer port.
 *
 * Each end joins a data stream to its QEMU through a unix socket that only
 * the daemon and that QEMU can reach: a socket in a 0700 directory of the
 * runtime directory, mode 0600. On the destination QEMU gets the listening
 * socket itself with getfd (no path inside QEMU); on the source QEMU
 * connects to the path (QEMU 7.2's multifd cannot take fds). QEMU's own
 * TLS is off on that leg: the tunnel encrypts, once.
 *
 * An offline migration's disks go the same way: qemu-storage-daemon takes
 * QEMU's place on the destination (it inherits the listening socket), and
 * the daemon's own libnbd copier on the source connects to a socket of a
 * 0700 directory in the runtime directory (md_tunnel_out_new_local()).
 *
 * The destination's Prepare hands out one token per expected stream
 * (md_tunnel_in_describe()); the source presents each on its stream. QEMU
 * 7.2 takes the first connection of an incoming migration as the main
 * channel, so migration streams carry their index and the destination
 * connects them to QEMU in the order the source's QEMU opened them. */
#pragma once

#include "peer/md-data-stream.h"

G_BEGIN_DECLS

/* Start-up: socket directories an earlier daemon left in @dir_parent
 * (its relays died with it) are removed. */
void md_tunnel_remove_stale (const char *dir_parent);

/* A stream broke (@error names it, the host and what happened). */
typedef void (*MdTunnelBroken) (const GError *error, gpointer user_data);

/* ---- destination ---- */

typedef struct _MdTunnelIn MdTunnelIn;

/* @dir_parent: the runtime directory; @tag: unique per migration; @dn:
 * the certificate DN of the peer that prepared it (only it may open the
 * streams); @label: "migration ID" for messages. */
MdTunnelIn *md_tunnel_in_new (MdDataStreamGate *gate, const char *dir_parent, const char *tag,
                              const char *dn, const char *host_name, const char *label,
                              MdTunnelBroken broken, gpointer user_data, GError **error);
/* The listening socket for QEMU's migration channels (1 + @multifd
 * streams), to hand to QEMU with getfd (transfer none). */
GSocket *md_tunnel_in_listen_migration (MdTunnelIn *tunnel, guint multifd, GError **error);
/* The listening socket for QEMU's NBD server, one stream per @targets. */
GSocket *md_tunnel_in_listen_nbd (MdTunnelIn *tunnel, const char *const *targets, GError **error);
/* For Prepare's answer: "tunnel-migration-tokens" (as, by index) and
 * "tunnel-nbd-tokens" (a{ss}, target -> token), added to @builder. */
void md_tunnel_in_describe (MdTunnelIn *tunnel, GVariantBuilder *builder);
/* Streams admitted and joined to QEMU so far (tests, statistics). */
guint md_tunnel_in_get_streams (MdTunnelIn *tunnel);
/* Failure: stops every relay, revokes the tokens, removes the sockets. */
void md_tunnel_in_free (MdTunnelIn *tunnel);
/* Success (postcopy may still be pulling pages): no new streams, the
 * running ones end when QEMU closes them; frees itself after the last. */
void md_tunnel_in_release (MdTunnelIn *tunnel);

/* ---- source ---- */

typedef struct _MdTunnelOut MdTunnelOut;

/* @info: Prepare's answer (the token keys above); @peer_address: the
 * peer port's "host:port". Binds the unix sockets QEMU (@qemu_pid)
 * connects to, in that QEMU's /tmp and owned by its uid. */
MdTunnelOut *md_tunnel_out_new (const MdPeerTlsConfig *cfg, const char *peer_address,
                                const char *peer_name, GPid qemu_pid, const char *tag,
                                const char *label, GVariant *info, MdTunnelBroken broken,
                                gpointer user_data, GError **error);
/* The same for a copier in this daemon (an offline migration's disks):
 * the sockets go in a 0700 directory of @dir_parent (the runtime
 * directory) that only the daemon reaches; no QEMU is involved. */
MdTunnelOut *md_tunnel_out_new_local (const MdPeerTlsConfig *cfg, const char *peer_address,
                                      const char *peer_name, const char *dir_parent,
                                      const char *tag, const char *label, GVariant *info,
                                      MdTunnelBroken broken, gpointer user_data, GError **error);
/* The unix socket path, as the source QEMU (or the local copier) sees it, for its migrate URI /
 * an NBD target's server; NULL when Prepare gave no token for it. */
const char *md_tunnel_out_get_migration_path (MdTunnelOut *tunnel);
const char *md_tunnel_out_get_nbd_path (MdTunnelOut *tunnel, const char *target);
guint md_tunnel_out_get_streams (MdTunnelOut *tunnel);
/* Bytes the NBD streams carried to the peer so far: what the disk
 * mirrors really moved (zero ranges go as a few bytes of request). */
guint64 md_tunnel_out_get_disk_bytes (MdTunnelOut *tunnel);
/* Failure: stops every relay at once and removes the sockets. */
void md_tunnel_out_free (MdTunnelOut *tunnel);
/* Success: no new streams; the running ones drain what QEMU wrote (QEMU
 * reports completed before the relays delivered the last bytes) and the
 * tunnel frees itself after the last. */
void md_tunnel_out_release (MdTunnelOut *tunnel);

G_END_DECLS
