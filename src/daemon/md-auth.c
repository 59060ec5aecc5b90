/* migrationd: the polkit bouncer.
 *
 * g-authorize-method handlers run in a GDBus worker thread (that is how
 * GDBusInterfaceSkeleton dispatches when such a handler is connected), so
 * the synchronous polkit call below never runs on the main loop; the method
 * itself is then dispatched back to the main context. */
#include "config.h"

#include "md-auth.h"
#include "common/md-error.h"
#include "md-dbus-generated.h"

#include <polkit/polkit.h>

struct _MdAuth
{
  GObject parent_instance;

  GMutex lock;
  PolkitAuthority *authority; /* got lazily, in a worker thread */
};

G_DEFINE_FINAL_TYPE (MdAuth, md_auth, G_TYPE_OBJECT)

typedef struct
{
  const char *interface;
  const char *method;
  const char *action;
} AuthRule;

/* Deny by default: a method missing here is refused. */
static const AuthRule auth_rules[] = {
  { "org.migrationd.Manager1", "DefineGuest", MD_ACTION_GUEST_MANAGE },
  { "org.migrationd.Manager1", "CreateGuest", MD_ACTION_GUEST_MANAGE },
  { "org.migrationd.Manager1", "Restore", MD_ACTION_GUEST_MANAGE },
  { "org.migrationd.Manager1", "ListGuests", MD_ACTION_OPEN },
  { "org.migrationd.Manager1", "LookupGuest", MD_ACTION_OPEN },
  { "org.migrationd.Manager1", "ListMigrations", MD_ACTION_OPEN },
  { "org.migrationd.Manager1", "ListPeers", MD_ACTION_OPEN },
  { "org.migrationd.Manager1", "AddPeer", MD_ACTION_PEER_MANAGE },
  { "org.migrationd.Manager1", "RemovePeer", MD_ACTION_PEER_MANAGE },
  /* Moving every guest is many Guest1.Migrate calls: the same action. */
  { "org.migrationd.Manager1", "Evacuate", MD_ACTION_MIGRATE },
  { "org.migrationd.Guest1", "Start", MD_ACTION_GUEST_MANAGE },
  { "org.migrationd.Guest1", "Shutdown", MD_ACTION_GUEST_MANAGE },
  { "org.migrationd.Guest1", "Destroy", MD_ACTION_GUEST_MANAGE },
  { "org.migrationd.Guest1", "Pause", MD_ACTION_GUEST_MANAGE },
  { "org.migrationd.Guest1", "Resume", MD_ACTION_GUEST_MANAGE },
  { "org.migrationd.Guest1", "Reset", MD_ACTION_GUEST_MANAGE },
  { "org.migrationd.Guest1", "Undefine", MD_ACTION_GUEST_MANAGE },
  { "org.migrationd.Guest1", "Save", MD_ACTION_GUEST_MANAGE },
  { "org.migrationd.Guest1", "Restore", MD_ACTION_GUEST_MANAGE },
  { "org.migrationd.Guest1", "ManagedSave", MD_ACTION_GUEST_MANAGE },
  { "org.migrationd.Guest1", "GetXML", MD_ACTION_OPEN },
  { "org.migrationd.Guest1", "Migrate", MD_ACTION_MIGRATE },
  { "org.migrationd.Migration1", "Cancel", MD_ACTION_CONTROL },
  { "org.migrationd.Migration1", "SetBandwidth", MD_ACTION_CONTROL },
  { "org.migrationd.Migration1", "SetMaxDowntime", MD_ACTION_CONTROL },
  { "org.migrationd.Migration1", "StartPostcopy", MD_ACTION_CONTROL },
  { "org.migrationd.Migration1", "GetStatistics", MD_ACTION_OPEN },
  { "org.migrationd.Evacuation1", "Cancel", MD_ACTION_CONTROL },
  /* Property reads are open; every property is read-only, so Set is
   * refused by GDBus before it gets here, and by us if it ever did. */
  { "org.freedesktop.DBus.Properties", "Get", MD_ACTION_OPEN },
  { "org.freedesktop.DBus.Properties", "GetAll", MD_ACTION_OPEN },
};

const char *
md_auth_lookup_action (const char *interface_name, const char *method_name)
{
  for (guint i = 0; i < G_N_ELEMENTS (auth_rules); i++)
    if (g_strcmp0 (auth_rules[i].interface, interface_name) == 0
        && g_strcmp0 (auth_rules[i].method, method_name) == 0)
      return auth_rules[i].action;
  return NULL;
}

static void
md_auth_finalize (GObject *object)
{
  MdAuth *self = MD_AUTH (object);

  g_clear_object (&self->authority);
  g_mutex_clear (&self->lock);
  G_OBJECT_CLASS (md_auth_parent_class)->finalize (object);
}

static void
md_auth_class_init (MdAuthClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = md_auth_finalize;
}

static void
md_auth_init (MdAuth *self)
{
  g_mutex_init (&self->lock);
}

MdAuth *
md_auth_new (void)
{
  return g_object_new (MD_TYPE_AUTH, NULL);
}

static PolkitAuthority *
get_authority (MdAuth *self, GError **error)
{
  g_autoptr (GMutexLocker) locker = g_mutex_locker_new (&self->lock);

  if (self->authority == NULL)
    self->authority = polkit_authority_get_sync (NULL, error);
  return self->authority != NULL ? g_object_ref (self->authority) : NULL;
}

/* Whether the message carries an options a{sv} that forbids interaction. */
static gboolean
options_forbid_interaction (GDBusMethodInvocation *invocation)
{
  GVariant *params = g_dbus_method_invocation_get_parameters (invocation);
  gsize n = g_variant_n_children (params);
  gboolean no_interaction = FALSE;

  for (gsize i = 0; i < n; i++)
    {
      g_autoptr (GVariant) child = g_variant_get_child_value (params, i);
      if (g_variant_is_of_type (child, G_VARIANT_TYPE_VARDICT))
        g_variant_lookup (child, "auth.no_user_interaction", "b", &no_interaction);
    }
  return no_interaction;
}

static const char *
resolve_control_action (GDBusInterfaceSkeleton *skeleton, PolkitSubject *subject, GError **error)
{
  guint owner;
  g_autoptr (PolkitUnixUser) user = NULL;

  if (MD_DBUS_IS_MIGRATION1 (skeleton))
    owner = md_dbus_migration1_get_owner (MD_DBUS_MIGRATION1 (skeleton));
  else if (MD_DBUS_IS_EVACUATION1 (skeleton))
    owner = md_dbus_evacuation1_get_owner (MD_DBUS_EVACUATION1 (skeleton));
  else
    return NULL;
  user = (PolkitUnixUser *) polkit_system_bus_name_get_user_sync (POLKIT_SYSTEM_BUS_NAME (subject),
                                                                  NULL, error);
  if (user == NULL)
    return NULL;
  return (guint) polkit_unix_user_get_uid (user) == owner ? MD_ACTION_CONTROL_OWN
                                                          : MD_ACTION_CONTROL_OTHER;
}

static gboolean deny (GDBusMethodInvocation *invocation, MdError code, const char *format, ...)
    G_GNUC_PRINTF (3, 4);

static gboolean
deny (GDBusMethodInvocation *invocation, MdError code, const char *format, ...)
{
  va_list args;
  g_autofree char *message = NULL;

  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);
  g_dbus_method_invocation_return_error_literal (invocation, MD_ERROR, code, message);
  return FALSE;
}

static gboolean
on_authorize_method (GDBusInterfaceSkeleton *skeleton, GDBusMethodInvocation *invocation,
                     MdAuth *self)
{
  const char *interface = g_dbus_method_invocation_get_interface_name (invocation);
  const char *method = g_dbus_method_invocation_get_method_name (invocation);
  const char *sender = g_dbus_method_invocation_get_sender (invocation);
  const char *object_path = g_dbus_method_invocation_get_object_path (invocation);
  GDBusMessage *message = g_dbus_method_invocation_get_message (invocation);
  const char *action = md_auth_lookup_action (interface, method);
  g_autoptr (PolkitAuthority) authority = NULL;
  g_autoptr (PolkitSubject) subject = NULL;
  g_autoptr (PolkitAuthorizationResult) result = NULL;
  g_autoptr (GError) error = NULL;
  PolkitCheckAuthorizationFlags flags = POLKIT_CHECK_AUTHORIZATION_FLAGS_NONE;

  if (action == NULL)
    return deny (invocation, MD_ERROR_NOT_AUTHORIZED,
                 "%s.%s on %s is not allowed to anyone (no polkit action maps to it)", interface,
                 method, object_path);
  if (g_str_equal (action, MD_ACTION_OPEN))
    return TRUE;

  if (sender == NULL)
    return deny (invocation, MD_ERROR_NOT_AUTHORIZED,
                 "%s.%s: the caller has no bus name; cannot ask polkit", interface, method);
  subject = polkit_system_bus_name_new (sender);

  if (g_str_equal (action, MD_ACTION_CONTROL))
    {
      action = resolve_control_action (skeleton, subject, &error);
      if (action == NULL)
        return deny (invocation, MD_ERROR_NOT_AUTHORIZED,
                     "%s.%s: cannot tell who started this migration: %s", interface, method,
                     error != NULL ? error->message : "not a migration object");
    }

  if ((g_dbus_message_get_flags (message) & G_DBUS_MESSAGE_FLAGS_ALLOW_INTERACTIVE_AUTHORIZATION)
      && !options_forbid_interaction (invocation))
    flags |= POLKIT_CHECK_AUTHORIZATION_FLAGS_ALLOW_USER_INTERACTION;

  authority = get_authority (self, &error);
  if (authority == NULL)
    return deny (invocation, MD_ERROR_NOT_AUTHORIZED,
                 "%s.%s needs %s but polkit is not reachable: %s", interface, method, action,
                 error->message);

  result = polkit_authority_check_authorization_sync (authority, subject, action, NULL, flags, NULL,
                                                      &error);
  if (result == NULL)
    return deny (invocation, MD_ERROR_NOT_AUTHORIZED, "%s.%s needs %s; polkit failed: %s",
                 interface, method, action, error->message);

  if (polkit_authorization_result_get_is_authorized (result))
    {
      /* Who started a migration decides later who may control it; learn
       * it here, off the main loop. */
      if (g_str_equal (action, MD_ACTION_MIGRATE))
        {
          g_autoptr (PolkitUnixUser) user =
              (PolkitUnixUser *) polkit_system_bus_name_get_user_sync (
                  POLKIT_SYSTEM_BUS_NAME (subject), NULL, NULL);
          if (user != NULL)
            g_object_set_data (G_OBJECT (invocation), MD_AUTH_CALLER_UID_KEY,
                               GUINT_TO_POINTER ((guint) polkit_unix_user_get_uid (user) + 1));
        }
      g_debug ("authorized %s to call %s.%s on %s (%s)", sender, interface, method, object_path,
               action);
      return TRUE;
    }
  if (polkit_authorization_result_get_dismissed (result))
    return deny (invocation, MD_ERROR_NOT_AUTHORIZED_DISMISSED,
                 "%s.%s: the authentication dialog for %s was dismissed", interface, method,
                 action);
  if (polkit_authorization_result_get_is_challenge (result))
    return deny (invocation, MD_ERROR_NOT_AUTHORIZED_CAN_OBTAIN,
                 "%s.%s needs %s: authentication is required; call again allowing interactive "
                 "authorization",
                 interface, method, action);
  return deny (invocation, MD_ERROR_NOT_AUTHORIZED,
               "%s.%s on %s is not allowed: polkit action %s was not granted to this caller",
               interface, method, object_path, action);
}

void
md_auth_attach (MdAuth *auth, GDBusInterfaceSkeleton *skeleton)
{
  g_return_if_fail (MD_IS_AUTH (auth));
  g_signal_connect_object (skeleton, "g-authorize-method", G_CALLBACK (on_authorize_method), auth,
                           0);
}
