/* migrationctl: migrate (and follow), migrations, their controls, monitor. */
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

int
ctl_cmd_migrate (CtlContext *ctx, int argc, char **argv)
{
  gboolean offline = FALSE, no_live = FALSE, no_tls = FALSE, auto_converge = FALSE;
  gboolean postcopy = FALSE, persist = FALSE, undefine_source = FALSE, paused = FALSE;
  gboolean verify = FALSE, no_auto_converge = FALSE;
  g_autofree char *convergence = NULL, *ceiling = NULL, *recovery_timeout = NULL;
  g_autofree char *bandwidth = NULL, *max_downtime = NULL, *parallel = NULL;
  g_autofree char *compression = NULL, *xml_file = NULL, *dest_name = NULL;
  g_autofree char *migration_address = NULL, *migration_port = NULL, *abort_after = NULL;
  g_autofree char *copy_storage = NULL, *nbd_port = NULL, *nbd_address = NULL;
  g_auto (GStrv) disks = NULL;
  const GOptionEntry entries[] = {
    { "offline", 0, 0, G_OPTION_ARG_NONE, &offline,
      N_ ("Migrate a shut-off guest: its definition (and storage, with --copy-storage); implies "
          "--persist"),
      NULL },
    { "no-live", 0, 0, G_OPTION_ARG_NONE, &no_live,
      N_ ("Pause the guest while its memory is copied"), NULL },
    { "no-tls", 0, 0, G_OPTION_ARG_NONE, &no_tls,
      N_ ("Send the migration stream unencrypted (trusted networks only)"), NULL },
    { "bandwidth", 0, 0, G_OPTION_ARG_STRING, &bandwidth,
      N_ ("Bandwidth limit per second: bytes, or 100M, 1G (powers of 1024), 100MB (powers of "
          "1000)"),
      N_ ("RATE") },
    { "max-downtime", 0, 0, G_OPTION_ARG_STRING, &max_downtime,
      N_ ("Longest pause the guest may see at switch-over, in milliseconds"), N_ ("MS") },
    { "auto-converge", 0, 0, G_OPTION_ARG_NONE, &auto_converge,
      N_ ("Throttle the guest's CPUs if the migration does not converge"), NULL },
    { "no-auto-converge", 0, 0, G_OPTION_ARG_NONE, &no_auto_converge,
      N_ ("Never throttle the guest's CPUs, not even as a convergence step"), NULL },
    { "convergence", 0, 0, G_OPTION_ARG_STRING, &convergence,
      N_ ("auto (default): raise the downtime, throttle, switch to post-copy or fail with both "
          "rates when the migration stalls; manual: only what you set"),
      N_ ("MODE") },
    { "max-downtime-ceiling", 0, 0, G_OPTION_ARG_STRING, &ceiling,
      N_ ("Highest downtime, in milliseconds, convergence=auto may raise --max-downtime to"),
      N_ ("MS") },
    { "postcopy-recovery-timeout", 0, 0, G_OPTION_ARG_STRING, &recovery_timeout,
      N_ ("Seconds a broken post-copy stream is retried before the migration needs attention"),
      N_ ("SEC") },
    { "postcopy", 0, 0, G_OPTION_ARG_NONE, &postcopy,
      N_ ("Allow switching to post-copy (see 'migrationctl postcopy')"), NULL },
    { "postcopy-after-precopy", 0, G_OPTION_FLAG_OPTIONAL_ARG, G_OPTION_ARG_CALLBACK,
      (gpointer) parse_postcopy_after,
      N_ ("Switch to post-copy after N pre-copy passes (default 1); implies --postcopy"),
      N_ ("N") },
    { "parallel", 0, 0, G_OPTION_ARG_STRING, &parallel,
      N_ ("Number of parallel connections (multifd)"), N_ ("N") },
    { "compression", 0, 0, G_OPTION_ARG_STRING, &compression,
      N_ ("Compress the stream: none, zlib or zstd"), N_ ("METHOD") },
    { "persist", 0, 0, G_OPTION_ARG_NONE, &persist,
      N_ ("Keep the guest defined on the destination"), NULL },
    { "undefine-source", 0, 0, G_OPTION_ARG_NONE, &undefine_source,
      N_ ("Remove the guest's definition from this host when done"), NULL },
    { "xml", 0, 0, G_OPTION_ARG_FILENAME, &xml_file,
      N_ ("Definition to use on the destination (same guest ABI, other host paths)"), N_ ("FILE") },
    { "dest-name", 0, 0, G_OPTION_ARG_STRING, &dest_name,
      N_ ("Name of the guest on the destination"), N_ ("NAME") },
    { "migration-address", 0, 0, G_OPTION_ARG_STRING, &migration_address,
      N_ ("Address the destination QEMU listens on"), N_ ("ADDRESS") },
    { "migration-port", 0, 0, G_OPTION_ARG_STRING, &migration_port,
      N_ ("Port the destination QEMU listens on"), N_ ("PORT") },
    { "paused", 0, 0, G_OPTION_ARG_NONE, &paused, N_ ("Leave the guest paused on the destination"),
      NULL },
    { "abort-after", 0, 0, G_OPTION_ARG_STRING, &abort_after,
      N_ ("Cancel the migration if it takes longer than this many seconds"), N_ ("SEC") },
    { "copy-storage", 0, 0, G_OPTION_ARG_STRING, &copy_storage,
      N_ ("Copy non-shared disks: none, all or incremental"), N_ ("MODE") },
    { "disk", 0, 0, G_OPTION_ARG_STRING_ARRAY, &disks,
      N_ ("Copy only this disk (target name, e.g. vda); repeatable"), N_ ("TARGET") },
    { "nbd-port", 0, 0, G_OPTION_ARG_STRING, &nbd_port,
      N_ ("Port of the destination's NBD server for disk copies"), N_ ("PORT") },
    { "nbd-address", 0, 0, G_OPTION_ARG_STRING, &nbd_address,
      N_ ("Address of the destination's NBD server for disk copies"), N_ ("ADDRESS") },
    { "verify", 0, 0, G_OPTION_ARG_NONE, &verify,
      N_ ("Compare copied disks with their source before switching over"), NULL },
    { NULL },
  };
  static const char *const compressions[] = { "none", "zlib", "zstd", NULL };
  static const char *const copy_modes[] = { "none", "all", "incremental", NULL };
  g_auto (GVariantBuilder) options = G_VARIANT_BUILDER_INIT (G_VARIANT_TYPE_VARDICT);
  g_autoptr (MdDbusGuest1) guest = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *dest_xml = NULL;
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

  /* Options are checked before anything is asked of the daemon. */
  if (offline && no_live)
    return ctl_usage_error (ctx, _ ("--offline and --no-live exclude each other"));
  if (offline && (postcopy || postcopy_after_opt > 0 || auto_converge))
    return ctl_usage_error (ctx, _ ("--offline moves no memory: --postcopy and --auto-converge "
                                    "do not apply"));
  if (!one_of (compression, compressions))
    return ctl_usage_error (ctx, _ ("--compression is none, zlib or zstd, not '%s'"), compression);
  if (!one_of (copy_storage, copy_modes))
    return ctl_usage_error (ctx, _ ("--copy-storage is none, all or incremental, not '%s'"),
                            copy_storage);
  if (disks != NULL && copy_storage == NULL)
    return ctl_usage_error (ctx, _ ("--disk selects disks for --copy-storage; give that too"));

  if (offline)
    g_variant_builder_add (&options, "{sv}", "offline", g_variant_new_boolean (TRUE));
  if (no_live)
    g_variant_builder_add (&options, "{sv}", "live", g_variant_new_boolean (FALSE));
  if (no_tls)
    g_variant_builder_add (&options, "{sv}", "tls", g_variant_new_boolean (FALSE));
  if (bandwidth != NULL)
    {
      guint64 bytes;
      if (!ctl_parse_size (bandwidth, &bytes))
        return ctl_usage_error (ctx,
                                _ ("--bandwidth needs bytes per second, e.g. 100M or 1G, "
                                   "not '%s'"),
                                bandwidth);
      g_variant_builder_add (&options, "{sv}", "bandwidth", g_variant_new_uint64 (bytes));
    }
  if (!add_uint_option (ctx, &options, "max-downtime", max_downtime, "--max-downtime", 1,
                        G_MAXUINT64, "t", &rc))
    return rc;
  if (!add_convergence_options (ctx, &options, auto_converge, no_auto_converge, convergence,
                                ceiling, recovery_timeout, &rc))
    return rc;
  if (postcopy || postcopy_after_opt > 0)
    g_variant_builder_add (&options, "{sv}", "postcopy", g_variant_new_boolean (TRUE));
  if (!add_uint_option (ctx, &options, "parallel-connections", parallel, "--parallel", 1, 255, "u",
                        &rc))
    return rc;
  if (compression != NULL)
    g_variant_builder_add (&options, "{sv}", "compression", g_variant_new_string (compression));
  if (persist || offline)
    g_variant_builder_add (&options, "{sv}", "persist-destination", g_variant_new_boolean (TRUE));
  if (undefine_source)
    g_variant_builder_add (&options, "{sv}", "undefine-source", g_variant_new_boolean (TRUE));
  if (xml_file != NULL)
    {
      if (!g_file_get_contents (xml_file, &dest_xml, NULL, &error))
        {
          return ctl_fail (ctx, CTL_EXIT_FAILED, "org.migrationd.Error.Failed", NULL,
                           _ ("cannot read the destination definition: %s"), error->message);
        }
      g_variant_builder_add (&options, "{sv}", "destination-xml", g_variant_new_string (dest_xml));
    }
  if (dest_name != NULL)
    g_variant_builder_add (&options, "{sv}", "destination-name", g_variant_new_string (dest_name));
  if (migration_address != NULL)
    g_variant_builder_add (&options, "{sv}", "migration-address",
                           g_variant_new_string (migration_address));
  if (!add_uint_option (ctx, &options, "migration-port", migration_port, "--migration-port", 1,
                        65535, "q", &rc))
    return rc;
  if (paused)
    g_variant_builder_add (&options, "{sv}", "paused-on-destination", g_variant_new_boolean (TRUE));
  if (!add_uint_option (ctx, &options, "abort-after", abort_after, "--abort-after", 1, G_MAXUINT32,
                        "u", &rc))
    return rc;
  if (copy_storage != NULL)
    g_variant_builder_add (&options, "{sv}", "copy-storage", g_variant_new_string (copy_storage));
  if (disks != NULL)
    g_variant_builder_add (&options, "{sv}", "disks",
                           g_variant_new_strv ((const char *const *) disks, -1));
  if (!add_uint_option (ctx, &options, "nbd-port", nbd_port, "--nbd-port", 1, 65535, "q", &rc))
    return rc;
  if (nbd_address != NULL)
    g_variant_builder_add (&options, "{sv}", "nbd-address", g_variant_new_string (nbd_address));
  if (verify)
    g_variant_builder_add (&options, "{sv}", "verify", g_variant_new_boolean (TRUE));
  g_variant_builder_add (&options, "{sv}", "auth.no_user_interaction",
                         g_variant_new_boolean (ctx->no_ask_password));

  if ((rc = ctl_connect (ctx)) != CTL_EXIT_OK)
    return rc;
  if ((guest = ctl_lookup_guest (ctx, name, &rc)) == NULL)
    return rc;
  if (offline && g_strcmp0 (md_dbus_guest1_get_state (guest), "shut-off") != 0)
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
