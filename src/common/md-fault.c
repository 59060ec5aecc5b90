/* migrationd: test-only fault points (see md-fault.h). */
#include "config.h"

#include "common/md-fault.h"

#include "common/md-error.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

typedef enum
{
  FAULT_STOP,
  FAULT_KILL,
  FAULT_EXIT,
  FAULT_ABORT,
} FaultAction;

/* Exit status of the "exit" action: distinct from every status main()
 * returns, so a test can tell it from a real failure. */
#define FAULT_EXIT_STATUS 111

static gboolean fault_initialized;
static GHashTable *fault_armed; /* name -> GINT_TO_POINTER (TRUE) until hit */
static FaultAction fault_action = FAULT_STOP;

static gboolean
parse_action (const char *text, FaultAction *action, GError **error)
{
  static const char *const names[] = { "stop", "kill", "exit", "abort" };

  if (text == NULL || *text == '\0')
    {
      *action = FAULT_STOP;
      return TRUE;
    }
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    if (g_str_equal (text, names[i]))
      {
        *action = (FaultAction) i;
        return TRUE;
      }
  g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
               "MD_TEST_STOP_ACTION='%s' is not one of stop, kill, exit, abort", text);
  return FALSE;
}

gboolean
md_fault_init (GError **error)
{
  const char *points = g_getenv ("MD_TEST_STOP_AT");
  FaultAction action;

  if (fault_initialized)
    return TRUE;
  fault_initialized = TRUE;
  if (!parse_action (g_getenv ("MD_TEST_STOP_ACTION"), &action, error))
    return FALSE;
  fault_action = action;
  if (points == NULL || *points == '\0')
    return TRUE;

  g_auto (GStrv) names = g_strsplit (points, ",", -1);

  fault_armed = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  for (guint i = 0; names[i] != NULL; i++)
    {
      g_strstrip (names[i]);
      if (*names[i] != '\0')
        g_hash_table_add (fault_armed, g_strdup (names[i]));
    }
  g_warning ("test fault points armed (MD_TEST_STOP_AT=%s, action %s): never set this in "
             "production",
             points, g_getenv ("MD_TEST_STOP_ACTION") ? g_getenv ("MD_TEST_STOP_ACTION") : "stop");
  return TRUE;
}

static void (*before_action) (void);

void
md_fault_set_before_action (void (*func) (void))
{
  before_action = func;
}

void
md_fault_point (const char *name)
{
  if (!fault_initialized)
    {
      g_autoptr (GError) error = NULL;

      if (!md_fault_init (&error))
        g_warning ("%s", error->message);
    }
  g_debug ("fault point %s", name);
  if (fault_armed == NULL || !g_hash_table_remove (fault_armed, name))
    return;
  if (before_action != NULL)
    before_action ();

  /* The test waits for this line (or for the process state) before it
   * acts; stderr is unbuffered, stdout may not be. */
  g_message ("fault point %s reached: %s (MD_TEST_STOP_AT)", name,
             fault_action == FAULT_STOP   ? "stopping"
             : fault_action == FAULT_KILL ? "killing myself"
             : fault_action == FAULT_EXIT ? "exiting"
                                          : "aborting");
  fflush (stdout);
  fflush (stderr);
  switch (fault_action)
    {
    case FAULT_STOP:
      raise (SIGSTOP);
      g_message ("fault point %s: continued", name);
      break;
    case FAULT_KILL:
      raise (SIGKILL);
      break;
    case FAULT_EXIT:
      _exit (FAULT_EXIT_STATUS);
    case FAULT_ABORT:
      abort ();
    }
}
