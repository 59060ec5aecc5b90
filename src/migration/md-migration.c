/* migrationd: org.migrationd.Migration1 — the object users watch.
 *
 * The engines (md-migration-source.c, md-migration-dest.c) feed figures
 * in as often as they like; this object publishes them at most twice a
 * second, keeps Progress monotonic, and owns the result: the first error
 * wins, later ones become detail. */
#include "config.h"

#include "md-migration.h"
#include "common/md-error.h"
#include "common/md-options.h"
#include "daemon/md-manager.h"

#define PUBLISH_INTERVAL_MS 500

struct _MdMigration
{
  MdDbusMigration1Skeleton parent_instance;

  MdManager *manager; /* not owned */
  char *object_path;
  MdMigrationDirection direction;
  gint64 start_monotonic;

  const MdMigrationControl *control;
  gpointer engine;

  MdMigrationStats latest;
  gboolean dirty;
  guint publish_id;
  double progress; /* the published maximum */

  GHashTable *statistics; /* char* -> GVariant* */
  GError *error;          /* the first error */
  GString *detail;        /* later errors */
  gboolean finished;
  guint keep_id;
};

static void md_migration_iface_init (MdDbusMigration1Iface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (MdMigration, md_migration, MD_DBUS_TYPE_MIGRATION1_SKELETON,
                               G_IMPLEMENT_INTERFACE (MD_DBUS_TYPE_MIGRATION1,
                                                      md_migration_iface_init))

static double
compute_progress (const MdMigrationStats *s)
{
  double total = (double) s->memory_total + (double) s->disk_total;
  double done;

  if (total <= 0)
    return 0;
  /* RAM counts as done where the destination's copy is current, which is
   * what is left to send this pass; disks by bytes copied. */
  done =
      (double) (s->memory_total > s->memory_remaining ? s->memory_total - s->memory_remaining : 0)
      + (double) s->disk_processed;
  return CLAMP (done / total, 0.0, 1.0);
}

static void
publish (MdMigration *self)
{
  MdDbusMigration1 *iface = MD_DBUS_MIGRATION1 (self);
  const MdMigrationStats *s = &self->latest;
  double progress = compute_progress (s);
  guint64 left = s->memory_remaining + s->disk_remaining;
  guint64 rate = s->rate + s->disk_rate;

  self->dirty = FALSE;
  /* Never backwards: a new precopy pass re-dirties RAM, but users must
   * see a bar that only moves forward. */
  if (progress > self->progress)
    self->progress = progress;
  md_dbus_migration1_set_memory_total (iface, s->memory_total);
  md_dbus_migration1_set_memory_processed (iface, s->memory_processed);
  md_dbus_migration1_set_memory_remaining (iface, s->memory_remaining);
  md_dbus_migration1_set_disk_total (iface, s->disk_total);
  md_dbus_migration1_set_disk_processed (iface, s->disk_processed);
  md_dbus_migration1_set_disk_remaining (iface, s->disk_remaining);
  md_dbus_migration1_set_rate (iface, s->rate);
  md_dbus_migration1_set_disk_rate (iface, s->disk_rate);
  md_dbus_migration1_set_dirty_rate (iface, s->dirty_rate);
  md_dbus_migration1_set_iteration (iface, s->iteration);
  md_dbus_migration1_set_expected_downtime (iface, s->expected_downtime);
  md_dbus_migration1_set_progress (iface, self->progress);
  md_dbus_migration1_set_progress_valid (iface, s->memory_total + s->disk_total > 0);
  if (rate > 0 && !self->finished)
    md_dbus_migration1_set_expected_end_time (
        iface,
        (guint64) g_get_real_time () + (guint64) ((double) left / (double) rate * G_USEC_PER_SEC));
}

static gboolean
on_publish (gpointer user_data)
{
  MdMigration *self = user_data;

  if (!self->dirty)
    {
      self->publish_id = 0;
      return G_SOURCE_REMOVE;
    }
  publish (self);
  return G_SOURCE_CONTINUE;
}

void
md_migration_update_stats (MdMigration *self, const MdMigrationStats *stats)
{
  self->latest = *stats;
  self->dirty = TRUE;
  if (self->publish_id == 0)
    {
      /* The first figures go out at once, later ones on the timer. */
      publish (self);
      self->publish_id = g_timeout_add (PUBLISH_INTERVAL_MS, on_publish, self);
    }
}

void
md_migration_set_statistic (MdMigration *self, const char *key, GVariant *value)
{
  g_hash_table_insert (self->statistics, g_strdup (key), g_variant_ref_sink (value));
}

void
md_migration_mark_time (MdMigration *self, const char *event)
{
  g_autofree char *key = g_strdup_printf ("time-%s-ms", event);

  if (g_hash_table_contains (self->statistics, key))
    return; /* the first time counts */
  md_migration_set_statistic (
      self, key,
      g_variant_new_uint64 ((guint64) (g_get_monotonic_time () - self->start_monotonic) / 1000));
}

static gboolean
check_controllable (MdMigration *self, GDBusMethodInvocation *invocation, const char *what)
{
  if (self->finished)
    {
      g_dbus_method_invocation_return_error (
          invocation, MD_ERROR, MD_ERROR_INVALID_STATE,
          "cannot %s migration of %s: it has already %s", what,
          md_dbus_migration1_get_guest_name (MD_DBUS_MIGRATION1 (self)),
          md_dbus_migration1_get_state (MD_DBUS_MIGRATION1 (self)));
      return FALSE;
    }
  if (self->control == NULL)
    {
      g_dbus_method_invocation_return_error (
          invocation, MD_ERROR, MD_ERROR_NOT_SUPPORTED,
          "cannot %s an %s migration here; control it on the "
          "source host",
          what, self->direction == MD_MIGRATION_INCOMING ? "incoming" : "outgoing");
      return FALSE;
    }
  return TRUE;
}

static gboolean
handle_cancel (MdDbusMigration1 *object, GDBusMethodInvocation *invocation, GVariant *options)
{
  MdMigration *self = MD_MIGRATION (object);
  GError *error = NULL;

  if (g_variant_n_children (options) > 0)
    {
      g_dbus_method_invocation_return_error (invocation, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                                             "Cancel takes no options yet");
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
  if (!check_controllable (self, invocation, "cancel"))
    return G_DBUS_METHOD_INVOCATION_HANDLED;
  if (!self->control->cancel (self->engine, &error))
    return md_error_return (invocation, error);
  md_dbus_migration1_complete_cancel (object, invocation);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

gboolean
md_migration_cancel (MdMigration *self, GError **error)
{
  if (self->finished || self->control == NULL)
    return TRUE; /* ended, or about to: nothing left to stop */
  return self->control->cancel (self->engine, error);
}

/* A SetBandwidth / SetMaxDowntime waiting for QEMU's answer. */
typedef struct
{
  MdMigration *self; /* strong */
  GDBusMethodInvocation *invocation;
  gboolean bandwidth;
} Tuning;

static void
on_tuned (GError *error, gpointer user_data)
{
  Tuning *t = user_data;

  if (error != NULL)
    md_error_return (t->invocation, error);
  else if (t->bandwidth)
    md_dbus_migration1_complete_set_bandwidth (MD_DBUS_MIGRATION1 (t->self), t->invocation);
  else
    md_dbus_migration1_complete_set_max_downtime (MD_DBUS_MIGRATION1 (t->self), t->invocation);
  g_object_unref (t->self);
  g_free (t);
}

static gboolean
tune (MdMigration *self, GDBusMethodInvocation *invocation, gboolean bandwidth, guint64 value)
{
  GError *error = NULL;
  Tuning *t;
  gboolean sent;

  if (bandwidth ? !md_migrate_check_bandwidth (value, "SetBandwidth's bps", &error)
                : !md_migrate_check_max_downtime (value, "SetMaxDowntime's ms", &error))
    return md_error_return (invocation, error);
  if (!check_controllable (self, invocation, "tune"))
    return G_DBUS_METHOD_INVOCATION_HANDLED;
  t = g_new0 (Tuning, 1);
  t->self = g_object_ref (self);
  t->invocation = invocation;
  t->bandwidth = bandwidth;
  sent = bandwidth ? self->control->set_bandwidth (self->engine, value, on_tuned, t, &error)
                   : self->control->set_max_downtime (self->engine, value, on_tuned, t, &error);
  if (!sent)
    on_tuned (error, t);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static gboolean
handle_set_bandwidth (MdDbusMigration1 *object, GDBusMethodInvocation *invocation, guint64 bps)
{
  return tune (MD_MIGRATION (object), invocation, TRUE, bps);
}

static gboolean
handle_set_max_downtime (MdDbusMigration1 *object, GDBusMethodInvocation *invocation, guint64 ms)
{
  return tune (MD_MIGRATION (object), invocation, FALSE, ms);
}

static gboolean
handle_start_postcopy (MdDbusMigration1 *object, GDBusMethodInvocation *invocation,
                       GVariant *options)
{
  MdMigration *self = MD_MIGRATION (object);
  GError *error = NULL;

  if (g_variant_n_children (options) > 0)
    {
      g_dbus_method_invocation_return_error (invocation, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                                             "StartPostcopy takes no options yet");
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
  if (!check_controllable (self, invocation, "switch to post-copy"))
    return G_DBUS_METHOD_INVOCATION_HANDLED;
  if (!self->control->start_postcopy (self->engine, &error))
    return md_error_return (invocation, error);
  md_dbus_migration1_complete_start_postcopy (object, invocation);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static gboolean
handle_get_statistics (MdDbusMigration1 *object, GDBusMethodInvocation *invocation)
{
  MdMigration *self = MD_MIGRATION (object);
  GVariantBuilder builder;
  GHashTableIter iter;
  const char *key;
  GVariant *value;
  g_autoptr (GVariant) all = NULL;
  GVariantIter props;
  GVariant *v;

  g_variant_builder_init (&builder, G_VARIANT_TYPE_VARDICT);
  /* Every property, then QEMU's own figures. */
  all = g_dbus_interface_skeleton_get_properties (G_DBUS_INTERFACE_SKELETON (self));
  g_variant_iter_init (&props, all);
  while (g_variant_iter_loop (&props, "{&sv}", &key, &v))
    g_variant_builder_add (&builder, "{sv}", key, v);
  g_hash_table_iter_init (&iter, self->statistics);
  while (g_hash_table_iter_next (&iter, (gpointer *) &key, (gpointer *) &value))
    g_variant_builder_add (&builder, "{sv}", key, value);
  md_dbus_migration1_complete_get_statistics (object, invocation, g_variant_builder_end (&builder));
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static void
md_migration_iface_init (MdDbusMigration1Iface *iface)
{
  iface->handle_cancel = handle_cancel;
  iface->handle_set_bandwidth = handle_set_bandwidth;
  iface->handle_set_max_downtime = handle_set_max_downtime;
  iface->handle_start_postcopy = handle_start_postcopy;
  iface->handle_get_statistics = handle_get_statistics;
}

static void
md_migration_dispose (GObject *object)
{
  MdMigration *self = MD_MIGRATION (object);

  g_clear_handle_id (&self->publish_id, g_source_remove);
  g_clear_handle_id (&self->keep_id, g_source_remove);
  G_OBJECT_CLASS (md_migration_parent_class)->dispose (object);
}

static void
md_migration_finalize (GObject *object)
{
  MdMigration *self = MD_MIGRATION (object);

  g_free (self->object_path);
  g_hash_table_unref (self->statistics);
  g_clear_error (&self->error);
  g_string_free (self->detail, TRUE);
  G_OBJECT_CLASS (md_migration_parent_class)->finalize (object);
}

static void
md_migration_class_init (MdMigrationClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = md_migration_dispose;
  object_class->finalize = md_migration_finalize;
}

static void
md_migration_init (MdMigration *self)
{
  self->statistics =
      g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) g_variant_unref);
  self->detail = g_string_new (NULL);
}

MdMigration *
md_migration_new (MdManager *manager, guint number, MdMigrationDirection direction,
                  const char *guest_path, const char *guest_name, const char *peer, guint owner_uid,
                  GVariant *options)
{
  MdMigration *self = g_object_new (MD_TYPE_MIGRATION, NULL);
  MdDbusMigration1 *iface = MD_DBUS_MIGRATION1 (self);

  self->manager = manager;
  self->direction = direction;
  self->object_path = g_strdup_printf ("%s/migration/%u", MD_MANAGER_PATH, number);
  self->start_monotonic = g_get_monotonic_time ();
  md_dbus_migration1_set_guest (iface, guest_path);
  md_dbus_migration1_set_guest_name (iface, guest_name);
  md_dbus_migration1_set_direction (iface, direction == MD_MIGRATION_OUTGOING   ? "outgoing"
                                           : direction == MD_MIGRATION_INCOMING ? "incoming"
                                                                                : "save");
  md_dbus_migration1_set_peer (iface, peer);
  md_dbus_migration1_set_owner (iface, owner_uid);
  md_dbus_migration1_set_phase (iface, "begin");
  md_dbus_migration1_set_state (iface, "queued");
  md_dbus_migration1_set_options (iface, options);
  md_dbus_migration1_set_start_time (iface, (guint64) g_get_real_time ());
  md_dbus_migration1_set_error_name (iface, "");
  md_dbus_migration1_set_error_message (iface, "");
  md_dbus_migration1_set_convergence (iface, "");
  md_dbus_migration1_set_convergence_reason (iface, "");
  md_auth_attach (md_manager_get_auth (manager), G_DBUS_INTERFACE_SKELETON (self));
  return self;
}

const char *
md_migration_get_object_path (MdMigration *self)
{
  return self->object_path;
}

MdMigrationDirection
md_migration_get_direction (MdMigration *self)
{
  return self->direction;
}

gboolean
md_migration_is_finished (MdMigration *self)
{
  return self->finished;
}

void
md_migration_set_control (MdMigration *self, const MdMigrationControl *control, gpointer engine)
{
  self->control = control;
  self->engine = engine;
}

void
md_migration_set_peer (MdMigration *self, const char *peer)
{
  md_dbus_migration1_set_peer (MD_DBUS_MIGRATION1 (self), peer);
}

guint64
md_migration_elapsed_ms (MdMigration *self)
{
  return (guint64) (g_get_monotonic_time () - self->start_monotonic) / 1000;
}

void
md_migration_set_convergence (MdMigration *self, const char *step, const char *reason)
{
  MdDbusMigration1 *iface = MD_DBUS_MIGRATION1 (self);

  md_dbus_migration1_set_convergence (iface, step);
  md_dbus_migration1_set_convergence_reason (iface, reason);
}

void
md_migration_set_recovery_attempts (MdMigration *self, guint attempts)
{
  md_dbus_migration1_set_recovery_attempts (MD_DBUS_MIGRATION1 (self), attempts);
}

void
md_migration_set_phase (MdMigration *self, const char *phase)
{
  if (g_strcmp0 (md_dbus_migration1_get_phase (MD_DBUS_MIGRATION1 (self)), phase) == 0)
    return;
  g_debug ("migration %s: phase %s", self->object_path, phase);
  md_dbus_migration1_set_phase (MD_DBUS_MIGRATION1 (self), phase);
}

void
md_migration_set_running_state (MdMigration *self, const char *state)
{
  if (!self->finished)
    md_dbus_migration1_set_state (MD_DBUS_MIGRATION1 (self), state);
}

void
md_migration_set_needs_attention (MdMigration *self, const GError *error)
{
  MdDbusMigration1 *iface = MD_DBUS_MIGRATION1 (self);
  g_autoptr (GError) converted = md_error_convert (error, MD_ERROR_FAILED);

  if (self->finished)
    return;
  md_dbus_migration1_set_state (iface, "needs-attention");
  md_dbus_migration1_set_error_name (iface, md_error_code_to_dbus_name (converted->code));
  md_dbus_migration1_set_error_message (iface, converted->message);
  g_dbus_interface_skeleton_flush (G_DBUS_INTERFACE_SKELETON (self));
  g_warning ("migration %s of %s needs attention: %s", self->object_path,
             md_dbus_migration1_get_guest_name (iface), converted->message);
}

void
md_migration_set_bandwidth_property (MdMigration *self, guint64 bytes_per_second)
{
  md_dbus_migration1_set_bandwidth (MD_DBUS_MIGRATION1 (self), bytes_per_second);
}

void
md_migration_set_max_downtime_property (MdMigration *self, guint64 ms)
{
  md_dbus_migration1_set_max_downtime (MD_DBUS_MIGRATION1 (self), ms);
}

const GError *
md_migration_get_error (MdMigration *self)
{
  return self->error;
}

void
md_migration_add_error_detail (MdMigration *self, const GError *error)
{
  if (error == NULL)
    return;
  if (self->error == NULL)
    {
      self->error = g_error_copy (error);
      return;
    }
  if (g_str_equal (error->message, self->error->message))
    return; /* the first error again (source_fail() recorded it already) */
  g_string_append_printf (self->detail, "\nthen: %s", error->message);
}

static gboolean
on_keep_expired (gpointer user_data)
{
  MdMigration *self = user_data;

  self->keep_id = 0;
  md_manager_forget_migration (self->manager, self->object_path);
  return G_SOURCE_REMOVE;
}

void
md_migration_complete (MdMigration *self, const GError *error, guint64 downtime_ms)
{
  MdDbusMigration1 *iface = MD_DBUS_MIGRATION1 (self);
  const MdConfig *config = md_manager_get_config (self->manager);
  g_autoptr (GError) converted = NULL;
  g_autofree char *message = NULL;
  const char *name = "";
  const char *state;

  if (self->finished)
    return;
  md_migration_add_error_detail (self, error);
  self->finished = TRUE;

  if (self->error != NULL)
    {
      converted = md_error_convert (self->error, MD_ERROR_FAILED);
      name = md_error_code_to_dbus_name (converted->code);
      message = g_strconcat (converted->message, self->detail->str, NULL);
      state = converted->code == MD_ERROR_CANCELLED ? "cancelled" : "failed";
    }
  else
    {
      message = g_strdup ("");
      state = "completed";
      self->latest.memory_remaining = 0;
      self->latest.disk_remaining = 0;
      self->latest.disk_processed = self->latest.disk_total;
      /* An offline migration moves no memory: its totals stay 0 (not a
       * made-up byte); Progress is set to 1 below all the same. */
    }

  /* Final figures first, in one flush, so a client that reacts to
   * Completed reads them consistently. */
  g_clear_handle_id (&self->publish_id, g_source_remove);
  publish (self);
  if (self->error == NULL)
    {
      self->progress = 1.0;
      md_dbus_migration1_set_progress (iface, 1.0);
      md_dbus_migration1_set_progress_valid (iface, TRUE);
    }
  /* A failed migration keeps showing the phase it failed in. */
  if (self->error == NULL)
    md_dbus_migration1_set_phase (iface, "done");
  md_dbus_migration1_set_state (iface, state);
  md_dbus_migration1_set_error_name (iface, name);
  md_dbus_migration1_set_error_message (iface, message);
  md_dbus_migration1_set_downtime (iface, downtime_ms);
  md_dbus_migration1_set_end_time (iface, (guint64) g_get_real_time ());
  md_dbus_migration1_set_expected_end_time (iface, 0);
  md_dbus_migration1_set_total_time (
      iface, (guint64) ((g_get_monotonic_time () - self->start_monotonic) / 1000));
  g_dbus_interface_skeleton_flush (G_DBUS_INTERFACE_SKELETON (self));
  md_dbus_migration1_emit_completed (iface, self->error == NULL, name, message);
  g_message ("migration %s of %s %s%s%s", self->object_path,
             md_dbus_migration1_get_guest_name (iface), state, *message ? ": " : "", message);

  self->control = NULL;
  self->engine = NULL;
  self->keep_id =
      g_timeout_add_seconds (MAX (config->migration_keep_seconds, 1), on_keep_expired, self);
}
