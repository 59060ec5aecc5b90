/* migrationd: strict parsing of the a{sv} options every method takes. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct
{
  const char *key;
  const char *type; /* GVariant type string, e.g. "b", "t", "s", "as" */
} MdOptionSpec;

/* Checks that every key of @options is in @specs (NULL-key terminated)
 * with exactly its type. Errors: MD_ERROR_INVALID_ARGUMENT naming the
 * key ("unknown option 'foo' for Start; known: start-paused" or
 * "option 'timeout' must be of type u, not s"). */
gboolean md_options_check (GVariant *options, const MdOptionSpec *specs, const char *method,
                           GError **error);

gboolean md_options_get_boolean (GVariant *options, const char *key, gboolean fallback);
guint32 md_options_get_uint32 (GVariant *options, const char *key, guint32 fallback);
guint64 md_options_get_uint64 (GVariant *options, const char *key, guint64 fallback);
guint16 md_options_get_uint16 (GVariant *options, const char *key, guint16 fallback);
/* NULL when absent. */
const char *md_options_get_string (GVariant *options, const char *key);

G_END_DECLS
