/* migrationd: disk images served over NBD by a qemu-storage-daemon, for
 * migrations of shut-off guests (no QEMU runs that could export them). */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

typedef struct
{
  const char *runtime_dir; /* its QMP socket and log go here */
  const char *id;          /* file name prefix, unique per migration */
  /* One export per disk, named by target. */
  const char *const *targets;
  const char *const *paths;
  const char *const *formats;
  gboolean writable;
  /* Listen on a unix socket (path), on a TCP socket already listening
   * (listen_socket: the daemon bound it, the server inherits a copy) or
   * on host:port (TCP); TLS on TCP if tls_dir. */
  const char *unix_path;
  GSocket *listen_socket;
  const char *host;
  guint16 port;
  const char *tls_dir;
} MdNbdServerOptions;

typedef struct _MdNbdServer MdNbdServer;

/* Starts qemu-storage-daemon and completes once it serves (its QMP
 * monitor answers, which it does only after every export is up). */
void md_nbd_server_start_async (const MdNbdServerOptions *options, GCancellable *cancellable,
                                GAsyncReadyCallback callback, gpointer user_data);
MdNbdServer *md_nbd_server_start_finish (GAsyncResult *result, GError **error);

/* Stops it (SIGTERM: a clean exit that flushes the images) and completes
 * when it is gone. */
void md_nbd_server_stop_async (MdNbdServer *server, GAsyncReadyCallback callback,
                               gpointer user_data);
gboolean md_nbd_server_stop_finish (GAsyncResult *result, GError **error);

/* Kills it without waiting, for failure paths. */
void md_nbd_server_free (MdNbdServer *server);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (MdNbdServer, md_nbd_server_free)

G_END_DECLS
