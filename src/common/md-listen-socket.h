/* migrationd: listening sockets the daemon binds itself and hands to
 * QEMU (getfd + a "fd" socket address, or an inherited fd), so no port is
 * probed, released and bound again later by someone else. */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* Binds a TCP socket on @address (an IP literal) and listens on it: on
 * port @wanted, or when @wanted is 0 on the first port of [@min, @max]
 * that is free. The socket is close-on-exec. Errors: G_IO_ERROR_ADDRESS_IN_USE
 * when @wanted (or every port of the range) is taken,
 * G_IO_ERROR_INVALID_ARGUMENT for an address that is not an IP literal,
 * other G_IO_ERRORs as bind/listen failed. */
GSocket *md_listen_socket_bind (const char *address, guint16 wanted, guint16 min, guint16 max,
                                GError **error);

/* The port @socket is bound to (0 if it cannot tell). */
guint16 md_listen_socket_get_port (GSocket *socket);

G_END_DECLS
