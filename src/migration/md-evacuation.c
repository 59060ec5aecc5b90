/* migrationd: host evacuation (see the header).
 *
 * One object drives it: the peers' free memory is asked once at the start
 * (Peer1.HostInfo); guests are placed biggest first on the peer with the
 * most memory left after what this evacuation already sent there; at most
 * Parallel migrations run, each an ordinary md_migration_source_start(), so
 * polkit ownership, the journal and crash recovery are the engine's. A slot
 * frees when the migration's Completed is emitted, which is after its State
 * turned terminal, so ListMigrations never shows more than Parallel
 * running. A failed guest is tried once more on another peer. */
#include "config.h"

#include "md-evacuation.h"
#include "common/md-error.h"
#include "common/md-options.h"
#include "md-migration-source-private.h"
#include "md-migration-source.h"
#include "md-migration.h"
#include "qemu/md-qemu-cpu.h"

#define MD_EVACUATION_PEERS_MAX 16
#define MD_EVACUATION_PARALLEL_MAX 16
#define MD_EVACUATION_PARALLEL_DEFAULT 2
#define MD_EVACUATION_ATTEMPTS 2
#define MD_EVACUATION_PATH MD_MANAGER_PATH "/evacuation"
/* The manager's one running evacuation (g_object_set_data). */
#define RUNNING_KEY "md-evacuation-running"

typedef struct
{
  char *given;   /* as the caller named it */
  char *address; /* host:port */
  gboolean reachable;
  guint64 available; /* MemAvailable the peer reported */
  guint64 planned;   /* bytes this evacuation sent or is sending there */
  char *error;       /* why HostInfo failed */
} EvacPeer;

typedef struct
{
  MdEvacuation *owner; /* not owned */
  MdGuest *guest;
  char *name;
  guint64 memory;
  const char *outcome;
  EvacPeer *peer; /* the last one tried */
  guint64 tried;  /* bit i: peers[i] was tried */
  guint attempts;
  char *migration; /* last Migration1 path */
  GString *message;
  MdMigration *running;
} EvacGuest;

struct _MdEvacuation
{
  MdDbusEvacuation1Skeleton parent_instance;

  MdManager *manager; /* not owned: it outlives every evacuation */
  char *path;
  GPtrArray *peers;  /* EvacPeer* */
  GPtrArray *guests; /* EvacGuest*, biggest first */
  GPtrArray *migrations;
  GVariant *migrate_options;
  guint parallel;
  gboolean shutdown_rest;
  guint owner_uid;
  guint running;
  guint asking; /* HostInfo answers still awaited */
  guint shutting_down;
  gboolean cancelled;
  gboolean finished;
  guint pump_id;
  guint tick_id; /* Progress follows the running migrations' */
  guint keep_id;
  GTask *start_task;
};

static void md_evacuation_iface_init (MdDbusEvacuation1Iface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (MdEvacuation, md_evacuation, MD_DBUS_TYPE_EVACUATION1_SKELETON,
                               G_IMPLEMENT_INTERFACE (MD_DBUS_TYPE_EVACUATION1,
                                                      md_evacuation_iface_init))

static const char *
host_name (MdEvacuation *self)
{
  return md_manager_get_config (self->manager)->host_name;
}

static void
peer_free (EvacPeer *peer)
{
  g_free (peer->given);
  g_free (peer->address);
  g_free (peer->error);
  g_free (peer);
}

static void
guest_free (EvacGuest *g)
{
  g_clear_object (&g->guest);
  g_clear_object (&g->running);
  g_free (g->name);
  g_free (g->migration);
  g_string_free (g->message, TRUE);
  g_free (g);
}

/* ---- properties ---------------------------------------------------------- */

static void
publish (MdEvacuation *self)
{
  MdDbusEvacuation1 *iface = MD_DBUS_EVACUATION1 (self);
  g_auto (GVariantBuilder) results = G_VARIANT_BUILDER_INIT (G_VARIANT_TYPE ("a(sssos)"));
  guint done = 0;
  double progress = 0;

  for (guint i = 0; i < self->guests->len; i++)
    {
      EvacGuest *g = g_ptr_array_index (self->guests, i);
      gboolean final = g->running == NULL && !g_str_equal (g->outcome, "queued");

      done += final;
      if (final)
        progress += 1.0;
      else if (g->running != NULL)
        progress += md_dbus_migration1_get_progress (MD_DBUS_MIGRATION1 (g->running));
      g_variant_builder_add (&results, "(sssos)", g->name, g->outcome,
                             g->peer != NULL ? g->peer->given : "",
                             g->migration != NULL ? g->migration : "/", g->message->str);
    }
  g_ptr_array_add (self->migrations, NULL);
  md_dbus_evacuation1_set_migrations (iface, (const char *const *) self->migrations->pdata);
  g_ptr_array_remove_index (self->migrations, self->migrations->len - 1);
  md_dbus_evacuation1_set_results (iface, g_variant_builder_end (&results));
  md_dbus_evacuation1_set_done (iface, done);
  md_dbus_evacuation1_set_running (iface, self->running);
  md_dbus_evacuation1_set_progress (
      iface, self->guests->len > 0 ? MIN (1.0, progress / self->guests->len) : 1.0);
}

/* ---- the end ------------------------------------------------------------- */

static gboolean
on_keep_expired (gpointer user_data)
{
  MdEvacuation *self = user_data;

  self->keep_id = 0;
  g_dbus_object_manager_server_unexport (md_manager_get_object_manager (self->manager), self->path);
  g_object_unref (self);
  return G_SOURCE_REMOVE;
}

static void
finish (MdEvacuation *self)
{
  guint moved = 0, left = 0, down = 0;
  g_autofree char *summary = NULL;
  const char *state;

  for (guint i = 0; i < self->guests->len; i++)
    {
      EvacGuest *g = g_ptr_array_index (self->guests, i);
      if (g_str_equal (g->outcome, "moved"))
        moved++;
      else if (g_str_equal (g->outcome, "shut-down"))
        down++;
      else
        left++;
    }
  state = self->cancelled ? "cancelled" : left > 0 ? "failed" : "completed";
  summary = g_strdup_printf ("host %s: %u of %u guests moved, %u shut down, %u still here",
                             host_name (self), moved, self->guests->len, down, left);
  self->finished = TRUE;
  g_clear_handle_id (&self->tick_id, g_source_remove);
  publish (self);
  md_dbus_evacuation1_set_state (MD_DBUS_EVACUATION1 (self), state);
  md_dbus_evacuation1_set_end_time (MD_DBUS_EVACUATION1 (self), (guint64) g_get_real_time ());
  g_dbus_interface_skeleton_flush (G_DBUS_INTERFACE_SKELETON (self));
  md_dbus_evacuation1_emit_completed (MD_DBUS_EVACUATION1 (self), left == 0 && !self->cancelled,
                                      summary);
  g_message ("evacuation %s %s: %s", self->path, state, summary);
  g_object_set_data (G_OBJECT (self->manager), RUNNING_KEY, NULL);
  self->keep_id =
      g_timeout_add_seconds (MAX (md_manager_get_config (self->manager)->migration_keep_seconds, 1),
                             on_keep_expired, self);
}

static void
on_shut_down (GObject *source, GAsyncResult *result, gpointer user_data)
{
  EvacGuest *g = user_data;
  MdEvacuation *self = g->owner;
  MdGuest *guest = MD_GUEST (source);
  g_autoptr (GError) error = NULL;
  gboolean ok;

  ok = g_task_get_source_tag (G_TASK (result)) == md_guest_destroy_async
           ? md_guest_destroy_finish (guest, result, &error)
           : md_guest_shutdown_finish (guest, result, &error);
  if (!ok && md_guest_is_active (guest) && !md_guest_is_busy (guest))
    {
      /* It ignored the power button: the host is going down anyway. */
      md_guest_destroy_async (guest, on_shut_down, g);
      return;
    }
  if (!md_guest_is_active (guest))
    g->outcome = "shut-down";
  else
    g_string_append_printf (g->message, "%scould not shut it down: %s", g->message->len ? "; " : "",
                            error != NULL ? error->message : "busy");
  if (--self->shutting_down == 0)
    finish (self);
  else
    publish (self);
}

/* --shutdown-rest: the guests that could not move go down, in parallel. */
static void
shut_down_rest (MdEvacuation *self)
{
  for (guint i = 0; i < self->guests->len; i++)
    {
      EvacGuest *g = g_ptr_array_index (self->guests, i);

      if (g_str_equal (g->outcome, "moved") || !md_guest_is_active (g->guest))
        continue;
      if (md_guest_is_busy (g->guest) || md_guest_get_qmp (g->guest) == NULL)
        {
          g_string_append_printf (g->message, "%snot shut down: the guest is busy",
                                  g->message->len ? "; " : "");
          continue;
        }
      self->shutting_down++;
      md_guest_shutdown_async (g->guest, md_manager_get_config (self->manager)->shutdown_timeout,
                               on_shut_down, g);
    }
  if (self->shutting_down == 0)
    finish (self);
}

/* ---- placing and starting migrations ------------------------------------- */

/* The reachable peer not yet tried for @g with the most memory left. */
static EvacPeer *
pick_peer (MdEvacuation *self, EvacGuest *g, guint *index)
{
  EvacPeer *best = NULL;
  gint64 best_left = G_MININT64;

  for (guint i = 0; i < self->peers->len; i++)
    {
      EvacPeer *peer = g_ptr_array_index (self->peers, i);
      gint64 left = (gint64) peer->available - (gint64) peer->planned;

      if (!peer->reachable || (g->tried & (G_GUINT64_CONSTANT (1) << i)))
        continue;
      if (best == NULL || left > best_left)
        {
          best = peer;
          best_left = left;
          *index = i;
        }
    }
  return best;
}

static void schedule_pump (MdEvacuation *self);

static void
on_migration_completed (MdDbusMigration1 *migration, gboolean success, const char *error_name,
                        const char *error_message, gpointer user_data)
{
  EvacGuest *g = user_data;
  MdEvacuation *self = g->owner;
  g_autoptr (MdMigration) done = g_steal_pointer (&g->running);
  guint index;

  g_signal_handlers_disconnect_by_data (migration, g);
  self->running--;
  if (success)
    {
      g->outcome = "moved";
      g_string_truncate (g->message, 0);
    }
  else
    {
      g->peer->planned -= MIN (g->peer->planned, g->memory);
      g_string_append_printf (g->message, "%s%s: %s", g->message->len ? "; then " : "",
                              g->peer->given, error_message);
      if (self->cancelled || g_str_equal (error_name, "org.migrationd.Error.Cancelled"))
        g->outcome = "cancelled";
      else if (g->attempts < MD_EVACUATION_ATTEMPTS && md_guest_is_active (g->guest)
               && pick_peer (self, g, &index) != NULL)
        g->outcome = "queued"; /* once more, on another peer */
      else
        g->outcome = "failed";
    }
  publish (self);
  schedule_pump (self);
}

/* Starts @g's migration to a peer; FALSE when it could not start (@g's
 * outcome and message say why). */
static gboolean
launch (MdEvacuation *self, EvacGuest *g)
{
  g_autoptr (GError) error = NULL;
  guint index = 0;
  EvacPeer *peer = pick_peer (self, g, &index);
  MdMigration *migration;

  if (peer == NULL)
    {
      g->outcome = "failed";
      g_string_append_printf (g->message, "%sno other peer to try", g->message->len ? "; " : "");
      return FALSE;
    }
  g->attempts++;
  g->tried |= G_GUINT64_CONSTANT (1) << index;
  g->peer = peer;
  migration = md_migration_source_start (self->manager, g->guest, peer->address,
                                         self->migrate_options, self->owner_uid, &error);
  if (migration == NULL)
    {
      g_string_append_printf (g->message, "%s%s: %s", g->message->len ? "; then " : "", peer->given,
                              error->message);
      g->outcome = g->attempts < MD_EVACUATION_ATTEMPTS && pick_peer (self, g, &index) != NULL
                       ? "queued"
                       : "failed";
      return FALSE;
    }
  g->running = migration;
  g->outcome = "migrating";
  g_free (g->migration);
  g->migration = g_strdup (md_migration_get_object_path (migration));
  g_ptr_array_add (self->migrations, g_strdup (g->migration));
  peer->planned += g->memory;
  self->running++;
  g_signal_connect (migration, "completed", G_CALLBACK (on_migration_completed), g);
  g_message ("evacuation %s: guest %s to %s (%s), attempt %u", self->path, g->name, peer->given,
             g->migration, g->attempts);
  return TRUE;
}

static gboolean
pump (gpointer user_data)
{
  MdEvacuation *self = user_data;
  gboolean queued = FALSE;

  self->pump_id = 0;
  for (guint i = 0; i < self->guests->len; i++)
    {
      EvacGuest *g = g_ptr_array_index (self->guests, i);

      if (!g_str_equal (g->outcome, "queued"))
        continue;
      if (self->cancelled)
        {
          g->outcome = "cancelled";
          continue;
        }
      if (self->running >= self->parallel)
        {
          queued = TRUE;
          continue;
        }
      /* A refused start may leave it queued for its second peer. */
      if (!launch (self, g) && g_str_equal (g->outcome, "queued"))
        i--;
    }
  publish (self);
  if (!queued && self->running == 0 && !self->finished && self->shutting_down == 0)
    {
      if (self->shutdown_rest && !self->cancelled)
        shut_down_rest (self);
      else
        finish (self);
    }
  return G_SOURCE_REMOVE;
}

/* Never from inside a migration's Completed emission: the next start
 * runs from the main loop. */
static void
schedule_pump (MdEvacuation *self)
{
  if (self->pump_id == 0)
    self->pump_id = g_idle_add (pump, self);
}

/* ---- Cancel -------------------------------------------------------------- */

static gboolean
handle_cancel (MdDbusEvacuation1 *object, GDBusMethodInvocation *invocation, GVariant *options)
{
  MdEvacuation *self = MD_EVACUATION (object);

  if (g_variant_n_children (options) > 0)
    {
      g_dbus_method_invocation_return_error (invocation, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                                             "Evacuation1.Cancel takes no options");
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
  if (self->finished || self->cancelled)
    {
      g_dbus_method_invocation_return_error (
          invocation, MD_ERROR, MD_ERROR_INVALID_STATE, "host %s: evacuation %s has already %s",
          host_name (self), self->path, self->finished ? "ended" : "been cancelled");
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
  self->cancelled = TRUE;
  g_message ("evacuation %s: cancelled; cancelling %u running migration(s)", self->path,
             self->running);
  for (guint i = 0; i < self->guests->len; i++)
    {
      EvacGuest *g = g_ptr_array_index (self->guests, i);
      g_autoptr (GError) error = NULL;

      if (g->running != NULL && !md_migration_cancel (g->running, &error))
        g_warning ("evacuation %s: cannot cancel %s: %s", self->path, g->migration, error->message);
    }
  schedule_pump (self);
  md_dbus_evacuation1_complete_cancel (object, invocation);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static void
md_evacuation_iface_init (MdDbusEvacuation1Iface *iface)
{
  iface->handle_cancel = handle_cancel;
}

static void
md_evacuation_finalize (GObject *object)
{
  MdEvacuation *self = MD_EVACUATION (object);

  g_clear_handle_id (&self->pump_id, g_source_remove);
  g_clear_handle_id (&self->tick_id, g_source_remove);
  g_clear_handle_id (&self->keep_id, g_source_remove);
  g_free (self->path);
  g_clear_pointer (&self->peers, g_ptr_array_unref);
  g_clear_pointer (&self->guests, g_ptr_array_unref);
  g_clear_pointer (&self->migrations, g_ptr_array_unref);
  g_clear_pointer (&self->migrate_options, g_variant_unref);
  g_clear_object (&self->start_task);
  G_OBJECT_CLASS (md_evacuation_parent_class)->finalize (object);
}

static void
md_evacuation_class_init (MdEvacuationClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = md_evacuation_finalize;
}

static void
md_evacuation_init (MdEvacuation *self)
{
  self->peers = g_ptr_array_new_with_free_func ((GDestroyNotify) peer_free);
  self->guests = g_ptr_array_new_with_free_func ((GDestroyNotify) guest_free);
  self->migrations = g_ptr_array_new_with_free_func (g_free);
}

/* ---- Evacuate: checks ---------------------------------------------------- */

static const MdOptionSpec evacuate_options[] = {
  { "parallel", "u" },
  { "shutdown-rest", "b" },
  { "migrate-options", "a{sv}" },
  { "auth.no_user_interaction", "b" },
  { NULL, NULL },
};

/* Options that name one guest's things make no sense for all of them. */
static const char *const per_guest_options[] = {
  "destination-xml", "destination-name", "migration-port", "nbd-port", "disks", NULL,
};

static gboolean
check_migrate_options (MdEvacuation *self, GVariant *options, GError **error)
{
  g_autoptr (GVariant) given = g_variant_lookup_value (options, "migrate-options", NULL);
  g_autoptr (MdMigrateOptions) parsed = NULL;

  if (given == NULL)
    given = g_variant_ref_sink (g_variant_new_array (G_VARIANT_TYPE ("{sv}"), NULL, 0));
  for (guint i = 0; per_guest_options[i] != NULL; i++)
    {
      g_autoptr (GVariant) value = g_variant_lookup_value (given, per_guest_options[i], NULL);

      if (value != NULL)
        {
          g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                       "Evacuate: migrate-options '%s' names one guest's settings and cannot "
                       "apply to every guest; migrate that guest on its own with Guest1.Migrate",
                       per_guest_options[i]);
          return FALSE;
        }
    }
  parsed = md_migrate_options_parse (given, NULL, error);
  if (parsed == NULL)
    {
      g_prefix_error (error, "Evacuate: migrate-options: ");
      return FALSE;
    }
  self->migrate_options = g_steal_pointer (&given);
  return TRUE;
}

static gboolean
check_peers (MdEvacuation *self, const char *const *peers, GError **error)
{
  guint n = peers != NULL ? g_strv_length ((char **) peers) : 0;

  if (n == 0 || n > MD_EVACUATION_PEERS_MAX)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "Evacuate needs 1-%u peers to move the guests to, not %u",
                   MD_EVACUATION_PEERS_MAX, n);
      return FALSE;
    }
  for (guint i = 0; i < n; i++)
    {
      EvacPeer *peer;
      char *address;

      if (g_strv_contains ((const char *const *) peers + i + 1, peers[i]))
        {
          g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                       "Evacuate: peer '%s' is given twice", peers[i]);
          return FALSE;
        }
      address = source_resolve_destination (self->manager, peers[i], error);
      if (address == NULL)
        {
          g_prefix_error (error, "Evacuate: ");
          return FALSE;
        }
      if (source_is_this_host (self->manager, address))
        {
          g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                       "Evacuate: peer '%s' is this host (%s) itself", peers[i], host_name (self));
          g_free (address);
          return FALSE;
        }
      peer = g_new0 (EvacPeer, 1);
      peer->given = g_strdup (peers[i]);
      peer->address = address;
      g_ptr_array_add (self->peers, peer);
    }
  return TRUE;
}

static gboolean
check_request (MdEvacuation *self, const char *const *peers, GVariant *options, GError **error)
{
  MdEvacuation *running = g_object_get_data (G_OBJECT (self->manager), RUNNING_KEY);

  if (!md_options_check (options, evacuate_options, "Evacuate", error)
      || !check_peers (self, peers, error) || !check_migrate_options (self, options, error))
    return FALSE;
  self->parallel = md_options_get_uint32 (options, "parallel", MD_EVACUATION_PARALLEL_DEFAULT);
  if (self->parallel == 0 || self->parallel > MD_EVACUATION_PARALLEL_MAX)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "Evacuate: option 'parallel' must be 1-%u, not %u", MD_EVACUATION_PARALLEL_MAX,
                   self->parallel);
      return FALSE;
    }
  self->shutdown_rest = md_options_get_boolean (options, "shutdown-rest", FALSE);
  if (running != NULL)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_STATE,
                   "host %s: evacuation %s is still running; cancel it or wait for its end",
                   host_name (self), running->path != NULL ? running->path : "(starting)");
      return FALSE;
    }
  if (md_manager_is_recovering (self->manager))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_STATE,
                   "host %s: migrations interrupted by the last restart are still being "
                   "resolved; evacuate once that is done",
                   host_name (self));
      return FALSE;
    }
  return TRUE;
}

/* ---- Evacuate: the guests ------------------------------------------------ */

static int
bigger_first (gconstpointer a, gconstpointer b)
{
  const EvacGuest *ga = *(EvacGuest *const *) a, *gb = *(EvacGuest *const *) b;

  if (ga->memory != gb->memory)
    return ga->memory > gb->memory ? -1 : 1;
  return g_strcmp0 (ga->name, gb->name);
}

/* Why @guest can never move live, or NULL: the checks the destination
 * would make on any peer, made here so it is reported, not retried. */
static char *
not_migratable (MdGuest *guest)
{
  g_autoptr (GPtrArray) problems = g_ptr_array_new_with_free_func (g_free);

  md_qemu_cpu_check (NULL, md_guest_get_definition (guest), NULL, TRUE, problems);
  g_ptr_array_add (problems, NULL);
  return problems->len > 1 ? g_strjoinv ("; ", (char **) problems->pdata) : NULL;
}

static void
collect_guests (MdEvacuation *self)
{
  g_autoptr (GList) guests = md_manager_list_guests (self->manager);

  for (GList *l = guests; l != NULL; l = l->next)
    {
      MdGuest *guest = l->data;
      MdGuestState state = md_guest_get_state (guest);
      EvacGuest *g;
      g_autofree char *why = NULL;

      if (!md_guest_is_active (guest))
        continue;
      g = g_new0 (EvacGuest, 1);
      g->owner = self;
      g->guest = g_object_ref (guest);
      g->name = g_strdup (md_guest_get_name (guest));
      g->memory = md_guest_get_definition (guest)->memory;
      g->message = g_string_new (NULL);
      g->outcome = "queued";
      if (state != MD_GUEST_STATE_RUNNING && state != MD_GUEST_STATE_PAUSED)
        {
          g->outcome = "busy";
          g_string_printf (g->message, "the guest is %s", md_guest_state_to_string (state));
        }
      else if (md_guest_is_busy (guest))
        {
          g->outcome = "busy";
          g_string_assign (g->message, "another operation on the guest is under way");
        }
      else if ((why = not_migratable (guest)) != NULL)
        {
          g->outcome = "not-migratable";
          g_string_assign (g->message, why);
        }
      g_ptr_array_add (self->guests, g);
    }
  g_ptr_array_sort (self->guests, bigger_first);
}

/* ---- Evacuate: asking the peers, then starting --------------------------- */

typedef struct
{
  MdEvacuation *self; /* strong */
  EvacPeer *peer;
  MdPeerConnection *conn;
} Ask;

static void
ask_free (Ask *ask)
{
  if (ask->conn != NULL)
    md_peer_connection_close (ask->conn);
  g_clear_object (&ask->conn);
  g_object_unref (ask->self);
  g_free (ask);
}

static gboolean
on_tick (gpointer user_data)
{
  publish (user_data);
  return G_SOURCE_CONTINUE;
}

static void
start_evacuation (MdEvacuation *self)
{
  g_autoptr (GTask) task = g_steal_pointer (&self->start_task);
  g_autoptr (MdDbusObjectSkeleton) object = NULL;
  g_autoptr (GString) errors = g_string_new (NULL);
  static guint next_number;
  gboolean any = FALSE;

  for (guint i = 0; i < self->peers->len; i++)
    {
      EvacPeer *peer = g_ptr_array_index (self->peers, i);
      any |= peer->reachable;
      if (!peer->reachable)
        g_string_append_printf (errors, "%s%s: %s", errors->len ? "; " : "", peer->given,
                                peer->error);
    }
  if (!any)
    {
      g_object_set_data (G_OBJECT (self->manager), RUNNING_KEY, NULL);
      g_task_return_new_error (task, MD_ERROR, MD_ERROR_PEER_FAILED,
                               "host %s: Evacuate: no peer answered, so no guest was moved: %s",
                               host_name (self), errors->str);
      return;
    }
  if (errors->len > 0)
    g_warning ("evacuation: not using peers that did not answer: %s", errors->str);
  collect_guests (self);
  self->path = g_strdup_printf ("%s/%u", MD_EVACUATION_PATH, ++next_number);
  md_dbus_evacuation1_set_state (MD_DBUS_EVACUATION1 (self), "running");
  md_dbus_evacuation1_set_parallel (MD_DBUS_EVACUATION1 (self), self->parallel);
  md_dbus_evacuation1_set_owner (MD_DBUS_EVACUATION1 (self), self->owner_uid);
  md_dbus_evacuation1_set_total (MD_DBUS_EVACUATION1 (self), self->guests->len);
  md_dbus_evacuation1_set_start_time (MD_DBUS_EVACUATION1 (self), (guint64) g_get_real_time ());
  publish (self);
  object = md_dbus_object_skeleton_new (self->path);
  md_dbus_object_skeleton_set_evacuation1 (object, MD_DBUS_EVACUATION1 (self));
  md_auth_attach (md_manager_get_auth (self->manager), G_DBUS_INTERFACE_SKELETON (self));
  g_dbus_object_manager_server_export (md_manager_get_object_manager (self->manager),
                                       G_DBUS_OBJECT_SKELETON (object));
  g_message ("evacuation %s: %u guest(s) to %u peer(s), at most %u at once", self->path,
             self->guests->len, self->peers->len, self->parallel);
  g_object_ref (self); /* until its keep time ends (on_keep_expired) */
  g_task_return_pointer (task, g_strdup (self->path), g_free);
  self->tick_id = g_timeout_add_seconds (1, on_tick, self);
  schedule_pump (self);
}

static void
ask_done (Ask *ask, GError *error)
{
  MdEvacuation *self = g_object_ref (ask->self);

  if (error != NULL)
    {
      ask->peer->error = g_strdup (error->message);
      g_error_free (error);
    }
  ask_free (ask);
  if (--self->asking == 0)
    start_evacuation (self);
  g_object_unref (self);
}

static void
on_host_info (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Ask *ask = user_data;
  g_autoptr (GVariant) info = NULL;
  GError *error = NULL;

  if (!md_dbus_peer1_call_host_info_finish (MD_DBUS_PEER1 (source), &info, result, &error))
    {
      g_prefix_error (&error, "Peer1.HostInfo: ");
      ask_done (ask, error);
      return;
    }
  ask->peer->reachable = TRUE;
  g_variant_lookup (info, "memory-available", "t", &ask->peer->available);
  ask_done (ask, NULL);
}

static void
on_peer_connected (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Ask *ask = user_data;
  GError *error = NULL;

  ask->conn = md_peer_connect_finish (result, &error);
  if (ask->conn == NULL)
    {
      ask_done (ask, error);
      return;
    }
  md_dbus_peer1_call_host_info (md_peer_connection_get_proxy (ask->conn), NULL, on_host_info, ask);
}

void
md_evacuation_start_async (MdManager *manager, const char *const *peers, GVariant *options,
                           guint owner_uid, GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (MdEvacuation) self = g_object_new (MD_TYPE_EVACUATION, NULL);
  g_autoptr (GTask) task = g_task_new (NULL, NULL, callback, user_data);
  GError *error = NULL;

  self->manager = manager;
  self->owner_uid = owner_uid;
  if (!check_request (self, peers, options, &error))
    {
      g_task_return_error (task, error);
      return;
    }
  md_dbus_evacuation1_set_destinations (MD_DBUS_EVACUATION1 (self), peers);
  /* One at a time, from the moment the peers are asked. */
  g_object_set_data (G_OBJECT (manager), RUNNING_KEY, self);
  self->start_task = g_steal_pointer (&task);
  self->asking = self->peers->len;
  for (guint i = 0; i < self->peers->len; i++)
    {
      Ask *ask = g_new0 (Ask, 1);
      ask->self = g_object_ref (self);
      ask->peer = g_ptr_array_index (self->peers, i);
      md_peer_connect_async (md_manager_get_peer_tls_config (manager), ask->peer->address, NULL,
                             on_peer_connected, ask);
    }
}

char *
md_evacuation_start_finish (GAsyncResult *result, GError **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}
