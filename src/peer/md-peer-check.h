/* migrationd: the one place where a Peer1 call from a peer is checked for
 * argument types and sizes before any handler sees it. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Size limits of Peer1 arguments (bytes unless said otherwise). */
#define MD_PEER_ID_MAX 255          /* migration ids, host UUIDs */
#define MD_PEER_HOST_NAME_MAX 255   /* HostName */
#define MD_PEER_REASON_MAX 4096     /* Abort's reason */
#define MD_PEER_MESSAGE_MAX 65536   /* Finish's error-message */
#define MD_PEER_PATHS_MAX 64        /* entries of CheckPaths */
#define MD_PEER_PATH_MAX 4096       /* one path */
#define MD_PEER_CAPABILITIES_MAX 64 /* entries of Hello's capabilities */

/* Checks the in-arguments @parameters (a tuple) of the Peer1 method
 * @method: the tuple type, every string's size, and every a{sv}'s keys and
 * value types (Prepare's options through md_migrate_options_parse() as
 * from a peer). Unknown methods are refused. On failure,
 * MD_ERROR_INVALID_ARGUMENT names the method and argument. Pure: no
 * state, safe to fuzz. */
gboolean md_peer_check_call (const char *method, GVariant *parameters, GError **error);

G_END_DECLS
