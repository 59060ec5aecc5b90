/* migrationd: the Guest1 D-Bus methods. Each checks its options and the
 * guest's state first, so a wrong call is refused with a message before
 * anything happens. What the layers above a guest do (Migrate, Save,
 * Restore, Undefine) goes through the host's hooks (md-host.h): guests
 * depend on neither the manager nor the engine. */
#include "config.h"

#include "md-guest-private.h"
#include "common/md-error.h"
#include "common/md-file-remove.h"
#include "common/md-options.h"

#include <errno.h>
#include <glib/gstdio.h>

static const MdOptionSpec no_options[] = { { NULL, NULL } };
static const MdOptionSpec start_options[] = { { "start-paused", "b" }, { NULL, NULL } };
static const MdOptionSpec shutdown_options[] = { { "timeout", "u" }, { NULL, NULL } };
static const MdOptionSpec getxml_options[] = { { "inactive", "b" }, { NULL, NULL } };

static gboolean
check_options (GDBusMethodInvocation *invocation, GVariant *options, const MdOptionSpec *specs,
               const char *method)
{
  GError *error = NULL;

  if (md_options_check (options, specs, method, &error))
    return TRUE;
  md_error_return (invocation, error);
  return FALSE;
}

static gboolean
check_idle_and_active (MdGuest *self, GDBusMethodInvocation *invocation, const char *what)
{
  if (self->busy != NULL)
    {
      g_dbus_method_invocation_return_error (invocation, MD_ERROR, MD_ERROR_INVALID_STATE,
                                             "cannot %s guest %s: it is busy (%s)", what,
                                             self->def->name, self->busy);
      return FALSE;
    }
  if (self->qmp == NULL)
    {
      g_dbus_method_invocation_return_error (
          invocation, MD_ERROR, MD_ERROR_INVALID_STATE, "cannot %s guest %s: it is %s on host %s",
          what, self->def->name, md_guest_state_to_string (self->state), guest_host_name (self));
      return FALSE;
    }
  return TRUE;
}

static void
on_start_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GDBusMethodInvocation *invocation = user_data;
  GError *error = NULL;

  if (!md_guest_start_finish (MD_GUEST (source), result, &error))
    md_error_return (invocation, error);
  else
    md_dbus_guest1_complete_start (MD_DBUS_GUEST1 (source), invocation);
}

static void
on_managed_save_removed (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GDBusMethodInvocation *invocation = user_data;
  GError *error = NULL;

  /* The guest runs: a failure here only leaves a stale file. */
  if (!md_file_remove_finish (result, &error))
    {
      g_warning ("guest %s: %s", MD_GUEST (source)->def->name, error->message);
      g_error_free (error);
    }
  md_guest_set_has_managed_save (MD_GUEST (source), FALSE);
  md_dbus_guest1_complete_start (MD_DBUS_GUEST1 (source), invocation);
}

static void
on_managed_restore_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GDBusMethodInvocation *invocation = user_data;
  MdGuest *self = MD_GUEST (g_dbus_method_invocation_get_user_data (invocation));
  g_autoptr (MdGuest) guest = NULL;
  GError *error = NULL;

  guest = self->host->restore_guest_finish (result, &error);
  if (guest == NULL)
    {
      g_autofree char *saved = md_guest_managed_save_path (self->host->config, self->def->name);
      g_prefix_error (&error,
                      "starting guest %s from its managed save (remove %s to start it "
                      "afresh): ",
                      self->def->name, saved);
      md_error_return (invocation, error);
      return;
    }
  md_file_remove_async (md_guest_managed_save_path (self->host->config, self->def->name), self,
                        on_managed_save_removed, invocation);
}

static gboolean
handle_start (MdDbusGuest1 *object, GDBusMethodInvocation *invocation, GVariant *options)
{
  MdGuest *self = MD_GUEST (object);

  if (!check_options (invocation, options, start_options, "Start"))
    return G_DBUS_METHOD_INVOCATION_HANDLED;
  if (md_dbus_guest1_get_has_managed_save (object) && self->proc == NULL && self->busy == NULL)
    {
      g_autofree char *path = md_guest_managed_save_path (self->host->config, self->def->name);
      self->host->restore_guest (self->host->owner, path, options, self, on_managed_restore_done,
                                 invocation);
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
  md_guest_start_async (self, md_options_get_boolean (options, "start-paused", FALSE), NULL,
                        on_start_done, invocation);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

/* A QMP command whose only effect the caller needs is success or not. */
typedef void (*CompleteFunc) (MdDbusGuest1 *object, GDBusMethodInvocation *invocation);

typedef struct
{
  MdGuest *guest;
  GDBusMethodInvocation *invocation;
  CompleteFunc complete;
  const char *what;
} SimpleCall;

static void
on_simple_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  SimpleCall *call = user_data;
  GError *error = NULL;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, &error);

  if (node == NULL)
    {
      g_prefix_error (&error, "host %s: cannot %s guest %s: ", guest_host_name (call->guest),
                      call->what, call->guest->def->name);
      md_error_return (call->invocation, error);
    }
  else
    call->complete (MD_DBUS_GUEST1 (call->guest), call->invocation);
  g_object_unref (call->guest);
  g_free (call);
}

static gboolean
simple_qmp_method (MdGuest *self, GDBusMethodInvocation *invocation, GVariant *options,
                   const char *method, const char *what, const char *command, CompleteFunc complete)
{
  SimpleCall *call;

  if (!check_options (invocation, options, no_options, method)
      || !check_idle_and_active (self, invocation, what))
    return G_DBUS_METHOD_INVOCATION_HANDLED;
  call = g_new0 (SimpleCall, 1);
  call->guest = g_object_ref (self);
  call->invocation = invocation;
  call->complete = complete;
  call->what = what;
  md_qmp_execute_async (self->qmp, command, NULL, NULL, on_simple_done, call);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

/* A running QEMU that is not busy must be in @state for @verb; otherwise
 * (no QEMU, or busy) simple_qmp_method() says why. */
static gboolean
in_state_for (MdGuest *self, GDBusMethodInvocation *invocation, MdGuestState state,
              const char *verb)
{
  if (self->qmp == NULL || self->busy != NULL || self->state == state)
    return TRUE;
  g_dbus_method_invocation_return_error (invocation, MD_ERROR, MD_ERROR_INVALID_STATE,
                                         "cannot %s guest %s: it is %s", verb, self->def->name,
                                         md_guest_state_to_string (self->state));
  return FALSE;
}

static gboolean
handle_pause (MdDbusGuest1 *object, GDBusMethodInvocation *invocation, GVariant *options)
{
  MdGuest *self = MD_GUEST (object);

  if (!in_state_for (self, invocation, MD_GUEST_STATE_RUNNING, "pause"))
    return G_DBUS_METHOD_INVOCATION_HANDLED;
  return simple_qmp_method (self, invocation, options, "Pause", "pause", "stop",
                            md_dbus_guest1_complete_pause);
}

static gboolean
handle_resume (MdDbusGuest1 *object, GDBusMethodInvocation *invocation, GVariant *options)
{
  MdGuest *self = MD_GUEST (object);

  if (!in_state_for (self, invocation, MD_GUEST_STATE_PAUSED, "resume"))
    return G_DBUS_METHOD_INVOCATION_HANDLED;
  return simple_qmp_method (self, invocation, options, "Resume", "resume", "cont",
                            md_dbus_guest1_complete_resume);
}

static gboolean
handle_reset (MdDbusGuest1 *object, GDBusMethodInvocation *invocation, GVariant *options)
{
  return simple_qmp_method (MD_GUEST (object), invocation, options, "Reset", "reset",
                            "system_reset", md_dbus_guest1_complete_reset);
}

static void
on_destroy_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GDBusMethodInvocation *invocation = user_data;
  GError *error = NULL;

  if (!md_guest_destroy_finish (MD_GUEST (source), result, &error))
    md_error_return (invocation, error);
  else
    md_dbus_guest1_complete_destroy (MD_DBUS_GUEST1 (source), invocation);
}

static gboolean
handle_destroy (MdDbusGuest1 *object, GDBusMethodInvocation *invocation, GVariant *options)
{
  MdGuest *self = MD_GUEST (object);

  if (!check_options (invocation, options, no_options, "Destroy"))
    return G_DBUS_METHOD_INVOCATION_HANDLED;
  /* Destroy is the way out of anything, a pending Shutdown included. */
  if (self->proc == NULL)
    {
      g_dbus_method_invocation_return_error (
          invocation, MD_ERROR, MD_ERROR_INVALID_STATE,
          "cannot destroy guest %s: it is %s on host %s", self->def->name,
          md_guest_state_to_string (self->state), guest_host_name (self));
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
  md_guest_destroy_async (self, on_destroy_done, invocation);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static void
on_shutdown_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GDBusMethodInvocation *invocation = user_data;
  GError *error = NULL;

  if (!g_task_propagate_boolean (G_TASK (result), &error))
    md_error_return (invocation, error);
  else
    md_dbus_guest1_complete_shutdown (MD_DBUS_GUEST1 (source), invocation);
}

/* A day: longer is a typo, not a guest that takes its time. */
#define MD_GUEST_SHUTDOWN_TIMEOUT_MAX (24 * 3600)

static gboolean
handle_shutdown (MdDbusGuest1 *object, GDBusMethodInvocation *invocation, GVariant *options)
{
  MdGuest *self = MD_GUEST (object);
  guint timeout = self->host->config->shutdown_timeout;

  if (!check_options (invocation, options, shutdown_options, "Shutdown")
      || !check_idle_and_active (self, invocation, "shut down"))
    return G_DBUS_METHOD_INVOCATION_HANDLED;
  timeout = md_options_get_uint32 (options, "timeout", timeout);
  if (timeout == 0 || timeout > MD_GUEST_SHUTDOWN_TIMEOUT_MAX)
    {
      g_dbus_method_invocation_return_error (invocation, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                                             "option 'timeout' of Shutdown must be 1-%u s, not %u",
                                             MD_GUEST_SHUTDOWN_TIMEOUT_MAX, timeout);
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
  md_guest_shutdown_async (self, timeout, on_shutdown_done, invocation);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static gboolean
handle_undefine (MdDbusGuest1 *object, GDBusMethodInvocation *invocation, GVariant *options)
{
  MdGuest *self = MD_GUEST (object);
  GError *error = NULL;

  if (!check_options (invocation, options, no_options, "Undefine"))
    return G_DBUS_METHOD_INVOCATION_HANDLED;
  if (!self->host->undefine_guest (self->host->owner, self, &error))
    return md_error_return (invocation, error);
  md_dbus_guest1_complete_undefine (object, invocation);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static gboolean
handle_get_xml (MdDbusGuest1 *object, GDBusMethodInvocation *invocation, GVariant *options)
{
  MdGuest *self = MD_GUEST (object);
  g_autofree char *xml = NULL;
  gboolean inactive;

  if (!check_options (invocation, options, getxml_options, "GetXML"))
    return G_DBUS_METHOD_INVOCATION_HANDLED;
  inactive = md_options_get_boolean (options, "inactive", FALSE);
  xml = md_domain_format (!inactive && self->live != NULL ? self->live : self->def);
  md_dbus_guest1_complete_get_xml (object, invocation, xml);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static gboolean
handle_migrate (MdDbusGuest1 *object, GDBusMethodInvocation *invocation, const char *destination,
                GVariant *options)
{
  MdGuest *self = MD_GUEST (object);
  guint uid_plus_one =
      GPOINTER_TO_UINT (g_object_get_data (G_OBJECT (invocation), MD_AUTH_CALLER_UID_KEY));
  g_autofree char *migration = NULL;
  GError *error = NULL;

  if (self->busy != NULL)
    {
      g_dbus_method_invocation_return_error (invocation, MD_ERROR, MD_ERROR_INVALID_STATE,
                                             "cannot migrate guest %s: it is busy (%s)",
                                             self->def->name, self->busy);
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
  if (g_strcmp0 (md_dbus_guest1_get_migration (object), "/") != 0)
    {
      g_dbus_method_invocation_return_error (invocation, MD_ERROR, MD_ERROR_INVALID_STATE,
                                             "guest %s is already migrating (%s)", self->def->name,
                                             md_dbus_guest1_get_migration (object));
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
  /* The engine sits above guests: the service wired it in (md-host.h). */
  migration = self->host->migrate_guest (self->host->owner, self, destination, options,
                                         uid_plus_one > 0 ? uid_plus_one - 1 : 0, &error);
  if (migration == NULL)
    return md_error_return (invocation, error);
  md_dbus_guest1_complete_migrate (object, invocation, migration);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static guint
caller_uid (GDBusMethodInvocation *invocation)
{
  guint uid_plus_one =
      GPOINTER_TO_UINT (g_object_get_data (G_OBJECT (invocation), MD_AUTH_CALLER_UID_KEY));

  return uid_plus_one > 0 ? uid_plus_one - 1 : 0;
}

static void
on_save_started (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GDBusMethodInvocation *invocation = user_data;
  MdDbusGuest1 *object = MD_DBUS_GUEST1 (source);
  MdGuest *self = MD_GUEST (source);
  g_autofree char *migration = NULL;
  GError *error = NULL;

  migration = self->host->save_guest_finish (result, &error);
  if (migration == NULL)
    md_error_return (invocation, error);
  else if (g_str_equal (g_dbus_method_invocation_get_method_name (invocation), "ManagedSave"))
    md_dbus_guest1_complete_managed_save (object, invocation, migration);
  else
    md_dbus_guest1_complete_save (object, invocation, migration);
}

static gboolean
handle_save (MdDbusGuest1 *object, GDBusMethodInvocation *invocation, const char *file,
             GVariant *options)
{
  MdGuest *self = MD_GUEST (object);

  self->host->save_guest (self->host->owner, self, file, options, caller_uid (invocation), FALSE,
                          on_save_started, invocation);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static gboolean
handle_managed_save (MdDbusGuest1 *object, GDBusMethodInvocation *invocation, GVariant *options)
{
  MdGuest *self = MD_GUEST (object);

  self->host->save_guest (self->host->owner, self, NULL, options, caller_uid (invocation), TRUE,
                          on_save_started, invocation);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static void
on_restore_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GDBusMethodInvocation *invocation = user_data;
  MdGuest *self = MD_GUEST (g_dbus_method_invocation_get_user_data (invocation));
  g_autoptr (MdGuest) guest = NULL;
  GError *error = NULL;

  guest = self->host->restore_guest_finish (result, &error);
  if (guest == NULL)
    md_error_return (invocation, error);
  else
    md_dbus_guest1_complete_restore (MD_DBUS_GUEST1 (self), invocation);
}

static gboolean
handle_restore (MdDbusGuest1 *object, GDBusMethodInvocation *invocation, const char *file,
                GVariant *options)
{
  MdGuest *self = MD_GUEST (object);

  self->host->restore_guest (self->host->owner, file, options, self, on_restore_done, invocation);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

void
guest_methods_iface_init (MdDbusGuest1Iface *iface)
{
  iface->handle_start = handle_start;
  iface->handle_shutdown = handle_shutdown;
  iface->handle_destroy = handle_destroy;
  iface->handle_pause = handle_pause;
  iface->handle_resume = handle_resume;
  iface->handle_reset = handle_reset;
  iface->handle_undefine = handle_undefine;
  iface->handle_get_xml = handle_get_xml;
  iface->handle_migrate = handle_migrate;
  iface->handle_save = handle_save;
  iface->handle_restore = handle_restore;
  iface->handle_managed_save = handle_managed_save;
}
