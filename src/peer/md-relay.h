/* migrationd: the relay of a tunnel data stream. Joins an authenticated
 * TLS stream to the peer with a local socket to QEMU, in both directions,
 * on two threads of its own: the bulk copy (and the TLS record work) never
 * runs on the main loop.
 *
 * Why threads and not splice(): the TLS leg is encrypted in user space
 * (GnuTLS under GTlsConnection), so every byte passes through a buffer
 * anyway; a thread per direction with 1 MiB buffers keeps the copies to
 * one read and one write per chunk and lets the two directions and several
 * streams use several CPUs. */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

typedef enum
{
  MD_RELAY_CLEAN,      /* both directions ended with an orderly end of stream */
  MD_RELAY_PEER_ENDED, /* orderly, but the peer's side ended before QEMU's */
  MD_RELAY_FAILED,     /* an error; see the GError */
} MdRelayEnd;

typedef struct _MdRelay MdRelay;

/* @how, @error (NULL unless MD_RELAY_FAILED), and the byte counts. Runs
 * in the main context that was current at md_relay_start(). */
typedef void (*MdRelayDone) (MdRelay *relay, MdRelayEnd how, const GError *error,
                             gpointer user_data);

/* Starts relaying between @tls (a connected data stream; the relay keeps
 * a reference) and @local_fd (a connected stream socket; the relay owns
 * and closes it). @label names the stream in errors and logs
 * ("migration stream 0 of migration X"). @done runs once, unless
 * md_relay_stop() came first. */
MdRelay *md_relay_start (GIOStream *tls, int local_fd, const char *label, MdRelayDone done,
                         gpointer user_data);

/* Ends both directions now (shuts both sockets down) without calling
 * @done, and drops the caller's reference. The threads finish on their
 * own and free what is left. */
void md_relay_stop (MdRelay *relay);

const char *md_relay_get_label (MdRelay *relay);
/* Bytes copied so far towards the peer and towards QEMU. */
guint64 md_relay_get_bytes_out (MdRelay *relay);
guint64 md_relay_get_bytes_in (MdRelay *relay);
/* Both directions ended in order, but the peer's first: it closed the
 * stream while the local side still had it open (MD_RELAY_CLEAN says
 * nothing about the order). For a local client that always ends its
 * connections itself (an NBD client), that is a broken stream. */
gboolean md_relay_peer_ended_first (MdRelay *relay);

G_END_DECLS
