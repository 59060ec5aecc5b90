/* migrationd: migration endpoints as one tagged structure.
 *
 * Every place a migration stream goes (a live migration's TCP or UNIX
 * socket, an fd handed to QEMU with getfd for a save or restore, an exec
 * argv, a file fd with an offset) is an MdAddress. User input is parsed
 * into one and validated here; QEMU's URI syntax is produced in exactly one
 * function, md_address_to_uri(), and nothing is ever assembled by
 * concatenating user strings or run through a shell.
 *
 * The variants follow QEMU's MigrateAddress union (QEMU 8.2 and later,
 * "channels" of migrate / migrate-incoming): md_address_to_qapi() builds
 * that form, so the newer API can replace the URI where QEMU has it. */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

typedef enum
{
  MD_ADDRESS_SOCKET, /* MigrateAddress transport "socket" */
  MD_ADDRESS_EXEC,   /* transport "exec" */
  MD_ADDRESS_FILE,   /* transport "file" */
} MdAddressTransport;

typedef enum
{
  MD_SOCKET_INET, /* SocketAddress type "inet" */
  MD_SOCKET_UNIX, /* type "unix" */
  MD_SOCKET_FD,   /* type "fd": a name given to QEMU with getfd */
} MdSocketType;

typedef struct
{
  MdAddressTransport transport;
  MdSocketType socket_type; /* MD_ADDRESS_SOCKET only */
  char *host;               /* inet: hostname, IPv4 or IPv6 literal (no brackets) */
  guint16 port;             /* inet */
  char *path;               /* unix */
  char *fd_name;            /* socket fd, and file (QEMU's name of the fd) */
  guint64 offset;           /* file: where the stream starts in the file */
  GStrv argv;               /* exec */
} MdAddress;

/* Longest host name accepted (RFC 1035 total length). */
#define MD_ADDRESS_HOST_MAX 253

/* Checks a host name or IP literal given by a user (a migration-address or
 * nbd-address option, @what names it in the message): an IPv4 or IPv6
 * literal (brackets allowed around IPv6), or an RFC 1123 host name of at
 * most 253 characters. Anything else, shell metacharacters and spaces
 * included, is MD_ERROR_INVALID_ARGUMENT. Returns the host without
 * brackets. */
char *md_address_parse_host (const char *text, const char *what, GError **error);

/* A live-migration URI a peer sent ("tcp:HOST:PORT" or "tcp:[V6]:PORT"),
 * parsed and checked as user input is: anything else (exec:, unix:, fd:,
 * junk) is MD_ERROR_INVALID_ARGUMENT. The source never hands QEMU a string
 * it did not render itself. */
MdAddress *md_address_parse_tcp_uri (const char *uri, GError **error);

/* Constructors; each validates its input (MD_ERROR_INVALID_ARGUMENT). */
MdAddress *md_address_new_inet (const char *host, guint16 port, GError **error);
MdAddress *md_address_new_unix (const char *path, GError **error);
MdAddress *md_address_new_fd (const char *fd_name, GError **error);
MdAddress *md_address_new_exec (const char *const *argv, GError **error);
MdAddress *md_address_new_file (const char *fd_name, guint64 offset, GError **error);

void md_address_free (MdAddress *address);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MdAddress, md_address_free)

/* The URI QEMU 7.2's "migrate" and "migrate-incoming" take: "tcp:h:p",
 * "tcp:[v6]:p", "unix:/path", "fd:name", "exec:..." (every argv word
 * shell-quoted, since QEMU before 8.2 runs exec: through /bin/sh). A file
 * address renders as "fd:name" when its offset is 0 (QEMU 7.2 has no
 * file: URI); other offsets are MD_ERROR_NOT_SUPPORTED. */
char *md_address_to_uri (const MdAddress *address, GError **error);

/* The MigrateAddress object of QEMU 8.2+ (one element of "channels"). */
JsonObject *md_address_to_qapi (const MdAddress *address);

G_END_DECLS
