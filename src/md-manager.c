/* migrationd: org.migrationd.Manager1 — the host's identity, its guests,
 * its migrations and its trusted peers. */
#include "config.h"

#include "md-manager.h"
#include "md-error.h"

#include <errno.h>
#include <glib/gstdio.h>

struct _MdManager
{
  MdDbusManager1Skeleton parent_instance;

  const MdConfig *config;
  MdAuth *auth;
  GDBusObjectManagerServer *object_manager;
};

static void md_manager_iface_init (MdDbusManager1Iface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (MdManager, md_manager, MD_DBUS_TYPE_MANAGER1_SKELETON,
                               G_IMPLEMENT_INTERFACE (MD_DBUS_TYPE_MANAGER1,
                                                      md_manager_iface_init))

static gboolean
return_not_supported (GDBusMethodInvocation *invocation, const char *what)
{
  g_dbus_method_invocation_return_error (invocation, MD_ERROR, MD_ERROR_NOT_SUPPORTED,
                                         "%s is not supported by this version of migrationd (%s)",
                                         what, PACKAGE_VERSION);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static gboolean
handle_define_guest (MdDbusManager1 *object, GDBusMethodInvocation *invocation, const char *xml,
                     GVariant *options)
{
  return return_not_supported (invocation, "DefineGuest");
}

static gboolean
handle_create_guest (MdDbusManager1 *object, GDBusMethodInvocation *invocation, const char *xml,
                     GVariant *options)
{
  return return_not_supported (invocation, "CreateGuest");
}

static gboolean
handle_list_guests (MdDbusManager1 *object, GDBusMethodInvocation *invocation)
{
  const char *none[] = { NULL };

  md_dbus_manager1_complete_list_guests (object, invocation, none);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static gboolean
handle_lookup_guest (MdDbusManager1 *object, GDBusMethodInvocation *invocation,
                     const char *name_or_uuid)
{
  g_dbus_method_invocation_return_error (invocation, MD_ERROR, MD_ERROR_NOT_FOUND,
                                         "no guest named or with UUID '%s' on host %s",
                                         name_or_uuid, md_dbus_manager1_get_host_name (object));
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static gboolean
handle_list_migrations (MdDbusManager1 *object, GDBusMethodInvocation *invocation)
{
  const char *none[] = { NULL };

  md_dbus_manager1_complete_list_migrations (object, invocation, none);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static gboolean
handle_list_peers (MdDbusManager1 *object, GDBusMethodInvocation *invocation)
{
  MdManager *self = MD_MANAGER (object);
  GVariantBuilder builder;

  g_variant_builder_init (&builder, G_VARIANT_TYPE ("a(sss)"));
  for (guint i = 0; i < self->config->peers->len; i++)
    {
      const MdConfigPeer *peer = g_ptr_array_index (self->config->peers, i);
      g_variant_builder_add (&builder, "(sss)", peer->name, peer->address,
                             peer->dn != NULL ? peer->dn : "");
    }
  md_dbus_manager1_complete_list_peers (object, invocation, g_variant_builder_end (&builder));
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static gboolean
handle_add_peer (MdDbusManager1 *object, GDBusMethodInvocation *invocation, const char *name,
                 const char *address, const char *dn, GVariant *options)
{
  return return_not_supported (invocation, "AddPeer");
}

static gboolean
handle_remove_peer (MdDbusManager1 *object, GDBusMethodInvocation *invocation, const char *name)
{
  return return_not_supported (invocation, "RemovePeer");
}

static void
md_manager_iface_init (MdDbusManager1Iface *iface)
{
  iface->handle_define_guest = handle_define_guest;
  iface->handle_create_guest = handle_create_guest;
  iface->handle_list_guests = handle_list_guests;
  iface->handle_lookup_guest = handle_lookup_guest;
  iface->handle_list_migrations = handle_list_migrations;
  iface->handle_list_peers = handle_list_peers;
  iface->handle_add_peer = handle_add_peer;
  iface->handle_remove_peer = handle_remove_peer;
}

static void
md_manager_finalize (GObject *object)
{
  MdManager *self = MD_MANAGER (object);

  g_clear_object (&self->object_manager);
  g_clear_object (&self->auth);
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
}

MdManager *
md_manager_new (const MdConfig *config, MdAuth *auth, const char *host_uuid)
{
  MdManager *self = g_object_new (MD_TYPE_MANAGER, NULL);
  const char *capabilities[] = { NULL };
  g_autofree char *peer_address = NULL;

  self->config = config;
  self->auth = g_object_ref (auth);
  self->object_manager = g_dbus_object_manager_server_new (MD_MANAGER_PATH);

  md_dbus_manager1_set_version (MD_DBUS_MANAGER1 (self), PACKAGE_VERSION);
  md_dbus_manager1_set_host_name (MD_DBUS_MANAGER1 (self), config->host_name);
  md_dbus_manager1_set_host_uuid (MD_DBUS_MANAGER1 (self), host_uuid);
  md_dbus_manager1_set_capabilities (MD_DBUS_MANAGER1 (self), capabilities);
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
