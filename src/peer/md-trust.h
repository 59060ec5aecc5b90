/* migrationd: the trusted peers of this host — the [peer NAME] groups of
 * migrationd.conf plus the ones added over D-Bus (kept in the state
 * directory) — and the certificate DNs they make acceptable. */
#pragma once

#include "common/md-config.h"

#include <glib.h>

G_BEGIN_DECLS

typedef struct _MdTrust MdTrust;

/* @config is borrowed; peers added over D-Bus are read from
 * @state_dir/peers.conf (a missing file is no peers; a broken one is a
 * warning, not a reason to refuse starting). */
MdTrust *md_trust_new (const MdConfig *config, const char *state_dir);
void md_trust_free (MdTrust *trust);

/* Every peer: the configuration's first, then the added ones. */
GPtrArray *md_trust_list (MdTrust *trust); /* MdConfigPeer*, borrowed */
const MdConfigPeer *md_trust_find (MdTrust *trust, const char *name);

/* [tls] allowed-dns plus the DN of every peer that has one. */
const char *const *md_trust_allowed_dns (MdTrust *trust);

/* Validates, adds and saves atomically. MD_ERROR_INVALID_ARGUMENT (bad
 * name, address or DN) or MD_ERROR_ALREADY_EXISTS; nothing changes then. */
gboolean md_trust_add (MdTrust *trust, const char *name, const char *address, const char *dn,
                       GError **error);
/* MD_ERROR_NOT_FOUND, or MD_ERROR_INVALID_STATE for a peer that comes
 * from migrationd.conf (edit the file instead). */
gboolean md_trust_remove (MdTrust *trust, const char *name, GError **error);

/* "host", "host:port", "[v6]:port" with a port 1..65535. */
gboolean md_trust_check_address (const char *address, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (MdTrust, md_trust_free)

G_END_DECLS
