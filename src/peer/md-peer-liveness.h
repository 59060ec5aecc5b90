/* migrationd: liveness of a peer connection (keepalives and a deadline).
 *
 * A TCP connection whose link is cut says nothing for minutes: a migration
 * waiting on it would wait as long. Each end therefore pings the other
 * (org.freedesktop.DBus.Peer.Ping, which GDBus answers itself) every
 * timeout/5 s and counts any message received as a sign of life; when
 * none came for @timeout seconds the connection is declared dead: the
 * socket is shut down, the GDBus connection closed and @on_dead called
 * (once, on the main context). An outage shorter than the timeout is
 * ridden out: TCP retransmits and the pings get their answers. */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

typedef struct _MdPeerLiveness MdPeerLiveness;

/* Called once when the peer said nothing for the whole timeout; @reason
 * says so in a sentence ("no sign of life from ... for 30 s"). */
typedef void (*MdPeerLivenessDeadFunc) (const char *reason, gpointer user_data);

#define MD_PEER_DEFAULT_LIVENESS_TIMEOUT 30 /* seconds */

/* Starts watching @dbus (a peer-to-peer connection) on the thread-default
 * main context. @label names the peer in messages. @timeout 0 means
 * MD_PEER_DEFAULT_LIVENESS_TIMEOUT. */
MdPeerLiveness *md_peer_liveness_start (GDBusConnection *dbus, const char *label, guint timeout,
                                        MdPeerLivenessDeadFunc on_dead, gpointer user_data);
/* Stops the timer and forgets @on_dead; safe on NULL. */
void md_peer_liveness_stop (MdPeerLiveness *self);

G_END_DECLS
