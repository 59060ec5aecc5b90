/* The convergence policy (md-migration-convergence.c) fed with
 * query-migrate figures: when it calls a migration stalled, the order of
 * the ladder, what each option allows, and the message naming both rates. */
#include "config.h"

#include "common/md-config.h"
#include "common/md-options.h"
#include "migration/md-migration-convergence.h"

#define MiB (G_GUINT64_CONSTANT (1024) * 1024)

static MdMigrateOptions *
options (const char *text)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) given = g_variant_ref_sink (g_variant_new_parsed (text));
  MdMigrateOptions *opts = md_migrate_options_parse (given, NULL, &error);

  g_assert_no_error (error);
  return opts;
}

/* QEMU's ram.transferred so far, MiB. */
static guint64 sent_total;

/* Feeds iteration @iteration with @remaining MiB left after @sent MiB
 * were sent since the previous one; returns the step taken or -1. */
static int
feed_sent (MdConvergence *conv, guint64 iteration, guint64 remaining, guint64 sent, guint64 dirty,
           guint64 rate, guint throttle, guint64 *downtime)
{
  MdConvergenceSample sample = { 0 };
  MdConvergenceAction action = { 0 };

  sent_total += sent;
  sample.iteration = iteration;
  sample.remaining = remaining * MiB;
  sample.transferred = sent_total * MiB;
  sample.rate = rate * MiB;
  sample.dirty_rate = dirty * MiB;
  sample.throttle = throttle;
  if (!md_convergence_feed (conv, &sample, &action))
    return -1;
  if (downtime != NULL)
    *downtime = action.downtime;
  md_convergence_record (conv, iteration * 1000);
  return action.step;
}

/* As feed_sent(), with as much sent as is left: the guest re-dirtied it all. */
static int
feed (MdConvergence *conv, guint64 iteration, guint64 remaining, guint64 dirty, guint64 rate,
      guint throttle, guint64 *downtime)
{
  return feed_sent (conv, iteration, remaining, remaining, dirty, rate, throttle, downtime);
}

static void
test_converging_guest_is_left_alone (void)
{
  g_autoptr (MdConfig) config = md_config_new_default ();
  g_autoptr (MdMigrateOptions) opts = options ("{'postcopy': <true>}");
  MdConvergence *conv = md_convergence_new (opts, config);
  guint64 remaining = 512;

  /* Shrinking by half each pass, dirtying at a quarter of the link. */
  for (guint64 i = 1; i < 10; i++, remaining /= 2)
    g_assert_cmpint (feed_sent (conv, i, remaining / 2, remaining, 25, 100, 0, NULL), ==, -1);
  g_assert_cmpint (md_convergence_get_step (conv), ==, MD_CONVERGENCE_PRECOPY);
  md_convergence_free (conv);
}

static void
test_stalled_with_postcopy_goes_to_postcopy (void)
{
  g_autoptr (MdConfig) config = md_config_new_default ();
  g_autoptr (MdMigrateOptions) opts = options ("{'postcopy': <true>}");
  MdConvergence *conv;
  g_autoptr (GVariant) steps = NULL;

  config->stall_iterations = 2;
  conv = md_convergence_new (opts, config);
  g_assert_false (md_convergence_holds_throttle (opts, config));
  g_assert_cmpint (feed (conv, 1, 512, 0, 0, 0, NULL), ==, -1);
  /* Iteration 2: 512 MiB left after the bulk pass sent 1024 MiB (zero
   * pages included): progress. Then two passes with the whole range
   * dirty again (stall-iterations = 2 here). */
  g_assert_cmpint (feed_sent (conv, 2, 256, 1024, 64, 128, 0, NULL), ==, -1);
  g_assert_cmpint (feed (conv, 3, 256, 128, 128, 0, NULL), ==, -1);
  g_assert_cmpint (feed (conv, 3, 250, 128, 128, 0, NULL), ==, -1); /* same iteration */
  g_assert_cmpint (feed (conv, 4, 256, 128, 128, 0, NULL), ==, MD_CONVERGENCE_POSTCOPY);
  g_assert_nonnull (strstr (md_convergence_get_reason (conv), "guest dirties 128 MiB/s"));
  g_assert_nonnull (strstr (md_convergence_get_reason (conv), "link moves 128 MiB/s"));
  /* Nothing after postcopy. */
  g_assert_cmpint (feed (conv, 5, 256, 128, 128, 0, NULL), ==, -1);
  steps = g_variant_ref_sink (md_convergence_get_steps (conv));
  g_assert_cmpuint (g_variant_n_children (steps), ==, 2);
  md_convergence_free (conv);
}

static void
test_full_ladder_without_postcopy_gives_up_naming_both_rates (void)
{
  g_autoptr (MdConfig) config = md_config_new_default ();
  g_autoptr (MdMigrateOptions) opts =
      options ("{'max-downtime': <uint64 50>, 'max-downtime-ceiling': <uint64 350>}");
  MdConvergence *conv;
  g_autofree char *message = NULL;
  guint64 downtime = 0, i = 1;
  int step;

  config->stall_iterations = 2;
  conv = md_convergence_new (opts, config);
  g_assert_true (md_convergence_holds_throttle (opts, config));
  feed (conv, i++, 512, 0, 0, 0, NULL);
  /* Three raises of 100 ms (downtime-steps = 3), each after a window. */
  for (guint64 expected = 150; expected <= 350; expected += 100)
    {
      g_assert_cmpint (feed (conv, i++, 300, 200, 100, 0, NULL), ==, -1);
      g_assert_cmpint (feed (conv, i++, 300, 200, 100, 0, &downtime), ==,
                       MD_CONVERGENCE_DOWNTIME_RAISED);
      g_assert_cmpuint (downtime, ==, expected);
    }
  /* Then throttling, which gets throttle-iterations passes unless QEMU
   * reached its maximum throttle. */
  feed (conv, i++, 300, 200, 100, 0, NULL);
  g_assert_cmpint (feed (conv, i++, 300, 200, 100, 0, NULL), ==, MD_CONVERGENCE_THROTTLING);
  feed (conv, i++, 300, 200, 100, 20, NULL);
  g_assert_cmpint (feed (conv, i++, 300, 200, 100, 30, NULL), ==, -1);
  step = feed (conv, i++, 300, 200, 100, MD_CONVERGENCE_THROTTLE_MAX, NULL);
  g_assert_cmpint (step, ==, MD_CONVERGENCE_GAVE_UP);
  message = md_convergence_failure_message (conv);
  g_assert_cmpstr (message, ==,
                   "guest dirties 200 MiB/s, link moves 100 MiB/s; allow postcopy or raise "
                   "max-downtime-ceiling");
  md_convergence_free (conv);
}

static void
test_forbidden_throttle_and_manual (void)
{
  g_autoptr (MdConfig) config = md_config_new_default ();
  g_autoptr (MdMigrateOptions) forbid = options ("{'auto-converge': <false>}");
  g_autoptr (MdMigrateOptions) manual = options ("{'convergence': <'manual'>}");
  MdConvergence *conv = md_convergence_new (forbid, config);

  g_assert_false (md_convergence_holds_throttle (forbid, config));
  feed (conv, 1, 512, 0, 0, 0, NULL);
  /* The default stall-iterations (1): one pass re-dirtying all it sent. */
  g_assert_cmpint (feed (conv, 2, 512, 200, 100, 0, NULL), ==, MD_CONVERGENCE_GAVE_UP);
  md_convergence_free (conv);

  conv = md_convergence_new (manual, config);
  g_assert_false (md_convergence_holds_throttle (manual, config));
  for (guint64 i = 1; i < 10; i++)
    g_assert_cmpint (feed (conv, i, 512, 200, 100, 0, NULL), ==, -1);
  g_assert_cmpstr (md_convergence_step_to_string (md_convergence_get_step (conv)), ==, "manual");
  md_convergence_free (conv);
}

static void
test_throttle_before_postcopy_is_configurable (void)
{
  g_autoptr (MdConfig) config = md_config_new_default ();
  g_autoptr (MdMigrateOptions) opts = options ("{'postcopy': <true>}");
  MdConvergence *conv;

  config->throttle_before_postcopy = TRUE;
  config->stall_iterations = 1;
  conv = md_convergence_new (opts, config);
  g_assert_true (md_convergence_holds_throttle (opts, config));
  feed (conv, 1, 512, 0, 0, 0, NULL);
  g_assert_cmpint (feed (conv, 2, 512, 200, 100, 0, NULL), ==, MD_CONVERGENCE_THROTTLING);
  g_assert_cmpint (feed (conv, 3, 512, 200, 100, 99, NULL), ==, MD_CONVERGENCE_POSTCOPY);
  md_convergence_free (conv);
}

static void
test_explicit_auto_converge_gets_its_window (void)
{
  g_autoptr (MdConfig) config = md_config_new_default ();
  g_autoptr (MdMigrateOptions) opts = options ("{'auto-converge': <true>}");
  MdConvergence *conv = md_convergence_new (opts, config);

  g_assert_false (md_convergence_holds_throttle (opts, config));
  feed (conv, 1, 512, 0, 0, 0, NULL);
  g_assert_cmpint (feed (conv, 2, 512, 200, 100, 20, NULL), ==, MD_CONVERGENCE_THROTTLING);
  /* Not given up while QEMU still raises the throttle. */
  for (guint64 i = 3; i < 10; i++)
    g_assert_cmpint (feed (conv, i, 512, 200, 100, 10 * (guint) i, NULL), ==, -1);
  g_assert_cmpint (feed (conv, 10, 512, 200, 100, 99, NULL), ==, MD_CONVERGENCE_GAVE_UP);
  md_convergence_free (conv);
}

/* The early check: with postcopy allowed, one dirty-rate sample started
 * with the migration decides at the first rate of the first pass (the
 * link at 50 MiB/s). */
static int
early (MdConvergence *conv, guint64 dirty)
{
  MdConvergenceSample sample = { 0 };
  MdConvergenceAction action = { 0 };

  if (md_convergence_start_sample (conv) == 0)
    return -2;                                                  /* not asked for */
  g_assert_cmpuint (md_convergence_start_sample (conv), ==, 0); /* once */
  /* No rate yet: nothing decided. */
  sample.iteration = 1;
  sample.remaining = 500 * MiB;
  md_convergence_set_sample (conv, dirty * MiB);
  g_assert_false (md_convergence_feed (conv, &sample, &action));
  sample.remaining = 400 * MiB;
  sample.transferred = 100 * MiB;
  sample.rate = 50 * MiB;
  if (!md_convergence_feed (conv, &sample, &action))
    {
      /* Decided once: a later poll in the same pass does not ask again. */
      g_assert_false (md_convergence_feed (conv, &sample, &action));
      return -1;
    }
  md_convergence_record (conv, 1500);
  return action.step;
}

static void
test_early_switch_to_postcopy (void)
{
  g_autoptr (MdConfig) config = md_config_new_default ();
  g_autoptr (MdMigrateOptions) opts = options ("{'postcopy': <true>}");
  g_autoptr (MdMigrateOptions) no_postcopy = options ("@a{sv} {}");
  g_autoptr (MdMigrateOptions) high_ceiling =
      options ("{'postcopy': <true>, 'max-downtime-ceiling': <uint64 10000>}");
  g_autoptr (GVariant) steps = NULL;
  g_autoptr (GVariantDict) last = NULL;
  g_autoptr (GVariant) second = NULL;
  MdConvergence *conv = md_convergence_new (opts, config);
  gboolean is_early = FALSE;
  const char *reason;

  /* 260 MiB/s against 50: switched during the first pass, both rates named. */
  g_assert_cmpint (early (conv, 260), ==, MD_CONVERGENCE_POSTCOPY);
  reason = md_convergence_get_reason (conv);
  g_assert_nonnull (strstr (reason, "guest dirties 260 MiB/s"));
  g_assert_nonnull (strstr (reason, "link moves 50 MiB/s"));
  steps = md_convergence_get_steps (conv);
  g_assert_cmpuint (g_variant_n_children (steps), ==, 2);
  second = g_variant_get_child_value (steps, 1);
  last = g_variant_dict_new (second);
  g_assert_true (g_variant_dict_lookup (last, "early", "b", &is_early) && is_early);
  /* Nothing more to decide in postcopy. */
  g_assert_cmpint (feed (conv, 2, 512, 200, 50, 0, NULL), ==, -1);
  md_convergence_free (conv);

  /* 40 MiB/s: pre-copy would crawl, each short pass leaving 80 %. */
  conv = md_convergence_new (opts, config);
  g_assert_cmpint (early (conv, 40), ==, MD_CONVERGENCE_POSTCOPY);
  g_assert_nonnull (
      strstr (md_convergence_get_reason (conv), "leaves at least 80 % of what it sent"));
  md_convergence_free (conv);

  /* Below early-dirty-percent (50 % by default): the ladder decides
   * after the first pass, as before. */
  conv = md_convergence_new (opts, config);
  g_assert_cmpint (early (conv, 20), ==, -1);
  g_assert_cmpint (md_convergence_get_step (conv), ==, MD_CONVERGENCE_PRECOPY);
  g_assert_cmpint (feed (conv, 2, 512, 200, 50, 0, NULL), ==, MD_CONVERGENCE_POSTCOPY);
  md_convergence_free (conv);

  /* A ceiling under which the link moves more than the sample dirtied:
   * raising the downtime may help, the ladder keeps its order. */
  conv = md_convergence_new (high_ceiling, config);
  g_assert_cmpint (early (conv, 260), ==, -1);
  md_convergence_free (conv);

  /* Without postcopy, or with throttling first, or switched off: no sample. */
  conv = md_convergence_new (no_postcopy, config);
  g_assert_cmpint (early (conv, 260), ==, -2);
  md_convergence_free (conv);
  config->throttle_before_postcopy = TRUE;
  conv = md_convergence_new (opts, config);
  g_assert_cmpint (early (conv, 260), ==, -2);
  md_convergence_free (conv);
  config->throttle_before_postcopy = FALSE;
  config->early_sample_seconds = 0;
  conv = md_convergence_new (opts, config);
  g_assert_cmpint (early (conv, 260), ==, -2);
  md_convergence_free (conv);
}

static void
test_held_throttle_arguments (void)
{
  g_autoptr (MdConfig) config = md_config_new_default ();
  g_autoptr (MdMigrateOptions) opts = options ("@a{sv} {}");
  g_autoptr (JsonObject) params = json_object_new ();
  g_autoptr (JsonObject) caps = json_object_new ();
  JsonArray *list = json_array_new ();
  JsonObject *cap = json_object_new ();

  json_object_set_string_member (cap, "capability", "auto-converge");
  json_object_set_boolean_member (cap, "state", FALSE);
  json_array_add_object_element (list, cap);
  json_object_set_array_member (caps, "capabilities", list);
  md_convergence_hold_capabilities (opts, config, caps);
  md_convergence_hold_parameters (opts, config, params);
  g_assert_true (json_object_get_boolean_member (cap, "state"));
  g_assert_cmpint (json_object_get_int_member (params, "max-cpu-throttle"), ==, 1);
  g_assert_cmpint (json_object_get_int_member (params, "cpu-throttle-initial"), ==, 1);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/convergence/converging", test_converging_guest_is_left_alone);
  g_test_add_func ("/convergence/postcopy", test_stalled_with_postcopy_goes_to_postcopy);
  g_test_add_func ("/convergence/ladder",
                   test_full_ladder_without_postcopy_gives_up_naming_both_rates);
  g_test_add_func ("/convergence/forbidden", test_forbidden_throttle_and_manual);
  g_test_add_func ("/convergence/throttle-first", test_throttle_before_postcopy_is_configurable);
  g_test_add_func ("/convergence/held-throttle", test_held_throttle_arguments);
  g_test_add_func ("/convergence/auto-converge", test_explicit_auto_converge_gets_its_window);
  g_test_add_func ("/convergence/early", test_early_switch_to_postcopy);
  return g_test_run ();
}
