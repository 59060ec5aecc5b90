/* migrationctl: save, managedsave and restore — a guest's state to a file
 * and back. Save and managedsave follow the Migration1 object the daemon
 * answers with, as migrate does; Ctrl-C cancels and the guest keeps
 * running. */
#include "config.h"

#include <glib/gi18n.h>
#include <string.h>

#include "ctl-common.h"

typedef struct
{
  char *compress;
  char *bandwidth;
  gboolean bypass_cache;
  gboolean running;
  gboolean paused;
  gboolean overwrite;
} SaveOptions;

static void
save_options_clear (SaveOptions *o)
{
  g_free (o->compress);
  g_free (o->bandwidth);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (SaveOptions, save_options_clear)

/* Options shared by save and managedsave; checked before the daemon is
 * asked anything. Returns CTL_EXIT_OK or the usage error's code. */
static int
build_save_options (CtlContext *ctx, const SaveOptions *o, GVariantBuilder *options)
{
  static const char *const methods[] = { "none", "gzip", "zstd", NULL };

  if (o->compress != NULL && !g_strv_contains (methods, o->compress))
    return ctl_usage_error (ctx, _ ("--compress is none, gzip or zstd, not '%s'"), o->compress);
  if (o->running && o->paused)
    return ctl_usage_error (ctx, _ ("--running and --paused exclude each other"));
  if (o->compress != NULL)
    g_variant_builder_add (options, "{sv}", "compression", g_variant_new_string (o->compress));
  if (o->bandwidth != NULL)
    {
      guint64 bytes;
      if (!ctl_parse_size (o->bandwidth, &bytes))
        return ctl_usage_error (ctx, _ ("--bandwidth needs bytes per second, e.g. 100M, not '%s'"),
                                o->bandwidth);
      g_variant_builder_add (options, "{sv}", "bandwidth", g_variant_new_uint64 (bytes));
    }
  if (o->bypass_cache)
    g_variant_builder_add (options, "{sv}", "bypass-cache", g_variant_new_boolean (TRUE));
  if (o->running)
    g_variant_builder_add (options, "{sv}", "running", g_variant_new_boolean (TRUE));
  if (o->paused)
    g_variant_builder_add (options, "{sv}", "paused", g_variant_new_boolean (TRUE));
  if (o->overwrite)
    g_variant_builder_add (options, "{sv}", "overwrite", g_variant_new_boolean (TRUE));
  g_variant_builder_add (options, "{sv}", "auth.no_user_interaction",
                         g_variant_new_boolean (ctx->no_ask_password));
  return CTL_EXIT_OK;
}

/* The daemon wants an absolute path; a relative one is the caller's. */
static char *
absolute_path (const char *file)
{
  g_autofree char *cwd = NULL;

  if (g_path_is_absolute (file))
    return g_strdup (file);
  cwd = g_get_current_dir ();
  return g_build_filename (cwd, file, NULL);
}

static int
run_save (CtlContext *ctx, int argc, char **argv, gboolean managed)
{
  g_auto (SaveOptions) o = { 0 };
  const GOptionEntry entries[] = {
    { "compress", 0, 0, G_OPTION_ARG_STRING, &o.compress,
      N_ ("Compress the state file: none (default), gzip or zstd"), N_ ("METHOD") },
    { "bypass-cache", 0, 0, G_OPTION_ARG_NONE, &o.bypass_cache,
      N_ ("Drop the file from the page cache once written"), NULL },
    { "running", 0, 0, G_OPTION_ARG_NONE, &o.running,
      N_ ("Restore the guest running, whatever its state now"), NULL },
    { "paused", 0, 0, G_OPTION_ARG_NONE, &o.paused,
      N_ ("Restore the guest paused, whatever its state now"), NULL },
    { "bandwidth", 0, 0, G_OPTION_ARG_STRING, &o.bandwidth,
      N_ ("Write at most this many bytes per second, e.g. 100M"), N_ ("RATE") },
    { managed ? NULL : "overwrite", 0, 0, G_OPTION_ARG_NONE, &o.overwrite,
      N_ ("Replace FILE if it exists"), NULL },
    { NULL },
  };
  g_auto (GVariantBuilder) options = G_VARIANT_BUILDER_INIT (G_VARIANT_TYPE_VARDICT);
  g_autoptr (MdDbusGuest1) guest = NULL;
  g_autofree char *file = NULL;
  int rc;

  if (!ctl_parse_options (ctx, &argc, &argv, managed ? N_ ("NAME") : N_ ("NAME FILE"),
                          managed ? N_ ("Save a guest's state into migrationd's state directory "
                                        "and stop it; 'start' restores it.\nCtrl-C cancels "
                                        "the save; the guest keeps running.")
                                  : N_ ("Save a guest's state (RAM and devices; disks stay "
                                        "where they are) to FILE and stop it.\nFILE's directory "
                                        "must exist; FILE must not, unless --overwrite.\nCtrl-C "
                                        "cancels the save; the guest keeps running."),
                          entries))
    return CTL_EXIT_USAGE;
  if (argc != (managed ? 2 : 3))
    return ctl_usage_error (ctx, managed ? _ ("'managedsave' needs a guest NAME")
                                         : _ ("'save' needs a guest NAME and a FILE"));
  if ((rc = build_save_options (ctx, &o, &options)) != CTL_EXIT_OK)
    return rc;
  if ((rc = ctl_connect (ctx)) != CTL_EXIT_OK)
    return rc;
  if ((guest = ctl_lookup_guest (ctx, argv[1], &rc)) == NULL)
    return rc;
  if (managed)
    return ctl_follow_guest_call (ctx, guest, argv[1], "ManagedSave",
                                  g_variant_new ("(a{sv})", &options), _ ("its managed save"));
  file = absolute_path (argv[2]);
  return ctl_follow_guest_call (ctx, guest, argv[1], "Save",
                                g_variant_new ("(sa{sv})", file, &options), file);
}

int
ctl_cmd_save (CtlContext *ctx, int argc, char **argv)
{
  return run_save (ctx, argc, argv, FALSE);
}

int
ctl_cmd_managedsave (CtlContext *ctx, int argc, char **argv)
{
  return run_save (ctx, argc, argv, TRUE);
}

int
ctl_cmd_restore (CtlContext *ctx, int argc, char **argv)
{
  gboolean paused = FALSE, running = FALSE;
  g_autofree char *xml_file = NULL;
  const GOptionEntry entries[] = {
    { "paused", 0, 0, G_OPTION_ARG_NONE, &paused,
      N_ ("Leave the guest paused, whatever the file says"), NULL },
    { "running", 0, 0, G_OPTION_ARG_NONE, &running, N_ ("Resume the guest, whatever the file says"),
      NULL },
    { "xml", 0, 0, G_OPTION_ARG_FILENAME, &xml_file,
      N_ ("A changed definition (same guest ABI, other host paths)"), N_ ("FILE") },
    { NULL },
  };
  g_auto (GVariantBuilder) options = G_VARIANT_BUILDER_INIT (G_VARIANT_TYPE_VARDICT);
  g_autoptr (GVariant) reply = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *file = NULL;
  g_autofree char *xml = NULL;
  const char *path;
  int rc;

  if (!ctl_parse_options (ctx, &argc, &argv, N_ ("FILE"),
                          N_ ("Start a guest from a state FILE written by 'save'. The file's "
                              "header is checked first; a bad file starts nothing."),
                          entries))
    return CTL_EXIT_USAGE;
  if (argc != 2)
    return ctl_usage_error (ctx, _ ("'restore' needs a FILE"));
  if (paused && running)
    return ctl_usage_error (ctx, _ ("--running and --paused exclude each other"));
  if (xml_file != NULL)
    {
      if (!g_file_get_contents (xml_file, &xml, NULL, &error))
        {
          g_printerr (_ ("migrationctl: cannot read the definition: %s\n"), error->message);
          return CTL_EXIT_FAILED;
        }
      g_variant_builder_add (&options, "{sv}", "xml", g_variant_new_string (xml));
    }
  if (paused)
    g_variant_builder_add (&options, "{sv}", "paused", g_variant_new_boolean (TRUE));
  if (running)
    g_variant_builder_add (&options, "{sv}", "running", g_variant_new_boolean (TRUE));
  g_variant_builder_add (&options, "{sv}", "auth.no_user_interaction",
                         g_variant_new_boolean (ctx->no_ask_password));
  file = absolute_path (argv[1]);
  if ((rc = ctl_connect (ctx)) != CTL_EXIT_OK)
    return rc;
  reply = ctl_call (ctx, ctx->manager, "Restore", g_variant_new ("(sa{sv})", file, &options),
                    G_VARIANT_TYPE ("(o)"), TRUE, &error);
  if (reply == NULL)
    return ctl_report_error (ctx, error, CTL_ACTION_GUEST_MANAGE, NULL, NULL,
                             _ ("cannot restore from %s"), file);
  g_variant_get (reply, "(&o)", &path);
  if (ctx->json)
    {
      g_autoptr (JsonNode) node = json_node_new (JSON_NODE_OBJECT);
      JsonObject *obj = json_object_new ();
      json_object_set_string_member (obj, "guest", path);
      json_object_set_string_member (obj, "file", file);
      json_node_take_object (node, obj);
      ctl_print_json (node, FALSE);
    }
  else
    g_print (_ ("restored %s from %s\n"), strrchr (path, '/') + 1, file);
  return CTL_EXIT_OK;
}
