/* migrationctl: evacuate — every running guest of this host to the given
 * peers (Manager1.Evacuate), followed to the end; prints where each guest
 * went. */
#include "config.h"

#include <glib/gi18n.h>
#include <glib-unix.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "ctl-common.h"

typedef struct
{
  CtlContext *ctx;
  GMainLoop *loop;
  MdDbusEvacuation1 *evacuation;
  char *path;
  char *last_line;
  gboolean cancelling;
  gboolean done;
  int exit_code;
} Evac;

/* "/org/migrationd/evacuation/3" -> "3", as migrations are shown. */
static const char *
evacuation_id (const char *path)
{
  const char *slash = strrchr (path, '/');

  return slash != NULL ? slash + 1 : path;
}

static gboolean
state_is_final (const char *state)
{
  return g_strcmp0 (state, "completed") == 0 || g_strcmp0 (state, "failed") == 0
         || g_strcmp0 (state, "cancelled") == 0;
}

static void
print_progress (Evac *e)
{
  MdDbusEvacuation1 *ev = e->evacuation;
  g_autofree char *line = NULL;

  if (e->ctx->json || e->ctx->quiet)
    return;
  line = g_strdup_printf (_ ("%u of %u guests done, %u migrating (%.0f%%)"),
                          md_dbus_evacuation1_get_done (ev), md_dbus_evacuation1_get_total (ev),
                          md_dbus_evacuation1_get_running (ev),
                          md_dbus_evacuation1_get_progress (ev) * 100.0);
  if (g_strcmp0 (line, e->last_line) == 0)
    return;
  g_printerr ("%s\n", line);
  g_free (e->last_line);
  e->last_line = g_steal_pointer (&line);
}

static void
print_result_json (Evac *e, GVariant *results)
{
  MdDbusEvacuation1 *ev = e->evacuation;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonNode) root = NULL;
  const char *name, *outcome, *dest, *migration, *message;
  GVariantIter it;

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "command");
  json_builder_add_string_value (b, "evacuate");
  json_builder_set_member_name (b, "evacuation");
  json_builder_add_string_value (b, e->path);
  json_builder_set_member_name (b, "state");
  json_builder_add_string_value (b, ctl_nonnull (md_dbus_evacuation1_get_state (ev)));
  json_builder_set_member_name (b, "parallel");
  json_builder_add_int_value (b, md_dbus_evacuation1_get_parallel (ev));
  json_builder_set_member_name (b, "guests");
  json_builder_begin_array (b);
  g_variant_iter_init (&it, results);
  while (g_variant_iter_next (&it, "(&s&s&s&o&s)", &name, &outcome, &dest, &migration, &message))
    {
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "name");
      json_builder_add_string_value (b, name);
      json_builder_set_member_name (b, "outcome");
      json_builder_add_string_value (b, outcome);
      json_builder_set_member_name (b, "destination");
      json_builder_add_string_value (b, dest);
      json_builder_set_member_name (b, "migration");
      json_builder_add_string_value (b, migration);
      json_builder_set_member_name (b, "message");
      json_builder_add_string_value (b, message);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  ctl_print_json (root, FALSE);
}

static void
print_result (Evac *e)
{
  MdDbusEvacuation1 *ev = e->evacuation;
  GVariant *results = md_dbus_evacuation1_get_results (ev);
  const char *state = md_dbus_evacuation1_get_state (ev);
  g_autoptr (GPtrArray) rows = g_ptr_array_new_with_free_func ((GDestroyNotify) g_strfreev);
  const char *name, *outcome, *dest, *migration, *message;
  GVariantIter it;

  if (results == NULL)
    return;
  if (e->ctx->json)
    {
      print_result_json (e, results);
      return;
    }
  g_ptr_array_add (rows,
                   g_strsplit (_ ("GUEST\tOUTCOME\tDESTINATION\tMIGRATION\tMESSAGE"), "\t", -1));
  g_variant_iter_init (&it, results);
  while (g_variant_iter_next (&it, "(&s&s&s&o&s)", &name, &outcome, &dest, &migration, &message))
    {
      char **row = g_new0 (char *, 6);
      row[0] = g_strdup (name);
      row[1] = g_strdup (outcome);
      row[2] = g_strdup (*dest ? dest : "-");
      row[3] = g_strdup (g_str_equal (migration, "/") ? "-" : ctl_migration_id (migration));
      row[4] = g_strdup (*message ? message : "-");
      g_ptr_array_add (rows, row);
    }
  ctl_print_table (rows);
  g_print (_ ("evacuation %s %s\n"), evacuation_id (e->path), ctl_nonnull (state));
}

static void
check_done (Evac *e)
{
  const char *state = md_dbus_evacuation1_get_state (e->evacuation);

  print_progress (e);
  if (e->done || !state_is_final (state))
    return;
  e->done = TRUE;
  e->exit_code = g_str_equal (state, "completed") ? CTL_EXIT_OK : CTL_EXIT_FAILED;
  g_main_loop_quit (e->loop);
}

static void
on_properties_changed (GDBusProxy *proxy, GVariant *changed, const char *const *invalidated,
                       gpointer user_data)
{
  check_done (user_data);
}

static void
on_completed (MdDbusEvacuation1 *ev, gboolean success, const char *summary, gpointer user_data)
{
  Evac *e = user_data;

  if (!e->ctx->json && !e->ctx->quiet)
    g_printerr ("%s\n", summary);
}

/* A missed PropertiesChanged (the object ended between the call and the
 * subscription) must not leave us waiting: read them again now and then. */
static gboolean
on_poll (gpointer user_data)
{
  Evac *e = user_data;
  g_autoptr (GVariant) all = NULL;

  all = g_dbus_connection_call_sync (
      e->ctx->bus, MD_BUS_NAME, e->path, "org.freedesktop.DBus.Properties", "GetAll",
      g_variant_new ("(s)", "org.migrationd.Evacuation1"), G_VARIANT_TYPE ("(a{sv})"),
      G_DBUS_CALL_FLAGS_NONE, 10000, NULL, NULL);
  if (all != NULL)
    {
      g_autoptr (GVariant) props = g_variant_get_child_value (all, 0);
      GVariantIter it;
      const char *key;
      GVariant *value;

      g_variant_iter_init (&it, props);
      while (g_variant_iter_next (&it, "{&sv}", &key, &value))
        {
          g_dbus_proxy_set_cached_property (G_DBUS_PROXY (e->evacuation), key, value);
          g_variant_unref (value);
        }
    }
  check_done (e);
  return G_SOURCE_CONTINUE;
}

static gboolean
on_sigint (gpointer user_data)
{
  Evac *e = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = NULL;

  if (e->cancelling)
    {
      e->exit_code = CTL_EXIT_FAILED;
      g_main_loop_quit (e->loop);
      return G_SOURCE_REMOVE;
    }
  e->cancelling = TRUE;
  ctl_note (e->ctx, _ ("cancelling the evacuation (Ctrl-C again to stop waiting)\n"));
  reply = ctl_call (e->ctx, e->evacuation, "Cancel", g_variant_new ("(a{sv})", NULL),
                    G_VARIANT_TYPE ("()"), TRUE, &error);
  if (reply == NULL)
    ctl_report_error (e->ctx, error, CTL_ACTION_MIGRATION_CONTROL, NULL, NULL,
                      _ ("cannot cancel evacuation %s"), e->path);
  return G_SOURCE_CONTINUE;
}

static int
follow (CtlContext *ctx, const char *path)
{
  Evac e = { .ctx = ctx, .exit_code = CTL_EXIT_FAILED };
  g_autoptr (GError) error = NULL;
  guint sigint_id, poll_id;

  e.path = g_strdup (path);
  e.evacuation = md_dbus_evacuation1_proxy_new_sync (ctx->bus, G_DBUS_PROXY_FLAGS_NONE, MD_BUS_NAME,
                                                     path, NULL, &error);
  if (e.evacuation == NULL)
    {
      g_free (e.path);
      return ctl_report_error (ctx, error, NULL, NULL, NULL, _ ("cannot follow evacuation %s"),
                               path);
    }
  e.loop = g_main_loop_new (NULL, FALSE);
  g_signal_connect (e.evacuation, "g-properties-changed", G_CALLBACK (on_properties_changed), &e);
  g_signal_connect (e.evacuation, "completed", G_CALLBACK (on_completed), &e);
  sigint_id = g_unix_signal_add (SIGINT, on_sigint, &e);
  poll_id = g_timeout_add_seconds (1, on_poll, &e);
  on_poll (&e);
  if (!e.done)
    g_main_loop_run (e.loop);
  g_source_remove (sigint_id);
  g_source_remove (poll_id);
  print_result (&e);
  g_signal_handlers_disconnect_by_data (e.evacuation, &e);
  g_clear_object (&e.evacuation);
  g_main_loop_unref (e.loop);
  g_free (e.last_line);
  g_free (e.path);
  return e.exit_code;
}

/* --to B,C (repeatable) and positional DEST... make one list. */
static GStrv
collect_peers (char **to, int argc, char **argv)
{
  g_autoptr (GStrvBuilder) b = g_strv_builder_new ();

  for (guint i = 0; to != NULL && to[i] != NULL; i++)
    {
      g_auto (GStrv) parts = g_strsplit (to[i], ",", -1);
      for (guint j = 0; parts[j] != NULL; j++)
        if (*g_strstrip (parts[j]) != '\0')
          g_strv_builder_add (b, parts[j]);
    }
  for (int i = 1; i < argc; i++)
    g_strv_builder_add (b, argv[i]);
  return g_strv_builder_end (b);
}

int
ctl_cmd_evacuate (CtlContext *ctx, int argc, char **argv)
{
  g_auto (GStrv) to = NULL;
  g_auto (GStrv) peers = NULL;
  g_autofree char *parallel = NULL, *bandwidth = NULL;
  gboolean shutdown_rest = FALSE, no_tls = FALSE, auto_converge = FALSE, persist = FALSE;
  const GOptionEntry entries[] = {
    { "to", 0, 0, G_OPTION_ARG_STRING_ARRAY, &to,
      N_ ("Peers to move the guests to, comma-separated (or give them as arguments)"),
      N_ ("PEER,...") },
    { "parallel", 0, 0, G_OPTION_ARG_STRING, &parallel,
      N_ ("At most N migrations at once (default 2)"), N_ ("N") },
    { "shutdown-rest", 0, 0, G_OPTION_ARG_NONE, &shutdown_rest,
      N_ ("Shut down the guests that cannot move"), NULL },
    { "bandwidth", 0, 0, G_OPTION_ARG_STRING, &bandwidth,
      N_ ("Bandwidth limit of each migration (e.g. 100M)"), N_ ("RATE") },
    { "no-tls", 0, 0, G_OPTION_ARG_NONE, &no_tls,
      N_ ("Plain TCP for the migration streams (trusted networks only)"), NULL },
    { "auto-converge", 0, 0, G_OPTION_ARG_NONE, &auto_converge,
      N_ ("Throttle busy guests so that they converge"), NULL },
    { "persist", 0, 0, G_OPTION_ARG_NONE, &persist,
      N_ ("Keep each guest defined on its destination"), NULL },
    { NULL },
  };
  g_auto (GVariantBuilder) options = G_VARIANT_BUILDER_INIT (G_VARIANT_TYPE_VARDICT);
  g_auto (GVariantBuilder) migrate = G_VARIANT_BUILDER_INIT (G_VARIANT_TYPE_VARDICT);
  g_autoptr (GVariant) reply = NULL;
  g_autoptr (GError) error = NULL;
  const char *path;
  guint64 value;
  int rc;

  if (!ctl_parse_options (ctx, &argc, &argv, N_ ("[PEER...]"),
                          N_ ("Move every running guest of this host to the given peers, at most "
                              "N at once, and print where each went."),
                          entries))
    return CTL_EXIT_USAGE;
  peers = collect_peers (to, argc, argv);
  if (peers[0] == NULL)
    return ctl_usage_error (ctx, _ ("evacuate needs peers: --to B,C or PEER arguments"));
  if (parallel != NULL)
    {
      if (!ctl_parse_uint (parallel, 1, 16, &value))
        return ctl_usage_error (ctx, _ ("--parallel needs a whole number from 1 to 16, not '%s'"),
                                parallel);
      g_variant_builder_add (&options, "{sv}", "parallel", g_variant_new_uint32 ((guint32) value));
    }
  if (shutdown_rest)
    g_variant_builder_add (&options, "{sv}", "shutdown-rest", g_variant_new_boolean (TRUE));
  if (bandwidth != NULL)
    {
      if (!ctl_parse_size (bandwidth, &value))
        return ctl_usage_error (ctx, _ ("--bandwidth needs a rate such as 100M, not '%s'"),
                                bandwidth);
      g_variant_builder_add (&migrate, "{sv}", "bandwidth", g_variant_new_uint64 (value));
    }
  if (no_tls)
    g_variant_builder_add (&migrate, "{sv}", "tls", g_variant_new_boolean (FALSE));
  if (auto_converge)
    g_variant_builder_add (&migrate, "{sv}", "auto-converge", g_variant_new_boolean (TRUE));
  if (persist)
    g_variant_builder_add (&migrate, "{sv}", "persist-destination", g_variant_new_boolean (TRUE));
  g_variant_builder_add (&options, "{sv}", "migrate-options", g_variant_builder_end (&migrate));

  if ((rc = ctl_connect (ctx)) != CTL_EXIT_OK)
    return rc;
  reply = ctl_call (ctx, ctx->manager, "Evacuate", g_variant_new ("(^asa{sv})", peers, &options),
                    G_VARIANT_TYPE ("(o)"), TRUE, &error);
  if (reply == NULL)
    return ctl_report_error (ctx, error, CTL_ACTION_MIGRATE, NULL, NULL,
                             _ ("cannot evacuate this host"));
  g_variant_get (reply, "(&o)", &path);
  ctl_note (ctx, _ ("evacuation %s started\n"), evacuation_id (path));
  return follow (ctx, path);
}
