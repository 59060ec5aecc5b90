/* migrationd: Migration1's controls on an outgoing migration: Cancel
 * (refused once the guest may be on the peer), SetBandwidth and
 * SetMaxDowntime (live, answered when QEMU took the value), StartPostcopy. */
#include "config.h"

#include "common/md-error.h"
#include "md-migration-source-private.h"

/* ---- controls ------------------------------------------------------------------ */

static gboolean
control_cancel (gpointer engine, GError **error)
{
  Source *src = engine;
  MdPhase phase = md_machine_get_phase (src->machine);

  if (md_machine_get_authority (src->machine) == MD_AUTHORITY_SPLIT || phase == MD_PHASE_POSTCOPY)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_STATE,
                   "migration of %s cannot be cancelled in postcopy: the guest already runs on "
                   "%s and part of its memory is only there, so neither copy can go on alone; "
                   "wait for the migration to complete",
                   md_guest_get_name (src->guest), source_peer_name (src));
      return FALSE;
    }
  if (md_machine_get_authority (src->machine) == MD_AUTHORITY_DESTINATION
      || phase == MD_PHASE_FINISH || phase == MD_PHASE_RESOLVING || phase == MD_PHASE_CONFIRM)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_STATE,
                   "migration of %s can no longer be cancelled: it is in phase %s and the "
                   "guest %s on %s",
                   md_guest_get_name (src->guest), source_phase (src),
                   md_machine_get_authority (src->machine) == MD_AUTHORITY_DESTINATION
                       ? "already runs"
                       : "is being started",
                   source_peer_name (src));
      return FALSE;
    }
  source_fail (src, g_error_new (MD_ERROR, MD_ERROR_CANCELLED,
                                 "migration of %s to %s was cancelled in phase %s; the guest "
                                 "keeps running on host %s",
                                 md_guest_get_name (src->guest), source_peer_name (src),
                                 source_phase (src), source_host_name (src)));
  return TRUE;
}

/* A live parameter change waiting for QEMU. */
typedef struct
{
  Source *src; /* a reference */
  char *name;
  guint64 value; /* what the property shows: 0 is "unlimited" for bandwidth */
  MdMigrationTuned done;
  gpointer user_data;
} LiveParameter;

static void
on_param_set (GObject *source, GAsyncResult *result, gpointer user_data)
{
  LiveParameter *p = user_data;
  g_autoptr (SourceRef) src = p->src;
  GError *error = NULL;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, &error);

  if (node == NULL)
    {
      GError *converted = md_error_convert (error, MD_ERROR_QEMU_FAILED);

      g_prefix_error (&converted, "host %s: QEMU did not take %s=%" G_GUINT64_FORMAT ": ",
                      source_host_name (src), p->name, p->value);
      g_error_free (error);
      p->done (converted, p->user_data);
    }
  else
    {
      if (g_str_equal (p->name, "max-bandwidth"))
        {
          source_set_mirror_speed (src, p->value);
          md_migration_set_bandwidth_property (src->migration, p->value);
        }
      else
        md_migration_set_max_downtime_property (src->migration, p->value);
      p->done (NULL, p->user_data);
    }
  g_free (p->name);
  g_free (p);
}

static gboolean
set_live_parameter (Source *src, const char *name, guint64 value, guint64 qemu_value,
                    MdMigrationTuned done, gpointer user_data, GError **error)
{
  MdQmp *qmp = md_guest_get_qmp (src->guest);
  g_autoptr (JsonObject) args = json_object_new ();
  LiveParameter *p;

  if (qmp == NULL || src->offline || md_machine_is_ended (src->machine))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_STATE,
                   "migration of %s has no running QEMU to tune", md_guest_get_name (src->guest));
      return FALSE;
    }
  json_object_set_int_member (args, name, (gint64) qemu_value);
  p = g_new0 (LiveParameter, 1);
  p->src = source_ref (src);
  p->name = g_strdup (name);
  p->value = value;
  p->done = done;
  p->user_data = user_data;
  md_qmp_execute_async (qmp, "migrate-set-parameters", args, NULL, on_param_set, p);
  return TRUE;
}

static gboolean
control_set_bandwidth (gpointer engine, guint64 bps, MdMigrationTuned done, gpointer user_data,
                       GError **error)
{
  Source *src = engine;

  return set_live_parameter (src, "max-bandwidth", bps, bps > 0 ? bps : MD_UNLIMITED_BANDWIDTH,
                             done, user_data, error);
}

static gboolean
control_set_max_downtime (gpointer engine, guint64 ms, MdMigrationTuned done, gpointer user_data,
                          GError **error)
{
  Source *src = engine;

  return set_live_parameter (src, "downtime-limit", ms, ms, done, user_data, error);
}

static void
on_postcopy_started (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, &error);

  if (node == NULL)
    g_warning ("migrate-start-postcopy failed: %s", error->message);
}

static gboolean
control_start_postcopy (gpointer engine, GError **error)
{
  Source *src = engine;
  MdQmp *qmp = md_guest_get_qmp (src->guest);
  MdPhase phase = md_machine_get_phase (src->machine);

  if (!src->opts->postcopy)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_STATE,
                   "migration of %s was not started with the postcopy option",
                   md_guest_get_name (src->guest));
      return FALSE;
    }
  if (phase != MD_PHASE_PERFORM || qmp == NULL || src->qemu_completed)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_STATE,
                   phase == MD_PHASE_POSTCOPY
                       ? "migration of %s is already in post-copy (phase %s)"
                       : "migration of %s has no memory transfer under way to switch (phase %s)",
                   md_guest_get_name (src->guest), source_phase (src));
      return FALSE;
    }
  md_qmp_execute_async (qmp, "migrate-start-postcopy", NULL, NULL, on_postcopy_started, NULL);
  return TRUE;
}

const MdMigrationControl source_control = {
  control_cancel,
  control_set_bandwidth,
  control_set_max_downtime,
  control_start_postcopy,
};
