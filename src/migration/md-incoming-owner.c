/* migrationd: who may act on an incoming migration (see the header). */
#include "config.h"

#include "md-incoming-owner.h"
#include "common/md-error.h"
#include "peer/md-peer.h"

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#define TOKEN_BYTES 32

struct _MdIncomingOwner
{
  char *dn; /* normalised, as the allow-list compares */
  char *token;
};

MdIncomingOwner *
md_incoming_owner_new (const char *dn)
{
  MdIncomingOwner *owner = g_new0 (MdIncomingOwner, 1);
  guint8 raw[TOKEN_BYTES];
  GString *hex = g_string_sized_new (TOKEN_BYTES * 2);

  owner->dn = md_peer_normalize_dn (dn != NULL ? dn : "");
  /* A key-grade generator: the token is the only proof a reconnecting
   * peer has that it is the one that prepared the migration. */
  if (gnutls_rnd (GNUTLS_RND_KEY, raw, sizeof raw) != 0)
    g_error ("gnutls_rnd failed: no random source for the migration token");
  for (guint i = 0; i < TOKEN_BYTES; i++)
    g_string_append_printf (hex, "%02x", raw[i]);
  owner->token = g_string_free (hex, FALSE);
  return owner;
}

MdIncomingOwner *
md_incoming_owner_restore (const char *dn, const char *token)
{
  MdIncomingOwner *owner = g_new0 (MdIncomingOwner, 1);

  owner->dn = md_peer_normalize_dn (dn != NULL ? dn : "");
  owner->token = g_strdup (token);
  return owner;
}

void
md_incoming_owner_free (MdIncomingOwner *owner)
{
  if (owner == NULL)
    return;
  g_free (owner->dn);
  if (owner->token != NULL)
    memset (owner->token, 0, strlen (owner->token));
  g_free (owner->token);
  g_free (owner);
}

const char *
md_incoming_owner_get_dn (const MdIncomingOwner *owner)
{
  return owner->dn;
}

const char *
md_incoming_owner_get_token (const MdIncomingOwner *owner)
{
  return owner->token;
}

/* Constant time in the length of the expected token, so a wrong guess
 * tells nothing about how much of it was right. */
static gboolean
token_equal (const char *expected, const char *given)
{
  gsize n = strlen (expected);
  guint8 diff = 0;

  if (given == NULL || strlen (given) != n)
    return FALSE;
  for (gsize i = 0; i < n; i++)
    diff |= (guint8) (expected[i] ^ given[i]);
  return diff == 0;
}

gboolean
md_incoming_owner_check (const MdIncomingOwner *owner, const char *caller_dn,
                         gboolean same_connection, const char *token, const char *host,
                         const char *method, const char *id, GError **error)
{
  g_autofree char *caller = md_peer_normalize_dn (caller_dn != NULL ? caller_dn : "");

  if (!g_str_equal (caller, owner->dn))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_NOT_AUTHORIZED,
                   "host %s: %s of migration %s refused: it was prepared by peer '%s', not by "
                   "'%s'; only the peer that prepared a migration may control it",
                   host, method, id, owner->dn, caller);
      return FALSE;
    }
  if (!same_connection && !token_equal (owner->token, token))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_NOT_AUTHORIZED,
                   "host %s: %s of migration %s refused: it comes on another connection than "
                   "Prepare and %s; a reconnecting source must send the \"token\" Prepare "
                   "returned (Finish options)",
                   host, method, id, token == NULL ? "carries no token" : "its token is wrong");
      return FALSE;
    }
  return TRUE;
}
