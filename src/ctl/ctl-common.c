/* migrationctl: connection, calls, error reporting, parsing and output. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gi18n.h>
#include <glib-unix.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ctl-common.h"

#define RULES_EXAMPLE "/usr/share/doc/migrationd/50-migrationd.rules.example"
#define MIGRATION_PATH_PREFIX "/org/migrationd/migration/"

GOptionEntry *
ctl_global_entries (CtlContext *ctx)
{
  GOptionEntry entries[] = {
    { "system", 0, 0, G_OPTION_ARG_NONE, &ctx->system,
      N_ ("Talk to migrationd on the system bus (default)"), NULL },
    { "address", 0, 0, G_OPTION_ARG_STRING, &ctx->address,
      N_ ("Talk to migrationd on the bus at this D-Bus address"), N_ ("ADDRESS") },
    { "json", 0, 0, G_OPTION_ARG_NONE, &ctx->json,
      N_ ("Print JSON Lines instead of text; errors as JSON on stderr"), NULL },
    { "quiet", 'q', 0, G_OPTION_ARG_NONE, &ctx->quiet,
      N_ ("Print nothing but errors; the exit status tells the result"), NULL },
    { "version", 0, 0, G_OPTION_ARG_NONE, &ctx->version, N_ ("Print the version and exit"), NULL },
    { "no-ask-password", 0, 0, G_OPTION_ARG_NONE, &ctx->no_ask_password,
      N_ ("Do not ask for a password when polkit requires authentication"), NULL },
    { NULL },
  };
  return g_memdup2 (entries, sizeof entries);
}

gboolean
ctl_parse_options (CtlContext *ctx, int *argc, char ***argv, const char *parameter_string,
                   const char *summary, const GOptionEntry *entries)
{
  g_autoptr (GOptionContext) oc = NULL;
  g_autofree GOptionEntry *global = ctl_global_entries (ctx);
  g_autofree char *prgname = g_strdup_printf ("migrationctl %s", ctx->command);
  g_autoptr (GError) error = NULL;
  gboolean ok;

  oc = g_option_context_new (parameter_string);
  g_option_context_set_translation_domain (oc, GETTEXT_PACKAGE);
  if (summary != NULL)
    g_option_context_set_summary (oc, _ (summary));
  if (entries != NULL)
    g_option_context_add_main_entries (oc, entries, GETTEXT_PACKAGE);
  g_option_context_add_main_entries (oc, global, GETTEXT_PACKAGE);

  /* The usage line then reads "migrationctl COMMAND [OPTION…] ARGS". */
  g_set_prgname (prgname);
  ok = g_option_context_parse (oc, argc, argv, &error);
  g_set_prgname ("migrationctl");
  if (!ok)
    {
      ctl_usage_error (ctx, "%s", error->message);
      return FALSE;
    }
  return TRUE;
}

static int
fail_message (CtlContext *ctx, int exit_code, const char *error_name, const char *hint,
              const char *message)
{
  if (ctx->json)
    {
      g_autoptr (JsonBuilder) b = json_builder_new ();
      g_autoptr (JsonGenerator) generator = json_generator_new ();
      g_autoptr (JsonNode) root = NULL;
      g_autofree char *text = NULL;

      json_builder_begin_object (b);
      json_builder_set_member_name (b, "error");
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "name");
      json_builder_add_string_value (b, error_name);
      json_builder_set_member_name (b, "message");
      json_builder_add_string_value (b, message);
      json_builder_set_member_name (b, "hint");
      if (hint != NULL)
        json_builder_add_string_value (
            b, g_str_has_prefix (hint, "migrationctl: ") ? hint + strlen ("migrationctl: ") : hint);
      else
        json_builder_add_null_value (b);
      json_builder_set_member_name (b, "exit-status");
      json_builder_add_int_value (b, exit_code);
      json_builder_end_object (b);
      json_builder_end_object (b);
      root = json_builder_get_root (b);
      json_generator_set_root (generator, root);
      text = json_generator_to_data (generator, NULL);
      fflush (stdout);
      g_printerr ("%s\n", text);
      return exit_code;
    }
  g_printerr ("migrationctl: %s\n", message);
  if (hint != NULL)
    g_printerr ("%s\n", hint);
  return exit_code;
}

int
ctl_fail (CtlContext *ctx, int exit_code, const char *error_name, const char *hint,
          const char *format, ...)
{
  va_list ap;
  g_autofree char *message = NULL;

  va_start (ap, format);
  message = g_strdup_vprintf (format, ap);
  va_end (ap);
  return fail_message (ctx, exit_code, error_name, hint, message);
}

void
ctl_note (CtlContext *ctx, const char *format, ...)
{
  va_list ap;
  g_autofree char *message = NULL;

  if (ctx->json || ctx->quiet)
    return;
  va_start (ap, format);
  message = g_strdup_vprintf (format, ap);
  va_end (ap);
  g_printerr ("%s", message);
}

int
ctl_usage_error (CtlContext *ctx, const char *format, ...)
{
  va_list ap;
  g_autofree char *message = NULL;
  g_autofree char *hint = NULL;

  va_start (ap, format);
  message = g_strdup_vprintf (format, ap);
  va_end (ap);
  if (ctx->command != NULL)
    hint = g_strdup_printf (_ ("Try 'migrationctl %s --help'."), ctx->command);
  else
    hint = g_strdup (_ ("Try 'migrationctl help'."));
  return fail_message (ctx, CTL_EXIT_USAGE, "org.migrationd.Error.InvalidArgument", hint, message);
}

static const char *
bus_description (CtlContext *ctx)
{
  return ctx->address != NULL ? ctx->address : _ ("the system bus");
}

static char *
unreachable_hint (CtlContext *ctx)
{
  if (ctx->address != NULL)
    return g_strdup_printf (_ ("migrationctl: is migrationd running on %s? Start it there, or "
                               "check --address."),
                            ctx->address);
  return g_strdup (_ ("migrationctl: is migrationd running? Start it with 'systemctl start "
                      "migrationd'."));
}

/* The D-Bus name of @error: the remote one, GDBus's mapping of local
 * D-Bus errors, or @fallback. */
static char *
error_name_of (const GError *error, const char *fallback)
{
  if (g_dbus_error_is_remote_error (error))
    return g_dbus_error_get_remote_error (error);
  if (error->domain == G_DBUS_ERROR)
    return g_dbus_error_encode_gerror (error);
  return g_strdup (fallback);
}

gboolean
ctl_open_bus (CtlContext *ctx, GError **error)
{
  if (ctx->address != NULL)
    ctx->bus = g_dbus_connection_new_for_address_sync (
        ctx->address,
        G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT
            | G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
        NULL, NULL, error);
  else
    ctx->bus = g_bus_get_sync (G_BUS_TYPE_SYSTEM, NULL, error);
  return ctx->bus != NULL;
}

int
ctl_connect (CtlContext *ctx)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *hint = unreachable_hint (ctx);

  if (!ctl_open_bus (ctx, &error))
    {
      g_autofree char *name = error_name_of (error, "org.freedesktop.DBus.Error.NoServer");
      return ctl_fail (ctx, CTL_EXIT_UNREACHABLE, name, hint, _ ("cannot connect to %s: %s"),
                       bus_description (ctx), error->message);
    }
  /* A lost bus is reported (exit code 3), not a silent SIGTERM. */
  g_dbus_connection_set_exit_on_close (ctx->bus, FALSE);

  ctx->manager = md_dbus_manager1_proxy_new_sync (ctx->bus, G_DBUS_PROXY_FLAGS_NONE, MD_BUS_NAME,
                                                  "/org/migrationd", NULL, &error);
  if (ctx->manager == NULL)
    {
      g_autofree char *name = error_name_of (error, "org.freedesktop.DBus.Error.ServiceUnknown");
      return ctl_fail (ctx, CTL_EXIT_UNREACHABLE, name, hint,
                       _ ("cannot reach migrationd on %s: %s"), bus_description (ctx),
                       error->message);
    }
  /* The proxy asked the bus to start the service if it could; no owner
   * now means nobody answers. */
  {
    g_autofree char *owner = g_dbus_proxy_get_name_owner (G_DBUS_PROXY (ctx->manager));
    if (owner == NULL)
      return ctl_fail (ctx, CTL_EXIT_UNREACHABLE, "org.freedesktop.DBus.Error.ServiceUnknown", hint,
                       _ ("migrationd (%s) is not running on %s"), MD_BUS_NAME,
                       bus_description (ctx));
  }
  return CTL_EXIT_OK;
}

/* pkttyagent answers polkit's password question on this terminal, as
 * systemctl and udisksctl do: started before the first call that may ask,
 * ready once it closes its notify fd. */
static void
start_tty_agent (CtlContext *ctx)
{
  g_autoptr (GSubprocessLauncher) launcher = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *program = NULL;
  g_autofree char *pid = NULL;
  struct pollfd pfd;
  int fds[2];
  char byte;

  if (ctx->tty_agent_tried || ctx->no_ask_password || !isatty (STDIN_FILENO))
    return;
  ctx->tty_agent_tried = TRUE;
  program = g_find_program_in_path ("pkttyagent");
  if (program == NULL || !g_unix_open_pipe (fds, FD_CLOEXEC, NULL))
    return;
  pid = g_strdup_printf ("%d", (int) getpid ());
  launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_NONE);
  g_subprocess_launcher_take_fd (launcher, fds[1], 3);
  ctx->tty_agent = g_subprocess_launcher_spawn (launcher, &error, program, "--notify-fd", "3",
                                                "--fallback", "--process", pid, NULL);
  /* Closes our copy of the write end, so EOF means the agent is ready
   * (or gone). */
  g_clear_object (&launcher);
  if (ctx->tty_agent == NULL)
    {
      close (fds[0]);
      return;
    }
  pfd.fd = fds[0];
  pfd.events = POLLIN;
  /* A missing polkitd must not hang the call: give up waiting after 10 s. */
  while (poll (&pfd, 1, 10000) < 0 && errno == EINTR)
    ;
  while (read (fds[0], &byte, 1) < 0 && errno == EINTR)
    ;
  close (fds[0]);
}

void
ctl_stop_tty_agent (CtlContext *ctx)
{
  if (ctx->tty_agent == NULL)
    return;
  g_subprocess_send_signal (ctx->tty_agent, SIGTERM);
  g_subprocess_wait (ctx->tty_agent, NULL, NULL);
  g_clear_object (&ctx->tty_agent);
}

GVariant *
ctl_call (CtlContext *ctx, gpointer proxy, const char *method, GVariant *parameters,
          const GVariantType *reply_type, gboolean changing, GError **error)
{
  GDBusCallFlags flags = G_DBUS_CALL_FLAGS_NONE;
  g_autoptr (GVariant) reply = NULL;

  if (changing && !ctx->no_ask_password)
    {
      flags |= G_DBUS_CALL_FLAGS_ALLOW_INTERACTIVE_AUTHORIZATION;
      start_tty_agent (ctx);
    }
  reply = g_dbus_proxy_call_sync (G_DBUS_PROXY (proxy), method, parameters, flags,
                                  changing ? G_MAXINT : -1, NULL, error);
  if (reply == NULL)
    return NULL;
  if (reply_type != NULL && !g_variant_is_of_type (reply, reply_type))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   _ ("migrationd answered %s with type %s, expected %s"), method,
                   g_variant_get_type_string (reply), g_variant_type_peek_string (reply_type));
      return NULL;
    }
  return g_steal_pointer (&reply);
}

static gboolean
is_unreachable (const GError *error, const char *remote)
{
  static const char *const names[] = {
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
    "org.freedesktop.DBus.Error.NoServer",
    "org.freedesktop.DBus.Error.Disconnected",
  };

  if (remote != NULL)
    {
      for (gsize i = 0; i < G_N_ELEMENTS (names); i++)
        if (g_str_equal (remote, names[i]))
          return TRUE;
      return FALSE;
    }
  return g_error_matches (error, G_DBUS_ERROR, G_DBUS_ERROR_SERVICE_UNKNOWN)
         || g_error_matches (error, G_DBUS_ERROR, G_DBUS_ERROR_NAME_HAS_NO_OWNER)
         || g_error_matches (error, G_DBUS_ERROR, G_DBUS_ERROR_NO_SERVER)
         || g_error_matches (error, G_DBUS_ERROR, G_DBUS_ERROR_DISCONNECTED)
         || g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CLOSED)
         || g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED);
}

static const char *
action_description (const char *action)
{
  if (g_strcmp0 (action, CTL_ACTION_GUEST_MANAGE) == 0)
    return _ ("define, start, stop or undefine guests");
  if (g_strcmp0 (action, CTL_ACTION_MIGRATE) == 0)
    return _ ("migrate guests");
  if (g_strcmp0 (action, CTL_ACTION_MIGRATION_CONTROL) == 0)
    return _ ("control this migration");
  if (g_strcmp0 (action, CTL_ACTION_PEER_MANAGE) == 0)
    return _ ("manage trusted peers");
  if (g_strcmp0 (action, CTL_ACTION_MIGRATION_RESOLVE) == 0)
    return _ ("resolve a migration that needs attention");
  return _ ("do this");
}

static const char *
action_grant (const char *action)
{
  /* Someone else's migration needs the -other action. */
  if (g_strcmp0 (action, CTL_ACTION_MIGRATION_CONTROL) == 0)
    return CTL_ACTION_MIGRATION_CONTROL " (or org.migrationd.migration.control-other for "
                                        "migrations started by others)";
  return action != NULL ? action : "org.migrationd.*";
}

static char *
not_found_hint (const char *kind, const char *subject)
{
  if (g_strcmp0 (kind, "guest") == 0)
    return g_strdup_printf (_ ("no guest named %s (see 'migrationctl list')"), subject);
  if (g_strcmp0 (kind, "migration") == 0)
    return g_strdup_printf (_ ("no migration %s (see 'migrationctl migrations')"), subject);
  if (g_strcmp0 (kind, "peer") == 0)
    return g_strdup_printf (_ ("no peer named %s (see 'migrationctl peers')"), subject);
  return NULL;
}

int
ctl_report_error (CtlContext *ctx, const GError *error, const char *action,
                  const char *subject_kind, const char *subject, const char *what_format, ...)
{
  va_list ap;
  g_autofree char *what = NULL;
  g_autofree char *remote = NULL;
  g_autofree char *hint = NULL;
  g_autofree char *name = NULL;
  g_autoptr (GError) copy = g_error_copy (error);
  const char *message;

  va_start (ap, what_format);
  what = g_strdup_vprintf (what_format, ap);
  va_end (ap);

  if (g_dbus_error_is_remote_error (copy))
    {
      remote = g_dbus_error_get_remote_error (copy);
      g_dbus_error_strip_remote_error (copy);
    }
  message = copy->message;

  name = remote != NULL ? g_strdup (remote) : error_name_of (error, "org.migrationd.Error.Failed");
  if (is_unreachable (error, remote))
    {
      hint = unreachable_hint (ctx);
      return ctl_fail (ctx, CTL_EXIT_UNREACHABLE, name, hint, "%s: %s", what, message);
    }

  if (remote != NULL && subject != NULL
      && (g_str_equal (remote, "org.migrationd.Error.NotFound")
          || (g_strcmp0 (subject_kind, "migration") == 0
              && (g_str_equal (remote, "org.freedesktop.DBus.Error.UnknownObject")
                  || g_str_equal (remote, "org.freedesktop.DBus.Error.UnknownMethod")))))
    {
      g_autofree char *nf = not_found_hint (subject_kind, subject);
      if (nf != NULL)
        return ctl_fail (ctx, CTL_EXIT_FAILED, name, NULL, "%s: %s", what, nf);
    }

  if (remote != NULL
      && (g_str_equal (remote, "org.migrationd.Error.NotAuthorized")
          || g_str_equal (remote, "org.freedesktop.DBus.Error.AccessDenied")))
    hint = g_strdup_printf (_ ("you are not allowed to %s; ask an administrator to grant %s via "
                               "polkit (see %s)"),
                            action_description (action), action_grant (action), RULES_EXAMPLE);
  else if (remote != NULL && g_str_equal (remote, "org.migrationd.Error.NotAuthorizedCanObtain"))
    hint = g_strdup_printf (_ ("authentication is required to %s; run again without "
                               "--no-ask-password from a session with a polkit agent, or ask an "
                               "administrator to grant %s via polkit (see %s)"),
                            action_description (action), action_grant (action), RULES_EXAMPLE);
  else if (remote != NULL && g_str_equal (remote, "org.migrationd.Error.NotAuthorizedDismissed"))
    hint = g_strdup (_ ("the authentication dialog was dismissed; nothing was changed"));
  else if (remote != NULL
           && (g_str_equal (remote, "org.freedesktop.DBus.Error.NoReply")
               || g_str_equal (remote, "org.freedesktop.DBus.Error.Timeout")))
    hint = g_strdup (_ ("migrationd did not answer in time; see 'journalctl -u migrationd'"));
  else if (remote != NULL && g_str_equal (remote, "org.freedesktop.DBus.Error.UnknownMethod"))
    hint = g_strdup (_ ("this migrationd does not offer that call; is it older than "
                        "migrationctl?"));

  if (hint != NULL)
    {
      g_autofree char *prefixed = g_strconcat ("migrationctl: ", hint, NULL);
      return ctl_fail (ctx, CTL_EXIT_FAILED, name, prefixed, "%s: %s", what, message);
    }
  return ctl_fail (ctx, CTL_EXIT_FAILED, name, NULL, "%s: %s", what, message);
}

MdDbusGuest1 *
ctl_lookup_guest (CtlContext *ctx, const char *name, int *exit_code)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = NULL;
  const char *path = NULL;
  MdDbusGuest1 *guest;

  reply = ctl_call (ctx, ctx->manager, "LookupGuest", g_variant_new ("(s)", name),
                    G_VARIANT_TYPE ("(o)"), FALSE, &error);
  if (reply == NULL)
    {
      *exit_code = ctl_report_error (ctx, error, NULL, "guest", name, "%s %s", ctx->command, name);
      return NULL;
    }
  g_variant_get (reply, "(&o)", &path);
  guest = md_dbus_guest1_proxy_new_sync (ctx->bus, G_DBUS_PROXY_FLAGS_NONE, MD_BUS_NAME, path, NULL,
                                         &error);
  if (guest == NULL)
    *exit_code = ctl_report_error (ctx, error, NULL, NULL, NULL, _ ("cannot open guest %s (%s)"),
                                   name, path);
  return guest;
}

char *
ctl_migration_path (const char *arg)
{
  guint64 n;

  if (g_str_has_prefix (arg, "/") && g_variant_is_object_path (arg))
    return g_strdup (arg);
  if (ctl_parse_uint (arg, 0, G_MAXUINT64, &n))
    return g_strdup_printf (MIGRATION_PATH_PREFIX "%" G_GUINT64_FORMAT, n);
  return NULL;
}

const char *
ctl_migration_id (const char *path)
{
  if (path != NULL && g_str_has_prefix (path, MIGRATION_PATH_PREFIX))
    return path + strlen (MIGRATION_PATH_PREFIX);
  return ctl_nonnull (path);
}

MdDbusMigration1 *
ctl_migration_proxy (CtlContext *ctx, const char *path, int *exit_code)
{
  g_autoptr (GError) error = NULL;
  MdDbusMigration1 *migration;

  migration = md_dbus_migration1_proxy_new_sync (ctx->bus, G_DBUS_PROXY_FLAGS_NONE, MD_BUS_NAME,
                                                 path, NULL, &error);
  if (migration == NULL)
    *exit_code =
        ctl_report_error (ctx, error, NULL, NULL, NULL, _ ("cannot open migration %s"), path);
  return migration;
}

gboolean
ctl_parse_uint (const char *text, guint64 min, guint64 max, guint64 *out)
{
  if (text == NULL || !g_ascii_isdigit (text[0]))
    return FALSE;
  return g_ascii_string_to_unsigned (text, 10, min, max, out, NULL);
}

gboolean
ctl_parse_size (const char *text, guint64 *out)
{
  static const struct
  {
    const char *suffix;
    double factor;
  } units[] = {
    { "", 1.0 },
    { "b", 1.0 },
    { "k", 1024.0 },
    { "kib", 1024.0 },
    { "kb", 1e3 },
    { "m", 1048576.0 },
    { "mib", 1048576.0 },
    { "mb", 1e6 },
    { "g", 1073741824.0 },
    { "gib", 1073741824.0 },
    { "gb", 1e9 },
    { "t", 1099511627776.0 },
    { "tib", 1099511627776.0 },
    { "tb", 1e12 },
  };
  g_autofree char *suffix = NULL;
  char *end = NULL;
  double value;

  if (text == NULL || !(g_ascii_isdigit (text[0]) || text[0] == '.'))
    return FALSE;
  value = g_ascii_strtod (text, &end);
  if (end == text || !isfinite (value) || value < 0)
    return FALSE;
  suffix = g_ascii_strdown (end, -1);
  g_strstrip (suffix);
  if (g_str_has_suffix (suffix, "/s"))
    suffix[strlen (suffix) - 2] = '\0';
  for (gsize i = 0; i < G_N_ELEMENTS (units); i++)
    if (g_str_equal (suffix, units[i].suffix))
      {
        double bytes = round (value * units[i].factor);
        if (bytes >= 18446744073709551615.0)
          return FALSE;
        /* A plain number must be a whole number of bytes. */
        if (units[i].factor == 1.0 && bytes != value)
          return FALSE;
        *out = (guint64) bytes;
        return TRUE;
      }
  return FALSE;
}

char *
ctl_format_bytes (guint64 bytes)
{
  return g_format_size_full (bytes, G_FORMAT_SIZE_IEC_UNITS);
}

char *
ctl_format_rate (guint64 bytes_per_second)
{
  g_autofree char *size = ctl_format_bytes (bytes_per_second);
  /* TRANSLATORS: a transfer rate, e.g. "110.5 MiB/s" */
  return g_strdup_printf (_ ("%s/s"), size);
}

char *
ctl_format_duration (gint64 seconds)
{
  if (seconds < 0)
    seconds = 0;
  if (seconds >= 3600)
    return g_strdup_printf ("%" G_GINT64_FORMAT ":%02d:%02d", seconds / 3600,
                            (int) (seconds / 60 % 60), (int) (seconds % 60));
  return g_strdup_printf ("%d:%02d", (int) (seconds / 60), (int) (seconds % 60));
}

const char *
ctl_nonnull (const char *s)
{
  return s != NULL ? s : "";
}

void
ctl_print_json (JsonNode *node, gboolean compact)
{
  g_autoptr (JsonGenerator) generator = json_generator_new ();
  g_autofree char *text = NULL;

  /* One line per document everywhere: scripts read JSON Lines. */
  json_generator_set_pretty (generator, FALSE);
  json_generator_set_root (generator, node);
  text = json_generator_to_data (generator, NULL);
  g_print ("%s\n", text);
  fflush (stdout);
}

void
ctl_print_ok (CtlContext *ctx, const char *kind, const char *subject)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonNode) root = NULL;

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "command");
  json_builder_add_string_value (b, ctx->command);
  json_builder_set_member_name (b, "ok");
  json_builder_add_boolean_value (b, TRUE);
  json_builder_set_member_name (b, kind);
  json_builder_add_string_value (b, subject);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  ctl_print_json (root, TRUE);
}

JsonNode *
ctl_variant_to_json (GVariant *value)
{
  return json_gvariant_serialize (value);
}

void
ctl_print_table (GPtrArray *rows)
{
  g_autofree gsize *widths = NULL;
  gsize ncols = 0;

  for (guint r = 0; r < rows->len; r++)
    ncols = MAX (ncols, g_strv_length (g_ptr_array_index (rows, r)));
  widths = g_new0 (gsize, ncols);
  for (guint r = 0; r < rows->len; r++)
    {
      char **row = g_ptr_array_index (rows, r);
      for (gsize c = 0; row[c] != NULL; c++)
        widths[c] = MAX (widths[c], (gsize) g_utf8_strlen (row[c], -1));
    }
  for (guint r = 0; r < rows->len; r++)
    {
      char **row = g_ptr_array_index (rows, r);
      g_autoptr (GString) line = g_string_new (NULL);
      for (gsize c = 0; row[c] != NULL; c++)
        {
          g_string_append (line, row[c]);
          if (row[c + 1] != NULL)
            for (gsize pad = g_utf8_strlen (row[c], -1); pad < widths[c] + 2; pad++)
              g_string_append_c (line, ' ');
        }
      g_print ("%s\n", line->str);
    }
}
