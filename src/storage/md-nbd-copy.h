/* migrationd: copy (and verify) one disk image between two NBD exports with
 * libnbd's asynchronous API, driven by the GLib main loop. */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

#define MD_NBD_COPY_DEFAULT_CONNECTIONS 4
#define MD_NBD_COPY_DEFAULT_REQUESTS 16
#define MD_NBD_COPY_DEFAULT_REQUEST_SIZE (256 * 1024)
#define MD_NBD_COPY_MAX_CONNECTIONS 16
#define MD_NBD_COPY_MAX_REQUESTS 256
#define MD_NBD_COPY_MAX_REQUEST_SIZE (32 * 1024 * 1024)

typedef enum
{
  MD_NBD_COPY_PHASE_IDLE,
  MD_NBD_COPY_PHASE_CONNECTING,
  MD_NBD_COPY_PHASE_COPYING,
  MD_NBD_COPY_PHASE_FLUSHING,
  MD_NBD_COPY_PHASE_VERIFYING,
  MD_NBD_COPY_PHASE_DONE,
} MdNbdCopyPhase;

#define MD_TYPE_NBD_COPY (md_nbd_copy_get_type ())
G_DECLARE_FINAL_TYPE (MdNbdCopy, md_nbd_copy, MD, NBD_COPY, GObject)

/* Signals:
 *
 * "progress":
 *   void handler (MdNbdCopy *copy, guint64 done, guint64 total, gpointer user_data);
 *   Bytes of the virtual size handled so far in the current phase (copying,
 *   then verifying: see md_nbd_copy_get_phase()) out of the virtual size.
 *   Emitted at most 4 times a second while running, and once more with
 *   done == total when a phase completes. Never goes backwards within a
 *   phase. Handlers must not iterate the main context recursively.
 */

/* @src_uri and @dst_uri are libnbd URIs: nbd://host[:port]/export,
 * nbd+unix:///export?socket=PATH, and nbds:// / nbds+unix:// for TLS (see
 * md_nbd_copy_set_tls_certificates()). The source is only read; the
 * destination must be at least as large as the source. */
MdNbdCopy *md_nbd_copy_new (const char *src_uri, const char *dst_uri);

/* Connections per side (1..MD_NBD_COPY_MAX_CONNECTIONS, default 4). More
 * than one is used only when both servers advertise multi-conn. The copy
 * starts on the first pair; the others join as their handshakes finish,
 * and one the server never completes (qemu-nbd --shared=N with N smaller)
 * is simply not used: see md_nbd_copy_get_connections_used(). */
void md_nbd_copy_set_connections (MdNbdCopy *self, guint connections);
/* Requests in flight per connection (1..MD_NBD_COPY_MAX_REQUESTS, default 16). */
void md_nbd_copy_set_requests (MdNbdCopy *self, guint requests);
/* Largest single read/write (4 KiB..MD_NBD_COPY_MAX_REQUEST_SIZE; default
 * 256 KiB, which measured faster than 1 or 2 MiB in bench/nbd-copy.py).
 * Lowered to the server's maximum block size if that is smaller. */
void md_nbd_copy_set_request_size (MdNbdCopy *self, guint request_size);
/* After copying and flushing, read both images back and compare them. */
void md_nbd_copy_set_verify (MdNbdCopy *self, gboolean verify);
/* Do not copy: only compare the two images (the destination may then be a
 * read-only export). Implies verify. */
void md_nbd_copy_set_verify_only (MdNbdCopy *self, gboolean verify_only);
/* The caller knows the destination reads as zeros everywhere (a fresh image
 * from qemu-img create), so zero ranges of the source are skipped even when
 * the destination server cannot report block status. */
void md_nbd_copy_set_destination_is_zero (MdNbdCopy *self, gboolean is_zero);
/* Directory with ca-cert.pem, client-cert.pem and client-key.pem (QEMU's
 * tls-creds-x509 layout) for nbds:// URIs; the server certificate is
 * verified against the CA and the URI's host name. NULL: libnbd's default. */
void md_nbd_copy_set_tls_certificates (MdNbdCopy *self, const char *dir);
/* Names used in messages: the disk target ("vda") and the source and
 * destination hosts. NULL keeps the default (no disk name; the URI). */
void md_nbd_copy_set_labels (MdNbdCopy *self, const char *disk, const char *src_host,
                             const char *dst_host);

/* Run the copy on the thread-default main context; never blocks it (host
 * names in nbd:// URIs are resolved by libnbd with getaddrinfo(), so use
 * addresses or unix sockets where that matters). One run per object.
 *
 * Errors, all prefixed with "disk NAME: " when a disk label is set:
 *   MD_ERROR_STORAGE_FAILED: connection or TLS failure, size mismatch,
 *     read-only destination, an NBD read/write/zero/flush error (naming the
 *     direction, offset and host), or a verification mismatch (naming the
 *     first differing offset); every failure after writing started says the
 *     destination image is incomplete and must not be used.
 *   MD_ERROR_CANCELLED: @cancellable was cancelled; in-flight requests are
 *     drained (or abandoned after a few seconds) before the callback runs. */
void md_nbd_copy_run_async (MdNbdCopy *self, GCancellable *cancellable,
                            GAsyncReadyCallback callback, gpointer user_data);
gboolean md_nbd_copy_run_finish (MdNbdCopy *self, GAsyncResult *result, GError **error);

MdNbdCopyPhase md_nbd_copy_get_phase (MdNbdCopy *self);
const char *md_nbd_copy_phase_to_string (MdNbdCopyPhase phase);
/* Virtual size of the source (0 until connected). */
guint64 md_nbd_copy_get_bytes_total (MdNbdCopy *self);
/* Bytes the source reports as data (not hole/zero) in base:allocation;
 * all of it when the server cannot report block status. */
guint64 md_nbd_copy_get_bytes_allocated (MdNbdCopy *self);
/* Bytes read from the source and written to the destination as data. */
guint64 md_nbd_copy_get_bytes_copied (MdNbdCopy *self);
/* Bytes made zero on the destination: with write-zeroes requests, or
 * skipped because the destination already reads as zeros there. */
guint64 md_nbd_copy_get_bytes_zeroed (MdNbdCopy *self);
/* Bytes compared by the verify pass. */
guint64 md_nbd_copy_get_bytes_verified (MdNbdCopy *self);
/* Connections per side actually used (0 before connecting). */
guint md_nbd_copy_get_connections_used (MdNbdCopy *self);
/* Microseconds from the start of the run to its end (or to now while it runs). */
gint64 md_nbd_copy_get_elapsed (MdNbdCopy *self);

G_END_DECLS
