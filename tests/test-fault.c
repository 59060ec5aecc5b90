/* Unit tests of the test-only fault points (src/common/md-fault.[ch]):
 * each case runs in a forked child, since an armed point stops or ends
 * the process it runs in. */
#include "config.h"

#include "common/md-error.h"
#include "common/md-fault.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t
fork_with (const char *points, const char *action)
{
  pid_t pid = fork ();

  g_assert_cmpint (pid, >=, 0);
  if (pid == 0)
    {
      g_autoptr (GError) error = NULL;

      /* md_fault_init() warns that points are armed: not a test failure. */
      g_log_set_always_fatal (G_LOG_FATAL_MASK);
      g_setenv ("MD_TEST_STOP_AT", points, TRUE);
      if (action != NULL)
        g_setenv ("MD_TEST_STOP_ACTION", action, TRUE);
      else
        g_unsetenv ("MD_TEST_STOP_ACTION");
      if (!md_fault_init (&error))
        _exit (2);
      md_fault_point ("not-armed"); /* passes */
      md_fault_point ("armed");
      md_fault_point ("armed"); /* each point acts once */
      _exit (0);
    }
  return pid;
}

static void
test_exit_action (void)
{
  int status = 0;
  pid_t pid = fork_with ("other, armed", "exit");

  g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
  g_assert_true (WIFEXITED (status));
  g_assert_cmpint (WEXITSTATUS (status), ==, 111);
}

static void
test_stop_action_then_continue (void)
{
  int status = 0;
  pid_t pid = fork_with ("armed", NULL); /* stop is the default */

  g_assert_cmpint (waitpid (pid, &status, WUNTRACED), ==, pid);
  g_assert_true (WIFSTOPPED (status));
  g_assert_cmpint (WSTOPSIG (status), ==, SIGSTOP);
  g_assert_cmpint (kill (pid, SIGCONT), ==, 0);
  /* Continued, it passes the second "armed" without stopping again. */
  g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
  g_assert_true (WIFEXITED (status));
  g_assert_cmpint (WEXITSTATUS (status), ==, 0);
}

static void
test_kill_action (void)
{
  int status = 0;
  pid_t pid = fork_with ("armed", "kill");

  g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
  g_assert_true (WIFSIGNALED (status));
  g_assert_cmpint (WTERMSIG (status), ==, SIGKILL);
}

static void
test_unarmed_point_does_nothing (void)
{
  int status = 0;
  pid_t pid = fork_with ("", "exit");

  g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
  g_assert_true (WIFEXITED (status));
  g_assert_cmpint (WEXITSTATUS (status), ==, 0);
}

static void
test_bad_action_is_refused (void)
{
  int status = 0;
  pid_t pid = fork_with ("armed", "explode");

  g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
  g_assert_true (WIFEXITED (status));
  g_assert_cmpint (WEXITSTATUS (status), ==, 2);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/fault/exit", test_exit_action);
  g_test_add_func ("/fault/stop-then-continue", test_stop_action_then_continue);
  g_test_add_func ("/fault/kill", test_kill_action);
  g_test_add_func ("/fault/unarmed", test_unarmed_point_does_nothing);
  g_test_add_func ("/fault/bad-action", test_bad_action_is_refused);
  return g_test_run ();
}
