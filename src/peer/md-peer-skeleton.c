/* migrationd: the Peer1 object of an incoming control connection: Hello,
 * then every call checked (md-peer-check) and forwarded to the listener's
 * owner as a handle-* signal. */
#include "config.h"

#include "md-peer.h"

#include "common/md-error.h"
#include "md-peer-private.h"
#include "md-peer-check.h"
#include "md-peer-liveness.h"

#include <stdio.h>

/* ---- The Peer1 skeleton of an incoming connection ---- */

struct _MdPeerSkeleton
{
  MdDbusPeer1Skeleton parent_instance;
  MdPeerConnection *conn; /* weak: the connection owns us */
  MdPeerConfig *cfg;
};

static void md_peer_skeleton_iface_init (MdDbusPeer1Iface *iface);

/* An invocation in flight may outlive the connection. */
void
md_peer_skeleton_detach (GDBusInterfaceSkeleton *skeleton)
{
  ((MdPeerSkeleton *) skeleton)->conn = NULL;
}

G_DEFINE_TYPE_WITH_CODE (MdPeerSkeleton, md_peer_skeleton, MD_DBUS_TYPE_PEER1_SKELETON,
                         G_IMPLEMENT_INTERFACE (MD_DBUS_TYPE_PEER1, md_peer_skeleton_iface_init))

static void
md_peer_skeleton_init (MdPeerSkeleton *self)
{
}

static void
md_peer_skeleton_finalize (GObject *object)
{
  MdPeerSkeleton *self = MD_PEER_SKELETON (object);

  g_clear_pointer (&self->cfg, md_peer_config_unref);
  G_OBJECT_CLASS (md_peer_skeleton_parent_class)->finalize (object);
}

static void
md_peer_skeleton_class_init (MdPeerSkeletonClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = md_peer_skeleton_finalize;
}

static gboolean
close_after_flush (gpointer user_data)
{
  GDBusConnection *dbus = user_data;

  g_dbus_connection_close (dbus, NULL, NULL, NULL);
  return G_SOURCE_REMOVE;
}

static void
on_flushed_close (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GDBusConnection *dbus = G_DBUS_CONNECTION (source);

  g_dbus_connection_flush_finish (dbus, result, NULL);
  close_after_flush (dbus);
}

static void
refuse_and_close (MdPeerSkeleton *self, GDBusMethodInvocation *invocation, MdError code,
                  const char *message)
{
  MdPeerConnection *conn = self->conn;

  if (conn->listener != NULL)
    md_peer_listener_refuse (conn->listener, conn->address, message);
  g_dbus_method_invocation_return_error_literal (invocation, MD_ERROR, code, message);
  /* Let the error reach the caller before the connection goes. */
  g_dbus_connection_flush (conn->dbus, NULL, on_flushed_close, NULL);
}

/* Arguments are checked (types, sizes, a{sv} contents) before any
 * handler runs; a peer that sends garbage gets InvalidArgument. */
static gboolean
checked_call (MdPeerSkeleton *self, GDBusMethodInvocation *invocation)
{
  GError *error = NULL;

  if (md_peer_check_call (g_dbus_method_invocation_get_method_name (invocation),
                          g_dbus_method_invocation_get_parameters (invocation), &error))
    return TRUE;
  g_prefix_error (&error, "host %s refuses the call: ", self->cfg->host_name);
  g_dbus_method_invocation_take_error (invocation, error);
  return FALSE;
}

static gboolean
skeleton_handle_hello (MdDbusPeer1 *object, GDBusMethodInvocation *invocation, guint version,
                       const char *host_uuid, const char *host_name, GVariant *info)
{
  MdPeerSkeleton *self = MD_PEER_SKELETON (object);
  MdPeerConnection *conn = self->conn;
  MdPeerListener *listener;
  g_autoptr (GVariantDict) peer_info = NULL;
  const char *no_caps[] = { NULL };

  if (conn == NULL || conn->closed)
    {
      g_dbus_method_invocation_return_error (invocation, MD_ERROR, MD_ERROR_INVALID_STATE,
                                             "the connection to host %s is closing",
                                             self->cfg->host_name);
      return TRUE;
    }
  listener = conn->listener;
  if (!checked_call (self, invocation))
    return TRUE;
  if (conn->refusal != NULL)
    {
      refuse_and_close (self, invocation, MD_ERROR_PEER_FAILED, conn->refusal);
      return TRUE;
    }
  if (conn->hello_done)
    {
      g_dbus_method_invocation_return_error (invocation, MD_ERROR, MD_ERROR_INVALID_STATE,
                                             "Hello was already called on this connection "
                                             "(host %s)",
                                             self->cfg->host_name);
      return TRUE;
    }
  if (version < MD_PEER_PROTOCOL_VERSION)
    {
      g_autofree char *msg = g_strdup_printf (
          "no common protocol version: host %s speaks up to version %u, host %s needs %u; "
          "upgrade migrationd on host %s",
          host_name, version, self->cfg->host_name, MD_PEER_PROTOCOL_VERSION, host_name);
      refuse_and_close (self, invocation, MD_ERROR_NOT_SUPPORTED, msg);
      return TRUE;
    }
  if (host_uuid[0] == '\0')
    {
      g_autofree char *msg =
          g_strdup_printf ("Hello from host %s without a host UUID; set one in its "
                           "migrationd.conf or /etc/machine-id",
                           host_name);
      refuse_and_close (self, invocation, MD_ERROR_INVALID_ARGUMENT, msg);
      return TRUE;
    }
  if (g_ascii_strcasecmp (host_uuid, self->cfg->host_uuid) == 0)
    {
      g_autofree char *msg = g_strdup_printf (
          "refusing to migrate to itself: host %s has this host's UUID %s", host_name, host_uuid);
      refuse_and_close (self, invocation, MD_ERROR_INVALID_ARGUMENT, msg);
      return TRUE;
    }

  md_peer_connection_set_identity (conn, MIN (version, MD_PEER_PROTOCOL_VERSION), host_uuid,
                                   host_name, info);
  g_clear_handle_id (&conn->hello_timeout_id, g_source_remove);

  peer_info = g_variant_dict_new (NULL);
  g_variant_dict_insert_value (peer_info, "capabilities", g_variant_new_strv (no_caps, 0));
  md_dbus_peer1_complete_hello (object, invocation, conn->version, self->cfg->host_uuid,
                                self->cfg->host_name, g_variant_dict_end (peer_info));

  g_message ("Peer %s connected: host %s (UUID %s, DN '%s')", conn->address, host_name, host_uuid,
             conn->dn);
  if (listener != NULL)
    {
      GList *link = g_list_find (listener->unhelloed, conn);

      if (link != NULL)
        {
          listener->unhelloed = g_list_delete_link (listener->unhelloed, link);
          listener->connections = g_list_prepend (listener->connections, conn);
        }
      g_signal_emit (listener, md_peer_listener_signals[MD_PEER_LISTENER_SIGNAL_NEW_CONNECTION], 0,
                     conn);
    }
  return TRUE;
}

/* Common gate for everything but Hello. Returns the listener to forward to,
 * or NULL when the invocation was answered. */
static MdPeerListener *
skeleton_gate (MdPeerSkeleton *self, GDBusMethodInvocation *invocation)
{
  MdPeerConnection *conn = self->conn;

  if (conn == NULL || conn->closed)
    {
      g_dbus_method_invocation_return_error (invocation, MD_ERROR, MD_ERROR_INVALID_STATE,
                                             "the connection to host %s is closing",
                                             self->cfg->host_name);
      return NULL;
    }
  if (!conn->hello_done)
    {
      g_dbus_method_invocation_return_error (
          invocation, MD_ERROR, MD_ERROR_INVALID_STATE,
          "%s before Hello on the connection to host %s: call Hello first",
          g_dbus_method_invocation_get_method_name (invocation), self->cfg->host_name);
      return NULL;
    }
  if (conn->listener == NULL)
    {
      g_dbus_method_invocation_return_error (invocation, MD_ERROR, MD_ERROR_INVALID_STATE,
                                             "host %s is shutting down its peer port",
                                             self->cfg->host_name);
      return NULL;
    }
  if (!checked_call (self, invocation))
    return NULL;
  return conn->listener;
}

static void
not_handled (MdPeerSkeleton *self, GDBusMethodInvocation *invocation)
{
  g_dbus_method_invocation_return_error (
      invocation, MD_ERROR, MD_ERROR_NOT_SUPPORTED,
      "%s is not supported by migrationd on host %s (no incoming migration handler)",
      g_dbus_method_invocation_get_method_name (invocation), self->cfg->host_name);
}

static gboolean
skeleton_handle_prepare (MdDbusPeer1 *object, GDBusMethodInvocation *invocation,
                         const char *migration_id, const char *xml, GVariant *options)
{
  MdPeerSkeleton *self = MD_PEER_SKELETON (object);
  MdPeerListener *listener = skeleton_gate (self, invocation);
  gboolean handled = FALSE;

  if (listener == NULL)
    return TRUE;
  g_signal_emit (listener, md_peer_listener_signals[MD_PEER_LISTENER_SIGNAL_HANDLE_PREPARE], 0,
                 self->conn, invocation, migration_id, xml, options, &handled);
  if (!handled)
    not_handled (self, invocation);
  return TRUE;
}

static gboolean
skeleton_handle_finish (MdDbusPeer1 *object, GDBusMethodInvocation *invocation,
                        const char *migration_id, gboolean success, GVariant *options)
{
  MdPeerSkeleton *self = MD_PEER_SKELETON (object);
  MdPeerListener *listener = skeleton_gate (self, invocation);
  gboolean handled = FALSE;

  if (listener == NULL)
    return TRUE;
  g_signal_emit (listener, md_peer_listener_signals[MD_PEER_LISTENER_SIGNAL_HANDLE_FINISH], 0,
                 self->conn, invocation, migration_id, success, options, &handled);
  if (!handled)
    not_handled (self, invocation);
  return TRUE;
}

static gboolean
skeleton_handle_abort (MdDbusPeer1 *object, GDBusMethodInvocation *invocation,
                       const char *migration_id, const char *reason)
{
  MdPeerSkeleton *self = MD_PEER_SKELETON (object);
  MdPeerListener *listener = skeleton_gate (self, invocation);
  gboolean handled = FALSE;

  if (listener == NULL)
    return TRUE;
  g_signal_emit (listener, md_peer_listener_signals[MD_PEER_LISTENER_SIGNAL_HANDLE_ABORT], 0,
                 self->conn, invocation, migration_id, reason, &handled);
  if (!handled)
    not_handled (self, invocation);
  return TRUE;
}

static gboolean
skeleton_handle_check_paths (MdDbusPeer1 *object, GDBusMethodInvocation *invocation,
                             const char *const *paths)
{
  MdPeerSkeleton *self = MD_PEER_SKELETON (object);
  MdPeerListener *listener = skeleton_gate (self, invocation);
  gboolean handled = FALSE;

  if (listener == NULL)
    return TRUE;
  g_signal_emit (listener, md_peer_listener_signals[MD_PEER_LISTENER_SIGNAL_HANDLE_CHECK_PATHS], 0,
                 self->conn, invocation, paths, &handled);
  if (!handled)
    not_handled (self, invocation);
  return TRUE;
}

static gboolean
skeleton_handle_resolve (MdDbusPeer1 *object, GDBusMethodInvocation *invocation,
                         const char *migration_id)
{
  MdPeerSkeleton *self = MD_PEER_SKELETON (object);
  MdPeerListener *listener = skeleton_gate (self, invocation);
  gboolean handled = FALSE;

  if (listener == NULL)
    return TRUE;
  g_signal_emit (listener, md_peer_listener_signals[MD_PEER_LISTENER_SIGNAL_HANDLE_RESOLVE], 0,
                 self->conn, invocation, migration_id, &handled);
  if (!handled)
    not_handled (self, invocation);
  return TRUE;
}

static gboolean
skeleton_handle_recover (MdDbusPeer1 *object, GDBusMethodInvocation *invocation,
                         const char *migration_id, GVariant *options)
{
  MdPeerSkeleton *self = MD_PEER_SKELETON (object);
  MdPeerListener *listener = skeleton_gate (self, invocation);
  gboolean handled = FALSE;

  if (listener == NULL)
    return TRUE;
  g_signal_emit (listener, md_peer_listener_signals[MD_PEER_LISTENER_SIGNAL_HANDLE_RECOVER], 0,
                 self->conn, invocation, migration_id, options, &handled);
  if (!handled)
    not_handled (self, invocation);
  return TRUE;
}

/* MemTotal and MemAvailable of /proc/meminfo, in bytes (0 when the file
 * cannot be read: the caller then places by the other peers' figures). A
 * small procfs read, as cheap as the stat calls the loop makes anyway. */
static void
read_meminfo (guint64 *total, guint64 *available)
{
  g_autofree char *text = NULL;
  g_auto (GStrv) lines = NULL;

  *total = *available = 0;
  if (!g_file_get_contents ("/proc/meminfo", &text, NULL, NULL))
    return;
  lines = g_strsplit (text, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++)
    {
      guint64 kib;

      if (sscanf (lines[i], "MemTotal: %" G_GUINT64_FORMAT " kB", &kib) == 1)
        *total = kib * 1024;
      else if (sscanf (lines[i], "MemAvailable: %" G_GUINT64_FORMAT " kB", &kib) == 1)
        *available = kib * 1024;
    }
}

static gboolean
skeleton_handle_host_info (MdDbusPeer1 *object, GDBusMethodInvocation *invocation)
{
  MdPeerSkeleton *self = MD_PEER_SKELETON (object);
  g_auto (GVariantBuilder) result = G_VARIANT_BUILDER_INIT (G_VARIANT_TYPE_VARDICT);
  guint64 total, available;

  if (skeleton_gate (self, invocation) == NULL)
    return TRUE;
  read_meminfo (&total, &available);
  g_variant_builder_add (&result, "{sv}", "memory-total", g_variant_new_uint64 (total));
  g_variant_builder_add (&result, "{sv}", "memory-available", g_variant_new_uint64 (available));
  md_dbus_peer1_complete_host_info (object, invocation, g_variant_builder_end (&result));
  return TRUE;
}

static void
md_peer_skeleton_iface_init (MdDbusPeer1Iface *iface)
{
  iface->handle_recover = skeleton_handle_recover;
  iface->handle_host_info = skeleton_handle_host_info;
  iface->handle_resolve = skeleton_handle_resolve;
  iface->handle_hello = skeleton_handle_hello;
  iface->handle_prepare = skeleton_handle_prepare;
  iface->handle_finish = skeleton_handle_finish;
  iface->handle_abort = skeleton_handle_abort;
  iface->handle_check_paths = skeleton_handle_check_paths;
}

GDBusInterfaceSkeleton *
md_peer_skeleton_new (MdPeerConnection *conn, MdPeerConfig *cfg)
{
  MdPeerSkeleton *skeleton = g_object_new (MD_TYPE_PEER_SKELETON, NULL);

  skeleton->conn = conn;
  skeleton->cfg = md_peer_config_ref (cfg);
  return G_DBUS_INTERFACE_SKELETON (skeleton);
}
