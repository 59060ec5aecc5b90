/* migrationd: Peer1 arguments are checked here, in one place, before a
 * handler runs. A peer holds a valid certificate but is not trusted with
 * our memory: every string has a size bound, every a{sv} known keys of
 * the right type. GDBus has already checked the tuple's signature against
 * the introspection; we check again so this function stands alone (and
 * can be fuzzed). */
#include "config.h"

#include <string.h>

#include "md-peer-check.h"
#include "common/md-error.h"
#include "common/md-options.h"

static gboolean
check_string (const char *method, const char *arg, const char *value, gsize max,
              gboolean may_be_empty, GError **error)
{
  gsize len = strlen (value);

  if ((len > 0 || may_be_empty) && len <= max)
    return TRUE;
  g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
               "Peer1.%s: argument '%s' must be %s-%" G_GSIZE_FORMAT
               " bytes long, not %" G_GSIZE_FORMAT,
               method, arg, may_be_empty ? "0" : "1", max, len);
  return FALSE;
}

/* Every key of @dict in @specs with its type, strings at most @string_max. */
static gboolean
check_dict (const char *method, const char *arg, GVariant *dict, const MdOptionSpec *specs,
            gsize string_max, GError **error)
{
  GVariantIter iter;
  const char *key;
  GVariant *value;

  if (g_variant_n_children (dict) > 64)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "Peer1.%s: argument '%s' has %" G_GSIZE_FORMAT " entries; at most 64", method,
                   arg, g_variant_n_children (dict));
      return FALSE;
    }
  g_variant_iter_init (&iter, dict);
  while (g_variant_iter_loop (&iter, "{&sv}", &key, &value))
    {
      const MdOptionSpec *spec = NULL;

      for (guint i = 0; specs[i].key != NULL && spec == NULL; i++)
        if (g_str_equal (specs[i].key, key))
          spec = &specs[i];
      if (spec == NULL || !g_variant_is_of_type (value, G_VARIANT_TYPE (spec->type))
          || (g_variant_is_of_type (value, G_VARIANT_TYPE_STRING)
              && g_variant_get_size (value) > string_max + 1))
        {
          g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                       "Peer1.%s: argument '%s': key '%.64s' is %s", method, arg, key,
                       spec == NULL ? "unknown" : "of the wrong type or too long");
          g_variant_unref (value);
          return FALSE;
        }
    }
  return TRUE;
}

static gboolean
check_hello (GVariant *parameters, GError **error)
{
  static const MdOptionSpec info_specs[] = { { "capabilities", "as" }, { NULL, NULL } };
  const char *uuid, *name;
  guint32 version;
  g_autoptr (GVariant) info = NULL;
  g_autofree const char **caps = NULL;

  g_variant_get (parameters, "(u&s&s@a{sv})", &version, &uuid, &name, &info);
  if (!check_string ("Hello", "host_uuid", uuid, MD_PEER_ID_MAX, TRUE, error)
      || !check_string ("Hello", "host_name", name, MD_PEER_HOST_NAME_MAX, FALSE, error)
      || !check_dict ("Hello", "info", info, info_specs, 0, error))
    return FALSE;
  if (g_variant_lookup (info, "capabilities", "^a&s", &caps))
    for (guint i = 0; caps[i] != NULL; i++)
      if (i >= MD_PEER_CAPABILITIES_MAX
          || !check_string ("Hello", "info.capabilities", caps[i], 64, FALSE, error))
        {
          if (error != NULL && *error == NULL)
            g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                         "Peer1.Hello: more than %u capabilities", MD_PEER_CAPABILITIES_MAX);
          return FALSE;
        }
  return TRUE;
}

static gboolean
check_prepare (GVariant *parameters, GError **error)
{
  const MdMigrateOptionsLimits limits = { MD_MIGRATE_OPTIONS_FROM_PEER, 0, 0 };
  const char *id, *xml;
  g_autoptr (GVariant) options = NULL;
  g_autoptr (MdMigrateOptions) opts = NULL;

  g_variant_get (parameters, "(&s&s@a{sv})", &id, &xml, &options);
  if (!check_string ("Prepare", "migration_id", id, MD_PEER_ID_MAX, FALSE, error)
      || !check_string ("Prepare", "xml", xml, MD_MIGRATE_XML_MAX, FALSE, error))
    return FALSE;
  opts = md_migrate_options_parse (options, &limits, error);
  if (opts == NULL)
    {
      g_prefix_error (error, "Peer1.Prepare: ");
      return FALSE;
    }
  return TRUE;
}

static gboolean
check_finish (GVariant *parameters, GError **error)
{
  static const MdOptionSpec finish_specs[] = {
    { "error-name", "s" },
    { "error-message", "s" },
    { "token", "s" }, /* admission: proves a reconnecting source prepared it */
    { NULL, NULL },
  };
  const char *id;
  gboolean success;
  g_autoptr (GVariant) options = NULL;

  g_variant_get (parameters, "(&sb@a{sv})", &id, &success, &options);
  return check_string ("Finish", "migration_id", id, MD_PEER_ID_MAX, FALSE, error)
         && check_dict ("Finish", "options", options, finish_specs, MD_PEER_MESSAGE_MAX, error);
}

static gboolean
check_abort (GVariant *parameters, GError **error)
{
  const char *id, *reason;

  g_variant_get (parameters, "(&s&s)", &id, &reason);
  return check_string ("Abort", "migration_id", id, MD_PEER_ID_MAX, FALSE, error)
         && check_string ("Abort", "reason", reason, MD_PEER_REASON_MAX, TRUE, error);
}

static gboolean
check_resolve (GVariant *parameters, GError **error)
{
  const char *id;

  g_variant_get (parameters, "(&s)", &id);
  return check_string ("Resolve", "migration_id", id, MD_PEER_ID_MAX, FALSE, error);
}

static gboolean
check_recover (GVariant *parameters, GError **error)
{
  static const MdOptionSpec recover_specs[] = {
    { "token", "s" }, /* admission: proves the reconnecting source prepared it */
    { NULL, NULL },
  };
  const char *id;
  g_autoptr (GVariant) options = NULL;

  g_variant_get (parameters, "(&s@a{sv})", &id, &options);
  return check_string ("Recover", "migration_id", id, MD_PEER_ID_MAX, FALSE, error)
         && check_dict ("Recover", "options", options, recover_specs, MD_PEER_MESSAGE_MAX, error);
}

static gboolean
check_nothing (GVariant *parameters, GError **error)
{
  return TRUE;
}

static gboolean
check_paths (GVariant *parameters, GError **error)
{
  g_autofree const char **paths = NULL;

  g_variant_get (parameters, "(^a&s)", &paths);
  for (guint i = 0; paths[i] != NULL; i++)
    {
      if (i >= MD_PEER_PATHS_MAX)
        {
          g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                       "Peer1.CheckPaths: at most %u paths per call", MD_PEER_PATHS_MAX);
          return FALSE;
        }
      if (!check_string ("CheckPaths", "paths", paths[i], MD_PEER_PATH_MAX, FALSE, error))
        return FALSE;
      if (paths[i][0] != '/')
        {
          g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                       "Peer1.CheckPaths: '%.256s' is not an absolute path", paths[i]);
          return FALSE;
        }
    }
  return TRUE;
}

gboolean
md_peer_check_call (const char *method, GVariant *parameters, GError **error)
{
  static const struct
  {
    const char *method;
    const char *signature;
    gboolean (*check) (GVariant *parameters, GError **error);
  } calls[] = {
    { "Hello", "(ussa{sv})", check_hello },  { "Prepare", "(ssa{sv})", check_prepare },
    { "Finish", "(sba{sv})", check_finish }, { "Abort", "(ss)", check_abort },
    { "CheckPaths", "(as)", check_paths },   { "Resolve", "(s)", check_resolve },
    { "HostInfo", "()", check_nothing },     { "Recover", "(sa{sv})", check_recover },
  };

  for (guint i = 0; i < G_N_ELEMENTS (calls); i++)
    {
      if (g_strcmp0 (method, calls[i].method) != 0)
        continue;
      if (parameters == NULL
          || !g_variant_is_of_type (parameters, G_VARIANT_TYPE (calls[i].signature)))
        {
          g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT, "Peer1.%s takes %s, not %.64s",
                       method, calls[i].signature,
                       parameters != NULL ? g_variant_get_type_string (parameters) : "nothing");
          return FALSE;
        }
      return calls[i].check (parameters, error);
    }
  g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT, "Peer1 has no method '%.64s'",
               method != NULL ? method : "");
  return FALSE;
}
