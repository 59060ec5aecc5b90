/* migrationd: the convergence policy (see the header for the ladder). */
#include "config.h"

#include "md-migration-convergence.h"

#define MiB (1024.0 * 1024.0)

struct _MdConvergence
{
  MdConvergenceStep step;
  char *reason;
  GPtrArray *steps;        /* GVariant a{sv}, floating refs sunk */
  gboolean record_pending; /* a step was taken; md_convergence_record() stamps it */
  guint stall_iterations;  /* [convergence] thresholds, copied */
  guint dirty_percent;
  guint shrink_percent;
  guint downtime_steps;
  guint throttle_iterations;
  /* The caller asked for auto-converge: throttling gets its whole window
   * (up to QEMU's maximum, or the hurry point), however fast iterations
   * go (multifd and the tunnel make them short). */
  gboolean throttle_to_max;

  guint64 hurry_ms;      /* 2/3 of abort-after: windows end early from here */
  guint64 base_downtime; /* max-downtime */
  guint64 ceiling;       /* max-downtime-ceiling */
  guint64 downtime;      /* the limit QEMU has now */
  guint raises;          /* downtime raises done */
  gboolean may_throttle;
  gboolean throttled;
  gboolean may_postcopy;

  guint64 last_iteration;
  guint64 last_transferred;
  guint stalled;         /* iterations without progress in a row */
  guint step_iterations; /* iterations since the current step was taken */
  guint64 dirty_sum;     /* over the stalled iterations */
  guint64 rate_sum;
  guint64 remaining;
  double report_dirty; /* MiB/s over the window of the last step taken */
  double report_rate;

  /* The early check (md_convergence_start_sample). */
  guint early_seconds; /* [convergence] early-sample-seconds, 0: none */
  guint early_percent; /* early-dirty-percent */
  gboolean sampled;    /* the one sample of the migration was started */
  gboolean have_sample;
  gboolean early_checked;
  guint64 sample_dirty; /* its dirty rate, bytes/s */
  gboolean step_early;  /* the current step came from the sample */
  guint64 link_rate;    /* the last transfer rate QEMU gave, bytes/s */
};

const char *
md_convergence_step_to_string (MdConvergenceStep step)
{
  static const char *const names[] = {
    "manual", "precopy", "downtime-raised", "throttling", "postcopy", "gave-up",
  };

  return names[step];
}

/* Auto-converge may be the ladder's step 2 unless the caller forbade it
 * (auto-converge=false). With postcopy allowed, only when the admin wants
 * throttling first, or when the caller turned it on (auto-converge=true:
 * QEMU throttles from the start, the step gives it its window). */
static gboolean
ladder_may_throttle (const MdMigrateOptions *opts, const MdConfig *config)
{
  if (opts->convergence != MD_MIGRATE_CONVERGENCE_AUTO)
    return FALSE;
  if (opts->auto_converge_given)
    return opts->auto_converge;
  return !opts->postcopy || config->throttle_before_postcopy;
}

gboolean
md_convergence_holds_throttle (const MdMigrateOptions *opts, const MdConfig *config)
{
  /* auto-converge=true: QEMU throttles as it always did, nothing held. */
  return !opts->auto_converge_given && ladder_may_throttle (opts, config);
}

void
md_convergence_hold_capabilities (const MdMigrateOptions *opts, const MdConfig *config,
                                  JsonObject *args)
{
  JsonArray *caps = json_object_get_array_member (args, "capabilities");

  if (!md_convergence_holds_throttle (opts, config))
    return;
  for (guint i = 0; i < json_array_get_length (caps); i++)
    {
      JsonObject *cap = json_array_get_object_element (caps, i);
      if (g_str_equal (json_object_get_string_member (cap, "capability"), "auto-converge"))
        json_object_set_boolean_member (cap, "state", TRUE);
    }
}

void
md_convergence_hold_parameters (const MdMigrateOptions *opts, const MdConfig *config,
                                JsonObject *args)
{
  if (!md_convergence_holds_throttle (opts, config))
    return;
  /* QEMU checks max >= initial within one call: both go together. */
  json_object_set_int_member (args, "cpu-throttle-initial", MD_CONVERGENCE_HELD_THROTTLE);
  json_object_set_int_member (args, "max-cpu-throttle", MD_CONVERGENCE_HELD_THROTTLE);
}

MdConvergence *
md_convergence_new (const MdMigrateOptions *opts, const MdConfig *config)
{
  MdConvergence *conv = g_new0 (MdConvergence, 1);

  conv->step = opts->convergence == MD_MIGRATE_CONVERGENCE_AUTO ? MD_CONVERGENCE_PRECOPY
                                                                : MD_CONVERGENCE_MANUAL;
  conv->reason = g_strdup ("");
  conv->record_pending = TRUE;
  conv->steps = g_ptr_array_new_with_free_func ((GDestroyNotify) g_variant_unref);
  conv->stall_iterations = MAX (config->stall_iterations, 1);
  conv->dirty_percent = config->stall_dirty_percent;
  conv->shrink_percent = MIN (config->stall_shrink_percent, 99);
  conv->downtime_steps = MAX (config->downtime_steps, 1);
  conv->throttle_iterations = MAX (config->throttle_iterations, 1);
  conv->throttle_to_max = opts->auto_converge_given && opts->auto_converge;
  conv->hurry_ms = (guint64) opts->abort_after * 1000 * 2 / 3;
  conv->base_downtime = opts->max_downtime;
  conv->downtime = opts->max_downtime;
  conv->ceiling = MAX (opts->max_downtime_ceiling, opts->max_downtime);
  conv->may_throttle = ladder_may_throttle (opts, config);
  conv->may_postcopy = opts->postcopy;
  conv->early_seconds = config->early_sample_seconds;
  conv->early_percent = MAX (config->early_dirty_percent, 1);
  md_convergence_record (conv, 0); /* the starting point is a step too */
  return conv;
}

void
md_convergence_free (MdConvergence *conv)
{
  if (conv == NULL)
    return;
  g_free (conv->reason);
  g_ptr_array_unref (conv->steps);
  g_free (conv);
}

MdConvergenceStep
md_convergence_get_step (MdConvergence *conv)
{
  return conv->step;
}

const char *
md_convergence_get_reason (MdConvergence *conv)
{
  return conv->reason;
}

static void
take_step (MdConvergence *conv, MdConvergenceStep step, char *reason)
{
  conv->step = step;
  g_free (conv->reason);
  conv->reason = reason;
  conv->record_pending = TRUE;
  conv->stalled = 0;
  conv->step_iterations = 0;
  conv->dirty_sum = 0;
  conv->rate_sum = 0;
  conv->step_early = FALSE;
}

void
md_convergence_record (MdConvergence *conv, guint64 elapsed_ms)
{
  GVariantDict dict;

  if (!conv->record_pending)
    return;
  conv->record_pending = FALSE;
  g_variant_dict_init (&dict, NULL);
  g_variant_dict_insert (&dict, "step", "s", md_convergence_step_to_string (conv->step));
  g_variant_dict_insert (&dict, "reason", "s", conv->reason);
  g_variant_dict_insert (&dict, "time-ms", "t", elapsed_ms);
  if (conv->step == MD_CONVERGENCE_DOWNTIME_RAISED)
    g_variant_dict_insert (&dict, "max-downtime", "t", conv->downtime);
  if (conv->step_early)
    g_variant_dict_insert (&dict, "early", "b", TRUE);
  g_ptr_array_add (conv->steps, g_variant_ref_sink (g_variant_dict_end (&dict)));
}

GVariant *
md_convergence_get_steps (MdConvergence *conv)
{
  GVariantBuilder builder;

  g_variant_builder_init (&builder, G_VARIANT_TYPE ("aa{sv}"));
  for (guint i = 0; i < conv->steps->len; i++)
    g_variant_builder_add_value (&builder, g_ptr_array_index (conv->steps, i));
  return g_variant_builder_end (&builder);
}

void
md_convergence_note_postcopy (MdConvergence *conv, const char *reason)
{
  if (conv->step == MD_CONVERGENCE_POSTCOPY)
    return;
  take_step (conv, MD_CONVERGENCE_POSTCOPY, g_strdup (reason));
}

static double
average_mib (MdConvergence *conv, guint64 sum)
{
  return conv->stalled > 0 ? sum / (double) conv->stalled / MiB : 0;
}

char *
md_convergence_failure_message (MdConvergence *conv)
{
  gboolean now = conv->stalled > 0;

  return g_strdup_printf ("guest dirties %.0f MiB/s, link moves %.0f MiB/s; allow postcopy or "
                          "raise max-downtime-ceiling",
                          now ? average_mib (conv, conv->dirty_sum) : conv->report_dirty,
                          now ? average_mib (conv, conv->rate_sum) : conv->report_rate);
}

/* The next rung of the ladder; the window restarts. */
static void
escalate (MdConvergence *conv, MdConvergenceAction *action)
{
  g_autofree char *why = g_strdup_printf (
      "%u iteration%s without progress: %.0f MiB left, guest dirties %.0f MiB/s, link moves "
      "%.0f MiB/s",
      conv->stalled, conv->stalled == 1 ? "" : "s", conv->remaining / MiB,
      average_mib (conv, conv->dirty_sum), average_mib (conv, conv->rate_sum));
  char *failure = md_convergence_failure_message (conv);

  conv->report_dirty = average_mib (conv, conv->dirty_sum);
  conv->report_rate = average_mib (conv, conv->rate_sum);
  if (conv->downtime < conv->ceiling)
    {
      conv->raises++;
      conv->downtime = conv->base_downtime
                       + (conv->ceiling - conv->base_downtime)
                             * MIN (conv->raises, conv->downtime_steps) / conv->downtime_steps;
      action->step = MD_CONVERGENCE_DOWNTIME_RAISED;
      action->downtime = conv->downtime;
      take_step (conv, action->step,
                 g_strdup_printf ("%s; max-downtime raised to %" G_GUINT64_FORMAT
                                  " ms (ceiling %" G_GUINT64_FORMAT " ms)",
                                  why, conv->downtime, conv->ceiling));
    }
  else if (conv->may_throttle && !conv->throttled)
    {
      conv->throttled = TRUE;
      action->step = MD_CONVERGENCE_THROTTLING;
      take_step (conv, action->step, g_strdup_printf ("%s; throttling the guest's CPUs", why));
    }
  else if (conv->may_postcopy)
    {
      action->step = MD_CONVERGENCE_POSTCOPY;
      take_step (conv, action->step, g_strdup_printf ("%s; switching to postcopy", why));
    }
  else
    {
      action->step = MD_CONVERGENCE_GAVE_UP;
      take_step (conv, action->step, g_strdup (failure));
    }
  g_free (failure);
}

/* Progress in the iteration that just ended: the guest dirtied less
 * than the link moved in it (what is left now is less than what was sent
 * since the last iteration began, by stall-shrink-percent), and it
 * dirties memory slower than the link moves it. Bytes sent, not the
 * remaining bytes of the bulk pass, are the yardstick: that pass counts
 * never-written (zero) pages that cost nothing to send. */
static gboolean
made_progress (MdConvergence *conv, const MdConvergenceSample *sample)
{
  guint64 sent = sample->transferred - MIN (conv->last_transferred, sample->transferred);
  gboolean dirty_too_fast =
      sample->rate > 0 && sample->dirty_rate * 100 >= sample->rate * conv->dirty_percent;
  gboolean shrank = sample->remaining * 100 < sent * (100 - conv->shrink_percent);

  return shrank && !dirty_too_fast;
}

static gboolean early_check (MdConvergence *conv, MdConvergenceAction *action);

gboolean
md_convergence_feed (MdConvergence *conv, const MdConvergenceSample *sample,
                     MdConvergenceAction *action)
{
  gboolean first = conv->last_iteration == 0;
  gboolean progress;
  guint window;

  if (sample->rate > 0)
    conv->link_rate = sample->rate;
  /* Once, with the first rate QEMU gives in the first pass. */
  if (conv->have_sample && !conv->early_checked && conv->step == MD_CONVERGENCE_PRECOPY
      && sample->iteration <= 1 && sample->rate > 0)
    {
      conv->early_checked = TRUE;
      if (early_check (conv, action))
        return TRUE;
    }
  if (conv->step == MD_CONVERGENCE_MANUAL || conv->step == MD_CONVERGENCE_POSTCOPY
      || conv->step == MD_CONVERGENCE_GAVE_UP || sample->iteration <= conv->last_iteration)
    return FALSE;
  /* Iteration 1 is the bulk pass: nothing to compare yet. */
  progress = first || sample->iteration < 2 || made_progress (conv, sample);
  conv->last_iteration = sample->iteration;
  conv->last_transferred = sample->transferred;
  conv->remaining = sample->remaining;
  conv->step_iterations++;
  if (progress)
    {
      conv->stalled = 0;
      conv->dirty_sum = conv->rate_sum = 0;
      return FALSE;
    }
  conv->stalled++;
  conv->dirty_sum += sample->dirty_rate;
  conv->rate_sum += sample->rate;
  if (conv->stalled < conv->stall_iterations)
    return FALSE;
  /* Throttling needs iterations to bite: QEMU raises it step by step.
   * Close to abort-after the ladder hurries, so that the caller learns
   * both rates rather than only that time ran out. */
  window = conv->step == MD_CONVERGENCE_THROTTLING ? conv->throttle_iterations : 0;
  if ((conv->step_iterations < window || (window > 0 && conv->throttle_to_max))
      && sample->throttle < MD_CONVERGENCE_THROTTLE_MAX
      && (conv->hurry_ms == 0 || sample->elapsed_ms < conv->hurry_ms))
    return FALSE;
  escalate (conv, action);
  return TRUE;
}

/* The early check is for a ladder whose next useful rung is postcopy:
 * postcopy allowed and no throttling before it. A raise of the downtime
 * limit is ruled out by the sample itself (early_check). */
guint
md_convergence_start_sample (MdConvergence *conv)
{
  if (conv->sampled || conv->early_seconds == 0 || conv->step != MD_CONVERGENCE_PRECOPY
      || conv->last_iteration > 1 || !conv->may_postcopy || conv->may_throttle)
    return 0;
  conv->sampled = TRUE;
  return conv->early_seconds;
}

void
md_convergence_set_sample (MdConvergence *conv, guint64 dirty_rate)
{
  conv->sample_dirty = dirty_rate;
  conv->have_sample = TRUE;
}

/* The sample counts a page once however often it changed within the
 * sample, so it is a floor of the guest's dirty rate over any shorter
 * time (the pages dirtied grow at most linearly with time). At a ratio r
 * of the link's rate, every pre-copy pass shorter than the sample leaves
 * at least r of what it sent, and the last passes before the switch-over
 * (a few times max-downtime) are that short: at r >= 1 pre-copy never
 * finishes, below it crawls towards the end. The policy switches at
 * r >= early-dirty-percent (a measured choice, see migrationd.conf(5)),
 * and only when what the guest dirtied over the sample is more than the
 * link moves within max-downtime-ceiling (else a raised limit might do). */
static gboolean
early_check (MdConvergence *conv, MdConvergenceAction *action)
{
  guint64 dirty_rate = conv->sample_dirty;
  guint64 rate = conv->link_rate;
  double dirtied_in_window = (double) dirty_rate * conv->early_seconds;
  double moved_in_ceiling = (double) rate * conv->ceiling / 1000;
  double ratio = rate > 0 ? (double) dirty_rate / rate : 0;
  g_autofree char *outlook = NULL;

  if (conv->step != MD_CONVERGENCE_PRECOPY || rate == 0 || ratio * 100 < conv->early_percent
      || dirtied_in_window <= moved_in_ceiling)
    return FALSE;
  outlook = ratio >= 1
                ? g_strdup ("pre-copy never finishes")
                : g_strdup_printf ("each short pre-copy pass leaves at least %.0f %% of what "
                                   "it sent",
                                   ratio * 100);
  conv->report_dirty = dirty_rate / MiB;
  conv->report_rate = rate / MiB;
  action->step = MD_CONVERGENCE_POSTCOPY;
  take_step (
      conv, action->step,
      g_strdup_printf (
          "first pass: guest dirties %.0f MiB/s (QEMU page sampling over %u s), "
          "link moves %.0f MiB/s: %s, and the guest dirties more than the link moves "
          "within max-downtime-ceiling %" G_GUINT64_FORMAT " ms; switching to postcopy early",
          conv->report_dirty, conv->early_seconds, conv->report_rate, outlook, conv->ceiling));
  conv->step_early = TRUE;
  return TRUE;
}
