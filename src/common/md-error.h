/* migrationd: the one error domain, registered with D-Bus error names. */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

#define MD_ERROR (md_error_quark ())

/* Keep in sync with md_error_entries[] in md-error.c; the D-Bus name of
 * each code is org.migrationd.Error.<CamelCaseName>. */
typedef enum
{
  MD_ERROR_FAILED,                    /* Failed */
  MD_ERROR_NOT_AUTHORIZED,            /* NotAuthorized */
  MD_ERROR_NOT_AUTHORIZED_CAN_OBTAIN, /* NotAuthorizedCanObtain */
  MD_ERROR_NOT_AUTHORIZED_DISMISSED,  /* NotAuthorizedDismissed */
  MD_ERROR_INVALID_ARGUMENT,          /* InvalidArgument */
  MD_ERROR_INVALID_XML,               /* InvalidXML */
  MD_ERROR_NOT_FOUND,                 /* NotFound */
  MD_ERROR_ALREADY_EXISTS,            /* AlreadyExists */
  MD_ERROR_INVALID_STATE,             /* InvalidState */
  MD_ERROR_NOT_SUPPORTED,             /* NotSupported */
  MD_ERROR_CANCELLED,                 /* Cancelled */
  MD_ERROR_PEER_FAILED,               /* PeerFailed */
  MD_ERROR_QEMU_FAILED,               /* QemuFailed */
  MD_ERROR_TIMEOUT,                   /* Timeout */
  MD_ERROR_TLS_FAILED,                /* TLSFailed */
  MD_ERROR_STORAGE_FAILED,            /* StorageFailed */
  MD_ERROR_CONFIG,                    /* Config */
} MdError;

#define MD_ERROR_N_CODES (MD_ERROR_CONFIG + 1)

GQuark md_error_quark (void);

/* The D-Bus error name of @code, e.g. "org.migrationd.Error.NotFound". */
const char *md_error_code_to_dbus_name (MdError code);

/* Convert an error from another domain (GIO, GTlsError, GDBus remote errors
 * that carry one of our names, libxml2/gnutls wrapped by their modules) into
 * MD_ERROR, keeping the message. Errors already in MD_ERROR are copied.
 * @fallback is the code used when nothing more specific fits. */
GError *md_error_convert (const GError *error, MdError fallback);

/* Answers @invocation with @error (taken), converted to MD_ERROR so the
 * caller sees one of our D-Bus names. Returns
 * G_DBUS_METHOD_INVOCATION_HANDLED, for use as a handler's return. */
gboolean md_error_return (GDBusMethodInvocation *invocation, GError *error);

/* Prefix @error's message with a context string, e.g. "host B, Prepare: ". */
void md_error_prefix (GError **error, const char *format, ...) G_GNUC_PRINTF (2, 3);

/* Set from a gnutls return code, naming the operation. */
void md_error_set_gnutls (GError **error, int gnutls_rc, const char *what);

G_END_DECLS
