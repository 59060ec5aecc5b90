/* migrationd: authenticated peer connections kept open between
 * migrations to the same peer, so a later migration skips the TCP + TLS
 * handshake and Hello (a fifth of a second on a LAN). A connection is
 * lent to one migration at a time and closed after a while unused. */
#pragma once

#include "md-peer.h"

G_BEGIN_DECLS

typedef struct _MdPeerPool MdPeerPool;

/* Idle connections are closed after @idle_seconds. */
MdPeerPool *md_peer_pool_new (guint idle_seconds);
void md_peer_pool_free (MdPeerPool *pool);

/* An open connection to @address (as given to md_peer_connect_async), now
 * the caller's, or NULL. */
MdPeerConnection *md_peer_pool_take (MdPeerPool *pool, const char *address);
/* The caller is done with @conn (which must be open and quiet: no call
 * pending, no handler of the caller's left); the pool keeps it. */
void md_peer_pool_give_back (MdPeerPool *pool, const char *address, MdPeerConnection *conn);

G_END_DECLS
