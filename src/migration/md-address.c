/* migrationd: migration endpoints as one tagged structure, and the one
 * function that renders them for QEMU. See md-address.h. */
#include "config.h"

#include "md-address.h"
#include "common/md-error.h"

#include <gio/gio.h>
#include <string.h>

#define UNIX_PATH_MAX 107 /* sizeof (sun_path) - 1 */
#define FD_NAME_MAX 64

static gboolean
is_host_label (const char *label, gsize length)
{
  if (length == 0 || length > 63 || label[0] == '-' || label[length - 1] == '-')
    return FALSE;
  for (gsize i = 0; i < length; i++)
    if (!g_ascii_isalnum (label[i]) && label[i] != '-')
      return FALSE;
  return TRUE;
}

static gboolean
is_host_name (const char *text)
{
  const char *start = text;

  if (strlen (text) > MD_ADDRESS_HOST_MAX)
    return FALSE;
  for (;;)
    {
      const char *dot = strchr (start, '.');
      gsize length = dot != NULL ? (gsize) (dot - start) : strlen (start);

      if (!is_host_label (start, length))
        return FALSE;
      if (dot == NULL)
        return TRUE;
      start = dot + 1;
    }
}

/* The first character a host name never has, for the message. */
static char
first_bad_char (const char *text)
{
  for (const char *p = text; *p != '\0'; p++)
    if (!g_ascii_isalnum (*p) && *p != '-' && *p != '.' && *p != ':')
      return *p;
  return '\0';
}

char *
md_address_parse_host (const char *text, const char *what, GError **error)
{
  g_autofree char *host = NULL;
  gsize length;
  char bad;

  if (text == NULL || *text == '\0')
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "%s is empty; give a host name or "
                   "an IP address",
                   what);
      return NULL;
    }
  length = strlen (text);
  if (length > MD_ADDRESS_HOST_MAX + 2)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "%s is %" G_GSIZE_FORMAT " characters long; a host name has at most %d", what,
                   length, MD_ADDRESS_HOST_MAX);
      return NULL;
    }
  if (text[0] == '[' && text[length - 1] == ']')
    {
      /* Brackets only ever hold an IPv6 literal. */
      host = g_strndup (text + 1, length - 2);
      if (g_hostname_is_ip_address (host) && strchr (host, ':') != NULL)
        return g_steal_pointer (&host);
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "%s '%s': only an IPv6 address goes in brackets", what, text);
      return NULL;
    }
  host = g_strdup (text);
  if (g_hostname_is_ip_address (host))
    return g_steal_pointer (&host);
  if (is_host_name (host))
    return g_steal_pointer (&host);
  bad = first_bad_char (host);
  if (bad != '\0' && g_ascii_isprint (bad))
    g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                 "%s '%s' is neither an IP address nor a host name: '%c' cannot appear in one",
                 what, text, bad);
  else if (bad != '\0')
    g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                 "%s is neither an IP address nor a host name: it contains the control or "
                 "non-ASCII byte 0x%02x",
                 what, (guint) (guchar) bad);
  else
    g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                 "%s '%s' is neither an IP address nor a host name (labels of 1-63 letters, "
                 "digits and inner hyphens, separated by dots)",
                 what, text);
  return NULL;
}

static MdAddress *
address_new (MdAddressTransport transport, MdSocketType socket_type)
{
  MdAddress *address = g_new0 (MdAddress, 1);

  address->transport = transport;
  address->socket_type = socket_type;
  return address;
}

MdAddress *
md_address_new_inet (const char *host, guint16 port, GError **error)
{
  g_autofree char *checked = md_address_parse_host (host, "the migration host", error);
  MdAddress *address;

  if (checked == NULL)
    return NULL;
  if (port == 0)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "migration port 0 is not a port; give 1-65535");
      return NULL;
    }
  address = address_new (MD_ADDRESS_SOCKET, MD_SOCKET_INET);
  address->host = g_steal_pointer (&checked);
  address->port = port;
  return address;
}

MdAddress *
md_address_parse_tcp_uri (const char *uri, GError **error)
{
  g_autofree char *host = NULL;
  const char *rest;
  const char *colon;
  guint64 port = 0;

  if (uri == NULL || !g_str_has_prefix (uri, "tcp:"))
    goto bad;
  rest = uri + 4;
  colon = strrchr (rest, ':');
  if (colon == NULL || colon == rest
      || !g_ascii_string_to_unsigned (colon + 1, 10, 1, 65535, &port, NULL))
    goto bad;
  host = g_strndup (rest, (gsize) (colon - rest));
  /* An IPv6 literal must come in brackets here, or the port is ambiguous. */
  if (strchr (host, ':') != NULL && host[0] != '[')
    goto bad;
  return md_address_new_inet (host, (guint16) port, error);
bad:
  g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
               "'%.80s' is not a tcp:HOST:PORT migration address", uri ? uri : "");
  return NULL;
}

static gboolean
check_printable (const char *text, const char *what, GError **error)
{
  for (const char *p = text; *p != '\0'; p++)
    if (g_ascii_iscntrl (*p))
      {
        g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT, "%s contains a control character",
                     what);
        return FALSE;
      }
  return TRUE;
}

MdAddress *
md_address_new_unix (const char *path, GError **error)
{
  MdAddress *address;

  if (path == NULL || !g_path_is_absolute (path) || strlen (path) > UNIX_PATH_MAX)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "a UNIX socket for migration needs an absolute path of at most %d bytes",
                   UNIX_PATH_MAX);
      return NULL;
    }
  if (!check_printable (path, "the UNIX socket path", error))
    return NULL;
  address = address_new (MD_ADDRESS_SOCKET, MD_SOCKET_UNIX);
  address->path = g_strdup (path);
  return address;
}

/* QEMU takes an all-digit name as an fd number: names start with a
 * letter. */
static gboolean
check_fd_name (const char *name, GError **error)
{
  gsize length = name != NULL ? strlen (name) : 0;

  if (length == 0 || length > FD_NAME_MAX || !g_ascii_isalpha (name[0]))
    goto bad;
  for (gsize i = 0; i < length; i++)
    if (!g_ascii_isalnum (name[i]) && name[i] != '-' && name[i] != '_')
      goto bad;
  return TRUE;
bad:
  g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
               "fd name '%s' must start with a letter and hold at most %d letters, digits, "
               "'-' or '_'",
               name ? name : "", FD_NAME_MAX);
  return FALSE;
}

MdAddress *
md_address_new_fd (const char *fd_name, GError **error)
{
  MdAddress *address;

  if (!check_fd_name (fd_name, error))
    return NULL;
  address = address_new (MD_ADDRESS_SOCKET, MD_SOCKET_FD);
  address->fd_name = g_strdup (fd_name);
  return address;
}

MdAddress *
md_address_new_exec (const char *const *argv, GError **error)
{
  MdAddress *address;

  if (argv == NULL || argv[0] == NULL || !g_path_is_absolute (argv[0]))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "an exec migration address needs an argv whose first word is an absolute "
                   "program path");
      return NULL;
    }
  for (guint i = 0; argv[i] != NULL; i++)
    if (!check_printable (argv[i], "an exec argument", error))
      return NULL;
  address = address_new (MD_ADDRESS_EXEC, MD_SOCKET_INET);
  address->argv = g_strdupv ((char **) argv);
  return address;
}

MdAddress *
md_address_new_file (const char *fd_name, guint64 offset, GError **error)
{
  MdAddress *address;

  if (!check_fd_name (fd_name, error))
    return NULL;
  address = address_new (MD_ADDRESS_FILE, MD_SOCKET_INET);
  address->fd_name = g_strdup (fd_name);
  address->offset = offset;
  return address;
}

void
md_address_free (MdAddress *address)
{
  if (address == NULL)
    return;
  g_free (address->host);
  g_free (address->path);
  g_free (address->fd_name);
  g_strfreev (address->argv);
  g_free (address);
}

static char *
exec_command_line (GStrv argv)
{
  g_autoptr (GString) line = g_string_new (NULL);

  for (guint i = 0; argv[i] != NULL; i++)
    {
      g_autofree char *quoted = g_shell_quote (argv[i]);
      if (i > 0)
        g_string_append_c (line, ' ');
      g_string_append (line, quoted);
    }
  return g_string_free (g_steal_pointer (&line), FALSE);
}

char *
md_address_to_uri (const MdAddress *address, GError **error)
{
  switch (address->transport)
    {
    case MD_ADDRESS_SOCKET:
      switch (address->socket_type)
        {
        case MD_SOCKET_INET:
          return strchr (address->host, ':') != NULL
                     ? g_strdup_printf ("tcp:[%s]:%u", address->host, address->port)
                     : g_strdup_printf ("tcp:%s:%u", address->host, address->port);
        case MD_SOCKET_UNIX:
          return g_strdup_printf ("unix:%s", address->path);
        case MD_SOCKET_FD:
          return g_strdup_printf ("fd:%s", address->fd_name);
        }
      break;
    case MD_ADDRESS_EXEC:
      {
        /* QEMU 7.2 hands this to /bin/sh -c: every word quoted, so the
         * argv arrives as given. */
        g_autofree char *line = exec_command_line (address->argv);
        return g_strconcat ("exec:", line, NULL);
      }
    case MD_ADDRESS_FILE:
      /* No file: URI before QEMU 8.2; QEMU writes or reads an fd from its
       * current position, which the caller put at @offset. */
      return g_strdup_printf ("fd:%s", address->fd_name);
    }
  g_set_error (error, MD_ERROR, MD_ERROR_NOT_SUPPORTED, "unknown migration address kind %d",
               (int) address->transport);
  return NULL;
}

JsonObject *
md_address_to_qapi (const MdAddress *address)
{
  JsonObject *obj = json_object_new ();

  switch (address->transport)
    {
    case MD_ADDRESS_SOCKET:
      json_object_set_string_member (obj, "transport", "socket");
      if (address->socket_type == MD_SOCKET_INET)
        {
          g_autofree char *port = g_strdup_printf ("%u", address->port);
          json_object_set_string_member (obj, "type", "inet");
          json_object_set_string_member (obj, "host", address->host);
          json_object_set_string_member (obj, "port", port);
        }
      else if (address->socket_type == MD_SOCKET_UNIX)
        {
          json_object_set_string_member (obj, "type", "unix");
          json_object_set_string_member (obj, "path", address->path);
        }
      else
        {
          json_object_set_string_member (obj, "type", "fd");
          json_object_set_string_member (obj, "str", address->fd_name);
        }
      break;
    case MD_ADDRESS_EXEC:
      {
        JsonArray *args = json_array_new ();
        for (guint i = 0; address->argv[i] != NULL; i++)
          json_array_add_string_element (args, address->argv[i]);
        json_object_set_string_member (obj, "transport", "exec");
        json_object_set_array_member (obj, "args", args);
        break;
      }
    case MD_ADDRESS_FILE:
      {
        /* QEMU 8.2+ opens the file itself; an fd passed with add-fd is
         * named /dev/fdset/N there. */
        g_autofree char *filename = g_strdup_printf ("/dev/fdset/%s", address->fd_name);
        json_object_set_string_member (obj, "transport", "file");
        json_object_set_string_member (obj, "filename", filename);
        json_object_set_int_member (obj, "offset", (gint64) address->offset);
        break;
      }
    }
  return obj;
}
