/* migrationd: QEMU's migration setup, shared by both ends. */
#include "config.h"

#include "md-migration-qemu.h"
#include "common/md-error.h"

JsonObject *
md_migration_qemu_capabilities (const MdMigrateOptions *opts)
{
  JsonObject *args = json_object_new ();
  JsonArray *caps = json_array_new ();
  const struct
  {
    const char *name;
    gboolean on;
  } list[] = {
    { "events", TRUE },
    { "auto-converge", opts->auto_converge },
    { "postcopy-ram", opts->postcopy },
    { "multifd", opts->parallel_connections > 0 },
    { "pause-before-switchover", FALSE },
  };

  for (guint i = 0; i < G_N_ELEMENTS (list); i++)
    {
      JsonObject *cap = json_object_new ();
      json_object_set_string_member (cap, "capability", list[i].name);
      json_object_set_boolean_member (cap, "state", list[i].on);
      json_array_add_object_element (caps, cap);
    }
  json_object_set_array_member (args, "capabilities", caps);
  return args;
}

JsonObject *
md_migration_qemu_parameters (const MdMigrateOptions *opts, gboolean source, const char *tls_object,
                              const char *tls_hostname)
{
  JsonObject *args = json_object_new ();
  guint32 channels = opts->parallel_connections;

  if (source)
    {
      guint64 bandwidth = opts->bandwidth;
      guint64 downtime = opts->max_downtime;

      json_object_set_int_member (args, "max-bandwidth",
                                  (gint64) (bandwidth > 0 ? bandwidth : MD_UNLIMITED_BANDWIDTH));
      if (downtime > 0)
        json_object_set_int_member (args, "downtime-limit", (gint64) downtime);
      json_object_set_string_member (
          args, "tls-hostname", tls_object != NULL && tls_hostname != NULL ? tls_hostname : "");
    }
  json_object_set_string_member (args, "tls-creds", tls_object != NULL ? tls_object : "");
  if (channels > 0)
    json_object_set_int_member (args, "multifd-channels", channels);
  if (channels > 0)
    json_object_set_string_member (args, "multifd-compression",
                                   md_migrate_compression_to_string (opts->compression));
  return args;
}

JsonObject *
md_migration_qemu_tls_object (const char *id, const char *dir, gboolean server)
{
  JsonObject *args = json_object_new ();

  json_object_set_string_member (args, "qom-type", "tls-creds-x509");
  json_object_set_string_member (args, "id", id);
  json_object_set_string_member (args, "dir", dir);
  json_object_set_string_member (args, "endpoint", server ? "server" : "client");
  json_object_set_boolean_member (args, "verify-peer", TRUE);
  return args;
}

const char *
md_migration_qemu_status (JsonNode *reply, const char *fallback)
{
  if (reply == NULL || !JSON_NODE_HOLDS_OBJECT (reply))
    return fallback;
  return json_object_get_string_member_with_default (json_node_get_object (reply), "status",
                                                     fallback);
}

char *
md_migration_qemu_new_tag (void)
{
  return g_strdup_printf ("%08x", g_random_int ());
}

typedef struct
{
  gpointer owner;
  GDestroyNotify unref;
  MdQemuStepFunc next;
} Step;

static void
on_step_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Step *step = user_data;
  GError *error = NULL;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, &error);

  step->next (step->owner, error);
  step->unref (step->owner);
  g_free (step);
}

void
md_migration_qemu_step (MdQmp *qmp, const char *command, JsonObject *args, gpointer owner,
                        gpointer (*ref) (gpointer), GDestroyNotify unref, MdQemuStepFunc next,
                        const char *gone_message)
{
  md_migration_qemu_step_fd (qmp, command, args, -1, owner, ref, unref, next, gone_message);
}

void
md_migration_qemu_step_fd (MdQmp *qmp, const char *command, JsonObject *args, int fd,
                           gpointer owner, gpointer (*ref) (gpointer), GDestroyNotify unref,
                           MdQemuStepFunc next, const char *gone_message)
{
  Step *step;

  if (qmp == NULL || md_qmp_is_closed (qmp))
    {
      if (args != NULL)
        json_object_unref (args);
      owner = ref (owner);
      next (owner, g_error_new_literal (MD_ERROR, MD_ERROR_QEMU_FAILED, gone_message));
      unref (owner);
      return;
    }
  step = g_new0 (Step, 1);
  step->owner = ref (owner);
  step->unref = unref;
  step->next = next;
  if (fd >= 0)
    md_qmp_execute_with_fd_async (qmp, command, args, fd, NULL, on_step_done, step);
  else
    md_qmp_execute_async (qmp, command, args, NULL, on_step_done, step);
  if (args != NULL)
    json_object_unref (args);
}
