/* migrationd: the incoming side of a migration.
 *
 * Prepare starts QEMU with -incoming defer and tells the source where to
 * send; Finish resumes the guest here (success) or removes everything
 * Prepare made (failure); Abort is the failure half of Finish. Everything
 * Prepare makes belongs to the peer connection it came on: if that
 * connection drops before Finish, it is all removed (autokill). */
#include "config.h"

#include "md-migration-dest.h"
#include "md-migration-source.h"
#include "common/md-error.h"
#include "common/md-options.h"
#include "qemu/md-qemu-argv.h"
#include "storage/md-nbd-server.h"
#include "storage/md-storage.h"

#include <errno.h>

#define FINISH_WAIT_MS 60000
#define FINISH_POLL_MS 100

struct _MdMigrationDest
{
  MdManager *manager;
  MdPeerListener *listener;
  GHashTable *incoming; /* migration id -> Incoming */
  gulong handler_ids[4];
};

typedef struct
{
  MdMigrationDest *dest;
  char *id;
  MdPeerConnection *conn;
  gulong closed_id;
  MdGuest *guest;
  gboolean guest_created;
  gboolean dest_had_config;
  MdMigration *migration;
  GVariant *options;
  MdDomain *def;
  char *uri;
  char *address;        /* where QEMU and the NBD server listen */
  GVariant *disks_info; /* disks the source mirrors to us (aa{sv}) */
  GStrv created;        /* target images we made: removed on failure */
  guint16 nbd_port;
  guint exports_added;
  MdNbdServer *nbd_server; /* offline copies: qemu-storage-daemon */
  char *tls_object;
  gboolean offline;
  gboolean prepared;
  gboolean ended;
  GError *abort_error; /* set when Abort/Finish(false) came during Prepare */
  gulong stopped_id;   /* the prepared QEMU went away before Finish */
  GDBusMethodInvocation *prepare_invocation;
  GDBusMethodInvocation *finish_invocation;
  gint64 finish_deadline;
} Incoming;

static const char *
host_name (MdMigrationDest *dest)
{
  return md_manager_get_config (dest->manager)->host_name;
}

static void
incoming_free (Incoming *in)
{
  if (in->conn != NULL && in->closed_id != 0)
    g_signal_handler_disconnect (in->conn, in->closed_id);
  if (in->guest != NULL && in->stopped_id != 0)
    g_signal_handler_disconnect (in->guest, in->stopped_id);
  g_clear_object (&in->conn);
  g_clear_object (&in->guest);
  g_clear_object (&in->migration);
  g_clear_pointer (&in->options, g_variant_unref);
  g_clear_pointer (&in->def, md_domain_free);
  g_clear_error (&in->abort_error);
  g_free (in->uri);
  g_free (in->address);
  g_clear_pointer (&in->disks_info, g_variant_unref);
  g_strfreev (in->created);
  g_clear_pointer (&in->nbd_server, md_nbd_server_free);
  g_free (in->tls_object);
  g_free (in->id);
  g_free (in);
}

/* ---- failure: remove what Prepare made -------------------------------- */

static void
on_incoming_killed (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Incoming *in = user_data;
  g_autoptr (GError) error = NULL;

  if (!md_guest_destroy_finish (MD_GUEST (source), result, &error))
    g_warning ("incoming migration %s: killing the prepared QEMU: %s", in->id, error->message);
  /* Only now, with QEMU gone, nothing writes to them any more. */
  md_storage_remove ((const char *const *) in->created);
  g_hash_table_remove (in->dest->incoming, in->id);
}

/* Ends an incoming migration that failed: its Migration1 records @error,
 * the prepared QEMU is killed and a guest object made for it goes away
 * with it (it is transient); a definition that existed stays. */
static void
incoming_abort (Incoming *in, const GError *error)
{
  if (in->ended)
    return;
  in->ended = TRUE;
  g_message ("incoming migration %s of %s aborted: %s", in->id, in->def->name, error->message);
  g_clear_pointer (&in->nbd_server, md_nbd_server_free);
  if (in->migration != NULL)
    md_migration_complete (in->migration, error, 0);
  if (in->guest != NULL && md_guest_is_active (in->guest))
    {
      md_guest_destroy_async (in->guest, on_incoming_killed, in);
      return;
    }
  if (in->guest != NULL)
    md_guest_end_migration (in->guest, FALSE);
  md_storage_remove ((const char *const *) in->created);
  g_hash_table_remove (in->dest->incoming, in->id);
}

/* Tells the source at once, rather than letting it find out from a
 * broken stream (or never, if its QEMU waits on a dead NBD server). */
static void
notify_source_aborted (Incoming *in, const GError *error)
{
  g_autoptr (GError) converted = md_error_convert (error, MD_ERROR_FAILED);
  GDBusConnection *dbus = md_peer_connection_get_dbus (in->conn);

  if (md_peer_connection_is_closed (in->conn))
    return;
  g_dbus_connection_emit_signal (dbus, NULL, MD_PEER_OBJECT_PATH, "org.migrationd.Peer1", "Aborted",
                                 g_variant_new ("(sss)", in->id,
                                                md_error_code_to_dbus_name (converted->code),
                                                converted->message),
                                 NULL);
}

static void
on_incoming_qemu_stopped (MdGuest *guest, Incoming *in)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *tail = NULL;

  if (in->ended || in->finish_invocation != NULL || in->prepare_invocation != NULL)
    return;
  error = g_error_new (MD_ERROR, MD_ERROR_QEMU_FAILED,
                       "host %s: the destination QEMU of %s exited during the migration; "
                       "removed what Prepare made (see its log on host %s)",
                       host_name (in->dest), in->def->name, host_name (in->dest));
  notify_source_aborted (in, error);
  incoming_abort (in, error);
}

static void
on_connection_closed (MdPeerConnection *conn, Incoming *in)
{
  g_autoptr (GError) error = NULL;

  /* A Finish under way runs to its end: it resumes the guest here (the
   * source already gave it up) or aborts by itself. */
  if (in->ended || in->finish_invocation != NULL)
    return;
  error = g_error_new (MD_ERROR, MD_ERROR_PEER_FAILED,
                       "host %s: the connection to source host %s dropped before Finish; "
                       "removed what Prepare made (the guest stays on the source)",
                       host_name (in->dest), md_peer_connection_get_host_name (conn));
  if (in->prepare_invocation != NULL)
    {
      /* Prepare still runs: it notices abort_error when it completes. */
      if (in->abort_error == NULL)
        in->abort_error = g_error_copy (error);
      return;
    }
  incoming_abort (in, error);
}

/* ---- Prepare -------------------------------------------------------------- */

/* A Peer1 call of this migration failed in @phase: answer it with @error
 * (taken) and remove what Prepare made. */
static void
call_failed (Incoming *in, GDBusMethodInvocation **pending, const char *phase, GError *error)
{
  GDBusMethodInvocation *invocation = g_steal_pointer (pending);

  g_prefix_error (&error, "host %s, phase %s: ", host_name (in->dest), phase);
  md_error_return (invocation, g_error_copy (error));
  incoming_abort (in, error);
  g_error_free (error);
}

static void
prepare_failed (Incoming *in, GError *error)
{
  call_failed (in, &in->prepare_invocation, "prepare", error);
}

static void
prepare_succeeded (Incoming *in)
{
  GDBusMethodInvocation *invocation = g_steal_pointer (&in->prepare_invocation);
  GVariantBuilder result;

  if (in->abort_error != NULL)
    {
      g_autoptr (GError) error = g_steal_pointer (&in->abort_error);
      in->prepare_invocation = invocation;
      prepare_failed (in, g_error_copy (error));
      return;
    }
  in->prepared = TRUE;
  g_variant_builder_init (&result, G_VARIANT_TYPE_VARDICT);
  if (in->migration != NULL)
    {
      g_variant_builder_add (
          &result, "{sv}", "migration",
          g_variant_new_object_path (md_migration_get_object_path (in->migration)));
      md_migration_set_phase (in->migration, "perform");
      md_migration_set_running_state (in->migration, "running");
    }
  if (in->uri != NULL)
    g_variant_builder_add (&result, "{sv}", "migration-uri", g_variant_new_string (in->uri));
  if (in->nbd_port != 0)
    {
      g_autoptr (GPtrArray) fresh = g_ptr_array_new ();

      /* Images we just made read as zeros: the copier may skip zeros. */
      for (guint i = 0; in->created != NULL && in->created[i] != NULL; i++)
        for (guint d = 0; d < in->def->disks->len; d++)
          {
            const MdDomainDisk *disk = g_ptr_array_index (in->def->disks, d);
            if (g_strcmp0 (disk->source, in->created[i]) == 0)
              g_ptr_array_add (fresh, disk->target);
          }
      g_ptr_array_add (fresh, NULL);
      g_variant_builder_add (&result, "{sv}", "nbd-address", g_variant_new_string (in->address));
      g_variant_builder_add (&result, "{sv}", "nbd-port", g_variant_new_uint16 (in->nbd_port));
      g_variant_builder_add (&result, "{sv}", "fresh-targets",
                             g_variant_new_strv ((const char *const *) fresh->pdata, -1));
    }
  g_variant_builder_add (&result, "{sv}", "tls-hostname",
                         g_variant_new_string (host_name (in->dest)));
  md_dbus_peer1_complete_prepare (NULL, invocation, g_variant_builder_end (&result));
}

typedef void (*InStep) (Incoming *in, GError *error);

typedef struct
{
  Incoming *in;
  InStep next;
} InStepData;

static void
on_in_step (GObject *source, GAsyncResult *result, gpointer user_data)
{
  InStepData *data = user_data;
  GError *error = NULL;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, &error);

  data->next (data->in, error);
  g_free (data);
}

static void
in_qmp (Incoming *in, const char *command, JsonObject *args, InStep next)
{
  MdQmp *qmp = md_guest_get_qmp (in->guest);
  InStepData *data;

  if (qmp == NULL)
    {
      next (in, g_error_new (MD_ERROR, MD_ERROR_QEMU_FAILED, "the prepared QEMU of %s died",
                             in->def->name));
      if (args != NULL)
        json_object_unref (args);
      return;
    }
  data = g_new0 (InStepData, 1);
  data->in = in;
  data->next = next;
  md_qmp_execute_async (qmp, command, args, NULL, on_in_step, data);
  if (args != NULL)
    json_object_unref (args);
}

static gboolean pick_port (MdMigrationDest *dest, const char *address, guint16 wanted,
                           guint16 *port, GError **error);

static const MdDomainDisk *
disk_of (Incoming *in, GVariant *info)
{
  const char *target = NULL;

  g_variant_lookup (info, "target", "&s", &target);
  for (guint i = 0; target != NULL && i < in->def->disks->len; i++)
    {
      const MdDomainDisk *disk = g_ptr_array_index (in->def->disks, i);
      if (g_str_equal (disk->target, target))
        return disk;
    }
  return NULL;
}

static void after_exports (Incoming *in, GError *error);

static void
add_next_export (Incoming *in, GError *error)
{
  g_autoptr (GVariant) info = NULL;
  const MdDomainDisk *disk;
  g_autofree char *node = NULL;
  g_autofree char *id = NULL;
  JsonObject *args;

  if (error != NULL || in->exports_added == g_variant_n_children (in->disks_info))
    {
      after_exports (in, error);
      return;
    }
  info = g_variant_get_child_value (in->disks_info, in->exports_added++);
  disk = disk_of (in, info);
  if (disk == NULL)
    {
      after_exports (in, g_error_new (MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                                      "a disk to copy is not in the destination definition"));
      return;
    }
  node = md_qemu_disk_node_name (disk, TRUE);
  id = g_strdup_printf ("md-export-%s", disk->target);
  args = json_object_new ();
  json_object_set_string_member (args, "type", "nbd");
  json_object_set_string_member (args, "id", id);
  json_object_set_string_member (args, "node-name", node);
  json_object_set_string_member (args, "name", disk->target);
  json_object_set_boolean_member (args, "writable", TRUE);
  in_qmp (in, "block-export-add", args, add_next_export);
}

static void
after_nbd_server (Incoming *in, GError *error)
{
  if (error != NULL)
    {
      g_prefix_error (&error, "starting the NBD server on %s:%u: ", in->address, in->nbd_port);
      prepare_failed (in, error);
      return;
    }
  add_next_export (in, NULL);
}

/* Disks the source copies arrive over NBD: a server on our address (TLS
 * when the migration uses it), one writable export per disk, named by
 * its target. */
static void
start_nbd_server (Incoming *in)
{
  GError *error = NULL;
  g_autofree char *port = NULL;
  const char *wanted = md_options_get_string (in->options, "nbd-address");
  JsonObject *args, *addr, *data;

  if (wanted != NULL)
    {
      g_free (in->address);
      in->address = g_strdup (wanted);
    }
  if (!pick_port (in->dest, in->address, md_options_get_uint16 (in->options, "nbd-port", 0),
                  &in->nbd_port, &error))
    {
      g_prefix_error (&error, "option 'nbd-port': ");
      prepare_failed (in, error);
      return;
    }
  port = g_strdup_printf ("%u", in->nbd_port);
  data = json_object_new ();
  json_object_set_string_member (data, "host", in->address);
  json_object_set_string_member (data, "port", port);
  addr = json_object_new ();
  json_object_set_string_member (addr, "type", "inet");
  json_object_set_object_member (addr, "data", data);
  args = json_object_new ();
  json_object_set_object_member (args, "addr", addr);
  if (in->tls_object != NULL)
    json_object_set_string_member (args, "tls-creds", in->tls_object);
  in_qmp (in, "nbd-server-start", args, after_nbd_server);
}

static void
after_incoming_started (Incoming *in, GError *error)
{
  if (error != NULL)
    {
      prepare_failed (in, error);
      return;
    }
  if (in->disks_info != NULL && g_variant_n_children (in->disks_info) > 0)
    {
      start_nbd_server (in);
      return;
    }
  after_exports (in, NULL);
}

static void
after_exports (Incoming *in, GError *error)
{
  if (error != NULL)
    {
      prepare_failed (in, error);
      return;
    }
  g_message ("incoming migration %s: QEMU for %s listens on %s", in->id, in->def->name, in->uri);
  prepare_succeeded (in);
}

static void
after_parameters (Incoming *in, GError *error)
{
  JsonObject *args;

  if (error != NULL)
    {
      prepare_failed (in, error);
      return;
    }
  args = json_object_new ();
  json_object_set_string_member (args, "uri", in->uri);
  in_qmp (in, "migrate-incoming", args, after_incoming_started);
}

static void
after_capabilities (Incoming *in, GError *error)
{
  JsonObject *args;
  guint32 channels = md_options_get_uint32 (in->options, "parallel-connections", 0);
  const char *compression = md_options_get_string (in->options, "compression");

  if (error != NULL)
    {
      prepare_failed (in, error);
      return;
    }
  args = json_object_new ();
  json_object_set_string_member (args, "tls-creds", in->tls_object ? in->tls_object : "");
  if (channels > 0)
    json_object_set_int_member (args, "multifd-channels", channels);
  if (compression != NULL && channels > 0)
    json_object_set_string_member (args, "multifd-compression", compression);
  in_qmp (in, "migrate-set-parameters", args, after_parameters);
}

static void
after_tls_object (Incoming *in, GError *error)
{
  if (error != NULL)
    {
      prepare_failed (in, error);
      return;
    }
  in_qmp (in, "migrate-set-capabilities", md_migration_capabilities_args (in->options),
          after_capabilities);
}

static void
on_incoming_qemu_started (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Incoming *in = user_data;
  GError *error = NULL;
  JsonObject *args;

  if (!md_guest_start_finish (MD_GUEST (source), result, &error))
    {
      prepare_failed (in, error);
      return;
    }
  if (in->abort_error != NULL)
    {
      prepare_succeeded (in); /* reports the abort and cleans up */
      return;
    }
  md_guest_begin_migration (in->guest, md_migration_get_object_path (in->migration), TRUE);
  in->stopped_id =
      g_signal_connect (in->guest, "stopped", G_CALLBACK (on_incoming_qemu_stopped), in);
  if (!md_options_get_boolean (in->options, "tls", TRUE))
    {
      after_tls_object (in, NULL);
      return;
    }
  in->tls_object = g_strdup ("md-tls-incoming");
  args = json_object_new ();
  json_object_set_string_member (args, "qom-type", "tls-creds-x509");
  json_object_set_string_member (args, "id", in->tls_object);
  json_object_set_string_member (args, "dir", md_manager_get_config (in->dest->manager)->tls_dir);
  json_object_set_string_member (args, "endpoint", "server");
  json_object_set_boolean_member (args, "verify-peer", TRUE);
  in_qmp (in, "object-add", args, after_tls_object);
}

/* The address the source reached us on: QEMU listens there too, unless
 * the caller named another. */
static char *
local_address_of (MdPeerConnection *conn)
{
  GIOStream *stream = g_dbus_connection_get_stream (md_peer_connection_get_dbus (conn));
  g_autoptr (GIOStream) base = NULL;
  g_autoptr (GSocketAddress) address = NULL;

  if (G_IS_TLS_CONNECTION (stream))
    g_object_get (stream, "base-io-stream", &base, NULL);
  else
    base = g_object_ref (stream);
  if (!G_IS_SOCKET_CONNECTION (base))
    return NULL;
  address = g_socket_connection_get_local_address (G_SOCKET_CONNECTION (base), NULL);
  if (!G_IS_INET_SOCKET_ADDRESS (address))
    return NULL;
  return g_inet_address_to_string (
      g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (address)));
}

/* A port nobody listens on now. QEMU binds it a moment later; the range
 * is ours (configuration), so a race with another program is unlikely,
 * and QEMU's own error would name it. */
static gboolean
port_is_free (const char *address, guint16 port)
{
  g_autoptr (GSocket) socket = NULL;
  g_autoptr (GInetAddress) inet = g_inet_address_new_from_string (address);
  g_autoptr (GSocketAddress) sa = NULL;

  if (inet == NULL)
    return FALSE;
  socket = g_socket_new (g_inet_address_get_family (inet), G_SOCKET_TYPE_STREAM,
                         G_SOCKET_PROTOCOL_TCP, NULL);
  if (socket == NULL)
    return FALSE;
  sa = g_inet_socket_address_new (inet, port);
  return g_socket_bind (socket, sa, FALSE, NULL);
}

static gboolean
pick_port (MdMigrationDest *dest, const char *address, guint16 wanted, guint16 *port,
           GError **error)
{
  const MdConfig *config = md_manager_get_config (dest->manager);

  if (wanted != 0)
    {
      if (!port_is_free (address, wanted))
        {
          g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                       "option 'migration-port': %s:%u is in use on host %s; pick another or "
                       "leave it out",
                       address, wanted, config->host_name);
          return FALSE;
        }
      *port = wanted;
      return TRUE;
    }
  for (guint p = config->migration_port_min; p <= config->migration_port_max; p++)
    if (port_is_free (address, (guint16) p))
      {
        *port = (guint16) p;
        return TRUE;
      }
  g_set_error (error, MD_ERROR, MD_ERROR_FAILED,
               "host %s: no free port in [daemon] migration-port-min..max (%u-%u) on %s; "
               "widen the range or wait for running migrations",
               config->host_name, config->migration_port_min, config->migration_port_max, address);
  return FALSE;
}

static void
start_incoming_qemu (Incoming *in)
{
  MdManager *manager = in->dest->manager;
  MdGuest *existing = md_manager_find_guest (manager, in->def->name);

  if (existing != NULL)
    in->guest = g_object_ref (existing);
  else
    {
      /* Transient until Finish decides, per the persist table. */
      in->guest = md_guest_new (manager, md_domain_copy (in->def), FALSE);
      in->guest_created = TRUE;
      md_manager_add_guest (manager, in->guest);
    }
  md_dbus_migration1_set_guest (MD_DBUS_MIGRATION1 (in->migration),
                                md_guest_get_object_path (in->guest));
  md_guest_start_incoming_async (in->guest, md_domain_copy (in->def), NULL,
                                 on_incoming_qemu_started, in);
}

static void
on_offline_server_started (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Incoming *in = user_data;
  GError *error = NULL;

  in->nbd_server = md_nbd_server_start_finish (result, &error);
  if (in->nbd_server == NULL)
    {
      prepare_failed (in, error);
      return;
    }
  prepare_succeeded (in);
}

/* A shut-off guest's disks arrive through a qemu-storage-daemon serving
 * the new images writable over NBD (TLS when the migration uses it). */
static void
start_offline_server (Incoming *in)
{
  g_autoptr (GPtrArray) targets = g_ptr_array_new ();
  g_autoptr (GPtrArray) paths = g_ptr_array_new ();
  g_autoptr (GPtrArray) formats = g_ptr_array_new ();
  g_autofree char *id = g_strdup_printf (
      "incoming-%s", strrchr (md_migration_get_object_path (in->migration), '/') + 1);
  const char *wanted = md_options_get_string (in->options, "nbd-address");
  MdNbdServerOptions options = { 0 };
  GError *error = NULL;

  if (wanted != NULL)
    {
      g_free (in->address);
      in->address = g_strdup (wanted);
    }
  if (!pick_port (in->dest, in->address, md_options_get_uint16 (in->options, "nbd-port", 0),
                  &in->nbd_port, &error))
    {
      g_prefix_error (&error, "option 'nbd-port': ");
      prepare_failed (in, error);
      return;
    }
  for (gsize i = 0; i < g_variant_n_children (in->disks_info); i++)
    {
      g_autoptr (GVariant) info = g_variant_get_child_value (in->disks_info, i);
      const MdDomainDisk *disk = disk_of (in, info);
      if (disk == NULL)
        {
          prepare_failed (in, g_error_new (MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                                           "a disk to copy is not in the destination "
                                           "definition"));
          return;
        }
      g_ptr_array_add (targets, disk->target);
      g_ptr_array_add (paths, disk->source);
      g_ptr_array_add (formats, (gpointer) md_domain_disk_format_to_string (disk->format));
    }
  g_ptr_array_add (targets, NULL);
  g_ptr_array_add (paths, NULL);
  g_ptr_array_add (formats, NULL);
  options.runtime_dir = md_manager_get_config (in->dest->manager)->runtime_dir;
  options.id = id;
  options.targets = (const char *const *) targets->pdata;
  options.paths = (const char *const *) paths->pdata;
  options.formats = (const char *const *) formats->pdata;
  options.writable = TRUE;
  options.host = in->address;
  options.port = in->nbd_port;
  options.tls_dir = md_options_get_boolean (in->options, "tls", TRUE)
                        ? md_manager_get_config (in->dest->manager)->tls_dir
                        : NULL;
  md_nbd_server_start_async (&options, NULL, on_offline_server_started, in);
}

static void
on_targets_created (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Incoming *in = user_data;
  GError *error = NULL;

  in->created = md_storage_create_targets_finish (result, &error);
  if (in->created == NULL)
    {
      prepare_failed (in, error);
      return;
    }
  if (in->abort_error != NULL)
    {
      prepare_succeeded (in); /* reports the abort and cleans up */
      return;
    }
  if (in->offline)
    start_offline_server (in);
  else
    start_incoming_qemu (in);
}

static gboolean
on_handle_prepare (MdPeerListener *listener, MdPeerConnection *conn,
                   GDBusMethodInvocation *invocation, const char *id, const char *xml,
                   GVariant *options, MdMigrationDest *dest)
{
  MdManager *manager = dest->manager;
  g_autoptr (GError) error = NULL;
  g_autoptr (MdDomain) def = NULL;
  g_autofree char *address = NULL;
  MdGuest *by_name, *by_uuid;
  const char *source_host = md_options_get_string (options, "source-host");
  const char *wanted_address = md_options_get_string (options, "migration-address");
  g_autoptr (GVariant) disks_info = NULL;
  guint16 port = 0;
  Incoming *in;

  if (g_hash_table_contains (dest->incoming, id))
    {
      g_dbus_method_invocation_return_error (invocation, MD_ERROR, MD_ERROR_ALREADY_EXISTS,
                                             "host %s: migration %s is already prepared",
                                             host_name (dest), id);
      return TRUE;
    }
  /* Destination checks (machine, CPU model/features, bridges): one hook. */
  def = md_manager_prepare_definition_full (manager, xml, TRUE, &error);
  if (def == NULL)
    {
      g_prefix_error (&error, "host %s, phase prepare: the guest definition: ", host_name (dest));
      md_error_return (invocation, g_steal_pointer (&error));
      return TRUE;
    }
  by_name = md_manager_find_guest (manager, def->name);
  by_uuid = md_manager_find_guest (manager, def->uuid);
  if ((by_name != NULL && md_guest_is_active (by_name))
      || (by_uuid != NULL && md_guest_is_active (by_uuid)))
    {
      MdGuest *active = by_name != NULL && md_guest_is_active (by_name) ? by_name : by_uuid;
      g_dbus_method_invocation_return_error (
          invocation, MD_ERROR, MD_ERROR_ALREADY_EXISTS,
          "host %s, phase prepare: guest %s (%s) is already %s here; it cannot arrive twice",
          host_name (dest), md_guest_get_name (active), md_guest_get_uuid (active),
          md_guest_state_to_string (md_guest_get_state (active)));
      return TRUE;
    }
  if (by_name != by_uuid && by_name != NULL && by_uuid != NULL)
    {
      g_dbus_method_invocation_return_error (
          invocation, MD_ERROR, MD_ERROR_ALREADY_EXISTS,
          "host %s, phase prepare: name %s and UUID %s belong to two different guests here",
          host_name (dest), def->name, def->uuid);
      return TRUE;
    }
  if (by_name == NULL && by_uuid != NULL)
    {
      g_dbus_method_invocation_return_error (
          invocation, MD_ERROR, MD_ERROR_ALREADY_EXISTS,
          "host %s, phase prepare: UUID %s already belongs to guest %s here", host_name (dest),
          def->uuid, md_guest_get_name (by_uuid));
      return TRUE;
    }

  disks_info = g_variant_lookup_value (options, "disks-info", G_VARIANT_TYPE ("aa{sv}"));
  if (!md_storage_check_shared (def, disks_info, host_name (dest), &error))
    {
      g_prefix_error (&error, "host %s, phase prepare: ", host_name (dest));
      md_error_return (invocation, g_steal_pointer (&error));
      return TRUE;
    }

  in = g_new0 (Incoming, 1);
  in->dest = dest;
  in->id = g_strdup (id);
  in->disks_info = g_steal_pointer (&disks_info);
  in->conn = g_object_ref (conn);
  in->options = g_variant_ref (options);
  in->offline = md_options_get_boolean (options, "offline", FALSE);
  in->dest_had_config = by_name != NULL && md_guest_is_persistent (by_name);
  in->def = g_steal_pointer (&def);
  in->prepare_invocation = invocation;
  g_hash_table_insert (dest->incoming, in->id, in);
  in->closed_id = g_signal_connect (conn, "closed", G_CALLBACK (on_connection_closed), in);

  in->migration = md_migration_new (
      manager, md_manager_next_migration_number (manager), MD_MIGRATION_INCOMING,
      by_name != NULL ? md_guest_get_object_path (by_name) : "/", in->def->name,
      source_host != NULL ? source_host : md_peer_connection_get_host_name (conn), 0, options);
  md_migration_set_phase (in->migration, "prepare");
  md_manager_add_migration (manager, in->migration);

  if (in->offline && (in->disks_info == NULL || g_variant_n_children (in->disks_info) == 0))
    {
      prepare_succeeded (in);
      return TRUE;
    }

  address = wanted_address != NULL ? g_strdup (wanted_address) : local_address_of (conn);
  if (address == NULL
      || !pick_port (dest, address, md_options_get_uint16 (options, "migration-port", 0), &port,
                     &error))
    {
      if (error == NULL)
        error = g_error_new (MD_ERROR, MD_ERROR_FAILED,
                             "cannot tell which address to listen on; "
                             "give the migration-address option");
      prepare_failed (in, g_steal_pointer (&error));
      return TRUE;
    }
  in->uri = strchr (address, ':') != NULL ? g_strdup_printf ("tcp:[%s]:%u", address, port)
                                          : g_strdup_printf ("tcp:%s:%u", address, port);
  in->address = g_steal_pointer (&address);

  if (in->disks_info != NULL && g_variant_n_children (in->disks_info) > 0)
    {
      md_migration_set_phase (in->migration, "prepare");
      md_storage_create_targets_async (in->def, in->disks_info, host_name (dest), NULL,
                                       on_targets_created, in);
      return TRUE;
    }
  start_incoming_qemu (in);
  return TRUE;
}

/* ---- Finish ------------------------------------------------------------------ */

/* The persist/undefine-source table, destination half: a definition is
 * kept or created here if persist was asked, or if the source guest was
 * persistent and a definition existed here already; otherwise the guest
 * is transient here and a definition that existed is removed. */
static gboolean
apply_persist_table (Incoming *in, GError **error)
{
  MdManager *manager = in->dest->manager;
  gboolean persist =
      md_options_get_boolean (in->options, "persist-destination", FALSE) || in->offline;
  gboolean source_persistent = md_options_get_boolean (in->options, "source-persistent", FALSE);

  if (persist)
    {
      if (!md_manager_save_definition (manager, in->def, error))
        return FALSE;
      md_guest_set_definition (in->guest, md_domain_copy (in->def));
      md_guest_set_persistent (in->guest, TRUE);
    }
  else if (source_persistent && in->dest_had_config)
    md_guest_set_persistent (in->guest, TRUE);
  else
    {
      if (in->dest_had_config && !md_manager_delete_definition (manager, in->def->name, error))
        return FALSE;
      md_guest_set_persistent (in->guest, FALSE);
    }
  return TRUE;
}

static void
finish_reply (Incoming *in, gboolean running)
{
  GDBusMethodInvocation *invocation = g_steal_pointer (&in->finish_invocation);
  g_autoptr (GError) error = NULL;
  g_autofree char *xml = md_domain_format (in->def);
  GVariantBuilder result;

  if (!apply_persist_table (in, &error))
    md_migration_add_error_detail (in->migration, error);
  md_guest_end_migration (in->guest, running);
  g_clear_pointer (&in->created, g_strfreev); /* the guest's disks now */
  in->ended = TRUE;
  md_migration_complete (in->migration, NULL, 0);
  g_variant_builder_init (&result, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&result, "{sv}", "xml", g_variant_new_string (xml));
  g_variant_builder_add (&result, "{sv}", "persisted",
                         g_variant_new_boolean (md_guest_is_persistent (in->guest)));
  md_dbus_peer1_complete_finish (NULL, invocation, g_variant_builder_end (&result));
  g_message ("incoming migration %s: %s now runs on host %s", in->id, in->def->name,
             host_name (in->dest));
  g_hash_table_remove (in->dest->incoming, in->id);
}

static void
finish_failed (Incoming *in, GError *error)
{
  call_failed (in, &in->finish_invocation, "finish", error);
}

static void
after_cont (Incoming *in, GError *error)
{
  if (error != NULL)
    {
      finish_failed (in, error);
      return;
    }
  finish_reply (in, TRUE);
}

static void finish_wait (Incoming *in);

static void
resume_or_stay_paused (Incoming *in, GError *error)
{
  if (error != NULL)
    {
      /* The source already dropped its NBD client; a failure to stop our
       * server is a leak to report, not a reason to lose the guest. */
      g_warning ("incoming migration %s: stopping the NBD server: %s", in->id, error->message);
      g_error_free (error);
    }
  if (md_options_get_boolean (in->options, "paused-on-destination", FALSE))
    finish_reply (in, FALSE);
  else
    in_qmp (in, "cont", NULL, after_cont);
}

static void
on_export_deleted (Incoming *in, GError *error)
{
  if (error != NULL)
    {
      g_warning ("incoming migration %s: removing an NBD export: %s", in->id, error->message);
      g_error_free (error);
    }
  if (--in->exports_added == 0)
    in_qmp (in, "nbd-server-stop", NULL, resume_or_stay_paused);
}

/* The disks arrived (the source has cancelled its mirrors and dropped
 * its NBD nodes): the exports and the server go before the guest runs. */
static void
stop_exports (Incoming *in)
{
  guint n = in->exports_added;

  if (n == 0)
    {
      resume_or_stay_paused (in, NULL);
      return;
    }
  for (guint i = 0; i < n; i++)
    {
      g_autoptr (GVariant) info = g_variant_get_child_value (in->disks_info, i);
      const char *target = NULL;
      g_autofree char *id = NULL;
      JsonObject *args = json_object_new ();

      g_variant_lookup (info, "target", "&s", &target);
      id = g_strdup_printf ("md-export-%s", target);
      json_object_set_string_member (args, "id", id);
      in_qmp (in, "block-export-del", args, on_export_deleted);
    }
}

static void
on_dest_query_migrate (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Incoming *in = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, &error);
  const char *status;

  if (node == NULL)
    {
      finish_failed (in, g_steal_pointer (&error));
      return;
    }
  status = json_object_get_string_member_with_default (json_node_get_object (node), "status", "");
  if (g_str_equal (status, "completed") || g_str_equal (status, "postcopy-active"))
    {
      stop_exports (in);
      return;
    }
  if (g_str_equal (status, "failed") || g_str_equal (status, "cancelled")
      || g_get_monotonic_time () > in->finish_deadline)
    {
      finish_failed (in, g_error_new (MD_ERROR, MD_ERROR_QEMU_FAILED,
                                      "the incoming QEMU of %s did not complete the migration "
                                      "(status '%s')",
                                      in->def->name, status));
      return;
    }
  g_timeout_add_once (FINISH_POLL_MS, (GSourceOnceFunc) finish_wait, in);
}

static void
finish_wait (Incoming *in)
{
  MdQmp *qmp = md_guest_get_qmp (in->guest);

  if (qmp == NULL)
    {
      finish_failed (in, g_error_new (MD_ERROR, MD_ERROR_QEMU_FAILED,
                                      "the incoming QEMU of %s died", in->def->name));
      return;
    }
  md_qmp_execute_async (qmp, "query-migrate", NULL, NULL, on_dest_query_migrate, in);
}

static void
finish_offline (Incoming *in)
{
  g_autoptr (GError) error = NULL;

  if (in->guest == NULL)
    {
      MdGuest *existing = md_manager_find_guest (in->dest->manager, in->def->name);
      if (existing != NULL)
        in->guest = g_object_ref (existing);
      else
        {
          in->guest = md_guest_new (in->dest->manager, md_domain_copy (in->def), TRUE);
          in->guest_created = TRUE;
          md_manager_add_guest (in->dest->manager, in->guest);
        }
    }
  finish_reply (in, FALSE);
}

static void
on_offline_server_stopped (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Incoming *in = user_data;
  GError *error = NULL;

  /* A clean exit flushed the images; anything else and they are suspect. */
  if (!md_nbd_server_stop_finish (result, &error))
    {
      finish_failed (in, error);
      return;
    }
  finish_offline (in);
}

static gboolean
on_handle_finish (MdPeerListener *listener, MdPeerConnection *conn,
                  GDBusMethodInvocation *invocation, const char *id, gboolean success,
                  GVariant *options, MdMigrationDest *dest)
{
  Incoming *in = g_hash_table_lookup (dest->incoming, id);

  if ((in == NULL || in->ended) && !success)
    {
      /* Already gone (we aborted it ourselves): the cleanup is done. */
      md_dbus_peer1_complete_finish (NULL, invocation, g_variant_new ("a{sv}", NULL));
      return TRUE;
    }
  if (in == NULL || in->ended)
    {
      g_dbus_method_invocation_return_error (invocation, MD_ERROR, MD_ERROR_NOT_FOUND,
                                             "host %s: no migration %s is prepared here",
                                             host_name (dest), id);
      return TRUE;
    }
  if (!success)
    {
      const char *name = md_options_get_string (options, "error-name");
      const char *message = md_options_get_string (options, "error-message");
      g_autoptr (GError) error = g_error_new (
          MD_ERROR, MD_ERROR_FAILED, "the source host reported: %s%s%s",
          message != NULL ? message : "failure", name != NULL ? " " : "", name != NULL ? name : "");
      GError *remote = NULL;

      if (name != NULL)
        {
          /* Keep the source's error name on this host's Migration1 too. */
          remote = g_dbus_error_new_for_dbus_error (name, message != NULL ? message : "");
          g_clear_error (&error);
          error = md_error_convert (remote, MD_ERROR_FAILED);
          g_error_free (remote);
        }
      md_dbus_peer1_complete_finish (NULL, invocation, g_variant_new ("a{sv}", NULL));
      if (in->prepare_invocation != NULL)
        {
          if (in->abort_error == NULL)
            in->abort_error = g_error_copy (error);
        }
      else
        incoming_abort (in, error);
      return TRUE;
    }
  if (!in->prepared || in->finish_invocation != NULL)
    {
      g_dbus_method_invocation_return_error (invocation, MD_ERROR, MD_ERROR_INVALID_STATE,
                                             "host %s: migration %s is not ready to finish",
                                             host_name (dest), id);
      return TRUE;
    }
  in->finish_invocation = invocation;
  md_migration_set_phase (in->migration, "finish");
  if (in->offline && in->nbd_server != NULL)
    {
      md_nbd_server_stop_async (g_steal_pointer (&in->nbd_server), on_offline_server_stopped, in);
      return TRUE;
    }
  if (in->offline)
    {
      finish_offline (in);
      return TRUE;
    }
  in->finish_deadline = g_get_monotonic_time () + FINISH_WAIT_MS * 1000;
  finish_wait (in);
  return TRUE;
}

static gboolean
on_handle_abort (MdPeerListener *listener, MdPeerConnection *conn,
                 GDBusMethodInvocation *invocation, const char *id, const char *reason,
                 MdMigrationDest *dest)
{
  Incoming *in = g_hash_table_lookup (dest->incoming, id);
  g_autoptr (GError) error = NULL;

  md_dbus_peer1_complete_abort (NULL, invocation);
  if (in == NULL || in->ended)
    return TRUE; /* idempotent */
  error = g_error_new (MD_ERROR, MD_ERROR_CANCELLED, "aborted by the source host: %s", reason);
  if (in->prepare_invocation != NULL)
    {
      if (in->abort_error == NULL)
        in->abort_error = g_steal_pointer (&error);
    }
  else
    incoming_abort (in, error);
  return TRUE;
}

static gboolean
on_handle_check_paths (MdPeerListener *listener, MdPeerConnection *conn,
                       GDBusMethodInvocation *invocation, const char *const *paths,
                       MdMigrationDest *dest)
{
  GVariantBuilder builder;

  g_variant_builder_init (&builder, G_VARIANT_TYPE ("a{sb}"));
  for (guint i = 0; paths != NULL && paths[i] != NULL; i++)
    g_variant_builder_add (&builder, "{sb}", paths[i], g_file_test (paths[i], G_FILE_TEST_EXISTS));
  md_dbus_peer1_complete_check_paths (NULL, invocation, g_variant_builder_end (&builder));
  return TRUE;
}

MdMigrationDest *
md_migration_dest_new (MdManager *manager, MdPeerListener *listener)
{
  MdMigrationDest *dest = g_new0 (MdMigrationDest, 1);

  dest->manager = manager;
  dest->listener = listener;
  dest->incoming =
      g_hash_table_new_full (g_str_hash, g_str_equal, NULL, (GDestroyNotify) incoming_free);
  dest->handler_ids[0] =
      g_signal_connect (listener, "handle-prepare", G_CALLBACK (on_handle_prepare), dest);
  dest->handler_ids[1] =
      g_signal_connect (listener, "handle-finish", G_CALLBACK (on_handle_finish), dest);
  dest->handler_ids[2] =
      g_signal_connect (listener, "handle-abort", G_CALLBACK (on_handle_abort), dest);
  dest->handler_ids[3] =
      g_signal_connect (listener, "handle-check-paths", G_CALLBACK (on_handle_check_paths), dest);
  return dest;
}

void
md_migration_dest_free (MdMigrationDest *dest)
{
  if (dest == NULL)
    return;
  for (guint i = 0; i < G_N_ELEMENTS (dest->handler_ids); i++)
    g_clear_signal_handler (&dest->handler_ids[i], dest->listener);
  g_hash_table_unref (dest->incoming);
  g_free (dest);
}
