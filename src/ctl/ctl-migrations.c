/* migrationctl: the commands on migrations that run or ran: list
 * (migrations), controls (cancel, set-bandwidth, set-downtime, postcopy,
 * resolve) and monitor. */
#include "config.h"

#include <glib/gi18n.h>
#include <glib-unix.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "ctl-common.h"

#define PRINT_INTERVAL_US (500 * G_TIME_SPAN_MILLISECOND)

/* ---- migrations ---- */

static int
list_migrations (CtlContext *ctx, GPtrArray *out, gboolean quiet)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = NULL;
  g_autoptr (GVariantIter) iter = NULL;
  const char *path;

  reply =
      ctl_call (ctx, ctx->manager, "ListMigrations", NULL, G_VARIANT_TYPE ("(ao)"), FALSE, &error);
  if (reply == NULL)
    return quiet ? CTL_EXIT_FAILED
                 : ctl_report_error (ctx, error, NULL, NULL, NULL, _ ("cannot list migrations"));
  g_variant_get (reply, "(ao)", &iter);
  while (g_variant_iter_next (iter, "&o", &path))
    {
      MdDbusMigration1 *m = md_dbus_migration1_proxy_new_sync (ctx->bus, G_DBUS_PROXY_FLAGS_NONE,
                                                               MD_BUS_NAME, path, NULL, NULL);
      /* Expired between the two calls: skip it. */
      if (m == NULL || md_dbus_migration1_get_state (m) == NULL)
        {
          g_clear_object (&m);
          continue;
        }
      g_ptr_array_add (out, m);
    }
  return CTL_EXIT_OK;
}

int
ctl_cmd_migrations (CtlContext *ctx, int argc, char **argv)
{
  g_autoptr (GPtrArray) migrations = g_ptr_array_new_with_free_func (g_object_unref);
  int rc;

  if (!ctl_parse_options (ctx, &argc, &argv, NULL,
                          N_ ("List current migrations and finished ones still kept."), NULL))
    return CTL_EXIT_USAGE;
  if (argc != 1)
    return ctl_usage_error (ctx, _ ("'migrations' takes no arguments"));
  if ((rc = ctl_connect (ctx)) != CTL_EXIT_OK)
    return rc;
  if ((rc = list_migrations (ctx, migrations, FALSE)) != CTL_EXIT_OK)
    return rc;

  if (ctx->json)
    {
      g_autoptr (JsonBuilder) b = json_builder_new ();
      g_autoptr (JsonNode) root = NULL;
      json_builder_begin_array (b);
      for (guint i = 0; i < migrations->len; i++)
        {
          MdDbusMigration1 *m = g_ptr_array_index (migrations, i);
          const char *path = g_dbus_proxy_get_object_path (G_DBUS_PROXY (m));
          json_builder_begin_object (b);
#define STR(key, value)                                                                            \
  json_builder_set_member_name (b, key);                                                           \
  json_builder_add_string_value (b, ctl_nonnull (value))
          STR ("id", ctl_migration_id (path));
          STR ("path", path);
          STR ("guest", md_dbus_migration1_get_guest_name (m));
          STR ("direction", md_dbus_migration1_get_direction (m));
          STR ("peer", md_dbus_migration1_get_peer (m));
          STR ("state", md_dbus_migration1_get_state (m));
          STR ("phase", md_dbus_migration1_get_phase (m));
          json_builder_set_member_name (b, "progress");
          if (md_dbus_migration1_get_progress_valid (m))
            json_builder_add_double_value (b, md_dbus_migration1_get_progress (m));
          else
            json_builder_add_null_value (b);
          json_builder_set_member_name (b, "start-time");
          json_builder_add_int_value (b, (gint64) md_dbus_migration1_get_start_time (m));
          json_builder_set_member_name (b, "end-time");
          json_builder_add_int_value (b, (gint64) md_dbus_migration1_get_end_time (m));
          STR ("error-name", md_dbus_migration1_get_error_name (m));
          STR ("error-message", md_dbus_migration1_get_error_message (m));
#undef STR
          json_builder_end_object (b);
        }
      json_builder_end_array (b);
      root = json_builder_get_root (b);
      ctl_print_json (root, FALSE);
      return CTL_EXIT_OK;
    }

  {
    g_autoptr (GPtrArray) rows = g_ptr_array_new_with_free_func ((GDestroyNotify) g_strfreev);
    g_ptr_array_add (rows,
                     g_strsplit (_ ("ID|GUEST|DIRECTION|PEER|STATE|PHASE|PROGRESS"), "|", -1));
    for (guint i = 0; i < migrations->len; i++)
      {
        MdDbusMigration1 *m = g_ptr_array_index (migrations, i);
        char **row = g_new0 (char *, 8);
        row[0] = g_strdup (ctl_migration_id (g_dbus_proxy_get_object_path (G_DBUS_PROXY (m))));
        row[1] = g_strdup (ctl_nonnull (md_dbus_migration1_get_guest_name (m)));
        row[2] = g_strdup (ctl_nonnull (md_dbus_migration1_get_direction (m)));
        row[3] = g_strdup (ctl_nonnull (md_dbus_migration1_get_peer (m)));
        row[4] = g_strdup (ctl_nonnull (md_dbus_migration1_get_state (m)));
        row[5] = g_strdup (ctl_nonnull (md_dbus_migration1_get_phase (m)));
        row[6] = md_dbus_migration1_get_progress_valid (m)
                     ? g_strdup_printf ("%.1f%%", md_dbus_migration1_get_progress (m) * 100.0)
                     : g_strdup ("-");
        g_ptr_array_add (rows, row);
      }
    ctl_print_table (rows);
  }
  return CTL_EXIT_OK;
}

int
ctl_cmd_complete_migrations (CtlContext *ctx, int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = NULL;
  g_autoptr (GVariantIter) iter = NULL;
  const char *path;

  if (!ctl_parse_options (ctx, &argc, &argv, NULL, NULL, NULL))
    return CTL_EXIT_USAGE;
  if (!ctl_open_bus (ctx, NULL))
    return CTL_EXIT_UNREACHABLE;
  reply = g_dbus_connection_call_sync (
      ctx->bus, MD_BUS_NAME, "/org/migrationd", "org.migrationd.Manager1", "ListMigrations", NULL,
      G_VARIANT_TYPE ("(ao)"), G_DBUS_CALL_FLAGS_NO_AUTO_START, -1, NULL, &error);
  if (reply == NULL)
    return CTL_EXIT_FAILED;
  g_variant_get (reply, "(ao)", &iter);
  while (g_variant_iter_next (iter, "&o", &path))
    g_print ("%s\n", ctl_migration_id (path));
  return CTL_EXIT_OK;
}

/* ---- controls ---- */

typedef enum
{
  CONTROL_CANCEL,
  CONTROL_BANDWIDTH,
  CONTROL_DOWNTIME,
  CONTROL_POSTCOPY,
} ControlKind;

static int
control (CtlContext *ctx, int argc, char **argv, ControlKind kind)
{
  static const struct
  {
    const char *args;
    const char *summary;
    const char *method;
  } info[] = {
    [CONTROL_CANCEL] = { N_ ("MIGRATION"),
                         N_ ("Cancel a migration; the guest keeps running on the source."),
                         "Cancel" },
    [CONTROL_BANDWIDTH] = { N_ ("MIGRATION RATE"),
                            N_ ("Change a running migration's bandwidth limit: bytes per "
                                "second, or 100M, 1G (powers of 1024); 0 means unlimited."),
                            "SetBandwidth" },
    [CONTROL_DOWNTIME] = { N_ ("MIGRATION MS"),
                           N_ ("Change a running migration's longest switch-over pause, in "
                               "milliseconds."),
                           "SetMaxDowntime" },
    [CONTROL_POSTCOPY] = { N_ ("MIGRATION"),
                           N_ ("Switch a migration started with --postcopy to post-copy."),
                           "StartPostcopy" },
  };
  g_autoptr (MdDbusMigration1) m = NULL;
  g_autoptr (GVariant) reply = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *path = NULL;
  GVariant *params = NULL;
  guint64 value = 0;
  int nargs = kind == CONTROL_BANDWIDTH || kind == CONTROL_DOWNTIME ? 2 : 1;
  int rc;

  if (!ctl_parse_options (ctx, &argc, &argv, _ (info[kind].args), info[kind].summary, NULL))
    return CTL_EXIT_USAGE;
  if (argc != nargs + 1)
    return ctl_usage_error (ctx, _ ("'%s' needs %s"), ctx->command, _ (info[kind].args));
  if ((path = ctl_migration_path (argv[1])) == NULL)
    return ctl_usage_error (ctx, _ ("'%s' is neither a migration number nor an object path"),
                            argv[1]);
  switch (kind)
    {
    case CONTROL_CANCEL:
    case CONTROL_POSTCOPY:
      params = g_variant_new_parsed ("(@a{sv} {},)");
      break;
    case CONTROL_BANDWIDTH:
      if (!ctl_parse_size (argv[2], &value))
        return ctl_usage_error (ctx, _ ("RATE is bytes per second, e.g. 100M or 1G, not '%s'"),
                                argv[2]);
      params = g_variant_new ("(t)", value);
      break;
    case CONTROL_DOWNTIME:
      if (!ctl_parse_uint (argv[2], 1, G_MAXUINT64, &value))
        return ctl_usage_error (ctx, _ ("MS is a number of milliseconds, at least 1, not '%s'"),
                                argv[2]);
      params = g_variant_new ("(t)", value);
      break;
    }

  if ((rc = ctl_connect (ctx)) != CTL_EXIT_OK)
    {
      g_variant_unref (g_variant_ref_sink (params));
      return rc;
    }
  if ((m = ctl_migration_proxy (ctx, path, &rc)) == NULL)
    {
      g_variant_unref (g_variant_ref_sink (params));
      return rc;
    }
  reply = ctl_call (ctx, m, info[kind].method, params, G_VARIANT_TYPE ("()"), TRUE, &error);
  if (reply == NULL)
    return ctl_report_error (ctx, error, CTL_ACTION_MIGRATION_CONTROL, "migration", argv[1],
                             "%s %s", ctx->command, argv[1]);
  if (ctx->json)
    {
      ctl_print_ok (ctx, "migration", path);
      return CTL_EXIT_OK;
    }
  switch (kind)
    {
    case CONTROL_CANCEL:
      g_print (_ ("migration %s of %s: cancel requested\n"), ctl_migration_id (path),
               ctl_nonnull (md_dbus_migration1_get_guest_name (m)));
      break;
    case CONTROL_BANDWIDTH:
      if (value == 0)
        g_print (_ ("migration %s: bandwidth unlimited\n"), ctl_migration_id (path));
      else
        {
          g_autofree char *rate = ctl_format_rate (value);
          g_print (_ ("migration %s: bandwidth limited to %s\n"), ctl_migration_id (path), rate);
        }
      break;
    case CONTROL_DOWNTIME:
      g_print (_ ("migration %s: maximum downtime %" G_GUINT64_FORMAT " ms\n"),
               ctl_migration_id (path), value);
      break;
    case CONTROL_POSTCOPY:
      g_print (_ ("migration %s: switching to post-copy\n"), ctl_migration_id (path));
      break;
    }
  return CTL_EXIT_OK;
}

int
ctl_cmd_cancel (CtlContext *ctx, int argc, char **argv)
{
  return control (ctx, argc, argv, CONTROL_CANCEL);
}

int
ctl_cmd_set_bandwidth (CtlContext *ctx, int argc, char **argv)
{
  return control (ctx, argc, argv, CONTROL_BANDWIDTH);
}

int
ctl_cmd_set_downtime (CtlContext *ctx, int argc, char **argv)
{
  return control (ctx, argc, argv, CONTROL_DOWNTIME);
}

int
ctl_cmd_postcopy (CtlContext *ctx, int argc, char **argv)
{
  return control (ctx, argc, argv, CONTROL_POSTCOPY);
}

/* ---- resolve ---- */

int
ctl_cmd_resolve (CtlContext *ctx, int argc, char **argv)
{
  gboolean no_resume = FALSE;
  const GOptionEntry entries[] = {
    { "no-resume", 0, 0, G_OPTION_ARG_NONE, &no_resume,
      N_ ("Leave the kept copy paused when it is on this host"), NULL },
    { NULL },
  };
  g_auto (GVariantBuilder) options = G_VARIANT_BUILDER_INIT (G_VARIANT_TYPE_VARDICT);
  g_autoptr (MdDbusMigration1) m = NULL;
  g_autoptr (GVariant) reply = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *path = NULL;
  const char *keep;
  int rc;

  if (!ctl_parse_options (
          ctx, &argc, &argv, N_ ("MIGRATION source|destination"),
          N_ ("End a migration that needs attention (the daemon could not prove which copy of "
              "the guest is the only one): name the copy that is the guest. On this host that "
              "copy is resumed, or the other one is stopped with what the migration made here. "
              "Run it on both hosts with the same choice."),
          entries))
    return CTL_EXIT_USAGE;
  if (argc != 3)
    return ctl_usage_error (ctx, _ ("'resolve' needs a MIGRATION and the copy to keep"));
  if ((path = ctl_migration_path (argv[1])) == NULL)
    return ctl_usage_error (ctx, _ ("'%s' is neither a migration number nor an object path"),
                            argv[1]);
  keep = argv[2];
  if (!g_str_equal (keep, "source") && !g_str_equal (keep, "destination"))
    return ctl_usage_error (ctx, _ ("the copy to keep is 'source' or 'destination', not '%s'"),
                            keep);
  if (no_resume)
    g_variant_builder_add (&options, "{sv}", "resume", g_variant_new_boolean (FALSE));
  if ((rc = ctl_connect (ctx)) != CTL_EXIT_OK)
    return rc;
  if ((m = ctl_migration_proxy (ctx, path, &rc)) == NULL)
    return rc;
  reply = ctl_call (ctx, m, "Resolve", g_variant_new ("(sa{sv})", keep, &options),
                    G_VARIANT_TYPE ("()"), TRUE, &error);
  if (reply == NULL)
    return ctl_report_error (ctx, error, CTL_ACTION_MIGRATION_RESOLVE, "migration", argv[1],
                             "resolve %s", argv[1]);
  if (ctx->json)
    {
      ctl_print_ok (ctx, "migration", path);
      return CTL_EXIT_OK;
    }
  g_print (_ ("migration %s of %s: resolved, the guest is the copy on the %s\n"),
           ctl_migration_id (path), ctl_nonnull (md_dbus_migration1_get_guest_name (m)), keep);
  return CTL_EXIT_OK;
}

/* ---- monitor ---- */

typedef struct
{
  CtlContext *ctx;
  GMainLoop *loop;
} Monitor;

static char *
now_string (void)
{
  g_autoptr (GDateTime) now = g_date_time_new_now_local ();
  return g_date_time_format (now, "%H:%M:%S.%f");
}

static void
monitor_print_json (Monitor *m, const char *path, const char *iface, const char *signal,
                    GVariant *params)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonNode) root = NULL;
  g_autoptr (GDateTime) now = g_date_time_new_now_utc ();
  g_autofree char *time = g_date_time_format_iso8601 (now);

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "time");
  json_builder_add_string_value (b, time);
  json_builder_set_member_name (b, "path");
  json_builder_add_string_value (b, path);
  json_builder_set_member_name (b, "interface");
  json_builder_add_string_value (b, iface);
  json_builder_set_member_name (b, "signal");
  json_builder_add_string_value (b, signal);
  json_builder_set_member_name (b, "arguments");
  json_builder_add_value (b, params != NULL ? ctl_variant_to_json (params)
                                            : json_node_new (JSON_NODE_NULL));
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  ctl_print_json (root, TRUE);
}

static void
append_dict (GString *s, GVariant *dict)
{
  GVariantIter it;
  const char *key;
  GVariant *value;

  g_variant_iter_init (&it, dict);
  while (g_variant_iter_next (&it, "{&sv}", &key, &value))
    {
      g_autofree char *printed = g_variant_print (value, FALSE);
      g_string_append_printf (s, " %s=%s", key, printed);
      g_variant_unref (value);
    }
}

static void
on_any_signal (GDBusConnection *bus, const char *sender, const char *path, const char *iface,
               const char *signal, GVariant *params, gpointer data)
{
  Monitor *m = data;
  g_autofree char *now = NULL;
  g_autoptr (GString) s = NULL;

  if (m->ctx->json)
    {
      monitor_print_json (m, path, iface, signal, params);
      return;
    }
  now = now_string ();
  s = g_string_new (NULL);
  g_string_printf (s, "%s %s ", now, path);
  if (g_str_equal (signal, "PropertiesChanged")
      && g_variant_is_of_type (params, G_VARIANT_TYPE ("(sa{sv}as)")))
    {
      const char *changed_iface;
      g_autoptr (GVariant) changed = NULL;
      g_autofree const char **invalidated = NULL;
      g_variant_get (params, "(&s@a{sv}^a&s)", &changed_iface, &changed, &invalidated);
      g_string_append_printf (s, "PropertiesChanged %s:", changed_iface);
      append_dict (s, changed);
      for (gsize i = 0; invalidated != NULL && invalidated[i] != NULL; i++)
        g_string_append_printf (s, " %s=(invalidated)", invalidated[i]);
    }
  else if (g_str_equal (signal, "InterfacesAdded")
           && g_variant_is_of_type (params, G_VARIANT_TYPE ("(oa{sa{sv}})")))
    {
      const char *object;
      g_autoptr (GVariantIter) ifaces = NULL;
      const char *name;
      GVariant *props;
      g_variant_get (params, "(&oa{sa{sv}})", &object, &ifaces);
      g_string_append_printf (s, "InterfacesAdded %s", object);
      while (g_variant_iter_next (ifaces, "{&s@a{sv}}", &name, &props))
        {
          g_string_append_printf (s, " %s:", name);
          append_dict (s, props);
          g_variant_unref (props);
        }
    }
  else if (g_str_equal (signal, "InterfacesRemoved")
           && g_variant_is_of_type (params, G_VARIANT_TYPE ("(oas)")))
    {
      const char *object;
      g_autofree const char **ifaces = NULL;
      g_variant_get (params, "(&o^a&s)", &object, &ifaces);
      g_string_append_printf (s, "InterfacesRemoved %s", object);
      for (gsize i = 0; ifaces[i] != NULL; i++)
        g_string_append_printf (s, " %s", ifaces[i]);
    }
  else if (g_str_equal (signal, "Completed")
           && g_variant_is_of_type (params, G_VARIANT_TYPE ("(bss)")))
    {
      gboolean success;
      const char *name, *message;
      g_variant_get (params, "(b&s&s)", &success, &name, &message);
      if (success)
        g_string_append (s, _ ("Completed: success"));
      else
        g_string_append_printf (s, _ ("Completed: failed: %s: %s"), name, message);
    }
  else
    {
      g_autofree char *printed = g_variant_print (params, FALSE);
      g_string_append_printf (s, "%s.%s %s", iface, signal, printed);
    }
  g_print ("%s\n", s->str);
  fflush (stdout);
}

/* Presence as the bus itself would tell it, so that --json output keeps
 * one shape; also tells a reader that the subscription is in place. */
static void
monitor_owner_json (Monitor *m, const char *owner)
{
  g_autoptr (GVariant) args =
      g_variant_ref_sink (g_variant_new ("(sss)", MD_BUS_NAME, "", ctl_nonnull (owner)));
  monitor_print_json (m, "/org/freedesktop/DBus", "org.freedesktop.DBus", "NameOwnerChanged", args);
}

static void
monitor_name_appeared (GDBusConnection *bus, const char *name, const char *owner, gpointer data)
{
  Monitor *m = data;
  g_autofree char *now = now_string ();

  if (m->ctx->json)
    monitor_owner_json (m, owner);
  else
    g_print (_ ("%s migrationd is on the bus (%s)\n"), now, owner);
  fflush (stdout);
}

static void
monitor_name_vanished (GDBusConnection *bus, const char *name, gpointer data)
{
  Monitor *m = data;
  g_autofree char *now = now_string ();

  if (bus == NULL)
    {
      ctl_fail (m->ctx, CTL_EXIT_UNREACHABLE, "org.freedesktop.DBus.Error.Disconnected", NULL,
                _ ("lost the connection to the bus"));
      g_main_loop_quit (m->loop);
      return;
    }
  if (m->ctx->json)
    monitor_owner_json (m, NULL);
  else
    g_print (_ ("%s migrationd left the bus; waiting for it to come back\n"), now);
  fflush (stdout);
}

static gboolean
monitor_sigint (gpointer data)
{
  Monitor *m = data;

  g_main_loop_quit (m->loop);
  return G_SOURCE_CONTINUE;
}

int
ctl_cmd_monitor (CtlContext *ctx, int argc, char **argv)
{
  Monitor m = { ctx, NULL };
  guint sub, watch, sigint;
  int rc;

  if (!ctl_parse_options (ctx, &argc, &argv, NULL,
                          N_ ("Print every signal from migrationd as it comes (with --json: one "
                              "JSON object per line), until Ctrl-C."),
                          NULL))
    return CTL_EXIT_USAGE;
  if (argc != 1)
    return ctl_usage_error (ctx, _ ("'monitor' takes no arguments"));
  if ((rc = ctl_connect (ctx)) != CTL_EXIT_OK)
    return rc;

  m.loop = g_main_loop_new (NULL, FALSE);
  sub = g_dbus_connection_signal_subscribe (ctx->bus, MD_BUS_NAME, NULL, NULL, NULL, NULL,
                                            G_DBUS_SIGNAL_FLAGS_NONE, on_any_signal, &m, NULL);
  watch = g_bus_watch_name_on_connection (ctx->bus, MD_BUS_NAME, G_BUS_NAME_WATCHER_FLAGS_NONE,
                                          monitor_name_appeared, monitor_name_vanished, &m, NULL);
  sigint = g_unix_signal_add (SIGINT, monitor_sigint, &m);
  g_main_loop_run (m.loop);

  g_source_remove (sigint);
  g_bus_unwatch_name (watch);
  g_dbus_connection_signal_unsubscribe (ctx->bus, sub);
  g_main_loop_unref (m.loop);
  return CTL_EXIT_OK;
}
