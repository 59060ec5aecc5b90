/* migrationd: test-only fault points.
 *
 * The fault-injection tests (tests/integration/test_faults.py) must hit a
 * daemon at an exact moment of a migration: between two transitions, not
 * "about 2 s after Migrate". The engine calls md_fault_point() at every
 * transition; when the environment named that point at start-up, the
 * daemon stops (or dies) right there and the test does the rest (SIGKILL,
 * link down, SIGCONT ...). Without the environment variables a fault point
 * costs one hash lookup and does nothing.
 *
 *   MD_TEST_STOP_AT=name[,name...]      points to act on (each once)
 *   MD_TEST_STOP_ACTION=stop|kill|exit|abort   what to do (default stop:
 *                                       raise (SIGSTOP); kill: SIGKILL,
 *                                       exit: _exit (111), abort: abort ())
 *
 * Documented in docs/HACKING.md ("Fault points"). */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Reads MD_TEST_STOP_AT / MD_TEST_STOP_ACTION; main() calls it once at
 * start-up, md_fault_point() calls it itself when main() did not (unit
 * tests). Returns FALSE with a message in @error on a bad action. */
gboolean md_fault_init (GError **error);

/* Marks a named point. Names are kebab-case, "<side>-<what>", e.g.
 * "source-prepare-done", "dest-finish-received". Every point logs
 * "fault point NAME" at debug level, so a test can see which were passed. */
void md_fault_point (const char *name);

/* @func runs before an armed point acts (the migration journal's writer
 * drains, so a test that kills the daemon there finds on disk what the
 * daemon wrote before the point, as a synchronous journal would have). */
void md_fault_set_before_action (void (*func) (void));

G_END_DECLS
