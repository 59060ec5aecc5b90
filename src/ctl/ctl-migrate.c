/* migrationctl: migrate (and follow a migration or a save/restore). */
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

/* ---- following a migration ---- */

typedef struct
{
  CtlContext *ctx;
  GMainLoop *loop;
  char *guest_name;
  char *destination;
  char *path;
  MdDbusMigration1 *migration;
  guint completed_sub;
  guint sigint_id;
  guint throttle_id;
  guint tick_id;
  guint fallback_id;
  gboolean tty;
  gboolean bar_on_screen;
  gint64 last_print_us;
  char *last_line;
  gboolean cancelling;
  guint64 postcopy_after;
  gboolean postcopy_requested;
  gboolean done;
  gboolean save; /* Guest1.Save/ManagedSave: the destination is a file */
  int exit_code;
} Follow;

static int
terminal_width (void)
{
  struct winsize ws;

  if (ioctl (STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
    return ws.ws_col;
  return 80;
}

static gboolean
state_is_terminal (const char *state)
{
  return g_strcmp0 (state, "completed") == 0 || g_strcmp0 (state, "failed") == 0
         || g_strcmp0 (state, "cancelled") == 0;
}

/* The pieces of one progress report, in display order. */
static GPtrArray *
progress_fields (Follow *f, gboolean compact)
{
  MdDbusMigration1 *m = f->migration;
  GPtrArray *fields = g_ptr_array_new_with_free_func (g_free);
  guint64 mem_total = md_dbus_migration1_get_memory_total (m);
  guint64 disk_total = md_dbus_migration1_get_disk_total (m);
  guint64 rate = md_dbus_migration1_get_rate (m);
  guint64 dirty = md_dbus_migration1_get_dirty_rate (m);
  guint64 iteration = md_dbus_migration1_get_iteration (m);
  guint64 eta = md_dbus_migration1_get_expected_end_time (m);
  const char *phase = md_dbus_migration1_get_phase (m);
  const char *state = md_dbus_migration1_get_state (m);
  const char *converge = md_dbus_migration1_get_convergence (m);
  const char *reason = md_dbus_migration1_get_convergence_reason (m);

  if (md_dbus_migration1_get_progress_valid (m))
    g_ptr_array_add (fields,
                     g_strdup_printf ("%5.1f%%", md_dbus_migration1_get_progress (m) * 100.0));
  else
    g_ptr_array_add (fields, g_strdup ("  -.-%"));
  if (mem_total > 0)
    {
      g_autofree char *done = ctl_format_bytes (md_dbus_migration1_get_memory_processed (m));
      g_autofree char *total = ctl_format_bytes (mem_total);
      g_ptr_array_add (fields,
                       g_strdup_printf (compact ? "%s/%s" : _ ("memory %s/%s"), done, total));
    }
  if (disk_total > 0)
    {
      g_autofree char *done = ctl_format_bytes (md_dbus_migration1_get_disk_processed (m));
      g_autofree char *total = ctl_format_bytes (disk_total);
      g_ptr_array_add (fields, g_strdup_printf (_ ("disk %s/%s"), done, total));
    }
  if (rate > 0)
    g_ptr_array_add (fields, ctl_format_rate (rate));
  if (eta > 0 && !state_is_terminal (state))
    {
      g_autofree char *d =
          ctl_format_duration (((gint64) eta - g_get_real_time ()) / G_USEC_PER_SEC);
      g_ptr_array_add (fields, g_strdup_printf (_ ("ETA %s"), d));
    }
  if (phase != NULL && *phase != '\0')
    g_ptr_array_add (fields, g_strdup_printf (compact ? "%s" : _ ("phase %s"), phase));
  if (state != NULL && !g_str_equal (state, "running"))
    g_ptr_array_add (fields, g_strdup_printf (compact ? "(%s)" : _ ("state %s"), state));
  if (iteration > 0)
    g_ptr_array_add (fields, g_strdup_printf (compact ? _ ("pass %" G_GUINT64_FORMAT)
                                                      : _ ("iteration %" G_GUINT64_FORMAT),
                                              iteration));
  if (dirty > 0)
    {
      g_autofree char *d = ctl_format_rate (dirty);
      g_ptr_array_add (fields, g_strdup_printf (_ ("dirty %s"), d));
    }
  if (converge != NULL && *converge != '\0' && !g_str_equal (converge, "manual"))
    g_ptr_array_add (fields, compact || *ctl_nonnull (reason) == '\0'
                                 ? g_strdup_printf (_ ("convergence %s"), converge)
                                 : g_strdup_printf (_ ("convergence %s (%s)"), converge, reason));
  if (md_dbus_migration1_get_recovery_attempts (m) > 0)
    g_ptr_array_add (fields, g_strdup_printf (_ ("recovery attempts %u"),
                                              md_dbus_migration1_get_recovery_attempts (m)));
  g_ptr_array_add (fields, NULL);
  return fields;
}

static JsonNode *
progress_json (Follow *f, const char *event)
{
  MdDbusMigration1 *m = f->migration;
  g_autoptr (JsonBuilder) b = json_builder_new ();

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "event");
  json_builder_add_string_value (b, event);
  json_builder_set_member_name (b, "migration");
  json_builder_add_string_value (b, f->path);
  json_builder_set_member_name (b, "guest");
  json_builder_add_string_value (b, f->guest_name);
#define STR(key, getter)                                                                           \
  json_builder_set_member_name (b, key);                                                           \
  json_builder_add_string_value (b, ctl_nonnull (getter (m)))
#define INT(key, getter)                                                                           \
  json_builder_set_member_name (b, key);                                                           \
  json_builder_add_int_value (b, (gint64) getter (m))
  STR ("state", md_dbus_migration1_get_state);
  STR ("phase", md_dbus_migration1_get_phase);
  json_builder_set_member_name (b, "progress");
  if (md_dbus_migration1_get_progress_valid (m))
    json_builder_add_double_value (b, md_dbus_migration1_get_progress (m));
  else
    json_builder_add_null_value (b);
  INT ("memory-total", md_dbus_migration1_get_memory_total);
  INT ("memory-processed", md_dbus_migration1_get_memory_processed);
  INT ("memory-remaining", md_dbus_migration1_get_memory_remaining);
  INT ("disk-total", md_dbus_migration1_get_disk_total);
  INT ("disk-processed", md_dbus_migration1_get_disk_processed);
  INT ("disk-remaining", md_dbus_migration1_get_disk_remaining);
  INT ("rate", md_dbus_migration1_get_rate);
  INT ("disk-rate", md_dbus_migration1_get_disk_rate);
  INT ("dirty-rate", md_dbus_migration1_get_dirty_rate);
  INT ("iteration", md_dbus_migration1_get_iteration);
  INT ("expected-end-time", md_dbus_migration1_get_expected_end_time);
  INT ("expected-downtime", md_dbus_migration1_get_expected_downtime);
  INT ("downtime", md_dbus_migration1_get_downtime);
  INT ("total-time", md_dbus_migration1_get_total_time);
  STR ("convergence", md_dbus_migration1_get_convergence);
  STR ("convergence-reason", md_dbus_migration1_get_convergence_reason);
  INT ("recovery-attempts", md_dbus_migration1_get_recovery_attempts);
#undef STR
#undef INT
  json_builder_end_object (b);
  return json_builder_get_root (b);
}

static void
clear_bar (Follow *f)
{
  if (f->bar_on_screen)
    {
      g_print ("\r\033[K");
      f->bar_on_screen = FALSE;
      fflush (stdout);
    }
}

static void
draw_bar (Follow *f)
{
  g_autoptr (GPtrArray) fields = progress_fields (f, TRUE);
  g_autoptr (GString) line = g_string_new (NULL);
  g_autofree char *text = NULL;
  int width = terminal_width () - 1;
  int name_len = (int) g_utf8_strlen (f->guest_name, -1) + 1;
  guint n = fields->len - 1; /* without the NULL terminator */
  int room, bar;

  /* A narrow terminal loses the least important figures (the last ones)
   * rather than the line wrapping and breaking the in-place redraw. */
  for (;;)
    {
      char *saved = g_ptr_array_index (fields, n);
      g_ptr_array_index (fields, n) = NULL;
      g_free (text);
      text = g_strjoinv (" ", (char **) fields->pdata);
      g_ptr_array_index (fields, n) = saved;
      room = width - name_len - (int) g_utf8_strlen (text, -1) - 3;
      if (room >= 10 || n <= 2)
        break;
      n--;
    }
  bar = MIN (30, room);

  g_string_append (line, f->guest_name);
  g_string_append_c (line, ' ');
  if (bar >= 10)
    {
      double p = md_dbus_migration1_get_progress_valid (f->migration)
                     ? CLAMP (md_dbus_migration1_get_progress (f->migration), 0.0, 1.0)
                     : 0.0;
      int filled = (int) (p * bar);
      g_string_append_c (line, '[');
      for (int i = 0; i < bar; i++)
        g_string_append_c (line, i < filled ? '#' : '.');
      g_string_append (line, "] ");
    }
  g_string_append (line, text);
  if ((int) g_utf8_strlen (line->str, -1) > width)
    g_string_truncate (line, g_utf8_offset_to_pointer (line->str, width) - line->str);
  g_print ("\r\033[K%s", line->str);
  fflush (stdout);
  f->bar_on_screen = TRUE;
}

/* One report, now: a redrawn bar, a plain line or a JSON object. */
static void
print_progress (Follow *f)
{
  f->last_print_us = g_get_monotonic_time ();
  if (f->ctx->json)
    {
      g_autoptr (JsonNode) node = progress_json (f, "progress");
      ctl_print_json (node, TRUE);
    }
  else if (f->tty)
    draw_bar (f);
  else
    {
      g_autoptr (GPtrArray) fields = progress_fields (f, FALSE);
      g_autofree char *text = g_strjoinv (", ", (char **) fields->pdata);
      g_autofree char *line = g_strdup_printf ("%s: %s", f->guest_name, g_strstrip (text));
      /* Nothing new (e.g. only an invalidated property): no new line. */
      if (g_strcmp0 (line, f->last_line) == 0)
        return;
      g_print ("%s\n", line);
      fflush (stdout);
      g_free (f->last_line);
      f->last_line = g_steal_pointer (&line);
    }
}

static gboolean
throttle_cb (gpointer data)
{
  Follow *f = data;

  f->throttle_id = 0;
  if (!f->done)
    print_progress (f);
  return G_SOURCE_REMOVE;
}

/* At most two reports a second; the last state is never dropped. */
static void
schedule_progress (Follow *f)
{
  gint64 since = g_get_monotonic_time () - f->last_print_us;

  if (f->throttle_id != 0)
    return;
  if (since >= PRINT_INTERVAL_US)
    print_progress (f);
  else
    f->throttle_id =
        g_timeout_add ((guint) ((PRINT_INTERVAL_US - since) / 1000) + 1, throttle_cb, f);
}

static void
finish (Follow *f, gboolean success, const char *error_name, const char *error_message)
{
  g_autofree char *elapsed = NULL;
  guint64 total_ms, downtime_ms;

  if (f->done)
    return;
  f->done = TRUE;
  g_clear_handle_id (&f->throttle_id, g_source_remove);
  total_ms = md_dbus_migration1_get_total_time (f->migration);
  downtime_ms = md_dbus_migration1_get_downtime (f->migration);

  if (f->ctx->json)
    {
      g_autoptr (JsonNode) node = progress_json (f, "result");
      JsonObject *o = json_node_get_object (node);
      json_object_set_boolean_member (o, "success", success);
      json_object_set_string_member (o, "error-name", ctl_nonnull (error_name));
      json_object_set_string_member (o, "error-message", ctl_nonnull (error_message));
      ctl_print_json (node, TRUE);
    }
  else
    {
      /* Show where it ended, then the verdict below it. */
      print_progress (f);
      if (f->tty)
        {
          g_print ("\n");
          f->bar_on_screen = FALSE;
        }
    }

  if (success)
    {
      f->exit_code = CTL_EXIT_OK;
      if (!f->ctx->json)
        {
          g_autoptr (GString) s = g_string_new (NULL);
          if (f->save)
            g_string_printf (s, _ ("saved %s to %s; it is stopped"), f->guest_name, f->destination);
          else
            g_string_printf (s, _ ("migration of %s to %s completed"), f->guest_name,
                             f->destination);
          if (total_ms > 0)
            g_string_append_printf (s, _ (" in %.1f s"), total_ms / 1000.0);
          if (downtime_ms > 0)
            g_string_append_printf (s, _ (" (downtime %" G_GUINT64_FORMAT " ms)"), downtime_ms);
          g_print ("%s\n", s->str);
        }
    }
  else
    {
      f->exit_code = CTL_EXIT_FAILED;
      const char *name =
          error_name != NULL && *error_name != '\0' ? error_name : "org.migrationd.Error.Failed";
      if (f->cancelling && g_strcmp0 (error_name, "org.migrationd.Error.Cancelled") == 0)
        ctl_fail (f->ctx, CTL_EXIT_FAILED, name, NULL,
                  f->save ? _ ("save of %s cancelled; it keeps running")
                          : _ ("migration of %s cancelled; it keeps running on this host"),
                  f->guest_name);
      else if (f->save)
        ctl_fail (f->ctx, CTL_EXIT_FAILED, name, NULL, _ ("saving %s to %s failed: %s: %s"),
                  f->guest_name, f->destination, name,
                  error_message != NULL && *error_message != '\0' ? error_message
                                                                  : _ ("no reason given"));
      else
        ctl_fail (f->ctx, CTL_EXIT_FAILED, name, NULL, _ ("migration of %s to %s failed: %s: %s"),
                  f->guest_name, f->destination, name,
                  error_message != NULL && *error_message != '\0' ? error_message
                                                                  : _ ("no reason given"));
    }
  g_main_loop_quit (f->loop);
}

static void
on_completed (GDBusConnection *bus, const char *sender, const char *path, const char *iface,
              const char *signal, GVariant *params, gpointer data)
{
  Follow *f = data;
  gboolean success;
  const char *name, *message;

  if (g_strcmp0 (path, f->path) != 0 || !g_variant_is_of_type (params, G_VARIANT_TYPE ("(bss)")))
    return;
  g_variant_get (params, "(b&s&s)", &success, &name, &message);
  finish (f, success, name, message);
}

static void
postcopy_cb (GObject *source, GAsyncResult *result, gpointer data)
{
  Follow *f = data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = g_dbus_proxy_call_finish (G_DBUS_PROXY (source), result, &error);

  if (reply == NULL && !f->done)
    {
      clear_bar (f);
      ctl_report_error (f->ctx, error, CTL_ACTION_MIGRATION_CONTROL, NULL, NULL,
                        _ ("cannot switch the migration of %s to post-copy"), f->guest_name);
    }
}

static void
on_properties_changed (GDBusProxy *proxy, GVariant *changed, GStrv invalidated, gpointer data)
{
  Follow *f = data;

  if (f->done)
    return;
  if (f->postcopy_after > 0 && !f->postcopy_requested
      && g_strcmp0 (md_dbus_migration1_get_state (f->migration), "running") == 0
      && md_dbus_migration1_get_iteration (f->migration) > f->postcopy_after)
    {
      f->postcopy_requested = TRUE;
      clear_bar (f);
      ctl_note (f->ctx,
                _ ("switching %s to post-copy after %" G_GUINT64_FORMAT " pre-copy pass(es)\n"),
                f->guest_name, f->postcopy_after);
      g_dbus_proxy_call (
          G_DBUS_PROXY (f->migration), "StartPostcopy", g_variant_new_parsed ("(@a{sv} {},)"),
          f->ctx->no_ask_password ? G_DBUS_CALL_FLAGS_NONE
                                  : G_DBUS_CALL_FLAGS_ALLOW_INTERACTIVE_AUTHORIZATION,
          G_MAXINT, NULL, postcopy_cb, f);
    }
  schedule_progress (f);
}

static void
on_name_owner (GObject *proxy, GParamSpec *pspec, gpointer data)
{
  Follow *f = data;
  g_autofree char *owner = g_dbus_proxy_get_name_owner (G_DBUS_PROXY (proxy));

  if (owner != NULL || f->done)
    return;
  f->done = TRUE;
  clear_bar (f);
  f->exit_code =
      ctl_fail (f->ctx, CTL_EXIT_UNREACHABLE, "org.freedesktop.DBus.Error.NameHasNoOwner", NULL,
                _ ("migrationd went away while migrating %s; the outcome is unknown "
                   "(when it is back: 'migrationctl status %s')"),
                f->guest_name, f->guest_name);
  g_main_loop_quit (f->loop);
}

static void
cancel_cb (GObject *source, GAsyncResult *result, gpointer data)
{
  Follow *f = data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = g_dbus_proxy_call_finish (G_DBUS_PROXY (source), result, &error);
  g_autofree char *remote = NULL;

  if (reply != NULL || f->done)
    return;
  remote = g_dbus_error_get_remote_error (error);
  /* Finished meanwhile: Completed tells how. */
  if (g_strcmp0 (remote, "org.migrationd.Error.InvalidState") == 0)
    return;
  clear_bar (f);
  f->exit_code = ctl_report_error (f->ctx, error, CTL_ACTION_MIGRATION_CONTROL, NULL, NULL,
                                   _ ("cannot cancel the migration of %s"), f->guest_name);
  ctl_note (f->ctx, _ ("migrationctl: the migration goes on (see 'migrationctl migrations')\n"));
  f->done = TRUE;
  g_main_loop_quit (f->loop);
}

static gboolean
on_sigint (gpointer data)
{
  Follow *f = data;

  clear_bar (f);
  if (f->cancelling)
    {
      f->done = TRUE;
      f->exit_code = ctl_fail (f->ctx, CTL_EXIT_FAILED, "org.migrationd.Error.Failed", NULL,
                               _ ("not waiting any longer; see 'migrationctl migrations' for "
                                  "migration %s"),
                               ctl_migration_id (f->path));
      g_main_loop_quit (f->loop);
      return G_SOURCE_CONTINUE;
    }
  f->cancelling = TRUE;
  ctl_note (f->ctx, _ ("cancelling migration of %s...\n"), f->guest_name);
  g_dbus_proxy_call (G_DBUS_PROXY (f->migration), "Cancel", g_variant_new_parsed ("(@a{sv} {},)"),
                     f->ctx->no_ask_password ? G_DBUS_CALL_FLAGS_NONE
                                             : G_DBUS_CALL_FLAGS_ALLOW_INTERACTIVE_AUTHORIZATION,
                     G_MAXINT, NULL, cancel_cb, f);
  return G_SOURCE_CONTINUE;
}

/* Keeps the ETA on a terminal counting down between updates. */
static gboolean
tick_cb (gpointer data)
{
  Follow *f = data;

  if (!f->done && f->throttle_id == 0)
    draw_bar (f);
  return G_SOURCE_CONTINUE;
}

/* Completed was subscribed before Migrate(), so it cannot be missed; this
 * covers an object that was already finished, or gone, when we looked. */
static gboolean
fallback_cb (gpointer data)
{
  Follow *f = data;
  const char *state = md_dbus_migration1_get_state (f->migration);

  f->fallback_id = 0;
  if (f->done)
    return G_SOURCE_REMOVE;
  if (state == NULL)
    {
      clear_bar (f);
      f->done = TRUE;
      f->exit_code = ctl_fail (f->ctx, CTL_EXIT_FAILED, "org.migrationd.Error.NotFound", NULL,
                               _ ("migration %s of %s is no longer there; see 'migrationctl "
                                  "status %s'"),
                               f->path, f->guest_name, f->guest_name);
      g_main_loop_quit (f->loop);
    }
  else if (state_is_terminal (state))
    finish (f, g_str_equal (state, "completed"), md_dbus_migration1_get_error_name (f->migration),
            md_dbus_migration1_get_error_message (f->migration));
  return G_SOURCE_REMOVE;
}

/* ---- migrate ---- */

static guint64 postcopy_after_opt;

static gboolean
parse_postcopy_after (const char *option, const char *value, gpointer data, GError **error)
{
  if (value == NULL)
    {
      postcopy_after_opt = 1;
      return TRUE;
    }
  if (!ctl_parse_uint (value, 1, G_MAXUINT32, &postcopy_after_opt))
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   _ ("%s needs a number of pre-copy passes, at least 1"), option);
      return FALSE;
    }
  return TRUE;
}

static gboolean
add_uint_option (CtlContext *ctx, GVariantBuilder *options, const char *key, const char *text,
                 const char *option, guint64 min, guint64 max, const char *type, int *rc)
{
  guint64 value;

  if (text == NULL)
    return TRUE;
  if (!ctl_parse_uint (text, min, max, &value))
    {
      *rc = ctl_usage_error (ctx,
                             _ ("%s needs a whole number from %" G_GUINT64_FORMAT
                                " to %" G_GUINT64_FORMAT ", not '%s'"),
                             option, min, max, text);
      return FALSE;
    }
  if (g_str_equal (type, "q"))
    g_variant_builder_add (options, "{sv}", key, g_variant_new_uint16 ((guint16) value));
  else if (g_str_equal (type, "u"))
    g_variant_builder_add (options, "{sv}", key, g_variant_new_uint32 ((guint32) value));
  else
    g_variant_builder_add (options, "{sv}", key, g_variant_new_uint64 (value));
  return TRUE;
}

static gboolean
one_of (const char *value, const char *const *allowed)
{
  return value == NULL || g_strv_contains (allowed, value);
}

/* auto-converge, convergence, max-downtime-ceiling, postcopy-recovery-timeout. */
static gboolean
add_convergence_options (CtlContext *ctx, GVariantBuilder *options, gboolean auto_converge,
                         gboolean no_auto_converge, const char *convergence, const char *ceiling,
                         const char *recovery_timeout, int *rc)
{
  if (auto_converge || no_auto_converge)
    g_variant_builder_add (options, "{sv}", "auto-converge",
                           g_variant_new_boolean (!no_auto_converge));
  if (convergence != NULL)
    g_variant_builder_add (options, "{sv}", "convergence", g_variant_new_string (convergence));
  return add_uint_option (ctx, options, "max-downtime-ceiling", ceiling, "--max-downtime-ceiling",
                          1, G_MAXUINT64, "t", rc)
         && add_uint_option (ctx, options, "postcopy-recovery-timeout", recovery_timeout,
                             "--postcopy-recovery-timeout", 1, G_MAXUINT32, "u", rc);
}

/* The migrate command's options, as given. */
typedef struct
{
  gboolean offline, no_live, no_tls, auto_converge, postcopy, persist, undefine_source, paused;
  gboolean verify, no_auto_converge;
  char *convergence, *ceiling, *recovery_timeout, *transport;
  char *bandwidth, *max_downtime, *parallel, *compression, *xml_file, *dest_name;
  char *migration_address, *migration_port, *abort_after, *copy_storage, *nbd_port, *nbd_address;
  GStrv disks;
} MigrateArgs;

static void
migrate_args_clear (MigrateArgs *a)
{
  char **strings[] = { &a->bandwidth,   &a->max_downtime, &a->parallel,          &a->compression,
                       &a->xml_file,    &a->dest_name,    &a->migration_address, &a->migration_port,
                       &a->abort_after, &a->copy_storage, &a->nbd_port,          &a->nbd_address,
                       &a->convergence, &a->ceiling,      &a->recovery_timeout,  &a->transport };

  for (guint i = 0; i < G_N_ELEMENTS (strings); i++)
    g_clear_pointer (strings[i], g_free);
  g_clear_pointer (&a->disks, g_strfreev);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (MigrateArgs, migrate_args_clear)

/* Checks the options (before anything is asked of the daemon) and turns
 * them into Guest1.Migrate's a{sv}: CTL_EXIT_OK, or the usage error. */
static int
migrate_options (CtlContext *ctx, const MigrateArgs *a, GVariantBuilder *options)
{
  static const char *const compressions[] = { "none", "zlib", "zstd", NULL };
  static const char *const copy_modes[] = { "none", "all", "incremental", NULL };
  static const char *const transports[] = { "native", "tunnel", NULL };
  g_autoptr (GError) error = NULL;
  g_autofree char *dest_xml = NULL;
  int rc = CTL_EXIT_OK;

  /* Options are checked before anything is asked of the daemon. */
  if (a->offline && a->no_live)
    return ctl_usage_error (ctx, _ ("--offline and --no-live exclude each other"));
  if (a->offline && (a->postcopy || postcopy_after_opt > 0 || a->auto_converge))
    return ctl_usage_error (ctx, _ ("--offline moves no memory: --postcopy and --auto-converge "
                                    "do not apply"));
  if (!one_of (a->transport, transports))
    return ctl_usage_error (ctx, _ ("--transport is native or tunnel, not '%s'"), a->transport);
  if (!one_of (a->compression, compressions))
    return ctl_usage_error (ctx, _ ("--compression is none, zlib or zstd, not '%s'"),
                            a->compression);
  if (!one_of (a->copy_storage, copy_modes))
    return ctl_usage_error (ctx, _ ("--copy-storage is none, all or incremental, not '%s'"),
                            a->copy_storage);
  if (a->disks != NULL && a->copy_storage == NULL)
    return ctl_usage_error (ctx, _ ("--disk selects disks for --copy-storage; give that too"));

  if (a->offline)
    g_variant_builder_add (options, "{sv}", "offline", g_variant_new_boolean (TRUE));
  if (a->no_live)
    g_variant_builder_add (options, "{sv}", "live", g_variant_new_boolean (FALSE));
  if (a->no_tls)
    g_variant_builder_add (options, "{sv}", "tls", g_variant_new_boolean (FALSE));
  if (a->bandwidth != NULL)
    {
      guint64 bytes;
      if (!ctl_parse_size (a->bandwidth, &bytes))
        return ctl_usage_error (ctx,
                                _ ("--bandwidth needs bytes per second, e.g. 100M or 1G, "
                                   "not '%s'"),
                                a->bandwidth);
      g_variant_builder_add (options, "{sv}", "bandwidth", g_variant_new_uint64 (bytes));
    }
  if (!add_uint_option (ctx, options, "max-downtime", a->max_downtime, "--max-downtime", 1,
                        G_MAXUINT64, "t", &rc))
    return rc;
  if (!add_convergence_options (ctx, options, a->auto_converge, a->no_auto_converge, a->convergence,
                                a->ceiling, a->recovery_timeout, &rc))
    return rc;
  if (a->postcopy || postcopy_after_opt > 0)
    g_variant_builder_add (options, "{sv}", "postcopy", g_variant_new_boolean (TRUE));
  if (!add_uint_option (ctx, options, "parallel-connections", a->parallel, "--parallel", 1, 255,
                        "u", &rc))
    return rc;
  if (a->compression != NULL)
    g_variant_builder_add (options, "{sv}", "compression", g_variant_new_string (a->compression));
  if (a->transport != NULL)
    g_variant_builder_add (options, "{sv}", "transport", g_variant_new_string (a->transport));
  if (a->persist || a->offline)
    g_variant_builder_add (options, "{sv}", "persist-destination", g_variant_new_boolean (TRUE));
  if (a->undefine_source)
    g_variant_builder_add (options, "{sv}", "undefine-source", g_variant_new_boolean (TRUE));
  if (a->xml_file != NULL)
    {
      if (!g_file_get_contents (a->xml_file, &dest_xml, NULL, &error))
        {
          return ctl_fail (ctx, CTL_EXIT_FAILED, "org.migrationd.Error.Failed", NULL,
                           _ ("cannot read the destination definition: %s"), error->message);
        }
      g_variant_builder_add (options, "{sv}", "destination-xml", g_variant_new_string (dest_xml));
    }
  if (a->dest_name != NULL)
    g_variant_builder_add (options, "{sv}", "destination-name",
                           g_variant_new_string (a->dest_name));
  if (a->migration_address != NULL)
    g_variant_builder_add (options, "{sv}", "migration-address",
                           g_variant_new_string (a->migration_address));
  if (!add_uint_option (ctx, options, "migration-port", a->migration_port, "--migration-port", 1,
                        65535, "q", &rc))
    return rc;
  if (a->paused)
    g_variant_builder_add (options, "{sv}", "paused-on-destination", g_variant_new_boolean (TRUE));
  if (!add_uint_option (ctx, options, "abort-after", a->abort_after, "--abort-after", 1,
                        G_MAXUINT32, "u", &rc))
    return rc;
  if (a->copy_storage != NULL)
    g_variant_builder_add (options, "{sv}", "copy-storage", g_variant_new_string (a->copy_storage));
  if (a->disks != NULL)
    g_variant_builder_add (options, "{sv}", "disks",
                           g_variant_new_strv ((const char *const *) a->disks, -1));
  if (!add_uint_option (ctx, options, "nbd-port", a->nbd_port, "--nbd-port", 1, 65535, "q", &rc))
    return rc;
  if (a->nbd_address != NULL)
    g_variant_builder_add (options, "{sv}", "nbd-address", g_variant_new_string (a->nbd_address));
  if (a->verify)
    g_variant_builder_add (options, "{sv}", "verify", g_variant_new_boolean (TRUE));
  return CTL_EXIT_OK;
}

int
ctl_cmd_migrate (CtlContext *ctx, int argc, char **argv)
{
  g_auto (MigrateArgs) a = { 0 };
  const GOptionEntry entries[] = {
    { "offline", 0, 0, G_OPTION_ARG_NONE, &a.offline,
      N_ ("Migrate a shut-off guest: its definition (and storage, with --copy-storage); implies "
          "--persist"),
      NULL },
    { "no-live", 0, 0, G_OPTION_ARG_NONE, &a.no_live,
      N_ ("Pause the guest while its memory is copied"), NULL },
    { "no-tls", 0, 0, G_OPTION_ARG_NONE, &a.no_tls,
      N_ ("Send the migration stream unencrypted (trusted networks only)"), NULL },
    { "bandwidth", 0, 0, G_OPTION_ARG_STRING, &a.bandwidth,
      N_ ("Bandwidth limit per second: bytes, or 100M, 1G (powers of 1024), 100MB (powers of "
          "1000)"),
      N_ ("RATE") },
    { "max-downtime", 0, 0, G_OPTION_ARG_STRING, &a.max_downtime,
      N_ ("Longest pause the guest may see at switch-over, in milliseconds"), N_ ("MS") },
    { "auto-converge", 0, 0, G_OPTION_ARG_NONE, &a.auto_converge,
      N_ ("Throttle the guest's CPUs if the migration does not converge"), NULL },
    { "no-auto-converge", 0, 0, G_OPTION_ARG_NONE, &a.no_auto_converge,
      N_ ("Never throttle the guest's CPUs, not even as a convergence step"), NULL },
    { "convergence", 0, 0, G_OPTION_ARG_STRING, &a.convergence,
      N_ ("auto (default): raise the downtime, throttle, switch to post-copy or fail with both "
          "rates when the migration stalls; manual: only what you set"),
      N_ ("MODE") },
    { "max-downtime-ceiling", 0, 0, G_OPTION_ARG_STRING, &a.ceiling,
      N_ ("Highest downtime, in milliseconds, convergence=auto may raise --max-downtime to"),
      N_ ("MS") },
    { "postcopy-recovery-timeout", 0, 0, G_OPTION_ARG_STRING, &a.recovery_timeout,
      N_ ("Seconds a broken post-copy stream is retried before the migration needs attention"),
      N_ ("SEC") },
    { "postcopy", 0, 0, G_OPTION_ARG_NONE, &a.postcopy,
      N_ ("Allow switching to post-copy (see 'migrationctl postcopy')"), NULL },
    { "postcopy-after-precopy", 0, G_OPTION_FLAG_OPTIONAL_ARG, G_OPTION_ARG_CALLBACK,
      (gpointer) parse_postcopy_after,
      N_ ("Switch to post-copy after N pre-copy passes (default 1); implies --postcopy"),
      N_ ("N") },
    { "parallel", 0, 0, G_OPTION_ARG_STRING, &a.parallel,
      N_ ("Number of parallel connections (multifd)"), N_ ("N") },
    { "transport", 0, 0, G_OPTION_ARG_STRING, &a.transport,
      N_ ("native (QEMU's TLS to a port of the destination's range) or tunnel (every stream "
          "through the peer port)"),
      N_ ("KIND") },
    { "compression", 0, 0, G_OPTION_ARG_STRING, &a.compression,
      N_ ("Compress the stream: none, zlib or zstd"), N_ ("METHOD") },
    { "persist", 0, 0, G_OPTION_ARG_NONE, &a.persist,
      N_ ("Keep the guest defined on the destination"), NULL },
    { "undefine-source", 0, 0, G_OPTION_ARG_NONE, &a.undefine_source,
      N_ ("Remove the guest's definition from this host when done"), NULL },
    { "xml", 0, 0, G_OPTION_ARG_FILENAME, &a.xml_file,
      N_ ("Definition to use on the destination (same guest ABI, other host paths)"), N_ ("FILE") },
    { "dest-name", 0, 0, G_OPTION_ARG_STRING, &a.dest_name,
      N_ ("Name of the guest on the destination"), N_ ("NAME") },
    { "migration-address", 0, 0, G_OPTION_ARG_STRING, &a.migration_address,
      N_ ("Address the destination QEMU listens on"), N_ ("ADDRESS") },
    { "migration-port", 0, 0, G_OPTION_ARG_STRING, &a.migration_port,
      N_ ("Port the destination QEMU listens on"), N_ ("PORT") },
    { "paused", 0, 0, G_OPTION_ARG_NONE, &a.paused,
      N_ ("Leave the guest paused on the destination"), NULL },
    { "abort-after", 0, 0, G_OPTION_ARG_STRING, &a.abort_after,
      N_ ("Cancel the migration if it takes longer than this many seconds"), N_ ("SEC") },
    { "copy-storage", 0, 0, G_OPTION_ARG_STRING, &a.copy_storage,
      N_ ("Copy non-shared disks: none, all or incremental"), N_ ("MODE") },
    { "disk", 0, 0, G_OPTION_ARG_STRING_ARRAY, &a.disks,
      N_ ("Copy only this disk (target name, e.g. vda); repeatable"), N_ ("TARGET") },
    { "nbd-port", 0, 0, G_OPTION_ARG_STRING, &a.nbd_port,
      N_ ("Port of the destination's NBD server for disk copies"), N_ ("PORT") },
    { "nbd-address", 0, 0, G_OPTION_ARG_STRING, &a.nbd_address,
      N_ ("Address of the destination's NBD server for disk copies"), N_ ("ADDRESS") },
    { "verify", 0, 0, G_OPTION_ARG_NONE, &a.verify,
      N_ ("Compare copied disks with their source before switching over"), NULL },
    { NULL },
  };
  g_auto (GVariantBuilder) options = G_VARIANT_BUILDER_INIT (G_VARIANT_TYPE_VARDICT);
  g_autoptr (MdDbusGuest1) guest = NULL;
  const char *name, *destination;
  int rc = CTL_EXIT_OK;

  postcopy_after_opt = 0;
  if (!ctl_parse_options (ctx, &argc, &argv, N_ ("NAME DESTINATION"),
                          N_ ("Migrate a guest to DESTINATION, a trusted peer's name or "
                              "host[:port] of its migrationd, and follow the migration until it "
                              "ends.\nCtrl-C cancels the migration; the guest keeps running "
                              "here."),
                          entries))
    return CTL_EXIT_USAGE;
  if (argc != 3)
    return ctl_usage_error (ctx, _ ("'migrate' needs a guest NAME and a DESTINATION"));
  name = argv[1];
  destination = argv[2];

  if ((rc = migrate_options (ctx, &a, &options)) != CTL_EXIT_OK)
    return rc;
  g_variant_builder_add (&options, "{sv}", "auth.no_user_interaction",
                         g_variant_new_boolean (ctx->no_ask_password));

  if ((rc = ctl_connect (ctx)) != CTL_EXIT_OK)
    return rc;
  if ((guest = ctl_lookup_guest (ctx, name, &rc)) == NULL)
    return rc;
  if (a.offline && g_strcmp0 (md_dbus_guest1_get_state (guest), "shut-off") != 0)
    {
      return ctl_fail (ctx, CTL_EXIT_FAILED, "org.migrationd.Error.InvalidState", NULL,
                       _ ("--offline migrates a shut-off guest, and %s is %s (shut it down "
                          "first, or migrate it live)"),
                       name, ctl_nonnull (md_dbus_guest1_get_state (guest)));
    }

  return ctl_follow_guest_call (ctx, guest, name, "Migrate",
                                g_variant_new ("(sa{sv})", destination, &options), destination);
}

int
ctl_follow_guest_call (CtlContext *ctx, MdDbusGuest1 *guest, const char *name, const char *method,
                       GVariant *parameters, const char *destination)
{
  g_autoptr (GVariant) reply = NULL;
  g_autoptr (GError) error = NULL;
  Follow f = { 0 };
  const char *path;
  int rc = CTL_EXIT_OK;

  f.save = !g_str_equal (method, "Migrate");
  f.ctx = ctx;
  f.loop = g_main_loop_new (NULL, FALSE);
  f.guest_name = g_strdup (ctl_nonnull (md_dbus_guest1_get_name (guest)));
  if (*f.guest_name == '\0')
    {
      g_free (f.guest_name);
      f.guest_name = g_strdup (name);
    }
  f.destination = g_strdup (destination);
  f.tty = isatty (STDOUT_FILENO) && !ctx->json && !ctx->quiet;
  f.postcopy_after = postcopy_after_opt;
  f.exit_code = CTL_EXIT_FAILED;
  /* Before Migrate(), so that a fast Completed is not lost. */
  f.completed_sub = g_dbus_connection_signal_subscribe (
      ctx->bus, MD_BUS_NAME, "org.migrationd.Migration1", "Completed", NULL, NULL,
      G_DBUS_SIGNAL_FLAGS_NONE, on_completed, &f, NULL);

  reply = ctl_call (ctx, guest, method, parameters, G_VARIANT_TYPE ("(o)"), TRUE, &error);
  if (reply == NULL && f.save)
    {
      rc = ctl_report_error (ctx, error, CTL_ACTION_GUEST_MANAGE, NULL, NULL,
                             _ ("cannot save %s to %s"), name, destination);
      goto out;
    }
  if (reply == NULL)
    {
      /* The guest was found above: a NotFound here is about the peer. */
      rc = ctl_report_error (ctx, error, CTL_ACTION_MIGRATE, "peer", destination,
                             _ ("cannot migrate %s to %s"), name, destination);
      goto out;
    }
  g_variant_get (reply, "(&o)", &path);
  f.path = g_strdup (path);
  if ((f.migration = ctl_migration_proxy (ctx, path, &rc)) == NULL)
    goto out;
  /* Migrations can outlast D-Bus's default call timeout by far. */
  g_dbus_proxy_set_default_timeout (G_DBUS_PROXY (f.migration), G_MAXINT);
  g_signal_connect (f.migration, "g-properties-changed", G_CALLBACK (on_properties_changed), &f);
  g_signal_connect (f.migration, "notify::g-name-owner", G_CALLBACK (on_name_owner), &f);
  f.sigint_id = g_unix_signal_add (SIGINT, on_sigint, &f);
  if (f.tty)
    f.tick_id = g_timeout_add_seconds (1, tick_cb, &f);
  if (md_dbus_migration1_get_state (f.migration) == NULL
      || state_is_terminal (md_dbus_migration1_get_state (f.migration)))
    f.fallback_id = g_timeout_add (1000, fallback_cb, &f);
  else if (!ctx->json && !f.tty)
    g_print (f.save ? _ ("saving %s to %s (migration %s)\n")
                    : _ ("migrating %s to %s (migration %s)\n"),
             f.guest_name, destination, ctl_migration_id (path));
  if (md_dbus_migration1_get_state (f.migration) != NULL)
    print_progress (&f);

  g_main_loop_run (f.loop);
  rc = f.exit_code;

out:
  clear_bar (&f);
  g_clear_handle_id (&f.sigint_id, g_source_remove);
  g_clear_handle_id (&f.tick_id, g_source_remove);
  g_clear_handle_id (&f.throttle_id, g_source_remove);
  g_clear_handle_id (&f.fallback_id, g_source_remove);
  if (f.migration != NULL)
    g_signal_handlers_disconnect_by_data (f.migration, &f);
  g_dbus_connection_signal_unsubscribe (ctx->bus, f.completed_sub);
  g_clear_object (&f.migration);
  g_main_loop_unref (f.loop);
  g_free (f.guest_name);
  g_free (f.destination);
  g_free (f.path);
  g_free (f.last_line);
  return rc;
}
