/* migrationd: error domain with D-Bus names; conversion at the boundary. */
#include "config.h"

#include "md-error.h"

#include <gnutls/gnutls.h>
#include <stdarg.h>

static const GDBusErrorEntry md_error_entries[] = {
  { MD_ERROR_FAILED, "org.migrationd.Error.Failed" },
  { MD_ERROR_NOT_AUTHORIZED, "org.migrationd.Error.NotAuthorized" },
  { MD_ERROR_NOT_AUTHORIZED_CAN_OBTAIN, "org.migrationd.Error.NotAuthorizedCanObtain" },
  { MD_ERROR_NOT_AUTHORIZED_DISMISSED, "org.migrationd.Error.NotAuthorizedDismissed" },
  { MD_ERROR_INVALID_ARGUMENT, "org.migrationd.Error.InvalidArgument" },
  { MD_ERROR_INVALID_XML, "org.migrationd.Error.InvalidXML" },
  { MD_ERROR_NOT_FOUND, "org.migrationd.Error.NotFound" },
  { MD_ERROR_ALREADY_EXISTS, "org.migrationd.Error.AlreadyExists" },
  { MD_ERROR_INVALID_STATE, "org.migrationd.Error.InvalidState" },
  { MD_ERROR_NOT_SUPPORTED, "org.migrationd.Error.NotSupported" },
  { MD_ERROR_CANCELLED, "org.migrationd.Error.Cancelled" },
  { MD_ERROR_PEER_FAILED, "org.migrationd.Error.PeerFailed" },
  { MD_ERROR_QEMU_FAILED, "org.migrationd.Error.QemuFailed" },
  { MD_ERROR_TIMEOUT, "org.migrationd.Error.Timeout" },
  { MD_ERROR_TLS_FAILED, "org.migrationd.Error.TLSFailed" },
  { MD_ERROR_STORAGE_FAILED, "org.migrationd.Error.StorageFailed" },
  { MD_ERROR_CONFIG, "org.migrationd.Error.Config" },
};

G_STATIC_ASSERT (G_N_ELEMENTS (md_error_entries) == MD_ERROR_N_CODES);

GQuark
md_error_quark (void)
{
  static gsize quark = 0;

  g_dbus_error_register_error_domain ("md-error-quark", &quark, md_error_entries,
                                      G_N_ELEMENTS (md_error_entries));
  return (GQuark) quark;
}

const char *
md_error_code_to_dbus_name (MdError code)
{
  g_return_val_if_fail (code >= 0 && code < MD_ERROR_N_CODES, NULL);
  return md_error_entries[code].dbus_error_name;
}

static MdError
code_for_io_error (int code, MdError fallback)
{
  switch (code)
    {
    case G_IO_ERROR_NOT_FOUND:
      return MD_ERROR_NOT_FOUND;
    case G_IO_ERROR_EXISTS:
      return MD_ERROR_ALREADY_EXISTS;
    case G_IO_ERROR_INVALID_ARGUMENT:
    case G_IO_ERROR_INVALID_DATA:
    case G_IO_ERROR_INVALID_FILENAME:
      return MD_ERROR_INVALID_ARGUMENT;
    case G_IO_ERROR_NOT_SUPPORTED:
      return MD_ERROR_NOT_SUPPORTED;
    case G_IO_ERROR_CANCELLED:
      return MD_ERROR_CANCELLED;
    case G_IO_ERROR_TIMED_OUT:
      return MD_ERROR_TIMEOUT;
    case G_IO_ERROR_PERMISSION_DENIED:
      return MD_ERROR_NOT_AUTHORIZED;
    case G_IO_ERROR_CONNECTION_REFUSED:
    case G_IO_ERROR_HOST_NOT_FOUND:
    case G_IO_ERROR_HOST_UNREACHABLE:
    case G_IO_ERROR_NETWORK_UNREACHABLE:
    case G_IO_ERROR_BROKEN_PIPE:
      return MD_ERROR_PEER_FAILED;
    default:
      return fallback;
    }
}

GError *
md_error_convert (const GError *error, MdError fallback)
{
  g_return_val_if_fail (error != NULL, NULL);

  /* A remote error with one of our names already carries our code (the
   * domain is registered) but also GDBus's "GDBus.Error:name: " prefix,
   * which users must not see. */
  if (error->domain == MD_ERROR)
    {
      GError *copy = g_error_copy (error);
      g_dbus_error_strip_remote_error (copy);
      return copy;
    }

  /* A remote error whose name is ours maps back to its code; this is how
   * errors from the peer daemon keep their identity. */
  if (g_dbus_error_is_remote_error (error))
    {
      g_autofree char *name = g_dbus_error_get_remote_error (error);
      g_autoptr (GError) copy = g_error_copy (error);

      g_dbus_error_strip_remote_error (copy);
      for (guint i = 0; i < G_N_ELEMENTS (md_error_entries); i++)
        if (g_strcmp0 (name, md_error_entries[i].dbus_error_name) == 0)
          return g_error_new_literal (MD_ERROR, md_error_entries[i].error_code, copy->message);
      return g_error_new (MD_ERROR, fallback, "%s (%s)", copy->message, name);
    }

  if (error->domain == G_IO_ERROR)
    return g_error_new_literal (MD_ERROR, code_for_io_error (error->code, fallback),
                                error->message);
  if (error->domain == G_TLS_ERROR)
    return g_error_new_literal (MD_ERROR, MD_ERROR_TLS_FAILED, error->message);
  if (error->domain == G_KEY_FILE_ERROR)
    return g_error_new_literal (MD_ERROR, MD_ERROR_CONFIG, error->message);
  if (error->domain == G_FILE_ERROR)
    {
      MdError code = fallback;
      if (error->code == G_FILE_ERROR_NOENT)
        code = MD_ERROR_NOT_FOUND;
      else if (error->code == G_FILE_ERROR_EXIST)
        code = MD_ERROR_ALREADY_EXISTS;
      else if (error->code == G_FILE_ERROR_ACCES || error->code == G_FILE_ERROR_PERM)
        code = MD_ERROR_NOT_AUTHORIZED;
      return g_error_new_literal (MD_ERROR, code, error->message);
    }
  if (error->domain == G_DBUS_ERROR)
    {
      MdError code = fallback;
      if (error->code == G_DBUS_ERROR_INVALID_ARGS)
        code = MD_ERROR_INVALID_ARGUMENT;
      else if (error->code == G_DBUS_ERROR_ACCESS_DENIED)
        code = MD_ERROR_NOT_AUTHORIZED;
      else if (error->code == G_DBUS_ERROR_TIMEOUT || error->code == G_DBUS_ERROR_TIMED_OUT
               || error->code == G_DBUS_ERROR_NO_REPLY)
        code = MD_ERROR_TIMEOUT;
      else if (error->code == G_DBUS_ERROR_DISCONNECTED)
        code = MD_ERROR_PEER_FAILED;
      return g_error_new_literal (MD_ERROR, code, error->message);
    }
  return g_error_new_literal (MD_ERROR, fallback, error->message);
}

void
md_error_prefix (GError **error, const char *format, ...)
{
  va_list args;
  g_autofree char *prefix = NULL;

  if (error == NULL || *error == NULL)
    return;
  va_start (args, format);
  prefix = g_strdup_vprintf (format, args);
  va_end (args);
  g_prefix_error (error, "%s", prefix);
}

void
md_error_set_gnutls (GError **error, int gnutls_rc, const char *what)
{
  g_set_error (error, MD_ERROR, MD_ERROR_TLS_FAILED, "%s: %s (gnutls %s)", what,
               gnutls_strerror (gnutls_rc), gnutls_strerror_name (gnutls_rc));
}

gboolean
md_error_return (GDBusMethodInvocation *invocation, GError *error)
{
  g_autoptr (GError) owned = error;
  g_autoptr (GError) converted = md_error_convert (owned, MD_ERROR_FAILED);

  g_dbus_method_invocation_return_gerror (invocation, converted);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}
