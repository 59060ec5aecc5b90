/* migrationd: the disk copy of an offline migration — the source's
 * images served read-only by a local NBD server, copied into the
 * destination's NBD exports with the libnbd copier, optionally verified. */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

typedef struct
{
  const char *runtime_dir;
  const char *id; /* unique per migration: names the local server's files */
  const char *const *targets;
  const char *const *paths;
  const char *const *formats;
  const char *dest_host; /* the destination's NBD server */
  guint16 dest_port;
  /* transport=tunnel: per target, a local unix socket whose connections
   * the daemon carries to the destination's NBD server as data streams
   * (one connection per disk, no TLS here: the stream encrypts). Set,
   * it replaces dest_host/dest_port and tls_dir. */
  const char *const *dest_sockets;
  const char *tls_dir;              /* NULL: plaintext */
  const char *const *fresh_targets; /* destination images known all-zero */
  gboolean verify;
  guint64 total_bytes;          /* sum of the virtual sizes, for progress */
  const char *source_host_name; /* for messages */
  const char *dest_host_name;
} MdOfflineCopyOptions;

/* Progress: @done of @total bytes over all disks (copy, then verify). */
typedef void (*MdOfflineCopyProgress) (guint64 done, guint64 total, gpointer user_data);

void md_offline_copy_async (const MdOfflineCopyOptions *options, MdOfflineCopyProgress progress,
                            gpointer progress_data, GCancellable *cancellable,
                            GAsyncReadyCallback callback, gpointer user_data);
/* @bytes_copied: data actually moved (holes and zeros skipped). */
gboolean md_offline_copy_finish (GAsyncResult *result, guint64 *bytes_copied, GError **error);

G_END_DECLS
