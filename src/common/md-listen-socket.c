/* migrationd: listening sockets bound by the daemon (see the header). */
#include "config.h"

#include "md-listen-socket.h"

static GSocket *
bind_one (GInetAddress *inet, guint16 port, GError **error)
{
  g_autoptr (GSocket) socket = NULL;
  g_autoptr (GSocketAddress) address = g_inet_socket_address_new (inet, port);

  socket = g_socket_new (g_inet_address_get_family (inet), G_SOCKET_TYPE_STREAM,
                         G_SOCKET_PROTOCOL_TCP, error);
  if (socket == NULL)
    return NULL;
  /* allow_reuse: a port whose last connection is in TIME_WAIT is free for
   * a listener; a port someone listens on is not. Listening at once
   * closes the gap in which another SO_REUSEADDR socket could bind it. */
  if (!g_socket_bind (socket, address, TRUE, error))
    return NULL;
  g_socket_set_listen_backlog (socket, 16);
  if (!g_socket_listen (socket, error))
    return NULL;
  return g_steal_pointer (&socket);
}

GSocket *
md_listen_socket_bind (const char *address, guint16 wanted, guint16 min, guint16 max,
                       GError **error)
{
  g_autoptr (GInetAddress) inet = g_inet_address_new_from_string (address);
  g_autoptr (GError) last = NULL;

  if (inet == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "'%s' is not an IP address to listen on", address);
      return NULL;
    }
  if (wanted != 0)
    return bind_one (inet, wanted, error);
  for (guint port = min; port <= max && port != 0; port++)
    {
      GSocket *socket;

      g_clear_error (&last);
      socket = bind_one (inet, (guint16) port, &last);
      if (socket != NULL)
        return socket;
      if (!g_error_matches (last, G_IO_ERROR, G_IO_ERROR_ADDRESS_IN_USE))
        {
          g_propagate_error (error, g_steal_pointer (&last));
          return NULL;
        }
    }
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_ADDRESS_IN_USE, "every port of %u-%u on %s is in use",
               min, max, address);
  return NULL;
}

guint16
md_listen_socket_get_port (GSocket *socket)
{
  g_autoptr (GSocketAddress) local = g_socket_get_local_address (socket, NULL);

  if (!G_IS_INET_SOCKET_ADDRESS (local))
    return 0;
  return g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (local));
}
