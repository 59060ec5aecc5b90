/* migrationd: who may act on an incoming migration. The peer identity
 * (certificate DN) that prepared it owns it; a later call must come from
 * that identity, and from another connection (a reconnect after a dropped
 * link) only with the secret token Prepare handed out. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _MdIncomingOwner MdIncomingOwner;

/* Owned by @dn; makes a fresh random token (256 bits, hex). */
MdIncomingOwner *md_incoming_owner_new (const char *dn);
/* The owner a previous daemon journaled (a restart in postcopy): @dn and
 * its @token (NULL: calls from a new connection are refused). */
MdIncomingOwner *md_incoming_owner_restore (const char *dn, const char *token);
void md_incoming_owner_free (MdIncomingOwner *owner);
const char *md_incoming_owner_get_dn (const MdIncomingOwner *owner);
/* For Prepare's answer ("token"); the source keeps it. */
const char *md_incoming_owner_get_token (const MdIncomingOwner *owner);

/* Whether a call of @method on migration @id may act: @caller_dn must be
 * the owner's DN, and a call from another connection than the one that
 * prepared it (@same_connection FALSE) must carry the token. Else
 * MD_ERROR_NOT_AUTHORIZED naming the host, method and why. */
gboolean md_incoming_owner_check (const MdIncomingOwner *owner, const char *caller_dn,
                                  gboolean same_connection, const char *token, const char *host,
                                  const char *method, const char *id, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (MdIncomingOwner, md_incoming_owner_free)

G_END_DECLS
