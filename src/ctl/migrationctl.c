/* migrationctl: the command-line client of migrationd.
 *
 * Global options come before or after the command; each command parses its
 * own options with a GOptionContext. Exit codes: 0 ok, 1 the operation
 * failed, 2 usage error, 3 migrationd not reachable. */
#include "config.h"

#include <glib/gi18n.h>
#include <gio/gunixinputstream.h>
#include <locale.h>
#include <stdio.h>
#include <string.h>

#include "ctl-common.h"

typedef int (*CtlCommandFunc) (CtlContext *ctx, int argc, char **argv);

typedef struct
{
  const char *name;
  CtlCommandFunc func;
  const char *args;
  const char *summary;
} CtlCommand;

static const CtlCommand *find_command (const char *name);
static void print_commands (void);
static int print_commands_json (void);

/* Read FILE ("-" for stdin) into a string, reporting failures. */
static char *
read_definition (CtlContext *ctx, const char *file, int *exit_code)
{
  g_autoptr (GError) error = NULL;
  char *contents = NULL;

  if (g_str_equal (file, "-"))
    {
      g_autoptr (GInputStream) in = g_unix_input_stream_new (0, FALSE);
      g_autoptr (GOutputStream) out = g_memory_output_stream_new_resizable ();
      if (g_output_stream_splice (out, in, G_OUTPUT_STREAM_SPLICE_CLOSE_TARGET, NULL, &error) < 0
          || !g_output_stream_write_all (out, "", 1, NULL, NULL, &error))
        {
          *exit_code =
              ctl_fail (ctx, CTL_EXIT_FAILED, "org.migrationd.Error.Failed", NULL,
                        _ ("cannot read the definition from standard input: %s"), error->message);
          return NULL;
        }
      return g_memory_output_stream_steal_data (G_MEMORY_OUTPUT_STREAM (out));
    }
  if (!g_file_get_contents (file, &contents, NULL, &error))
    {
      *exit_code = ctl_fail (ctx, CTL_EXIT_FAILED, "org.migrationd.Error.Failed", NULL,
                             _ ("cannot read the definition: %s"), error->message);
      return NULL;
    }
  return contents;
}

static gboolean
check_args (CtlContext *ctx, int argc, int min, int max, int *exit_code)
{
  if (argc - 1 < min)
    {
      *exit_code = ctl_usage_error (ctx, _ ("'%s' needs more arguments"), ctx->command);
      return FALSE;
    }
  if (argc - 1 > max)
    {
      *exit_code =
          ctl_usage_error (ctx, _ ("'%s' takes at most %d argument(s)"), ctx->command, max);
      return FALSE;
    }
  return TRUE;
}

/* ---- info ---- */

static int
cmd_info (CtlContext *ctx, int argc, char **argv)
{
  int rc = CTL_EXIT_OK;
  const char *const *caps;

  if (!ctl_parse_options (ctx, &argc, &argv, NULL, N_ ("Show migrationd's version and host."), NULL)
      || !check_args (ctx, argc, 0, 0, &rc))
    return CTL_EXIT_USAGE;
  if ((rc = ctl_connect (ctx)) != CTL_EXIT_OK)
    return rc;

  caps = md_dbus_manager1_get_capabilities (ctx->manager);
  if (ctx->json)
    {
      g_autoptr (JsonBuilder) b = json_builder_new ();
      g_autoptr (JsonNode) root = NULL;
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "version");
      json_builder_add_string_value (b, ctl_nonnull (md_dbus_manager1_get_version (ctx->manager)));
      json_builder_set_member_name (b, "host-name");
      json_builder_add_string_value (b,
                                     ctl_nonnull (md_dbus_manager1_get_host_name (ctx->manager)));
      json_builder_set_member_name (b, "host-uuid");
      json_builder_add_string_value (b,
                                     ctl_nonnull (md_dbus_manager1_get_host_uuid (ctx->manager)));
      json_builder_set_member_name (b, "capabilities");
      json_builder_begin_array (b);
      for (gsize i = 0; caps != NULL && caps[i] != NULL; i++)
        json_builder_add_string_value (b, caps[i]);
      json_builder_end_array (b);
      json_builder_set_member_name (b, "peer-address");
      json_builder_add_string_value (
          b, ctl_nonnull (md_dbus_manager1_get_peer_address (ctx->manager)));
      json_builder_end_object (b);
      root = json_builder_get_root (b);
      ctl_print_json (root, FALSE);
    }
  else
    {
      g_autofree char *capstr = caps != NULL ? g_strjoinv (" ", (char **) caps) : g_strdup ("");
      const char *peer = md_dbus_manager1_get_peer_address (ctx->manager);
      g_print ("%-13s %s\n", _ ("Version:"),
               ctl_nonnull (md_dbus_manager1_get_version (ctx->manager)));
      g_print ("%-13s %s\n", _ ("Host name:"),
               ctl_nonnull (md_dbus_manager1_get_host_name (ctx->manager)));
      g_print ("%-13s %s\n", _ ("Host UUID:"),
               ctl_nonnull (md_dbus_manager1_get_host_uuid (ctx->manager)));
      g_print ("%-13s %s\n", _ ("Capabilities:"), capstr);
      g_print ("%-13s %s\n", _ ("Peer address:"),
               peer != NULL && *peer != '\0' ? peer : _ ("(listener off)"));
    }
  return CTL_EXIT_OK;
}

/* ---- list ---- */

static gboolean
state_is_active (const char *state)
{
  return g_strcmp0 (state, "shut-off") != 0;
}

static int
list_guests (CtlContext *ctx, GPtrArray *out, gboolean quiet)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = NULL;
  g_autoptr (GVariantIter) iter = NULL;
  const char *path;

  reply = ctl_call (ctx, ctx->manager, "ListGuests", NULL, G_VARIANT_TYPE ("(ao)"), FALSE, &error);
  if (reply == NULL)
    return quiet ? CTL_EXIT_FAILED
                 : ctl_report_error (ctx, error, NULL, NULL, NULL, _ ("cannot list guests"));
  g_variant_get (reply, "(ao)", &iter);
  while (g_variant_iter_next (iter, "&o", &path))
    {
      g_autoptr (GError) perr = NULL;
      MdDbusGuest1 *guest = md_dbus_guest1_proxy_new_sync (ctx->bus, G_DBUS_PROXY_FLAGS_NONE,
                                                           MD_BUS_NAME, path, NULL, &perr);
      if (guest == NULL)
        {
          if (!quiet)
            return ctl_report_error (ctx, perr, NULL, NULL, NULL, _ ("cannot open guest %s"), path);
          continue;
        }
      /* A guest that vanished between the two calls has no properties. */
      if (md_dbus_guest1_get_name (guest) == NULL)
        {
          g_object_unref (guest);
          continue;
        }
      g_ptr_array_add (out, guest);
    }
  return CTL_EXIT_OK;
}

static int
cmd_list (CtlContext *ctx, int argc, char **argv)
{
  gboolean all = FALSE, running = FALSE, inactive = FALSE, names = FALSE;
  const GOptionEntry entries[] = {
    { "all", 'a', 0, G_OPTION_ARG_NONE, &all, N_ ("List every guest (default)"), NULL },
    { "running", 0, 0, G_OPTION_ARG_NONE, &running, N_ ("List only guests that are not shut off"),
      NULL },
    { "inactive", 0, 0, G_OPTION_ARG_NONE, &inactive, N_ ("List only shut-off guests"), NULL },
    { "name", 0, 0, G_OPTION_ARG_NONE, &names, N_ ("Print only the names"), NULL },
    { NULL },
  };
  g_autoptr (GPtrArray) guests = g_ptr_array_new_with_free_func (g_object_unref);
  g_autoptr (GPtrArray) shown = g_ptr_array_new ();
  int rc = CTL_EXIT_OK;

  if (!ctl_parse_options (ctx, &argc, &argv, NULL, N_ ("List the guests of this host."), entries)
      || !check_args (ctx, argc, 0, 0, &rc))
    return CTL_EXIT_USAGE;
  if (running && inactive)
    return ctl_usage_error (ctx, _ ("--running and --inactive exclude each other"));
  if (all)
    running = inactive = FALSE;
  if ((rc = ctl_connect (ctx)) != CTL_EXIT_OK)
    return rc;
  if ((rc = list_guests (ctx, guests, FALSE)) != CTL_EXIT_OK)
    return rc;

  for (guint i = 0; i < guests->len; i++)
    {
      MdDbusGuest1 *g = g_ptr_array_index (guests, i);
      gboolean active = state_is_active (md_dbus_guest1_get_state (g));
      if ((running && !active) || (inactive && active))
        continue;
      g_ptr_array_add (shown, g);
    }

  if (ctx->json)
    {
      g_autoptr (JsonBuilder) b = json_builder_new ();
      g_autoptr (JsonNode) root = NULL;
      json_builder_begin_array (b);
      for (guint i = 0; i < shown->len; i++)
        {
          MdDbusGuest1 *g = g_ptr_array_index (shown, i);
          json_builder_begin_object (b);
          json_builder_set_member_name (b, "name");
          json_builder_add_string_value (b, ctl_nonnull (md_dbus_guest1_get_name (g)));
          json_builder_set_member_name (b, "uuid");
          json_builder_add_string_value (b, ctl_nonnull (md_dbus_guest1_get_uuid (g)));
          json_builder_set_member_name (b, "state");
          json_builder_add_string_value (b, ctl_nonnull (md_dbus_guest1_get_state (g)));
          json_builder_set_member_name (b, "persistent");
          json_builder_add_boolean_value (b, md_dbus_guest1_get_persistent (g));
          json_builder_set_member_name (b, "memory");
          json_builder_add_int_value (b, (gint64) md_dbus_guest1_get_memory (g));
          json_builder_set_member_name (b, "vcpus");
          json_builder_add_int_value (b, md_dbus_guest1_get_vcpus (g));
          json_builder_set_member_name (b, "path");
          json_builder_add_string_value (b, g_dbus_proxy_get_object_path (G_DBUS_PROXY (g)));
          json_builder_end_object (b);
        }
      json_builder_end_array (b);
      root = json_builder_get_root (b);
      ctl_print_json (root, FALSE);
      return CTL_EXIT_OK;
    }

  if (names)
    {
      for (guint i = 0; i < shown->len; i++)
        g_print ("%s\n", md_dbus_guest1_get_name (g_ptr_array_index (shown, i)));
      return CTL_EXIT_OK;
    }

  {
    g_autoptr (GPtrArray) rows = g_ptr_array_new_with_free_func ((GDestroyNotify) g_strfreev);
    g_ptr_array_add (rows, g_strsplit (_ ("NAME|STATE|PERSISTENT|MEMORY|VCPUS"), "|", -1));
    for (guint i = 0; i < shown->len; i++)
      {
        MdDbusGuest1 *g = g_ptr_array_index (shown, i);
        char **row = g_new0 (char *, 6);
        row[0] = g_strdup (md_dbus_guest1_get_name (g));
        row[1] = g_strdup (ctl_nonnull (md_dbus_guest1_get_state (g)));
        row[2] = g_strdup (md_dbus_guest1_get_persistent (g) ? _ ("yes") : _ ("no"));
        row[3] = ctl_format_bytes (md_dbus_guest1_get_memory (g));
        row[4] = g_strdup_printf ("%u", md_dbus_guest1_get_vcpus (g));
        g_ptr_array_add (rows, row);
      }
    ctl_print_table (rows);
  }
  return CTL_EXIT_OK;
}

/* Hidden, for shell completion: guest names, no errors. */
static int
cmd_complete_guests (CtlContext *ctx, int argc, char **argv)
{
  g_autoptr (GPtrArray) guests = g_ptr_array_new_with_free_func (g_object_unref);

  if (!ctl_parse_options (ctx, &argc, &argv, NULL, NULL, NULL))
    return CTL_EXIT_USAGE;
  /* Completion must stay silent, even when the daemon is down. */
  if (!ctl_open_bus (ctx, NULL))
    return CTL_EXIT_UNREACHABLE;
  ctx->manager = md_dbus_manager1_proxy_new_sync (
      ctx->bus, G_DBUS_PROXY_FLAGS_DO_NOT_AUTO_START | G_DBUS_PROXY_FLAGS_DO_NOT_LOAD_PROPERTIES,
      MD_BUS_NAME, "/org/migrationd", NULL, NULL);
  if (ctx->manager == NULL || list_guests (ctx, guests, TRUE) != CTL_EXIT_OK)
    return CTL_EXIT_FAILED;
  for (guint i = 0; i < guests->len; i++)
    g_print ("%s\n", md_dbus_guest1_get_name (g_ptr_array_index (guests, i)));
  return CTL_EXIT_OK;
}

/* ---- define, create ---- */

static int
print_new_guest (CtlContext *ctx, const char *path, const char *verb)
{
  g_autoptr (MdDbusGuest1) guest = md_dbus_guest1_proxy_new_sync (ctx->bus, G_DBUS_PROXY_FLAGS_NONE,
                                                                  MD_BUS_NAME, path, NULL, NULL);
  const char *name = guest != NULL ? md_dbus_guest1_get_name (guest) : NULL;

  if (ctx->json)
    {
      g_autoptr (JsonBuilder) b = json_builder_new ();
      g_autoptr (JsonNode) root = NULL;
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "name");
      json_builder_add_string_value (b, ctl_nonnull (name));
      json_builder_set_member_name (b, "path");
      json_builder_add_string_value (b, path);
      json_builder_end_object (b);
      root = json_builder_get_root (b);
      ctl_print_json (root, FALSE);
    }
  else
    /* TRANSLATORS: "guest vm1 defined" / "guest vm1 created" */
    g_print (_ ("guest %s %s\n"), name != NULL ? name : path, verb);
  return CTL_EXIT_OK;
}

static int
define_or_create (CtlContext *ctx, int argc, char **argv, gboolean create)
{
  gboolean paused = FALSE;
  gboolean check = FALSE;
  const GOptionEntry create_entries[] = {
    { "paused", 0, 0, G_OPTION_ARG_NONE, &paused, N_ ("Leave the virtual CPUs stopped"), NULL },
    { NULL },
  };
  const GOptionEntry define_entries[] = {
    { "check", 0, 0, G_OPTION_ARG_NONE, &check,
      N_ ("Only check the definition against this host (all problems at once); define nothing"),
      NULL },
    { NULL },
  };
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = NULL;
  g_autofree char *xml = NULL;
  g_auto (GVariantBuilder) options = G_VARIANT_BUILDER_INIT (G_VARIANT_TYPE_VARDICT);
  const char *path;
  int rc = CTL_EXIT_OK;

  if (!ctl_parse_options (ctx, &argc, &argv, N_ ("FILE"),
                          create ? N_ ("Create and start a transient guest from a definition "
                                       "(FILE may be - for standard input).")
                                 : N_ ("Define a persistent guest from a definition (FILE may "
                                       "be - for standard input)."),
                          create ? create_entries : define_entries)
      || !check_args (ctx, argc, 1, 1, &rc))
    return CTL_EXIT_USAGE;
  if ((xml = read_definition (ctx, argv[1], &rc)) == NULL)
    return rc;
  if ((rc = ctl_connect (ctx)) != CTL_EXIT_OK)
    return rc;
  if (create && paused)
    g_variant_builder_add (&options, "{sv}", "start-paused", g_variant_new_boolean (TRUE));
  if (check)
    g_variant_builder_add (&options, "{sv}", "check-only", g_variant_new_boolean (TRUE));
  reply =
      ctl_call (ctx, ctx->manager, create ? "CreateGuest" : "DefineGuest",
                g_variant_new ("(sa{sv})", xml, &options), G_VARIANT_TYPE ("(o)"), TRUE, &error);
  if (reply == NULL)
    return ctl_report_error (ctx, error, CTL_ACTION_GUEST_MANAGE, NULL, NULL,
                             create ? _ ("cannot create a guest from %s")
                                    : _ ("cannot define a guest from %s"),
                             argv[1]);
  g_variant_get (reply, "(&o)", &path);
  if (check)
    {
      /* TRANSLATORS: "vm1.xml: the definition is valid on this host" */
      g_print (_ ("%s: the definition is valid on this host\n"), argv[1]);
      return CTL_EXIT_OK;
    }
  return print_new_guest (ctx, path, create ? _ ("created") : _ ("defined"));
}

static int
cmd_define (CtlContext *ctx, int argc, char **argv)
{
  return define_or_create (ctx, argc, argv, FALSE);
}

static int
cmd_create (CtlContext *ctx, int argc, char **argv)
{
  return define_or_create (ctx, argc, argv, TRUE);
}

/* ---- guest life cycle ---- */

typedef struct
{
  const char *command;
  const char *method;
  const char *summary;
} LifecycleCall;

static const LifecycleCall lifecycle_calls[] = {
  { "undefine", "Undefine", N_ ("Remove a guest's persistent definition.") },
  { "start", "Start", N_ ("Start a guest.") },
  { "shutdown", "Shutdown", N_ ("Ask a guest to power off (ACPI) and wait until it has.") },
  { "destroy", "Destroy", N_ ("Stop a guest at once.") },
  { "pause", "Pause", N_ ("Stop a guest's virtual CPUs.") },
  { "resume", "Resume", N_ ("Resume a guest's virtual CPUs.") },
  { "reset", "Reset", N_ ("Hard-reset a guest.") },
};

static void
print_lifecycle_done (const char *command, const char *name)
{
  if (g_str_equal (command, "undefine"))
    g_print (_ ("guest %s undefined\n"), name);
  else if (g_str_equal (command, "start"))
    g_print (_ ("guest %s started\n"), name);
  else if (g_str_equal (command, "shutdown"))
    g_print (_ ("guest %s is shut off\n"), name);
  else if (g_str_equal (command, "destroy"))
    g_print (_ ("guest %s destroyed\n"), name);
  else if (g_str_equal (command, "pause"))
    g_print (_ ("guest %s paused\n"), name);
  else if (g_str_equal (command, "resume"))
    g_print (_ ("guest %s resumed\n"), name);
  else if (g_str_equal (command, "reset"))
    g_print (_ ("guest %s reset\n"), name);
}

static int
cmd_lifecycle (CtlContext *ctx, int argc, char **argv)
{
  const LifecycleCall *call = NULL;
  gboolean paused = FALSE;
  char *timeout_str = NULL;
  GOptionEntry entries[2] = { { NULL } };
  g_autoptr (MdDbusGuest1) guest = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = NULL;
  g_auto (GVariantBuilder) options = G_VARIANT_BUILDER_INIT (G_VARIANT_TYPE_VARDICT);
  int rc = CTL_EXIT_OK;

  for (gsize i = 0; i < G_N_ELEMENTS (lifecycle_calls); i++)
    if (g_str_equal (lifecycle_calls[i].command, ctx->command))
      call = &lifecycle_calls[i];
  g_assert (call != NULL);

  if (g_str_equal (call->command, "start"))
    entries[0] = (GOptionEntry){
      "paused", 0, 0, G_OPTION_ARG_NONE, &paused, N_ ("Leave the virtual CPUs stopped"), NULL
    };
  else if (g_str_equal (call->command, "shutdown"))
    entries[0] = (GOptionEntry){ "timeout",
                                 0,
                                 0,
                                 G_OPTION_ARG_STRING,
                                 &timeout_str,
                                 N_ ("Seconds to wait for the guest to power off"),
                                 N_ ("SEC") };

  if (!ctl_parse_options (ctx, &argc, &argv, N_ ("NAME"), call->summary, entries)
      || !check_args (ctx, argc, 1, 1, &rc))
    {
      g_free (timeout_str);
      return CTL_EXIT_USAGE;
    }
  if (paused)
    g_variant_builder_add (&options, "{sv}", "start-paused", g_variant_new_boolean (TRUE));
  if (timeout_str != NULL)
    {
      guint64 timeout;
      gboolean ok = ctl_parse_uint (timeout_str, 1, G_MAXUINT32, &timeout);
      g_free (timeout_str);
      if (!ok)
        return ctl_usage_error (ctx, _ ("--timeout needs a number of seconds, at least 1"));
      g_variant_builder_add (&options, "{sv}", "timeout", g_variant_new_uint32 ((guint32) timeout));
    }

  if ((rc = ctl_connect (ctx)) != CTL_EXIT_OK)
    return rc;
  if ((guest = ctl_lookup_guest (ctx, argv[1], &rc)) == NULL)
    return rc;
  reply = ctl_call (ctx, guest, call->method, g_variant_new ("(a{sv})", &options),
                    G_VARIANT_TYPE ("()"), TRUE, &error);
  if (reply == NULL)
    /* TRANSLATORS: "cannot start vm1" */
    return ctl_report_error (ctx, error, CTL_ACTION_GUEST_MANAGE, "guest", argv[1],
                             _ ("cannot %s %s"), call->command, argv[1]);
  if (ctx->json)
    ctl_print_ok (ctx, "guest", argv[1]);
  else
    print_lifecycle_done (call->command, argv[1]);
  return CTL_EXIT_OK;
}

/* ---- status, dumpxml ---- */

#define FIELD_FMT "%-12s %s\n"

static int
cmd_status (CtlContext *ctx, int argc, char **argv)
{
  g_autoptr (MdDbusGuest1) g = NULL;
  GVariant *disks;
  const char *migration;
  int rc = CTL_EXIT_OK;

  if (!ctl_parse_options (ctx, &argc, &argv, N_ ("NAME"), N_ ("Show a guest's properties."), NULL)
      || !check_args (ctx, argc, 1, 1, &rc))
    return CTL_EXIT_USAGE;
  if ((rc = ctl_connect (ctx)) != CTL_EXIT_OK)
    return rc;
  if ((g = ctl_lookup_guest (ctx, argv[1], &rc)) == NULL)
    return rc;
  if (md_dbus_guest1_get_name (g) == NULL)
    {
      return ctl_fail (ctx, CTL_EXIT_FAILED, "org.migrationd.Error.NotFound", NULL,
                       _ ("status %s: the guest vanished while being read"), argv[1]);
    }
  disks = md_dbus_guest1_get_disks (g);
  migration = md_dbus_guest1_get_migration (g);
  if (g_strcmp0 (migration, "/") == 0)
    migration = NULL;

  if (ctx->json)
    {
      g_autoptr (JsonBuilder) b = json_builder_new ();
      g_autoptr (JsonNode) root = NULL;
      json_builder_begin_object (b);
#define S(key, value)                                                                              \
  json_builder_set_member_name (b, key);                                                           \
  json_builder_add_string_value (b, ctl_nonnull (value))
      S ("name", md_dbus_guest1_get_name (g));
      S ("uuid", md_dbus_guest1_get_uuid (g));
      S ("title", md_dbus_guest1_get_title (g));
      S ("state", md_dbus_guest1_get_state (g));
      json_builder_set_member_name (b, "persistent");
      json_builder_add_boolean_value (b, md_dbus_guest1_get_persistent (g));
      json_builder_set_member_name (b, "pid");
      json_builder_add_int_value (b, md_dbus_guest1_get_pid (g));
      json_builder_set_member_name (b, "memory");
      json_builder_add_int_value (b, (gint64) md_dbus_guest1_get_memory (g));
      json_builder_set_member_name (b, "vcpus");
      json_builder_add_int_value (b, md_dbus_guest1_get_vcpus (g));
      S ("machine", md_dbus_guest1_get_machine (g));
      json_builder_set_member_name (b, "disks");
      json_builder_begin_array (b);
      if (disks != NULL)
        {
          GVariantIter it;
          const char *target, *source, *format, *bus;
          g_variant_iter_init (&it, disks);
          while (g_variant_iter_next (&it, "(&s&s&s&s)", &target, &source, &format, &bus))
            {
              json_builder_begin_object (b);
              S ("target", target);
              S ("source", source);
              S ("format", format);
              S ("bus", bus);
              json_builder_end_object (b);
            }
        }
      json_builder_end_array (b);
      json_builder_set_member_name (b, "migration");
      if (migration != NULL)
        json_builder_add_string_value (b, migration);
      else
        json_builder_add_null_value (b);
      S ("path", g_dbus_proxy_get_object_path (G_DBUS_PROXY (g)));
#undef S
      json_builder_end_object (b);
      root = json_builder_get_root (b);
      ctl_print_json (root, FALSE);
      return CTL_EXIT_OK;
    }

  {
    g_autofree char *mem = ctl_format_bytes (md_dbus_guest1_get_memory (g));
    const char *title = md_dbus_guest1_get_title (g);
    guint pid = md_dbus_guest1_get_pid (g);

    g_print (FIELD_FMT, _ ("Name:"), md_dbus_guest1_get_name (g));
    g_print (FIELD_FMT, _ ("UUID:"), ctl_nonnull (md_dbus_guest1_get_uuid (g)));
    if (title != NULL && *title != '\0')
      g_print (FIELD_FMT, _ ("Title:"), title);
    g_print (FIELD_FMT, _ ("State:"), ctl_nonnull (md_dbus_guest1_get_state (g)));
    g_print (FIELD_FMT, _ ("Persistent:"),
             md_dbus_guest1_get_persistent (g) ? _ ("yes") : _ ("no"));
    if (pid != 0)
      g_print ("%-12s %u\n", _ ("PID:"), pid);
    else
      g_print (FIELD_FMT, _ ("PID:"), "-");
    g_print ("%-12s %s (%" G_GUINT64_FORMAT " bytes)\n", _ ("Memory:"), mem,
             md_dbus_guest1_get_memory (g));
    g_print ("%-12s %u\n", _ ("VCPUs:"), md_dbus_guest1_get_vcpus (g));
    g_print (FIELD_FMT, _ ("Machine:"), ctl_nonnull (md_dbus_guest1_get_machine (g)));
    if (migration != NULL)
      g_print ("%-12s %s (%s)\n", _ ("Migration:"), ctl_migration_id (migration), migration);
    else
      g_print (FIELD_FMT, _ ("Migration:"), _ ("none"));
    if (disks != NULL && g_variant_n_children (disks) > 0)
      {
        g_autoptr (GPtrArray) rows = g_ptr_array_new_with_free_func ((GDestroyNotify) g_strfreev);
        GVariantIter it;
        const char *target, *source, *format, *bus;

        g_print ("%s\n", _ ("Disks:"));
        g_ptr_array_add (rows, g_strsplit (_ ("  TARGET|BUS|FORMAT|SOURCE"), "|", -1));
        g_variant_iter_init (&it, disks);
        while (g_variant_iter_next (&it, "(&s&s&s&s)", &target, &source, &format, &bus))
          {
            char **row = g_new0 (char *, 5);
            row[0] = g_strdup_printf ("  %s", target);
            row[1] = g_strdup (bus);
            row[2] = g_strdup (format);
            row[3] = g_strdup (source);
            g_ptr_array_add (rows, row);
          }
        ctl_print_table (rows);
      }
    else
      g_print (FIELD_FMT, _ ("Disks:"), _ ("none"));
  }
  return CTL_EXIT_OK;
}

static int
cmd_dumpxml (CtlContext *ctx, int argc, char **argv)
{
  gboolean inactive = FALSE;
  const GOptionEntry entries[] = {
    { "inactive", 0, 0, G_OPTION_ARG_NONE, &inactive,
      N_ ("The persistent definition rather than the live one"), NULL },
    { NULL },
  };
  g_autoptr (MdDbusGuest1) guest = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = NULL;
  g_auto (GVariantBuilder) options = G_VARIANT_BUILDER_INIT (G_VARIANT_TYPE_VARDICT);
  const char *xml;
  int rc = CTL_EXIT_OK;

  if (!ctl_parse_options (ctx, &argc, &argv, N_ ("NAME"), N_ ("Print a guest's definition."),
                          entries)
      || !check_args (ctx, argc, 1, 1, &rc))
    return CTL_EXIT_USAGE;
  if ((rc = ctl_connect (ctx)) != CTL_EXIT_OK)
    return rc;
  if ((guest = ctl_lookup_guest (ctx, argv[1], &rc)) == NULL)
    return rc;
  if (inactive)
    g_variant_builder_add (&options, "{sv}", "inactive", g_variant_new_boolean (TRUE));
  reply = ctl_call (ctx, guest, "GetXML", g_variant_new ("(a{sv})", &options),
                    G_VARIANT_TYPE ("(s)"), FALSE, &error);
  if (reply == NULL)
    return ctl_report_error (ctx, error, NULL, "guest", argv[1],
                             _ ("cannot get the definition of %s"), argv[1]);
  g_variant_get (reply, "(&s)", &xml);
  if (ctx->json)
    {
      g_autoptr (JsonBuilder) b = json_builder_new ();
      g_autoptr (JsonNode) root = NULL;
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "name");
      json_builder_add_string_value (b, argv[1]);
      json_builder_set_member_name (b, "xml");
      json_builder_add_string_value (b, xml);
      json_builder_end_object (b);
      root = json_builder_get_root (b);
      ctl_print_json (root, FALSE);
    }
  else
    g_print ("%s%s", xml, g_str_has_suffix (xml, "\n") ? "" : "\n");
  return CTL_EXIT_OK;
}

/* ---- peers ---- */

static int
cmd_peers (CtlContext *ctx, int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = NULL;
  GVariantIter *iter;
  const char *name, *address, *dn;
  int rc = CTL_EXIT_OK;

  if (!ctl_parse_options (ctx, &argc, &argv, NULL, N_ ("List the trusted peers."), NULL)
      || !check_args (ctx, argc, 0, 0, &rc))
    return CTL_EXIT_USAGE;
  if ((rc = ctl_connect (ctx)) != CTL_EXIT_OK)
    return rc;
  reply =
      ctl_call (ctx, ctx->manager, "ListPeers", NULL, G_VARIANT_TYPE ("(a(sss))"), FALSE, &error);
  if (reply == NULL)
    return ctl_report_error (ctx, error, NULL, NULL, NULL, _ ("cannot list peers"));
  g_variant_get (reply, "(a(sss))", &iter);
  if (ctx->json)
    {
      g_autoptr (JsonBuilder) b = json_builder_new ();
      g_autoptr (JsonNode) root = NULL;
      json_builder_begin_array (b);
      while (g_variant_iter_next (iter, "(&s&s&s)", &name, &address, &dn))
        {
          json_builder_begin_object (b);
          json_builder_set_member_name (b, "name");
          json_builder_add_string_value (b, name);
          json_builder_set_member_name (b, "address");
          json_builder_add_string_value (b, address);
          json_builder_set_member_name (b, "certificate-dn");
          json_builder_add_string_value (b, dn);
          json_builder_end_object (b);
        }
      json_builder_end_array (b);
      root = json_builder_get_root (b);
      ctl_print_json (root, FALSE);
    }
  else
    {
      g_autoptr (GPtrArray) rows = g_ptr_array_new_with_free_func ((GDestroyNotify) g_strfreev);
      g_ptr_array_add (rows, g_strsplit (_ ("NAME|ADDRESS|CERTIFICATE DN"), "|", -1));
      while (g_variant_iter_next (iter, "(&s&s&s)", &name, &address, &dn))
        {
          char **row = g_new0 (char *, 4);
          row[0] = g_strdup (name);
          row[1] = g_strdup (address);
          row[2] = g_strdup (dn);
          g_ptr_array_add (rows, row);
        }
      ctl_print_table (rows);
    }
  g_variant_iter_free (iter);
  return CTL_EXIT_OK;
}

static int
cmd_add_peer (CtlContext *ctx, int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = NULL;
  g_auto (GVariantBuilder) options = G_VARIANT_BUILDER_INIT (G_VARIANT_TYPE_VARDICT);
  int rc = CTL_EXIT_OK;

  if (!ctl_parse_options (ctx, &argc, &argv, N_ ("NAME ADDRESS DN"),
                          N_ ("Trust the peer daemon at ADDRESS (host[:port]) whose certificate "
                              "carries the distinguished name DN."),
                          NULL)
      || !check_args (ctx, argc, 3, 3, &rc))
    return CTL_EXIT_USAGE;
  if ((rc = ctl_connect (ctx)) != CTL_EXIT_OK)
    return rc;
  reply = ctl_call (ctx, ctx->manager, "AddPeer",
                    g_variant_new ("(sssa{sv})", argv[1], argv[2], argv[3], &options),
                    G_VARIANT_TYPE ("()"), TRUE, &error);
  if (reply == NULL)
    return ctl_report_error (ctx, error, CTL_ACTION_PEER_MANAGE, NULL, NULL,
                             _ ("cannot add peer %s"), argv[1]);
  if (ctx->json)
    ctl_print_ok (ctx, "peer", argv[1]);
  else
    g_print (_ ("peer %s (%s) trusted\n"), argv[1], argv[2]);
  return CTL_EXIT_OK;
}

static int
cmd_remove_peer (CtlContext *ctx, int argc, char **argv)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply = NULL;
  int rc = CTL_EXIT_OK;

  if (!ctl_parse_options (ctx, &argc, &argv, N_ ("NAME"), N_ ("Forget a trusted peer."), NULL)
      || !check_args (ctx, argc, 1, 1, &rc))
    return CTL_EXIT_USAGE;
  if ((rc = ctl_connect (ctx)) != CTL_EXIT_OK)
    return rc;
  reply = ctl_call (ctx, ctx->manager, "RemovePeer", g_variant_new ("(s)", argv[1]),
                    G_VARIANT_TYPE ("()"), TRUE, &error);
  if (reply == NULL)
    return ctl_report_error (ctx, error, CTL_ACTION_PEER_MANAGE, "peer", argv[1],
                             _ ("cannot remove peer %s"), argv[1]);
  if (ctx->json)
    ctl_print_ok (ctx, "peer", argv[1]);
  else
    g_print (_ ("peer %s removed\n"), argv[1]);
  return CTL_EXIT_OK;
}

/* ---- help ---- */

static int
cmd_help (CtlContext *ctx, int argc, char **argv)
{
  /* Global options (--json) may follow "help" too. */
  if (!ctl_parse_options (ctx, &argc, &argv, N_ ("[COMMAND]"),
                          N_ ("Show the commands, or a command's options."), NULL))
    return CTL_EXIT_USAGE;
  if (argc > 1)
    {
      const CtlCommand *cmd = find_command (argv[1]);
      char *help_argv[] = { argv[1], (char *) "--help", NULL };
      if (cmd == NULL || g_str_has_prefix (argv[1], "__"))
        return ctl_usage_error (ctx, _ ("unknown command '%s'"), argv[1]);
      ctx->command = cmd->name;
      /* --help prints the command's usage and exits 0. */
      return cmd->func (ctx, 2, help_argv);
    }
  if (ctx->json)
    return print_commands_json ();
  g_print (_ ("Usage: migrationctl [--system | --address ADDRESS] [--json] [--quiet] "
              "[--no-ask-password] COMMAND ...\n\n"
              "Control migrationd, the live migration daemon for QEMU guests.\n\n"));
  print_commands ();
  g_print (_ ("\nGlobal options (before or after the command):\n"
              "  --system             talk to migrationd on the system bus (default)\n"
              "  --address ADDRESS    talk to migrationd on the bus at this D-Bus address\n"
              "  --json               print JSON Lines instead of text, errors as JSON on "
              "stderr\n"
              "  -q, --quiet          print nothing but errors\n"
              "  --version            print the version and exit\n"
              "  --no-ask-password    do not ask for a password when polkit requires one\n\n"
              "NAME is a guest name or UUID; MIGRATION is a number from 'migrationctl "
              "migrations'\nor an object path. Run 'migrationctl COMMAND --help' for a command's "
              "options.\n\n"
              "Exit status: 0 success, 1 the operation failed, 2 usage error, 3 migrationd not "
              "reachable.\n"));
  return CTL_EXIT_OK;
}

static const CtlCommand commands[] = {
  { "info", cmd_info, "", N_ ("Show migrationd's version, host and capabilities") },
  { "list", cmd_list, "", N_ ("List guests") },
  { "define", cmd_define, "FILE", N_ ("Define a persistent guest") },
  { "create", cmd_create, "FILE", N_ ("Create and start a transient guest") },
  { "undefine", cmd_lifecycle, "NAME", N_ ("Remove a guest's persistent definition") },
  { "start", cmd_lifecycle, "NAME", N_ ("Start a guest") },
  { "shutdown", cmd_lifecycle, "NAME", N_ ("Power a guest off and wait") },
  { "destroy", cmd_lifecycle, "NAME", N_ ("Stop a guest at once") },
  { "pause", cmd_lifecycle, "NAME", N_ ("Pause a guest") },
  { "resume", cmd_lifecycle, "NAME", N_ ("Resume a paused guest") },
  { "reset", cmd_lifecycle, "NAME", N_ ("Hard-reset a guest") },
  { "status", cmd_status, "NAME", N_ ("Show a guest's properties") },
  { "dumpxml", cmd_dumpxml, "NAME", N_ ("Print a guest's definition") },
  { "migrate", ctl_cmd_migrate, "NAME DEST", N_ ("Migrate a guest to another host and follow it") },
  { "save", ctl_cmd_save, "NAME FILE", N_ ("Save a guest's state to a file and stop it") },
  { "managedsave", ctl_cmd_managedsave, "NAME",
    N_ ("Save a guest's state for its next start and stop it") },
  { "restore", ctl_cmd_restore, "FILE", N_ ("Start a guest from a saved state file") },
  { "evacuate", ctl_cmd_evacuate, "PEER...",
    N_ ("Move every running guest to the given peers and follow it") },
  { "migrations", ctl_cmd_migrations, "", N_ ("List current and recent migrations") },
  { "cancel", ctl_cmd_cancel, "MIGRATION", N_ ("Cancel a migration") },
  { "set-bandwidth", ctl_cmd_set_bandwidth, "MIGRATION RATE",
    N_ ("Change a running migration's bandwidth limit") },
  { "set-downtime", ctl_cmd_set_downtime, "MIGRATION MS",
    N_ ("Change a running migration's downtime limit") },
  { "postcopy", ctl_cmd_postcopy, "MIGRATION", N_ ("Switch a migration to post-copy") },
  { "monitor", ctl_cmd_monitor, "", N_ ("Print migrationd's signals as they come") },
  { "peers", cmd_peers, "", N_ ("List trusted peers") },
  { "add-peer", cmd_add_peer, "NAME ADDRESS DN", N_ ("Trust a peer daemon") },
  { "remove-peer", cmd_remove_peer, "NAME", N_ ("Forget a trusted peer") },
  { "help", cmd_help, "[COMMAND]", N_ ("Show this help, or a command's") },
  /* Hidden helpers for shell completion. */
  { "__complete-guests", cmd_complete_guests, "", NULL },
  { "__complete-migrations", ctl_cmd_complete_migrations, "", NULL },
};

static const CtlCommand *
find_command (const char *name)
{
  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
    if (g_str_equal (commands[i].name, name))
      return &commands[i];
  return NULL;
}

static char *
commands_text (void)
{
  GString *text = g_string_new (NULL);

  g_string_append_printf (text, "%s\n", _ ("Commands:"));
  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
    {
      g_autofree char *left = NULL;
      if (commands[i].summary == NULL)
        continue;
      left = g_strdup_printf ("%s %s", commands[i].name, commands[i].args);
      g_string_append_printf (text, "  %-32s %s\n", left, _ (commands[i].summary));
    }
  return g_string_free (text, FALSE);
}

/* help --json: {"commands":[{"name","arguments","summary"}]} */
static int
print_commands_json (void)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autoptr (JsonNode) root = NULL;
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "commands");
  json_builder_begin_array (b);
  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
    {
      if (commands[i].summary == NULL)
        continue;
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "name");
      json_builder_add_string_value (b, commands[i].name);
      json_builder_set_member_name (b, "arguments");
      json_builder_add_string_value (b, commands[i].args);
      json_builder_set_member_name (b, "summary");
      json_builder_add_string_value (b, _ (commands[i].summary));
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  ctl_print_json (root, TRUE);
  return CTL_EXIT_OK;
}

static void
print_commands (void)
{
  g_autofree char *text = commands_text ();
  g_print ("%s", text);
}

/* --quiet: standard output stays empty. */
static void
discard_print (const char *string)
{
}

static int
print_version (CtlContext *ctx)
{
  if (ctx->json)
    {
      g_autoptr (JsonBuilder) b = json_builder_new ();
      g_autoptr (JsonNode) root = NULL;
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "program");
      json_builder_add_string_value (b, "migrationctl");
      json_builder_set_member_name (b, "version");
      json_builder_add_string_value (b, PACKAGE_VERSION);
      json_builder_end_object (b);
      root = json_builder_get_root (b);
      ctl_print_json (root, TRUE);
    }
  else
    g_print ("migrationctl %s\n", PACKAGE_VERSION);
  return CTL_EXIT_OK;
}

int
main (int argc, char **argv)
{
  CtlContext ctx = { .system = TRUE };
  g_autoptr (GOptionContext) oc = NULL;
  g_autofree GOptionEntry *global = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *description = NULL;
  const CtlCommand *cmd;
  int rc;

  setlocale (LC_ALL, "");
  bindtextdomain (GETTEXT_PACKAGE, LOCALEDIR);
  bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
  textdomain (GETTEXT_PACKAGE);
  g_set_prgname ("migrationctl");

  /* Global options up to the command; the command parses the rest. */
  global = ctl_global_entries (&ctx);
  oc = g_option_context_new (_ ("COMMAND [ARGUMENTS…]"));
  g_option_context_set_translation_domain (oc, GETTEXT_PACKAGE);
  g_option_context_set_strict_posix (oc, TRUE);
  g_option_context_set_summary (oc, _ ("Control migrationd, the live migration daemon for QEMU "
                                       "guests. Run 'migrationctl help' for the commands."));
  g_option_context_add_main_entries (oc, global, GETTEXT_PACKAGE);
  /* --help lists the commands after the options. */
  description = commands_text ();
  g_option_context_set_description (oc, description);
  if (!g_option_context_parse (oc, &argc, &argv, &error))
    return ctl_usage_error (&ctx, "%s", error->message);
  if (ctx.quiet)
    g_set_print_handler (discard_print);
  if (ctx.version)
    return print_version (&ctx);
  if (argc < 2)
    return ctl_usage_error (&ctx, _ ("no command given"));

  cmd = find_command (argv[1]);
  if (cmd == NULL)
    return ctl_usage_error (&ctx, _ ("unknown command '%s'"), argv[1]);
  ctx.command = cmd->name;
  rc = cmd->func (&ctx, argc - 1, argv + 1);
  ctl_stop_tty_agent (&ctx);

  g_clear_object (&ctx.manager);
  if (ctx.bus != NULL)
    g_dbus_connection_flush_sync (ctx.bus, NULL, NULL);
  g_clear_object (&ctx.bus);
  g_free (ctx.address);
  return rc;
}
