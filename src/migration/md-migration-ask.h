/* migrationd: asking the peer what became of a migration (Peer1.Resolve),
 * for a source that lost the peer at the switch-over or restarted with the
 * migration open in its journal. */
#pragma once

#include "peer/md-peer.h"

G_BEGIN_DECLS

/* Connects to @address (retrying while the peer is unreachable or
 * restarting, and asking again while it answers "pending") for up to
 * @timeout_s seconds, and returns the peer's outcome: "running",
 * "aborted" or "unknown" (see Peer1.Resolve). MD_ERROR_TIMEOUT (with the
 * last error) when the peer never gave a definite answer. */
void md_migration_ask_peer_async (const MdPeerTlsConfig *tls, const char *address, const char *id,
                                  guint timeout_s, GCancellable *cancellable,
                                  GAsyncReadyCallback callback, gpointer user_data);
char *md_migration_ask_peer_finish (GAsyncResult *result, GError **error);

G_END_DECLS
