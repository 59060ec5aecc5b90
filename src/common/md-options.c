/* migrationd: strict a{sv} option parsing — a typo in an option name must
 * be an error, never a silently ignored setting. */
#include "config.h"

#include "md-options.h"
#include "md-error.h"

gboolean
md_options_check (GVariant *options, const MdOptionSpec *specs, const char *method, GError **error)
{
  GVariantIter iter;
  const char *key;
  GVariant *value;

  g_variant_iter_init (&iter, options);
  while (g_variant_iter_loop (&iter, "{&sv}", &key, &value))
    {
      const MdOptionSpec *spec = NULL;

      for (guint i = 0; specs[i].key != NULL; i++)
        if (g_str_equal (specs[i].key, key))
          spec = &specs[i];
      if (spec == NULL)
        {
          g_autoptr (GString) known = g_string_new (NULL);
          for (guint i = 0; specs[i].key != NULL; i++)
            g_string_append_printf (known, "%s%s", i > 0 ? ", " : "", specs[i].key);
          g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                       "unknown option '%s' for %s; known options: %s", key, method,
                       known->len > 0 ? known->str : "none");
          g_variant_unref (value);
          return FALSE;
        }
      if (!g_variant_is_of_type (value, G_VARIANT_TYPE (spec->type)))
        {
          g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                       "option '%s' of %s must be of type '%s', not '%s'", key, method, spec->type,
                       g_variant_get_type_string (value));
          g_variant_unref (value);
          return FALSE;
        }
    }
  return TRUE;
}

gboolean
md_options_get_boolean (GVariant *options, const char *key, gboolean fallback)
{
  gboolean value;

  return g_variant_lookup (options, key, "b", &value) ? value : fallback;
}

guint32
md_options_get_uint32 (GVariant *options, const char *key, guint32 fallback)
{
  guint32 value;

  return g_variant_lookup (options, key, "u", &value) ? value : fallback;
}

guint64
md_options_get_uint64 (GVariant *options, const char *key, guint64 fallback)
{
  guint64 value;

  return g_variant_lookup (options, key, "t", &value) ? value : fallback;
}

guint16
md_options_get_uint16 (GVariant *options, const char *key, guint16 fallback)
{
  guint16 value;

  return g_variant_lookup (options, key, "q", &value) ? value : fallback;
}

const char *
md_options_get_string (GVariant *options, const char *key)
{
  const char *value;

  return g_variant_lookup (options, key, "&s", &value) ? value : NULL;
}
