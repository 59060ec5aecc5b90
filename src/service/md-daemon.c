/* migrationd: the daemon — connects to the bus, owns org.migrationd and
 * ties the modules together. */
#include "config.h"

#include "md-daemon.h"
#include "common/md-error.h"
#include "daemon/md-auth.h"
#include "daemon/md-manager.h"
#include "migration/md-evacuation.h"
#include "migration/md-migration-dest.h"
#include "migration/md-migration-journal.h"
#include "migration/md-migration-recover.h"
#include "migration/md-migration-source.h"
#include "migration/md-save.h"
#include "peer/md-peer.h"

struct _MdDaemon
{
  GObject parent_instance;

  MdConfig *config;
  GDBusConnection *connection;
  MdAuth *auth;
  MdManager *manager;
  MdPeerListener *listener;
  MdMigrationDest *dest;
  guint name_id;
  GBusNameOwnerFlags name_flags;
  gboolean name_acquired;
  gboolean done;
  gboolean saving_all; /* on-stop = managed-save is under way */
};

enum
{
  SIGNAL_DONE,
  N_SIGNALS
};
static guint signals[N_SIGNALS];

G_DEFINE_FINAL_TYPE (MdDaemon, md_daemon, G_TYPE_OBJECT)

static void
emit_done (MdDaemon *self, int status)
{
  if (self->done)
    return;
  self->done = TRUE;
  g_signal_emit (self, signals[SIGNAL_DONE], 0, status);
}

static void
md_daemon_dispose (GObject *object)
{
  MdDaemon *self = MD_DAEMON (object);

  if (self->name_id != 0)
    g_bus_unown_name (self->name_id);
  self->name_id = 0;
  if (self->manager != NULL)
    md_manager_unexport (self->manager);
  g_clear_pointer (&self->dest, md_migration_dest_free);
  if (self->listener != NULL)
    md_peer_listener_stop (self->listener);
  g_clear_object (&self->listener);
  g_clear_object (&self->manager);
  g_clear_object (&self->auth);
  g_clear_object (&self->connection);
  /* Journal writes still queued reach the disk before the daemon goes. */
  md_journal_flush_all ();
  G_OBJECT_CLASS (md_daemon_parent_class)->dispose (object);
}

static void
md_daemon_finalize (GObject *object)
{
  MdDaemon *self = MD_DAEMON (object);

  md_config_free (self->config);
  G_OBJECT_CLASS (md_daemon_parent_class)->finalize (object);
}

static void
md_daemon_class_init (MdDaemonClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = md_daemon_dispose;
  object_class->finalize = md_daemon_finalize;

  signals[SIGNAL_DONE] = g_signal_new ("done", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                                       NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_INT);
}

static void
md_daemon_init (MdDaemon *self)
{
}

MdDaemon *
md_daemon_new (MdConfig *config)
{
  MdDaemon *self = g_object_new (MD_TYPE_DAEMON, NULL);

  self->config = config;
  return self;
}

static void
on_name_acquired (GDBusConnection *connection, const char *name, gpointer user_data)
{
  MdDaemon *self = user_data;

  self->name_acquired = TRUE;
  g_message ("migrationd %s on host %s owns %s", PACKAGE_VERSION, self->config->host_name, name);
}

static void
on_name_lost (GDBusConnection *connection, const char *name, gpointer user_data)
{
  MdDaemon *self = user_data;

  if (connection == NULL)
    {
      g_printerr ("migrationd: lost the connection to the bus\n");
      emit_done (self, 1);
    }
  else if (!self->name_acquired)
    {
      g_printerr ("migrationd: %s is already owned by another migrationd on this bus; "
                  "stop it or start this one with --replace\n",
                  name);
      emit_done (self, 1);
    }
  else
    {
      g_message ("%s was taken over by another instance (--replace); exiting", name);
      emit_done (self, 0);
    }
}

/* The peer port: incoming migrations. Off when listen-address is empty. */
/* Guest1.Migrate, wired from above: guests know nothing of the engine. */
static char *
migrate_guest (gpointer owner, MdGuest *guest, const char *destination, GVariant *options,
               guint owner_uid, GError **error)
{
  g_autoptr (MdMigration) migration =
      md_migration_source_start (MD_MANAGER (owner), guest, destination, options, owner_uid, error);

  return migration != NULL ? g_strdup (md_migration_get_object_path (migration)) : NULL;
}

/* Save and restore, wired from above as Migrate is. */
static void
save_guest (gpointer owner, MdGuest *guest, const char *path, GVariant *options, guint owner_uid,
            gboolean managed, GAsyncReadyCallback callback, gpointer user_data)
{
  md_save_start_async (MD_MANAGER (owner), guest, path, options, owner_uid, managed, callback,
                       user_data);
}

static char *
save_guest_finish (GAsyncResult *result, GError **error)
{
  g_autoptr (MdMigration) migration = md_save_start_finish (result, error);

  return migration != NULL ? g_strdup (md_migration_get_object_path (migration)) : NULL;
}

static void
restore_guest (gpointer owner, const char *path, GVariant *options, MdGuest *expected,
               GAsyncReadyCallback callback, gpointer user_data)
{
  md_save_restore_async (MD_MANAGER (owner), path, options, expected, callback, user_data);
}

static const MdHost save_funcs = {
  .save_guest = save_guest,
  .save_guest_finish = save_guest_finish,
  .restore_guest = restore_guest,
  .restore_guest_finish = md_save_restore_finish,
};

/* Manager1.Evacuate, wired from above as Migrate is. */
static void
evacuate (gpointer owner, const char *const *peers, GVariant *options, guint owner_uid,
          GAsyncReadyCallback callback, gpointer user_data)
{
  md_evacuation_start_async (MD_MANAGER (owner), peers, options, owner_uid, callback, user_data);
}

static const MdHost evacuate_funcs = {
  .evacuate = evacuate,
  .evacuate_finish = md_evacuation_start_finish,
};

static gboolean
start_peer_listener (MdDaemon *self, GError **error)
{
  const MdConfig *config = self->config;
  g_autofree char *address = NULL;

  if (config->listen_address == NULL || *config->listen_address == '\0')
    return TRUE;
  self->listener = md_peer_listener_new (md_manager_get_peer_tls_config (self->manager), error);
  if (self->listener == NULL)
    {
      g_prefix_error (error, "cannot start the peer listener (incoming migrations; set "
                             "[daemon] listen-address= to turn it off): ");
      return FALSE;
    }
  if (!md_peer_listener_listen (self->listener, config->listen_address, config->peer_port, error))
    {
      g_prefix_error (error, "cannot listen on %s port %u for peers: ", config->listen_address,
                      config->peer_port);
      return FALSE;
    }
  self->dest = md_migration_dest_new (self->manager, self->listener, error);
  if (self->dest == NULL)
    return FALSE;
  md_manager_set_listener (self->manager, self->listener);
  address =
      g_strdup_printf ("%s:%u", config->listen_address, md_peer_listener_get_port (self->listener));
  md_dbus_manager1_set_peer_address (MD_DBUS_MANAGER1 (self->manager), address);
  g_message ("listening for peers on %s", address);
  return TRUE;
}

static void
on_manager_loaded (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (MdDaemon) self = user_data;
  g_autoptr (GError) error = NULL;

  if (self->done)
    return;
  if (!md_manager_load_finish (MD_MANAGER (source), result, &error)
      || !start_peer_listener (self, &error)
      || !md_manager_export (self->manager, self->connection, &error))
    {
      g_printerr ("migrationd: %s\n", error->message);
      emit_done (self, 1);
      return;
    }
  /* Before anyone can start a migration: what the previous daemon left
   * open is resolved first (Migrate and Prepare wait for it). */
  md_migration_recover_start (self->manager, self->dest);
  self->name_id = g_bus_own_name_on_connection (self->connection, MD_BUS_NAME, self->name_flags,
                                                on_name_acquired, on_name_lost, self, NULL);
  /* Guests the last stop saved (on-stop = managed-save) come back. */
  md_save_restore_at_start (self->manager);
}

gboolean
md_daemon_start (MdDaemon *self, const MdDaemonOptions *options, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  g_autofree char *host_uuid = NULL;
  GBusNameOwnerFlags flags =
      G_BUS_NAME_OWNER_FLAGS_ALLOW_REPLACEMENT | G_BUS_NAME_OWNER_FLAGS_DO_NOT_QUEUE;

  host_uuid = md_manager_load_host_uuid (self->config->state_dir, error);
  if (host_uuid == NULL)
    return FALSE;

  /* Before the main loop runs, so a synchronous connect stalls nothing. */
  if (options->bus_address != NULL)
    self->connection = g_dbus_connection_new_for_address_sync (
        options->bus_address,
        G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT
            | G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
        NULL, NULL, &local_error);
  else
    self->connection = g_bus_get_sync (G_BUS_TYPE_SYSTEM, NULL, &local_error);
  if (self->connection == NULL)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_FAILED, "cannot connect to the %s bus%s%s: %s",
                   options->bus_address != NULL ? "given" : "system",
                   options->bus_address != NULL ? " " : "",
                   options->bus_address != NULL ? options->bus_address : "", local_error->message);
      return FALSE;
    }
  g_dbus_connection_set_exit_on_close (self->connection, FALSE);

  self->auth = md_auth_new ();
  self->manager = md_manager_new (self->config, self->auth, host_uuid);
  md_manager_set_migrate_func (self->manager, migrate_guest);
  md_manager_set_save_funcs (self->manager, &save_funcs);
  md_manager_set_evacuate_funcs (self->manager, &evacuate_funcs);
  self->name_flags = flags | (options->replace ? G_BUS_NAME_OWNER_FLAGS_REPLACE : 0);

  /* The name is taken only once every guest is known, so no client sees
   * a half-loaded host. */
  md_manager_load_async (self->manager, NULL, on_manager_loaded, g_object_ref (self));
  return TRUE;
}

static void
stop_now (MdDaemon *self)
{
  /* Release the name first so a successor can take it at once. */
  if (self->name_id != 0)
    g_bus_unown_name (self->name_id);
  self->name_id = 0;
  if (self->connection != NULL)
    g_dbus_connection_flush_sync (self->connection, NULL, NULL);
  emit_done (self, 0);
}

static void
on_all_saved (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (MdDaemon) self = user_data;

  md_save_all_finish (MD_MANAGER (source), result, NULL);
  g_message ("on-stop: every guest that could be saved is saved; stopping");
  stop_now (self);
}

void
md_daemon_stop (MdDaemon *self)
{
  /* on-stop = managed-save: the guests go to disk first (a second signal
   * stops at once, leaving the rest running). */
  if (g_str_equal (self->config->on_stop, "managed-save") && !self->saving_all && self->name_id != 0
      && !self->done)
    {
      self->saving_all = TRUE;
      g_message ("on-stop: managed-saving the running guests before stopping");
      md_save_all_async (self->manager, on_all_saved, g_object_ref (self));
      return;
    }
  stop_now (self);
}
