/* migrationd: CPU models of this host's QEMU and host-model expansion. */
#include "config.h"

#include "md-qemu-cpu.h"
#include "common/md-error.h"

#include <json-glib/json-glib.h>
#include <string.h>

void
md_qemu_cpu_info_free (MdQemuCpuInfo *info)
{
  if (!info)
    return;
  g_free (info->accel);
  g_clear_pointer (&info->models, g_hash_table_unref);
  g_clear_pointer (&info->host_features, g_hash_table_unref);
  g_free (info->host_model);
  g_clear_pointer (&info->host_model_extra, g_ptr_array_unref);
  g_free (info);
}

/* ---- QMP over stdio ---- */

typedef struct
{
  MdQemuCpuInfo *info;
  char *binary;
  GPtrArray *candidates; /* runnable named models, asked for in round two */
} ProbeData;

static void
probe_data_free (ProbeData *data)
{
  md_qemu_cpu_info_free (data->info);
  g_free (data->binary);
  g_clear_pointer (&data->candidates, g_ptr_array_unref);
  g_free (data);
}

static void run_qmp (GTask *task, const char *script, GAsyncReadyCallback callback);

/* The "return" of the reply with id @id in QEMU's output, or NULL. */
static JsonNode *
reply_for (const char *out, const char *id, GError **error)
{
  g_auto (GStrv) lines = g_strsplit (out ? out : "", "\n", -1);

  for (guint i = 0; lines[i]; i++)
    {
      g_autoptr (JsonParser) parser = json_parser_new ();
      JsonObject *obj;

      if (!*lines[i] || !json_parser_load_from_data (parser, lines[i], -1, NULL)
          || !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
        continue;
      obj = json_node_get_object (json_parser_get_root (parser));
      if (g_strcmp0 (json_object_get_string_member_with_default (obj, "id", ""), id) != 0)
        continue;
      if (json_object_has_member (obj, "error"))
        {
          JsonObject *err = json_object_get_object_member (obj, "error");

          g_set_error (error, MD_ERROR, MD_ERROR_QEMU_FAILED, "QEMU answered %s with: %s", id,
                       json_object_get_string_member_with_default (err, "desc", "an error"));
          return NULL;
        }
      if (json_object_has_member (obj, "return"))
        return json_node_copy (json_object_get_member (obj, "return"));
    }
  g_set_error (error, MD_ERROR, MD_ERROR_QEMU_FAILED, "QEMU gave no answer to %s", id);
  return NULL;
}

/* Boolean properties that are on in a static expansion reply. */
static GHashTable *
features_on (JsonNode *expansion)
{
  GHashTable *set = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  JsonObject *model = json_object_get_object_member (json_node_get_object (expansion), "model");
  JsonObject *props = model ? json_object_get_object_member (model, "props") : NULL;
  g_autoptr (GList) names = props ? json_object_get_members (props) : NULL;

  for (GList *l = names; l; l = l->next)
    {
      JsonNode *v = json_object_get_member (props, l->data);

      if (JSON_NODE_HOLDS_VALUE (v) && json_node_get_value_type (v) == G_TYPE_BOOLEAN
          && json_node_get_boolean (v))
        g_hash_table_add (set, g_strdup (l->data));
    }
  return set;
}

static char *
expansion_command (const char *id, const char *model)
{
  return g_strdup_printf ("{\"execute\":\"query-cpu-model-expansion\",\"id\":\"%s\","
                          "\"arguments\":{\"type\":\"static\",\"model\":{\"name\":\"%s\"}}}\n",
                          id, model);
}

static void
on_round_two (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  ProbeData *data = g_task_get_task_data (task);
  g_autofree char *out = NULL;
  g_autoptr (GError) error = NULL;
  guint best_count = 0;
  g_autoptr (GHashTable) best = NULL;

  if (!g_subprocess_communicate_utf8_finish (G_SUBPROCESS (source), result, &out, NULL, &error))
    {
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  /* The runnable model with most features is the closest named model. */
  for (guint i = 0; i < data->candidates->len; i++)
    {
      const char *name = data->candidates->pdata[i];
      g_autoptr (JsonNode) reply = reply_for (out, name, NULL);
      g_autoptr (GHashTable) set = reply ? features_on (reply) : NULL;

      if (set && g_hash_table_size (set) > best_count)
        {
          best_count = g_hash_table_size (set);
          g_free (data->info->host_model);
          data->info->host_model = g_strdup (name);
          g_clear_pointer (&best, g_hash_table_unref);
          best = g_steal_pointer (&set);
        }
    }
  data->info->host_model_extra = g_ptr_array_new_with_free_func (g_free);
  if (best)
    {
      g_autoptr (GList) host = g_hash_table_get_keys (data->info->host_features);

      host = g_list_sort (host, (GCompareFunc) strcmp);
      for (GList *l = host; l; l = l->next)
        if (!g_hash_table_contains (best, l->data))
          g_ptr_array_add (data->info->host_model_extra, g_strdup (l->data));
    }
  g_task_return_pointer (task, g_steal_pointer (&data->info),
                         (GDestroyNotify) md_qemu_cpu_info_free);
}

static gboolean
is_candidate (JsonObject *def)
{
  const char *name = json_object_get_string_member_with_default (def, "name", "");
  JsonArray *missing = json_object_has_member (def, "unavailable-features")
                           ? json_object_get_array_member (def, "unavailable-features")
                           : NULL;

  /* Versioned names only (aliases move between QEMU releases), and only
   * real CPU models: host/max/base are not models a destination shares. */
  if (json_object_has_member (def, "alias-of") || g_str_equal (name, "host")
      || g_str_equal (name, "max") || g_str_equal (name, "base"))
    return FALSE;
  return missing != NULL && json_array_get_length (missing) == 0;
}

static void
on_round_one (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  ProbeData *data = g_task_get_task_data (task);
  g_autofree char *out = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) defs = NULL;
  g_autoptr (JsonNode) host = NULL;
  g_autoptr (GString) script = g_string_new ("{\"execute\":\"qmp_capabilities\"}\n");
  JsonArray *list;

  if (!g_subprocess_communicate_utf8_finish (G_SUBPROCESS (source), result, &out, NULL, &error)
      || (defs = reply_for (out, "defs", &error)) == NULL
      || (host = reply_for (out, "host", &error)) == NULL)
    {
      g_prefix_error (&error, "probing the CPU models of %s: ", data->binary);
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  data->info->host_features = features_on (host);
  data->candidates = g_ptr_array_new_with_free_func (g_free);
  list = json_node_get_array (defs);
  for (guint i = 0; i < json_array_get_length (list); i++)
    {
      JsonObject *def = json_array_get_object_element (list, i);
      const char *name = json_object_get_string_member_with_default (def, "name", "");
      JsonArray *missing = json_object_has_member (def, "unavailable-features")
                               ? json_object_get_array_member (def, "unavailable-features")
                               : NULL;

      g_hash_table_insert (data->info->models, g_strdup (name),
                           GINT_TO_POINTER (missing && json_array_get_length (missing) == 0));
      if (is_candidate (def))
        {
          g_autofree char *cmd = expansion_command (name, name);

          g_ptr_array_add (data->candidates, g_strdup (name));
          g_string_append (script, cmd);
        }
    }
  g_string_append (script, "{\"execute\":\"quit\"}\n");
  run_qmp (g_steal_pointer (&task), script->str, on_round_two);
}

static void
run_qmp (GTask *task, const char *script, GAsyncReadyCallback callback)
{
  ProbeData *data = g_task_get_task_data (task);
  g_autoptr (GError) error = NULL;
  g_autofree char *machine = g_strdup_printf ("none,accel=%s", data->info->accel);
  g_autoptr (GSubprocess) proc =
      g_subprocess_new (G_SUBPROCESS_FLAGS_STDIN_PIPE | G_SUBPROCESS_FLAGS_STDOUT_PIPE
                            | G_SUBPROCESS_FLAGS_STDERR_SILENCE,
                        &error, data->binary, "-machine", machine, "-nodefaults", "-display",
                        "none", "-qmp", "stdio", NULL);

  if (!proc)
    {
      g_task_return_error (task, g_steal_pointer (&error));
      g_object_unref (task);
      return;
    }
  g_subprocess_communicate_utf8_async (proc, script, g_task_get_cancellable (task), callback, task);
}

void
md_qemu_cpu_probe_async (const char *binary, const char *accel, GCancellable *cancellable,
                         GAsyncReadyCallback callback, gpointer user_data)
{
  GTask *task = g_task_new (NULL, cancellable, callback, user_data);
  ProbeData *data = g_new0 (ProbeData, 1);
  gboolean kvm = g_strcmp0 (accel, "kvm") == 0;
  g_autofree char *host = expansion_command ("host", kvm ? "host" : "max");
  g_autofree char *script =
      g_strconcat ("{\"execute\":\"qmp_capabilities\"}\n"
                   "{\"execute\":\"query-cpu-definitions\",\"id\":\"defs\"}\n",
                   host, "{\"execute\":\"quit\"}\n", NULL);

  data->info = g_new0 (MdQemuCpuInfo, 1);
  data->info->accel = g_strdup (kvm ? "kvm" : "tcg");
  data->info->models = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  data->binary = g_strdup (binary);
  g_task_set_source_tag (task, md_qemu_cpu_probe_async);
  g_task_set_task_data (task, data, (GDestroyNotify) probe_data_free);
  run_qmp (task, script, on_round_one);
}

MdQemuCpuInfo *
md_qemu_cpu_probe_finish (GAsyncResult *result, GError **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}

/* ---- expansion and checks ---- */

gboolean
md_qemu_cpu_expand_host_model (const MdQemuCpuInfo *info, MdDomain *def, GError **error)
{
  GPtrArray *given;

  if (def->cpu.mode != MD_DOMAIN_CPU_MODE_HOST_MODEL)
    return TRUE;
  if (!info || !info->host_model)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_NOT_SUPPORTED,
                   "<cpu mode='host-model'>: this host's QEMU offers no named CPU model to "
                   "expand it into; use mode='custom' with a model");
      return FALSE;
    }
  /* Features the user wrote stay and win over the expansion's. */
  given = g_ptr_array_new_with_free_func ((GDestroyNotify) NULL);
  for (guint i = 0; i < def->cpu.features->len; i++)
    g_ptr_array_add (given, ((MdDomainCpuFeature *) def->cpu.features->pdata[i])->name);
  for (guint i = 0; i < info->host_model_extra->len; i++)
    {
      const char *name = info->host_model_extra->pdata[i];
      MdDomainCpuFeature *f;
      gboolean dup = FALSE;

      for (guint j = 0; j < given->len && !dup; j++)
        dup = g_str_equal (given->pdata[j], name);
      if (dup)
        continue;
      f = g_new0 (MdDomainCpuFeature, 1);
      f->name = g_strdup (name);
      f->policy = MD_DOMAIN_CPU_FEATURE_REQUIRE;
      g_ptr_array_add (def->cpu.features, f);
    }
  g_ptr_array_unref (given);
  def->cpu.mode = MD_DOMAIN_CPU_MODE_CUSTOM;
  g_free (def->cpu.model);
  def->cpu.model = g_strdup (info->host_model);
  return TRUE;
}

static gboolean
allowed (const char *const *allow, const char *name)
{
  return allow == NULL || g_strv_contains (allow, name);
}

void
md_qemu_cpu_check (const MdQemuCpuInfo *info, const MdDomain *def, const char *const *allow,
                   gboolean incoming, GPtrArray *problems)
{
  g_autoptr (GString) missing = g_string_new (NULL);

  if (def->cpu.mode == MD_DOMAIN_CPU_MODE_HOST_PASSTHROUGH && incoming
      && def->cpu.migratable != MD_DOMAIN_TRISTATE_ON)
    g_ptr_array_add (problems,
                     g_strdup ("<cpu mode='host-passthrough'> is not migratable: the guest sees "
                               "the source host's exact CPU; define it with migratable='on' "
                               "(only between identical hosts) or use mode='host-model'"));
  if (def->cpu.mode != MD_DOMAIN_CPU_MODE_CUSTOM || !info)
    return;
  if (!g_hash_table_contains (info->models, def->cpu.model) || !allowed (allow, def->cpu.model))
    g_ptr_array_add (problems, g_strdup_printf ("CPU model '%s' is unknown to this host's QEMU",
                                                def->cpu.model));
  else if (!GPOINTER_TO_INT (g_hash_table_lookup (info->models, def->cpu.model)))
    g_ptr_array_add (problems,
                     g_strdup_printf ("CPU model '%s' cannot run on this host (%s lacks some of "
                                      "its features)",
                                      def->cpu.model, info->accel));
  for (guint i = 0; i < def->cpu.features->len; i++)
    {
      const MdDomainCpuFeature *f = def->cpu.features->pdata[i];

      if (f->policy != MD_DOMAIN_CPU_FEATURE_REQUIRE)
        continue;
      if (!g_hash_table_contains (info->host_features, f->name) || !allowed (allow, f->name))
        g_string_append_printf (missing, "%s%s", missing->len ? ", " : "", f->name);
    }
  if (missing->len)
    g_ptr_array_add (problems,
                     g_strdup_printf ("CPU features this host's QEMU (%s) cannot give the "
                                      "guest: %s",
                                      info->accel, missing->str));
}
