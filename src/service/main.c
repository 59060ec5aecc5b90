/* migrationd: command line and main loop; everything else is in the
 * library so the tests link the same code. */
#include "config.h"

#include "common/md-config.h"
#include "common/md-fault.h"
#include "md-daemon.h"

#include <glib-unix.h>
#include <glib/gi18n.h>
#include <locale.h>
#include <stdlib.h>

typedef struct
{
  GMainLoop *loop;
  MdDaemon *daemon;
  int status;
} MainState;

static gboolean
on_terminate (gpointer user_data)
{
  MainState *state = user_data;

  g_message ("terminating on signal");
  md_daemon_stop (state->daemon);
  return G_SOURCE_CONTINUE;
}

static void
on_done (MdDaemon *daemon, int status, MainState *state)
{
  state->status = status;
  g_main_loop_quit (state->loop);
}

int
main (int argc, char *argv[])
{
  g_autofree char *config_path = NULL;
  g_autofree char *state_dir = NULL;
  g_autofree char *runtime_dir = NULL;
  g_autofree char *bus_address = NULL;
  gboolean replace = FALSE;
  gboolean verbose = FALSE;
  gboolean version = FALSE;
  const GOptionEntry entries[] = {
    { "config", 'c', 0, G_OPTION_ARG_FILENAME, &config_path, N_ ("Configuration file"),
      N_ ("FILE") },
    { "state-dir", 0, 0, G_OPTION_ARG_FILENAME, &state_dir, N_ ("State directory"), N_ ("DIR") },
    { "runtime-dir", 0, 0, G_OPTION_ARG_FILENAME, &runtime_dir, N_ ("Runtime directory"),
      N_ ("DIR") },
    { "address", 'a', 0, G_OPTION_ARG_STRING, &bus_address,
      N_ ("Bus address to use instead of the system bus"), N_ ("ADDRESS") },
    { "replace", 'r', 0, G_OPTION_ARG_NONE, &replace, N_ ("Replace a running instance"), NULL },
    { "verbose", 'v', 0, G_OPTION_ARG_NONE, &verbose, N_ ("Log debug messages"), NULL },
    { "version", 0, 0, G_OPTION_ARG_NONE, &version, N_ ("Print the version and exit"), NULL },
    { NULL }
  };
  g_autoptr (GOptionContext) context = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (MdConfig) config = NULL;
  g_autoptr (MdDaemon) daemon = NULL;
  g_autoptr (GMainLoop) loop = NULL;
  MdDaemonOptions options = { 0 };
  MainState state = { 0 };

  setlocale (LC_ALL, "");
  bindtextdomain (GETTEXT_PACKAGE, LOCALEDIR);
  bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
  textdomain (GETTEXT_PACKAGE);

  context = g_option_context_new (NULL);
  g_autofree char *defaults = NULL;

  g_option_context_set_summary (context, _ ("Live-migrates QEMU guests between hosts."));
  defaults = g_strdup_printf (_ ("Defaults: configuration %s, state directory %s, runtime "
                                 "directory %s."),
                              MD_SYSCONFDIR "/migrationd.conf", MD_STATEDIR, MD_RUNTIMEDIR);
  g_option_context_set_description (context, defaults);
  g_option_context_add_main_entries (context, entries, GETTEXT_PACKAGE);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("migrationd: %s (see --help)\n", error->message);
      return 2;
    }
  if (argc > 1)
    {
      g_printerr ("migrationd: unexpected argument '%s' (see --help)\n", argv[1]);
      return 2;
    }
  if (version)
    {
      g_print ("migrationd %s\n", PACKAGE_VERSION);
      return 0;
    }
  if (verbose)
    g_setenv ("G_MESSAGES_DEBUG", "all", TRUE);

  if (!md_fault_init (&error))
    {
      g_printerr ("migrationd: %s\n", error->message);
      return 2;
    }
  config = md_config_load (config_path, &error);
  if (config == NULL)
    {
      g_printerr ("migrationd: %s\n", error->message);
      return 1;
    }
  if (state_dir != NULL)
    g_free (g_steal_pointer (&config->state_dir)), config->state_dir = g_steal_pointer (&state_dir);
  if (runtime_dir != NULL)
    g_free (g_steal_pointer (&config->runtime_dir)),
        config->runtime_dir = g_steal_pointer (&runtime_dir);

  loop = g_main_loop_new (NULL, FALSE);
  daemon = md_daemon_new (g_steal_pointer (&config));
  state.loop = loop;
  state.daemon = daemon;
  g_signal_connect (daemon, "done", G_CALLBACK (on_done), &state);

  options.bus_address = bus_address;
  options.replace = replace;
  if (!md_daemon_start (daemon, &options, &error))
    {
      g_printerr ("migrationd: %s\n", error->message);
      return 1;
    }

  g_unix_signal_add (SIGTERM, on_terminate, &state);
  g_unix_signal_add (SIGINT, on_terminate, &state);
  g_main_loop_run (loop);
  return state.status;
}
