/* migrationd: org.migrationd.Manager1 — the host's identity, its guests,
 * its migrations and its trusted peers. */
#include "config.h"

#include "md-manager.h"
#include "common/md-error.h"

#include "common/md-options.h"
#include "peer/md-trust.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <signal.h>

struct _MdManager
{
  MdDbusManager1Skeleton parent_instance;

  const MdConfig *config;
  MdAuth *auth;
  GDBusObjectManagerServer *object_manager;
  MdQemuCaps *caps;
  GHashTable *guests;    /* name -> MdGuest */
  GPtrArray *migrations; /* object paths (char *), oldest first */
  MdHost host;
  guint next_migration;
  MdPeerTlsConfig peer_tls;
  char *host_uuid;
  MdTrust *trust;
  MdPeerListener *listener; /* not owned; NULL when not listening */
  guint recovering;         /* journal records still being resolved */
  MdPeerPool *peer_pool;
};

static void md_manager_iface_init (MdDbusManager1Iface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (MdManager, md_manager, MD_DBUS_TYPE_MANAGER1_SKELETON,
                               G_IMPLEMENT_INTERFACE (MD_DBUS_TYPE_MANAGER1, md_manager_iface_init))

static char *
definition_path (MdManager *self, const char *name)
{
  g_autofree char *file = g_strdup_printf ("%s.xml", name);

  return g_build_filename (self->config->state_dir, MD_GUESTS_SUBDIR, file, NULL);
}

gboolean
md_manager_save_definition (MdManager *self, const MdDomain *def, GError **error)
{
  g_autofree char *dir = g_build_filename (self->config->state_dir, MD_GUESTS_SUBDIR, NULL);
  g_autofree char *path = definition_path (self, def->name);
  g_autofree char *xml = md_domain_format (def);
  g_autoptr (GError) local_error = NULL;

  if (g_mkdir_with_parents (dir, 0700) < 0)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_FAILED, "host %s: cannot create %s: %s",
                   self->config->host_name, dir, g_strerror (errno));
      return FALSE;
    }
  /* Atomic: a crash leaves the old definition or the new one, never half. */
  if (!g_file_set_contents_full (path, xml, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0600, &local_error))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_FAILED, "host %s: cannot save the definition: %s",
                   self->config->host_name, local_error->message);
      return FALSE;
    }
  return TRUE;
}

MdGuest *
md_manager_find_guest (MdManager *self, const char *name_or_uuid)
{
  GHashTableIter iter;
  MdGuest *guest;

  guest = g_hash_table_lookup (self->guests, name_or_uuid);
  if (guest != NULL)
    return guest;
  g_hash_table_iter_init (&iter, self->guests);
  while (g_hash_table_iter_next (&iter, NULL, (gpointer *) &guest))
    if (g_ascii_strcasecmp (md_guest_get_uuid (guest), name_or_uuid) == 0)
      return guest;
  return NULL;
}

static void on_guest_stopped (MdGuest *guest, MdManager *self);

void
md_manager_add_guest (MdManager *self, MdGuest *guest)
{
  g_autoptr (MdDbusObjectSkeleton) object = NULL;

  object = md_dbus_object_skeleton_new (md_guest_get_object_path (guest));
  md_dbus_object_skeleton_set_guest1 (object, MD_DBUS_GUEST1 (guest));
  g_hash_table_insert (self->guests, g_strdup (md_guest_get_name (guest)), g_object_ref (guest));
  g_signal_connect (guest, "stopped", G_CALLBACK (on_guest_stopped), self);
  g_dbus_object_manager_server_export (self->object_manager, G_DBUS_OBJECT_SKELETON (object));
}

void
md_manager_remove_guest (MdManager *self, MdGuest *guest)
{
  g_autoptr (MdGuest) keep = g_object_ref (guest);

  g_signal_handlers_disconnect_by_func (guest, on_guest_stopped, self);
  g_dbus_object_manager_server_unexport (self->object_manager, md_guest_get_object_path (guest));
  g_hash_table_remove (self->guests, md_guest_get_name (guest));
}

static void
on_guest_stopped (MdGuest *guest, MdManager *self)
{
  /* A transient guest exists only while it runs. */
  if (!md_guest_is_persistent (guest))
    md_manager_remove_guest (self, guest);
}

/* Parses and completes a definition for this host: the machine type is
 * resolved once, here, and recorded so it stays stable across QEMU
 * upgrades and migrations. */
MdDomain *
md_manager_prepare_definition_full (MdManager *self, const char *xml, gboolean incoming,
                                    GError **error)
{
  g_autoptr (MdDomain) def = md_domain_parse (xml, error);

  /* Machine type, CPU (host-model expanded at define time), SPICE, audio,
   * networks and bridges: everything this host must have, all at once. */
  if (def == NULL
      || !md_qemu_caps_check_definition (self->caps, def, self->config->networks,
                                         (const char *const *) self->config->cpu_model_allow,
                                         incoming, error))
    return NULL;
  return g_steal_pointer (&def);
}

MdDomain *
md_manager_prepare_definition (MdManager *self, const char *xml, GError **error)
{
  return md_manager_prepare_definition_full (self, xml, FALSE, error);
}

/* Name and UUID must each belong to one guest only. Returns the guest that
 * @def redefines (same name and UUID) or NULL for a new one. */
static gboolean
check_identity (MdManager *self, const MdDomain *def, MdGuest **existing, GError **error)
{
  MdGuest *by_name = g_hash_table_lookup (self->guests, def->name);
  MdGuest *by_uuid = md_manager_find_guest (self, def->uuid);

  *existing = NULL;
  if (by_name != NULL && g_ascii_strcasecmp (md_guest_get_uuid (by_name), def->uuid) != 0)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_ALREADY_EXISTS,
                   "host %s: a guest named %s already exists with UUID %s; pick another name "
                   "or undefine it first",
                   self->config->host_name, def->name, md_guest_get_uuid (by_name));
      return FALSE;
    }
  if (by_uuid != NULL && by_uuid != by_name)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_ALREADY_EXISTS,
                   "host %s: UUID %s already belongs to guest %s", self->config->host_name,
                   def->uuid, md_guest_get_name (by_uuid));
      return FALSE;
    }
  *existing = by_name;
  return TRUE;
}

static const MdOptionSpec define_options[] = { { "check-only", "b" }, { NULL, NULL } };
static const MdOptionSpec create_options[] = { { "start-paused", "b" }, { NULL, NULL } };

static gboolean
handle_define_guest (MdDbusManager1 *object, GDBusMethodInvocation *invocation, const char *xml,
                     GVariant *options)
{
  MdManager *self = MD_MANAGER (object);
  GError *error = NULL;
  g_autoptr (MdDomain) def = NULL;
  MdGuest *existing = NULL;

  if (!md_options_check (options, define_options, "DefineGuest", &error)
      || (def = md_manager_prepare_definition (self, xml, &error)) == NULL
      || !check_identity (self, def, &existing, &error))
    return md_error_return (invocation, error);
  if (md_options_get_boolean (options, "check-only", FALSE))
    {
      /* Every check a define makes, nothing defined: "/" says so. */
      md_dbus_manager1_complete_define_guest (object, invocation, "/");
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
  if (!md_manager_save_definition (self, def, &error))
    return md_error_return (invocation, error);

  if (existing != NULL)
    {
      md_guest_set_definition (existing, g_steal_pointer (&def));
      md_guest_set_persistent (existing, TRUE);
    }
  else
    {
      g_autoptr (MdGuest) guest = md_guest_new (&self->host, g_steal_pointer (&def), TRUE);
      md_manager_add_guest (self, guest);
      existing = guest;
    }
  g_message ("defined guest %s (%s)", md_guest_get_name (existing), md_guest_get_uuid (existing));
  md_dbus_manager1_complete_define_guest (object, invocation, md_guest_get_object_path (existing));
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static void
on_create_started (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GDBusMethodInvocation *invocation = user_data;
  MdGuest *guest = MD_GUEST (source);
  MdManager *self = MD_MANAGER (g_dbus_method_invocation_get_user_data (invocation));
  GError *error = NULL;

  if (!md_guest_start_finish (guest, result, &error))
    {
      if (!md_guest_is_persistent (guest) && !md_guest_is_active (guest)
          && md_manager_find_guest (self, md_guest_get_name (guest)) == guest)
        md_manager_remove_guest (self, guest);
      md_error_return (invocation, error);
      return;
    }
  md_dbus_manager1_complete_create_guest (MD_DBUS_MANAGER1 (self), invocation,
                                          md_guest_get_object_path (guest));
}

static gboolean
handle_create_guest (MdDbusManager1 *object, GDBusMethodInvocation *invocation, const char *xml,
                     GVariant *options)
{
  MdManager *self = MD_MANAGER (object);
  GError *error = NULL;
  g_autoptr (MdDomain) def = NULL;
  g_autoptr (MdGuest) guest = NULL;
  MdGuest *existing = NULL;

  if (!md_options_check (options, create_options, "CreateGuest", &error)
      || (def = md_manager_prepare_definition (self, xml, &error)) == NULL
      || !check_identity (self, def, &existing, &error))
    return md_error_return (invocation, error);
  if (existing != NULL)
    {
      /* libvirt's create on a defined guest starts it; we keep the two
       * apart so a typo cannot start the wrong thing. */
      g_dbus_method_invocation_return_error (invocation, MD_ERROR, MD_ERROR_ALREADY_EXISTS,
                                             "host %s: guest %s is already defined; use its "
                                             "Start method",
                                             self->config->host_name, md_guest_get_name (existing));
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
  guest = md_guest_new (&self->host, g_steal_pointer (&def), FALSE);
  md_manager_add_guest (self, guest);
  md_guest_start_async (guest, md_options_get_boolean (options, "start-paused", FALSE), NULL,
                        on_create_started, invocation);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static void
on_restored (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GDBusMethodInvocation *invocation = user_data;
  MdManager *self = MD_MANAGER (g_dbus_method_invocation_get_user_data (invocation));
  g_autoptr (MdGuest) guest = NULL;
  GError *error = NULL;

  guest = self->host.restore_guest_finish (result, &error);
  if (guest == NULL)
    {
      md_error_return (invocation, error);
      return;
    }
  md_dbus_manager1_complete_restore (MD_DBUS_MANAGER1 (self), invocation,
                                     md_guest_get_object_path (guest));
}

static gboolean
handle_restore (MdDbusManager1 *object, GDBusMethodInvocation *invocation, const char *file,
                GVariant *options)
{
  MdManager *self = MD_MANAGER (object);

  self->host.restore_guest (self, file, options, NULL, on_restored, invocation);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

gboolean
md_manager_delete_definition (MdManager *self, const char *name, GError **error)
{
  g_autofree char *path = definition_path (self, name);

  if (g_unlink (path) < 0 && errno != ENOENT)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_FAILED, "host %s: cannot remove %s: %s",
                   self->config->host_name, path, g_strerror (errno));
      return FALSE;
    }
  return TRUE;
}

gboolean
md_manager_undefine_guest (MdManager *self, MdGuest *guest, GError **error)
{

  if (!md_guest_is_persistent (guest))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_STATE,
                   "host %s: guest %s is transient (it has no definition to remove); use "
                   "Destroy to stop it",
                   self->config->host_name, md_guest_get_name (guest));
      return FALSE;
    }
  if (!md_manager_delete_definition (self, md_guest_get_name (guest), error))
    return FALSE;
  if (md_dbus_guest1_get_has_managed_save (MD_DBUS_GUEST1 (guest)))
    {
      /* Without its definition nothing can start from it. */
      g_autofree char *saved = md_guest_managed_save_path (self->config, md_guest_get_name (guest));
      if (g_unlink (saved) < 0 && errno != ENOENT)
        g_warning ("cannot remove the managed save %s of undefined guest %s: %s", saved,
                   md_guest_get_name (guest), g_strerror (errno));
      md_guest_set_has_managed_save (guest, FALSE);
    }
  g_message ("undefined guest %s", md_guest_get_name (guest));
  if (md_guest_is_active (guest))
    md_guest_set_persistent (guest, FALSE); /* as libvirt: it runs on, transient */
  else
    md_manager_remove_guest (self, guest);
  return TRUE;
}

static int
compare_paths (gconstpointer a, gconstpointer b)
{
  return g_strcmp0 (*(const char *const *) a, *(const char *const *) b);
}

static gboolean
handle_list_guests (MdDbusManager1 *object, GDBusMethodInvocation *invocation)
{
  MdManager *self = MD_MANAGER (object);
  g_autoptr (GPtrArray) paths = g_ptr_array_new ();
  GHashTableIter iter;
  MdGuest *guest;

  g_hash_table_iter_init (&iter, self->guests);
  while (g_hash_table_iter_next (&iter, NULL, (gpointer *) &guest))
    g_ptr_array_add (paths, (gpointer) md_guest_get_object_path (guest));
  g_ptr_array_sort (paths, compare_paths);
  g_ptr_array_add (paths, NULL);
  md_dbus_manager1_complete_list_guests (object, invocation, (const char *const *) paths->pdata);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static gboolean
handle_lookup_guest (MdDbusManager1 *object, GDBusMethodInvocation *invocation,
                     const char *name_or_uuid)
{
  MdManager *self = MD_MANAGER (object);
  MdGuest *guest = md_manager_find_guest (self, name_or_uuid);

  if (guest == NULL)
    {
      g_dbus_method_invocation_return_error (invocation, MD_ERROR, MD_ERROR_NOT_FOUND,
                                             "no guest named or with UUID '%s' on host %s",
                                             name_or_uuid, self->config->host_name);
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
  md_dbus_manager1_complete_lookup_guest (object, invocation, md_guest_get_object_path (guest));
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static gboolean
handle_list_migrations (MdDbusManager1 *object, GDBusMethodInvocation *invocation)
{
  MdManager *self = MD_MANAGER (object);
  g_autoptr (GPtrArray) paths = g_ptr_array_new ();

  for (guint i = 0; i < self->migrations->len; i++)
    g_ptr_array_add (paths, g_ptr_array_index (self->migrations, i));
  g_ptr_array_add (paths, NULL);
  md_dbus_manager1_complete_list_migrations (object, invocation,
                                             (const char *const *) paths->pdata);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

guint
md_manager_next_migration_number (MdManager *self)
{
  return ++self->next_migration;
}

GList *
md_manager_list_guests (MdManager *self)
{
  return g_hash_table_get_values (self->guests);
}

gboolean
md_manager_is_recovering (MdManager *self)
{
  return self->recovering > 0;
}

void
md_manager_hold_recovery (MdManager *self, gboolean hold)
{
  if (hold)
    self->recovering++;
  else if (self->recovering > 0)
    self->recovering--;
}

void
md_manager_add_migration (MdManager *self, const char *path, MdDbusMigration1 *migration)
{
  g_autoptr (MdDbusObjectSkeleton) object = md_dbus_object_skeleton_new (path);

  md_dbus_object_skeleton_set_migration1 (object, migration);
  g_ptr_array_add (self->migrations, g_strdup (path));
  g_dbus_object_manager_server_export (self->object_manager, G_DBUS_OBJECT_SKELETON (object));
}

void
md_manager_forget_migration (MdManager *self, const char *path)
{
  /* @path is usually the migration's own object path: unexporting may
   * drop the last reference and free it (valgrind saw that). */
  g_autofree char *copy = g_strdup (path);

  g_dbus_object_manager_server_unexport (self->object_manager, copy);
  for (guint i = 0; i < self->migrations->len; i++)
    if (g_str_equal (g_ptr_array_index (self->migrations, i), copy))
      {
        g_ptr_array_remove_index (self->migrations, i);
        break;
      }
}

MdHost *
md_manager_get_host (MdManager *self)
{
  return &self->host;
}

void
md_manager_set_migrate_func (MdManager *self,
                             char *(*func) (gpointer owner, MdGuest *guest, const char *destination,
                                            GVariant *options, guint owner_uid, GError **error))
{
  self->host.migrate_guest = func;
}

void
md_manager_set_save_funcs (MdManager *self, const MdHost *funcs)
{
  self->host.save_guest = funcs->save_guest;
  self->host.save_guest_finish = funcs->save_guest_finish;
  self->host.restore_guest = funcs->restore_guest;
  self->host.restore_guest_finish = funcs->restore_guest_finish;
}

void
md_manager_set_evacuate_funcs (MdManager *self, const MdHost *funcs)
{
  self->host.evacuate = funcs->evacuate;
  self->host.evacuate_finish = funcs->evacuate_finish;
}

static void
on_evacuation_started (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GDBusMethodInvocation *invocation = user_data;
  MdManager *self = MD_MANAGER (g_dbus_method_invocation_get_user_data (invocation));
  g_autofree char *path = NULL;
  GError *error = NULL;

  path = self->host.evacuate_finish (result, &error);
  if (path == NULL)
    {
      md_error_return (invocation, error);
      return;
    }
  md_dbus_manager1_complete_evacuate (MD_DBUS_MANAGER1 (self), invocation, path);
}

static gboolean
handle_evacuate (MdDbusManager1 *object, GDBusMethodInvocation *invocation,
                 const char *const *peers, GVariant *options)
{
  MdManager *self = MD_MANAGER (object);
  guint uid_plus_one =
      GPOINTER_TO_UINT (g_object_get_data (G_OBJECT (invocation), MD_AUTH_CALLER_UID_KEY));

  if (self->host.evacuate == NULL)
    {
      g_dbus_method_invocation_return_error (invocation, MD_ERROR, MD_ERROR_NOT_SUPPORTED,
                                             "host %s: this daemon has no migration engine",
                                             self->config->host_name);
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
  self->host.evacuate (self, peers, options, uid_plus_one > 0 ? uid_plus_one - 1 : 0,
                       on_evacuation_started, invocation);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static gboolean
host_undefine_guest (gpointer owner, MdGuest *guest, GError **error)
{
  return md_manager_undefine_guest (owner, guest, error);
}

static char *
no_migrations (gpointer owner, MdGuest *guest, const char *destination, GVariant *options,
               guint owner_uid, GError **error)
{
  g_set_error (error, MD_ERROR, MD_ERROR_NOT_SUPPORTED, "this daemon has no migration engine");
  return NULL;
}

const MdPeerTlsConfig *
md_manager_get_peer_tls_config (MdManager *self)
{
  return &self->peer_tls;
}

static gboolean
handle_list_peers (MdDbusManager1 *object, GDBusMethodInvocation *invocation)
{
  MdManager *self = MD_MANAGER (object);
  g_autoptr (GPtrArray) peers = md_trust_list (self->trust);
  GVariantBuilder builder;

  g_variant_builder_init (&builder, G_VARIANT_TYPE ("a(sss)"));
  for (guint i = 0; i < peers->len; i++)
    {
      const MdConfigPeer *peer = g_ptr_array_index (peers, i);
      g_variant_builder_add (&builder, "(sss)", peer->name, peer->address,
                             peer->dn != NULL ? peer->dn : "");
    }
  md_dbus_manager1_complete_list_peers (object, invocation, g_variant_builder_end (&builder));
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static void
apply_allowed_dns (MdManager *self)
{
  self->peer_tls.allowed_dns = md_trust_allowed_dns (self->trust);
  if (self->listener != NULL)
    md_peer_listener_set_allowed_dns (self->listener, self->peer_tls.allowed_dns);
}

static const MdOptionSpec add_peer_options[] = { { NULL, NULL } };

static gboolean
handle_add_peer (MdDbusManager1 *object, GDBusMethodInvocation *invocation, const char *name,
                 const char *address, const char *dn, GVariant *options)
{
  MdManager *self = MD_MANAGER (object);
  GError *error = NULL;

  if (!md_options_check (options, add_peer_options, "AddPeer", &error)
      || !md_trust_add (self->trust, name, address, dn, &error))
    return md_error_return (invocation, error);
  apply_allowed_dns (self);
  g_message ("trusting peer %s at %s (%s)", name, address, dn);
  md_dbus_manager1_complete_add_peer (object, invocation);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static gboolean
handle_remove_peer (MdDbusManager1 *object, GDBusMethodInvocation *invocation, const char *name)
{
  MdManager *self = MD_MANAGER (object);
  GError *error = NULL;

  if (!md_trust_remove (self->trust, name, &error))
    return md_error_return (invocation, error);
  apply_allowed_dns (self);
  g_message ("no longer trusting peer %s", name);
  md_dbus_manager1_complete_remove_peer (object, invocation);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

const MdConfigPeer *
md_manager_find_peer (MdManager *self, const char *name)
{
  return md_trust_find (self->trust, name);
}

void
md_manager_set_listener (MdManager *self, MdPeerListener *listener)
{
  self->listener = listener;
}

static void
md_manager_iface_init (MdDbusManager1Iface *iface)
{
  iface->handle_define_guest = handle_define_guest;
  iface->handle_create_guest = handle_create_guest;
  iface->handle_restore = handle_restore;
  iface->handle_list_guests = handle_list_guests;
  iface->handle_lookup_guest = handle_lookup_guest;
  iface->handle_list_migrations = handle_list_migrations;
  iface->handle_list_peers = handle_list_peers;
  iface->handle_add_peer = handle_add_peer;
  iface->handle_remove_peer = handle_remove_peer;
  iface->handle_evacuate = handle_evacuate;
}

static void
md_manager_finalize (GObject *object)
{
  MdManager *self = MD_MANAGER (object);

  g_clear_pointer (&self->guests, g_hash_table_unref);
  g_clear_pointer (&self->migrations, g_ptr_array_unref);
  g_clear_pointer (&self->peer_pool, md_peer_pool_free);
  g_free (self->host_uuid);
  g_clear_pointer (&self->host.uids, md_qemu_uid_pool_free);
  g_clear_pointer (&self->trust, md_trust_free);
  g_clear_object (&self->object_manager);
  g_clear_object (&self->auth);
  g_clear_pointer (&self->caps, md_qemu_caps_free);
  G_OBJECT_CLASS (md_manager_parent_class)->finalize (object);
}

static void
md_manager_class_init (MdManagerClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = md_manager_finalize;
}

static void
md_manager_init (MdManager *self)
{
  self->guests = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_object_unref);
  self->migrations = g_ptr_array_new_with_free_func (g_free);
  /* A minute covers back-to-back migrations; the peer's keepalive
   * notices a dead idle connection before that. */
  self->peer_pool = md_peer_pool_new (60);
}

MdPeerPool *
md_manager_get_peer_pool (MdManager *self)
{
  return self->peer_pool;
}

/* What a front-end may offer: features, every Guest1.Migrate option the
 * daemon accepts ("option:NAME", from the same table Migrate checks) and
 * every transport ("transport:NAME"). auth.* is D-Bus plumbing, not an
 * option a user picks. */
static GStrv
md_manager_capabilities (void)
{
  static const char *const features[] = {
    "guests",  "live-migration", "offline-migration",
    "tls",     "postcopy",       "auto-converge",
    "multifd", "copy-storage",   "copy-storage-incremental",
    "verify",  "compression",    "save",
  };
  /* tls: QEMU's stream over TCP with TLS (the default); tcp: plain TCP
   * (tls=false); multifd: parallel TCP channels; nbd: disks over NBD with
   * TLS (copy-storage, offline copies); tunnel: all of a live migration's
   * streams through the peer port (option transport=tunnel). */
  static const char *const transports[] = { "tls", "tcp", "multifd", "nbd", "tunnel" };
  g_autoptr (GPtrArray) caps = g_ptr_array_new_with_free_func (g_free);

  for (gsize i = 0; i < G_N_ELEMENTS (features); i++)
    g_ptr_array_add (caps, g_strdup (features[i]));
  for (gsize i = 0; i < G_N_ELEMENTS (transports); i++)
    g_ptr_array_add (caps, g_strconcat ("transport:", transports[i], NULL));
  for (const MdOptionSpec *spec = md_migrate_option_specs; spec->key != NULL; spec++)
    if (!g_str_has_prefix (spec->key, "auth."))
      g_ptr_array_add (caps, g_strconcat ("option:", spec->key, NULL));
  g_ptr_array_add (caps, NULL);
  return (GStrv) g_ptr_array_steal (caps, NULL);
}

MdManager *
md_manager_new (const MdConfig *config, MdAuth *auth, const char *host_uuid)
{
  MdManager *self = g_object_new (MD_TYPE_MANAGER, NULL);
  g_auto (GStrv) capabilities = md_manager_capabilities ();
  g_autofree char *peer_address = NULL;

  self->config = config;
  self->auth = g_object_ref (auth);
  self->host.config = config;
  self->host.auth = self->auth;
  self->host.owner = self;
  self->host.uids = md_qemu_uid_pool_new (config);
  self->host.undefine_guest = host_undefine_guest;
  self->host.migrate_guest = no_migrations;
  self->host_uuid = g_strdup (host_uuid);
  self->peer_tls.tls_dir = config->tls_dir;
  self->trust = md_trust_new (config, config->state_dir);
  self->peer_tls.allowed_dns = md_trust_allowed_dns (self->trust);
  self->peer_tls.host_uuid = self->host_uuid;
  self->peer_tls.host_name = config->host_name;
  self->peer_tls.handshake_timeout = config->handshake_timeout;
  self->peer_tls.peer_timeout = config->peer_timeout;
  self->object_manager = g_dbus_object_manager_server_new (MD_MANAGER_PATH);

  md_dbus_manager1_set_version (MD_DBUS_MANAGER1 (self), PACKAGE_VERSION);
  md_dbus_manager1_set_host_name (MD_DBUS_MANAGER1 (self), config->host_name);
  md_dbus_manager1_set_host_uuid (MD_DBUS_MANAGER1 (self), host_uuid);
  md_dbus_manager1_set_capabilities (MD_DBUS_MANAGER1 (self), (const char *const *) capabilities);
  md_dbus_manager1_set_peer_address (MD_DBUS_MANAGER1 (self), "");

  md_auth_attach (auth, G_DBUS_INTERFACE_SKELETON (self));
  return self;
}

gboolean
md_manager_export (MdManager *self, GDBusConnection *connection, GError **error)
{
  /* GDBusObjectManagerServer only manages objects below its root, so
   * Manager1 is exported beside it on the root path itself. */
  g_dbus_object_manager_server_set_connection (self->object_manager, connection);
  return g_dbus_interface_skeleton_export (G_DBUS_INTERFACE_SKELETON (self), connection,
                                           MD_MANAGER_PATH, error);
}

void
md_manager_unexport (MdManager *self)
{
  if (g_dbus_interface_skeleton_get_connection (G_DBUS_INTERFACE_SKELETON (self)) != NULL)
    g_dbus_interface_skeleton_unexport (G_DBUS_INTERFACE_SKELETON (self));
  g_dbus_object_manager_server_set_connection (self->object_manager, NULL);
}

GDBusObjectManagerServer *
md_manager_get_object_manager (MdManager *self)
{
  return self->object_manager;
}

const MdConfig *
md_manager_get_config (MdManager *self)
{
  return self->config;
}

MdAuth *
md_manager_get_auth (MdManager *self)
{
  return self->auth;
}

const MdQemuCaps *
md_manager_get_qemu_caps (MdManager *self)
{
  return self->caps;
}

/* ---- start-up: probe QEMU, load definitions, re-attach ------------------ */

typedef struct
{
  GPtrArray *records; /* MdQemuRuntime* still to re-attach */
} LoadData;

static void
load_data_free (LoadData *data)
{
  g_clear_pointer (&data->records, g_ptr_array_unref);
  g_free (data);
}

static void
load_definitions (MdManager *self)
{
  g_autofree char *dir = g_build_filename (self->config->state_dir, MD_GUESTS_SUBDIR, NULL);
  g_autoptr (GDir) gdir = g_dir_open (dir, 0, NULL);
  const char *file;

  if (gdir == NULL)
    return;
  while ((file = g_dir_read_name (gdir)) != NULL)
    {
      g_autofree char *path = NULL;
      g_autofree char *xml = NULL;
      g_autoptr (GError) error = NULL;
      g_autoptr (MdDomain) def = NULL;
      MdGuest *existing = NULL;

      if (!g_str_has_suffix (file, ".xml"))
        continue;
      path = g_build_filename (dir, file, NULL);
      if (!g_file_get_contents (path, &xml, NULL, &error)
          || (def = md_domain_parse (xml, &error)) == NULL
          || !check_identity (self, def, &existing, &error))
        {
          /* One bad file must not keep every other guest from the host. */
          g_warning ("skipping guest definition %s: %s", path, error->message);
          continue;
        }
      {
        g_autoptr (MdGuest) guest = md_guest_new (&self->host, g_steal_pointer (&def), TRUE);
        g_autofree char *saved =
            md_guest_managed_save_path (self->config, md_guest_get_name (guest));
        if (g_file_test (saved, G_FILE_TEST_IS_REGULAR))
          md_guest_set_has_managed_save (guest, TRUE);
        md_manager_add_guest (self, guest);
      }
    }
}

/* A qemu-storage-daemon of an offline copy that a crash of the previous
 * daemon interrupted: nothing can resume that copy, so it goes. Found by
 * its QMP socket in our runtime directory (a /proc scan at start-up). */
static void
kill_stale_nbd_servers (MdManager *self)
{
  g_autoptr (GDir) proc = g_dir_open ("/proc", 0, NULL);
  g_autofree char *marker = g_strdup_printf ("path=%s/", self->config->runtime_dir);
  const char *entry;

  while (proc != NULL && (entry = g_dir_read_name (proc)) != NULL)
    {
      g_autofree char *path = NULL;
      g_autofree char *cmdline = NULL;
      gsize length = 0;
      guint64 pid;

      if (!g_ascii_string_to_unsigned (entry, 10, 1, G_MAXINT, &pid, NULL))
        continue;
      path = g_strdup_printf ("/proc/%s/cmdline", entry);
      if (!g_file_get_contents (path, &cmdline, &length, NULL) || length == 0)
        continue;
      for (gsize i = 0; i + 1 < length; i++)
        if (cmdline[i] == '\0')
          cmdline[i] = ' ';
      if (g_str_has_prefix (cmdline, "qemu-storage-daemon ") && strstr (cmdline, marker) != NULL
          && strstr (cmdline, "-nbd.qmp") != NULL)
        {
          g_message ("killing qemu-storage-daemon pid %" G_GUINT64_FORMAT
                     ", left by an offline disk copy the previous daemon did not finish",
                     pid);
          kill ((pid_t) pid, SIGTERM);
        }
    }
}

static void reattach_next (GTask *task);

static void
on_reattached (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  MdManager *self = g_task_get_source_object (task);
  MdGuest *guest = MD_GUEST (source);
  g_autoptr (GError) error = NULL;

  if (!md_guest_reattach_finish (guest, result, &error))
    {
      g_warning ("guest %s: its QEMU is gone (%s); reporting it shut off",
                 md_guest_get_name (guest), error->message);
      md_qemu_runtime_remove (self->config->runtime_dir, md_guest_get_name (guest), NULL);
      if (!md_guest_is_persistent (guest))
        md_manager_remove_guest (self, guest);
    }
  reattach_next (task);
}

static void
reattach_next (GTask *task)
{
  MdManager *self = g_task_get_source_object (task);
  LoadData *data = g_task_get_task_data (task);
  g_autoptr (MdQemuRuntime) record = NULL;
  MdGuest *guest;

  if (data->records->len == 0)
    {
      g_task_return_boolean (task, TRUE);
      return;
    }
  record = g_ptr_array_steal_index (data->records, 0);
  guest = g_hash_table_lookup (self->guests, record->name);
  if (guest == NULL)
    {
      /* A transient guest: its definition lives in the record only. */
      const char *xml = json_object_get_string_member_with_default (record->extra, "xml", NULL);
      g_autoptr (GError) error = NULL;
      g_autoptr (MdDomain) def = xml ? md_domain_parse (xml, &error) : NULL;
      g_autoptr (MdGuest) transient = NULL;

      if (def == NULL)
        {
          g_warning ("runtime record %s is unusable (%s); removing it", record->name,
                     error ? error->message : "no definition");
          md_qemu_runtime_remove (self->config->runtime_dir, record->name, NULL);
          reattach_next (task);
          return;
        }
      transient = md_guest_new (&self->host, g_steal_pointer (&def), FALSE);
      md_manager_add_guest (self, transient);
      guest = transient;
    }
  md_guest_reattach_async (guest, record, g_task_get_cancellable (task), on_reattached,
                           g_object_ref (task));
}

static void
on_caps_probed (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  MdManager *self = g_task_get_source_object (task);
  LoadData *data = g_task_get_task_data (task);
  g_autoptr (GError) error = NULL;

  self->caps = md_qemu_caps_probe_finish (result, &error);
  self->host.caps = self->caps;
  if (self->caps == NULL)
    {
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  load_definitions (self);
  kill_stale_nbd_servers (self);
  data->records = md_qemu_runtime_list (self->config->runtime_dir, &error);
  if (data->records == NULL)
    {
      g_warning ("cannot list running guests in %s: %s", self->config->runtime_dir, error->message);
      data->records = g_ptr_array_new ();
    }
  reattach_next (task);
}

void
md_manager_load_async (MdManager *self, GCancellable *cancellable, GAsyncReadyCallback callback,
                       gpointer user_data)
{
  g_autoptr (GTask) task = g_task_new (self, cancellable, callback, user_data);

  g_task_set_task_data (task, g_new0 (LoadData, 1), (GDestroyNotify) load_data_free);
  md_qemu_caps_probe_async (self->config->qemu_binary, self->config->accelerator, cancellable,
                            on_caps_probed, g_steal_pointer (&task));
}

gboolean
md_manager_load_finish (MdManager *self, GAsyncResult *result, GError **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

char *
md_manager_load_host_uuid (const char *state_dir, GError **error)
{
  g_autofree char *path = g_build_filename (state_dir, "host-uuid", NULL);
  g_autofree char *contents = NULL;
  g_autoptr (GError) local_error = NULL;
  char *uuid;

  if (g_file_get_contents (path, &contents, NULL, &local_error))
    {
      g_strstrip (contents);
      if (!g_uuid_string_is_valid (contents))
        {
          g_set_error (error, MD_ERROR, MD_ERROR_CONFIG,
                       "%s does not hold a UUID; remove it to have a new one generated", path);
          return NULL;
        }
      return g_steal_pointer (&contents);
    }
  if (!g_error_matches (local_error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_CONFIG, "cannot read host UUID: %s",
                   local_error->message);
      return NULL;
    }
  if (g_mkdir_with_parents (state_dir, 0700) < 0)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_CONFIG, "cannot create state directory %s: %s",
                   state_dir, g_strerror (errno));
      return NULL;
    }
  g_clear_error (&local_error);
  uuid = g_uuid_string_random ();
  contents = g_strdup_printf ("%s\n", uuid);
  if (!g_file_set_contents_full (path, contents, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0644,
                                 &local_error))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_CONFIG, "cannot write host UUID: %s",
                   local_error->message);
      g_free (uuid);
      return NULL;
    }
  return uuid;
}
