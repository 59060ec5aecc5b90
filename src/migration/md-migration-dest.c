/* migrationd: the incoming side of a migration.
 *
 * Prepare starts QEMU with -incoming defer and tells the source where to
 * send; Finish resumes the guest here (success) or removes everything
 * Prepare made (failure); Abort is the failure half of Finish. Everything
 * Prepare makes belongs to the peer connection it came on: if that
 * connection drops before Finish, it is all removed (autokill). */
#include "config.h"

#include "md-migration-dest-private.h"
#include "md-address.h"
#include "md-migration-qemu.h"
#include "md-migration-source.h"
#include "common/md-error.h"
#include "common/md-fault.h"
#include "common/md-listen-socket.h"
#include "common/md-options.h"
#include "md-incoming-owner.h"
#include "qemu/md-qemu-argv.h"
#include "qemu/md-qemu-files.h"
#include "storage/md-nbd-server.h"
#include "storage/md-image-admission.h"
#include "storage/md-storage.h"

#include <errno.h>
#include <string.h>

gboolean
incoming_tunnelled (Incoming *in)
{
  return in->opts->transport == MD_MIGRATE_TRANSPORT_TUNNEL;
}

/* ---- who may act on a migration ------------------------------------------ */

char *
incoming_key (MdPeerConnection *conn, const char *id)
{
  const char *dn = md_peer_connection_get_dn (conn);
  g_autofree char *normalized = md_peer_normalize_dn (dn != NULL ? dn : "");

  return g_strdup_printf ("%s\n%s", normalized, id);
}

/* A reconnect that proved itself with the token takes over: autokill and
 * the Aborted signal follow the new connection. */
static void
incoming_rebind (Incoming *in, MdPeerConnection *conn)
{
  g_message ("incoming migration %s: peer %s resumed control on a new connection", in->id,
             md_peer_connection_get_address (conn));
  g_clear_signal_handler (&in->closed_id, in->conn);
  g_set_object (&in->conn, conn);
  in->closed_id = g_signal_connect (conn, "closed", G_CALLBACK (incoming_on_connection_closed), in);
}

/* The incoming migration @id for a @method call on @conn, carrying
 * @token (or NULL). NULL with @error unset: there is none. NULL with
 * @error set: it belongs to another peer identity, or the call comes on
 * another connection without the right token. */
Incoming *
incoming_for_call (MdMigrationDest *dest, MdPeerConnection *conn, const char *id, const char *token,
                   const char *method, GError **error)
{
  g_autofree char *key = incoming_key (conn, id);
  Incoming *in = g_hash_table_lookup (dest->incoming, key);
  const char *dn = md_peer_connection_get_dn (conn);

  if (in == NULL)
    {
      GHashTableIter iter;
      Incoming *other;

      g_hash_table_iter_init (&iter, dest->incoming);
      while (g_hash_table_iter_next (&iter, NULL, (gpointer *) &other))
        if (g_str_equal (other->id, id)
            && !md_incoming_owner_check (other->owner, dn, FALSE, NULL, host_name (dest), method,
                                         id, error))
          {
            g_message ("refused %s of incoming migration %s from %s: %s", method, id,
                       md_peer_connection_get_address (conn), (*error)->message);
            return NULL;
          }
      return NULL;
    }
  if (!md_incoming_owner_check (in->owner, dn, conn == in->conn, token, host_name (dest), method,
                                id, error))
    {
      g_message ("refused %s of incoming migration %s from %s: %s", method, id,
                 md_peer_connection_get_address (conn), (*error)->message);
      return NULL;
    }
  if (conn != in->conn)
    incoming_rebind (in, conn);
  return in;
}

/* ---- Prepare -------------------------------------------------------------- */

/* A Peer1 call of this migration failed in @phase: answer it with @error
 * (taken) and remove what Prepare made. */
void
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

static void answer_prepare (gpointer data);

/* Prepare is answered only with the journal on disk: from the answer on,
 * the source may send, and a restarted daemon must find what was made. */
static void
prepare_succeeded (Incoming *in)
{
  md_machine_when_written (in->machine, answer_prepare, incoming_ref (in),
                           (GDestroyNotify) incoming_unref);
}

static void
answer_prepare (gpointer data)
{
  Incoming *in = data;
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
      md_machine_advance (in->machine, MD_PHASE_PERFORM);
      md_migration_set_running_state (in->migration, "running");
    }
  if (in->uri != NULL)
    g_variant_builder_add (&result, "{sv}", "migration-uri", g_variant_new_string (in->uri));
  if (in->tunnel != NULL)
    md_tunnel_in_describe (in->tunnel, &result);
  if (in->nbd_port != 0 || (in->tunnel != NULL && in->nbd_socket_given))
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
      if (in->nbd_port != 0)
        {
          g_variant_builder_add (&result, "{sv}", "nbd-address",
                                 g_variant_new_string (in->address));
          g_variant_builder_add (&result, "{sv}", "nbd-port", g_variant_new_uint16 (in->nbd_port));
        }
      g_variant_builder_add (&result, "{sv}", "fresh-targets",
                             g_variant_new_strv ((const char *const *) fresh->pdata, -1));
    }
  g_variant_builder_add (&result, "{sv}", "tls-hostname",
                         g_variant_new_string (host_name (in->dest)));
  g_variant_builder_add (&result, "{sv}", "token",
                         g_variant_new_string (md_incoming_owner_get_token (in->owner)));
  md_migration_mark_time (in->migration, "prepared");
  md_fault_point ("dest-prepare-done");
  md_dbus_peer1_complete_prepare (NULL, invocation, g_variant_builder_end (&result));
}

typedef struct
{
  Incoming *in;
  InStep next;
} InStepData;

static gpointer
step_ref (gpointer data)
{
  return data;
}

static void
step_free (gpointer data)
{
  InStepData *step = data;

  incoming_unref (step->in);
  g_free (step);
}

static void
on_in_step (gpointer owner, GError *error)
{
  InStepData *step = owner;

  step->next (step->in, error);
}

/* The shared step runner (md-migration-qemu.h), holding a reference;
 * @fd >= 0 travels with the command (getfd): QEMU gets its own copy. */
static void
in_qmp_fd (Incoming *in, const char *command, JsonObject *args, int fd, InStep next)
{
  InStepData *step = g_new0 (InStepData, 1);
  g_autofree char *gone = g_strdup_printf ("host %s: the prepared QEMU of %s died",
                                           host_name (in->dest), in->def->name);

  step->in = incoming_ref (in);
  step->next = next;
  md_migration_qemu_step_fd (in->guest != NULL ? md_guest_get_qmp (in->guest) : NULL, command, args,
                             fd, step, step_ref, step_free, on_in_step, gone);
}

void
in_qmp (Incoming *in, const char *command, JsonObject *args, InStep next)
{
  in_qmp_fd (in, command, args, -1, next);
}

/* Hands QEMU our listening @socket under @fdname. */
void
in_qmp_getfd (Incoming *in, GSocket *socket, const char *fdname, InStep next)
{
  JsonObject *args = json_object_new ();

  json_object_set_string_member (args, "fdname", fdname);
  in_qmp_fd (in, "getfd", args, g_socket_get_fd (socket), next);
}

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
      if (in->tunnel != NULL)
        g_prefix_error (&error, "starting the NBD server for the tunnel: ");
      else
        g_prefix_error (&error, "starting the NBD server on %s:%u: ", in->address, in->nbd_port);
      prepare_failed (in, error);
      return;
    }
  g_clear_object (&in->nbd_socket); /* QEMU listens on its copy */
  add_next_export (in, NULL);
}

static void
after_nbd_getfd (Incoming *in, GError *error)
{
  JsonObject *args, *addr, *data;

  if (error != NULL)
    {
      after_nbd_server (in, error);
      return;
    }
  data = json_object_new ();
  json_object_set_string_member (data, "str", NBD_FDNAME);
  addr = json_object_new ();
  json_object_set_string_member (addr, "type", "fd");
  json_object_set_object_member (addr, "data", data);
  args = json_object_new ();
  json_object_set_object_member (args, "addr", addr);
  if (in->tls_object != NULL)
    json_object_set_string_member (args, "tls-creds", in->tls_object);
  in_qmp (in, "nbd-server-start", args, after_nbd_server);
}

/* The NBD server's address: the nbd-address option or ours; its socket
 * is bound here and handed to QEMU or qemu-storage-daemon. */
static gboolean
bind_nbd_socket (Incoming *in, GError **error)
{
  const char *wanted = in->opts->nbd_address;

  if (in->tunnel != NULL)
    return incoming_tunnel_nbd_socket (in, error);
  if (wanted != NULL)
    {
      g_free (in->address);
      in->address = g_strdup (wanted);
    }
  in->nbd_socket = bind_listener (in->dest, in->address, in->opts->nbd_port, "nbd-port", error);
  if (in->nbd_socket == NULL)
    return FALSE;
  in->nbd_port = md_listen_socket_get_port (in->nbd_socket);
  return TRUE;
}

/* Disks the source copies arrive over NBD: a server on our address (TLS
 * when the migration uses it), one writable export per disk, named by
 * its target. */
static void
start_nbd_server (Incoming *in)
{
  GError *error = NULL;

  if (!bind_nbd_socket (in, &error))
    {
      prepare_failed (in, error);
      return;
    }
  in_qmp_getfd (in, in->nbd_socket, NBD_FDNAME, after_nbd_getfd);
}

static void
after_incoming_started (Incoming *in, GError *error)
{
  if (error != NULL)
    {
      prepare_failed (in, error);
      return;
    }
  g_clear_object (&in->migration_socket); /* QEMU listens on its copy */
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
  g_message ("incoming migration %s: QEMU for %s listens on %s", in->id, in->def->name,
             in->uri != NULL ? in->uri : "the tunnel (peer port)");
  prepare_succeeded (in);
}

/* One answer of the set-up batch: the first error wins; once every
 * command answered, Prepare goes on or fails. */
static void
after_setup_step (Incoming *in, GError *error)
{
  if (error != NULL && in->setup_error == NULL)
    in->setup_error = error;
  else if (error != NULL)
    g_error_free (error);
  if (--in->setup_pending > 0)
    return;
  if (in->setup_error != NULL)
    {
      prepare_failed (in, g_steal_pointer (&in->setup_error));
      return;
    }
  after_incoming_started (in, NULL);
}

/* QEMU's side of the migration, sent in one go rather than one round
 * trip each: the TLS object, capabilities, parameters, our listening
 * socket (getfd) and migrate-incoming on it. QMP runs them in order; if
 * one fails, Prepare fails and the QEMU goes (it listens only on a
 * socket no source was told about). */
static GPid
incoming_qemu_pid (Incoming *in)
{
  MdQemuProcess *proc = in->guest != NULL ? md_guest_get_process (in->guest) : NULL;

  return proc != NULL ? md_qemu_process_get_pid (proc) : 0;
}

static void
after_tls_object_step (Incoming *in, GError *error)
{
  md_qemu_revoke_tls_dir (incoming_qemu_pid (in), in->tls_object);
  after_setup_step (in, error);
}

static void
after_capabilities_step (Incoming *in, GError *error)
{
  /* QEMU runs unprivileged: the kernel gives it no userfaultfd. */
  if (error != NULL && in->opts->postcopy
      && strstr (error->message, "ostcopy is not supported") != NULL)
    g_prefix_error (&error, "postcopy needs the destination's unprivileged QEMU to create a "
                            "userfaultfd: set the sysctl vm.unprivileged_userfaultfd=1 on "
                            "this host (sysctl.d/60-migrationd-postcopy.conf) or migrate "
                            "without postcopy; ");
  after_setup_step (in, error);
}

/* QEMU's side of the migration, sent in one go rather than one round
 * trip each: the TLS object, capabilities, parameters, our listening
 * socket (getfd) and migrate-incoming on it. QMP runs them in order; if
 * one fails, Prepare fails and the QEMU goes (it listens only on a
 * socket no source was told about). */
static void
set_up_incoming (gpointer data)
{
  Incoming *in = data;
  g_autofree char *granted = NULL;
  GError *error = NULL;
  JsonObject *args;

  if (in->ended)
    return;
  if (in->tls_object != NULL)
    {
      /* A confined QEMU reads a copy in its private /tmp, removed again
       * once the object exists. */
      granted =
          md_qemu_grant_tls_dir (incoming_qemu_pid (in), in->tls_object,
                                 md_manager_get_config (in->dest->manager)->tls_dir, TRUE, &error);
      if (granted == NULL)
        {
          prepare_failed (in, error);
          return;
        }
    }
  in->setup_pending = in->tls_object != NULL ? 5 : 4;
  if (in->tls_object != NULL)
    in_qmp (in, "object-add", md_migration_qemu_tls_object (in->tls_object, granted, TRUE),
            after_tls_object_step);
  in_qmp (in, "migrate-set-capabilities", md_migration_qemu_capabilities (in->opts),
          after_capabilities_step);
  in_qmp (in, "migrate-set-parameters",
          md_migration_qemu_parameters (in->opts, FALSE, in->tls_object, NULL), after_setup_step);
  in_qmp_getfd (in, in->migration_socket, MIGRATION_FDNAME, after_setup_step);
  /* A "tcp:" URI whose address is an fd: QEMU listens on (and accepts
   * multifd channels from) the socket we bound. */
  args = json_object_new ();
  json_object_set_string_member (args, "uri", "tcp:fd:" MIGRATION_FDNAME);
  in_qmp (in, "migrate-incoming", args, after_setup_step);
}

/* QEMU says its incoming migration moved on: postcopy means this copy
 * now holds part of the guest, and nothing may kill it alone. */
static void
on_incoming_migration_event (MdQmp *qmp, const char *name, JsonObject *data, gint64 timestamp,
                             Incoming *in)
{
  const char *status = json_object_get_string_member_with_default (data, "status", "");

  if (in->ended || in->machine == NULL)
    return;
  if (g_str_equal (status, "postcopy-active"))
    {
      if (md_machine_get_phase (in->machine) == MD_PHASE_PERFORM)
        md_machine_advance (in->machine, MD_PHASE_POSTCOPY);
      if (md_machine_get_authority (in->machine) == MD_AUTHORITY_SOURCE)
        md_machine_set_authority (in->machine, MD_AUTHORITY_SPLIT);
      md_migration_set_running_state (in->migration, "postcopy");
    }
}

static void
on_incoming_qemu_started (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (IncomingRef) in = user_data;
  GError *error = NULL;

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
  md_migration_mark_time (in->migration, "qemu-ready");
  in->stopped_id =
      g_signal_connect (in->guest, "stopped", G_CALLBACK (incoming_on_qemu_stopped), in);
  in->event_qmp = g_object_ref (md_guest_get_qmp (in->guest));
  in->event_id = g_signal_connect (in->event_qmp, "event::MIGRATION",
                                   G_CALLBACK (on_incoming_migration_event), in);
  /* The TLS object is in the journal on disk before it exists in QEMU
   * (journaled at Prepare's start: this does not wait). */
  if (in->tls_object != NULL)
    md_machine_when_written (in->machine, set_up_incoming, incoming_ref (in),
                             (GDestroyNotify) incoming_unref);
  else
    set_up_incoming (in);
}

/* The address the source reached us on: QEMU listens there too, unless
 * the caller named another. */
char *
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

/* A listening socket of our own for QEMU's migration stream or NBD
 * server (@what names the option that can choose the port): QEMU gets
 * this very socket, so no other migration can take the port meanwhile. */
GSocket *
bind_listener (MdMigrationDest *dest, const char *address, guint16 wanted, const char *what,
               GError **error)
{
  const MdConfig *config = md_manager_get_config (dest->manager);
  g_autoptr (GError) local_error = NULL;
  GSocket *socket = md_listen_socket_bind (address, wanted, config->migration_port_min,
                                           config->migration_port_max, &local_error);

  if (socket != NULL)
    return socket;
  if (wanted != 0 && g_error_matches (local_error, G_IO_ERROR, G_IO_ERROR_ADDRESS_IN_USE))
    g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                 "option '%s': %s:%u is in use on host %s; pick another or leave it out", what,
                 address, wanted, config->host_name);
  else if (g_error_matches (local_error, G_IO_ERROR, G_IO_ERROR_ADDRESS_IN_USE))
    g_set_error (error, MD_ERROR, MD_ERROR_FAILED,
                 "host %s: no free port in [daemon] migration-port-min..max (%u-%u) on %s; "
                 "widen the range or wait for running migrations",
                 config->host_name, config->migration_port_min, config->migration_port_max,
                 address);
  else
    g_set_error (error, MD_ERROR, MD_ERROR_FAILED, "host %s: cannot listen on %s for %s: %s",
                 config->host_name, address, what, local_error->message);
  return NULL;
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
      in->guest = md_guest_new (md_manager_get_host (manager), md_domain_copy (in->def), FALSE);
      in->guest_created = TRUE;
      md_manager_add_guest (manager, in->guest);
    }
  md_dbus_migration1_set_guest (MD_DBUS_MIGRATION1 (in->migration),
                                md_guest_get_object_path (in->guest));
  md_migration_mark_time (in->migration, "qemu-starting");
  incoming_push_undo_qemu (in);
  md_guest_start_incoming_async (in->guest, incoming_live_definition (in), NULL,
                                 on_incoming_qemu_started, incoming_ref (in));
  /* The QEMU is spawned by now: its pid goes to disk while it starts up,
   * so answering Prepare does not wait for the write. */
  if (md_guest_get_process (in->guest) != NULL)
    {
      md_journal_set_int (md_machine_get_journal (in->machine), "qemu-pid",
                          md_qemu_process_get_pid (md_guest_get_process (in->guest)));
      md_machine_commit (in->machine);
    }
}

static void
on_offline_server_started (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (IncomingRef) in = user_data;
  GError *error = NULL;

  in->nbd_server = md_nbd_server_start_finish (result, &error);
  g_clear_object (&in->nbd_socket); /* qemu-storage-daemon has its copy */
  if (in->nbd_server == NULL)
    {
      prepare_failed (in, error);
      return;
    }
  prepare_succeeded (in);
}

/* A shut-off guest's disks arrive through a qemu-storage-daemon serving
 * the new images writable over NBD: on a port (TLS when the migration
 * uses it) or, with transport=tunnel, on the tunnel's private unix socket
 * that the source's data streams reach through the peer port. */
static void
start_offline_server (Incoming *in)
{
  g_autoptr (GPtrArray) targets = g_ptr_array_new ();
  g_autoptr (GPtrArray) paths = g_ptr_array_new ();
  g_autoptr (GPtrArray) formats = g_ptr_array_new ();
  g_autofree char *id = g_strdup_printf (
      "incoming-%s", strrchr (md_migration_get_object_path (in->migration), '/') + 1);
  MdNbdServerOptions options = { 0 };
  GError *error = NULL;

  if (!bind_nbd_socket (in, &error))
    {
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
  /* Through the tunnel: a unix socket only we reach, no TLS (the data
   * streams encrypt). */
  options.listen_socket = in->nbd_socket;
  options.tls_dir = in->opts->tls && in->tunnel == NULL
                        ? md_manager_get_config (in->dest->manager)->tls_dir
                        : NULL;
  incoming_push_undo_nbd_server (in);
  md_nbd_server_start_async (&options, NULL, on_offline_server_started, incoming_ref (in));
}

static void
on_targets_created (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (IncomingRef) in = user_data;
  GError *error = NULL;

  in->created = md_image_admission_prepare_finish (result, &error);
  if (in->created == NULL)
    {
      prepare_failed (in, error);
      return;
    }
  /* Before anything writes to them: a restarted daemon removes them. */
  for (guint i = 0; in->created[i] != NULL; i++)
    md_journal_list_add (md_machine_get_journal (in->machine), "images", in->created[i]);
  incoming_push_undo_images (in);
  md_machine_commit (in->machine);
  if (in->abort_error != NULL)
    {
      prepare_succeeded (in); /* reports the abort and cleans up */
      return;
    }
  if (in->offline && (in->disks_info == NULL || g_variant_n_children (in->disks_info) == 0))
    prepare_succeeded (in);
  else if (in->offline)
    start_offline_server (in);
  else
    start_incoming_qemu (in);
}

/* What a peer's definition must not choose on this host: the program run
 * as QEMU (only the configured one) and the entropy source (only a
 * random device, never a disk the guest could read). */
static gboolean
check_host_programs (MdMigrationDest *dest, const MdDomain *def, GError **error)
{
  const MdConfig *config = md_manager_get_config (dest->manager);
  const char *random_devices[] = { "/dev/urandom", "/dev/random", "/dev/hwrng", NULL };

  if (def->emulator != NULL && g_strcmp0 (def->emulator, config->qemu_binary) != 0)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_NOT_AUTHORIZED,
                   "host %s, phase prepare: the definition names the emulator %s; this host "
                   "runs only its [daemon] qemu-binary (%s): leave <emulator> out",
                   config->host_name, def->emulator, config->qemu_binary);
      return FALSE;
    }
  for (guint i = 0; def->rngs != NULL && i < def->rngs->len; i++)
    {
      const MdDomainRng *rng = g_ptr_array_index (def->rngs, i);

      if (rng->backend != NULL && !g_strv_contains (random_devices, rng->backend))
        {
          g_set_error (error, MD_ERROR, MD_ERROR_NOT_AUTHORIZED,
                       "host %s, phase prepare: the entropy source %s is not a random device "
                       "(one of /dev/urandom, /dev/random, /dev/hwrng)",
                       config->host_name, rng->backend);
          return FALSE;
        }
    }
  return TRUE;
}

/* The disk paths of this host's other guests: a reused image must not be
 * one of them, nor may a serial log overwrite one. The arriving guest's
 * own definition (same UUID) does not count. */
static GStrv
disks_of_other_guests (MdManager *manager, const MdDomain *arriving)
{
  g_autoptr (GStrvBuilder) paths = g_strv_builder_new ();
  g_autoptr (GList) guests = md_manager_list_guests (manager);

  for (GList *l = guests; l != NULL; l = l->next)
    {
      MdGuest *guest = l->data;
      const MdDomain *defs[2];

      if (g_ascii_strcasecmp (md_guest_get_uuid (guest), arriving->uuid) == 0)
        continue;
      defs[0] = md_guest_get_definition (guest);
      defs[1] = md_guest_get_live_definition (guest);
      for (guint d = 0; d < G_N_ELEMENTS (defs); d++)
        for (guint i = 0; defs[d] != NULL && i < defs[d]->disks->len; i++)
          {
            const MdDomainDisk *disk = g_ptr_array_index (defs[d]->disks, i);
            if (disk->source != NULL && *disk->source != '\0')
              g_strv_builder_add (paths, disk->source);
          }
    }
  return g_strv_builder_end (paths);
}

/* Every host-side path the definition names is checked (and copy
 * targets created) by the image admission, off the main loop. */
static void
admit_images (Incoming *in)
{
  g_auto (GStrv) in_use = disks_of_other_guests (in->dest->manager, in->def);
  gboolean reuse = FALSE;

  /* A daemon restarted in postcopy listens there again for the recovery. */
  if (in->address != NULL)
    md_journal_set_string (md_machine_get_journal (in->machine), "address", in->address);
  g_variant_lookup (in->opts->given, "reuse-existing-images", "b", &reuse);
  md_image_admission_prepare_async (in->dest->admission, in->def, in->disks_info, reuse,
                                    (const char *const *) in_use, NULL, on_targets_created,
                                    incoming_ref (in));
}

/* The state machine and its journal: what a restarted daemon needs to
 * find this migration's QEMU, images and owner again. */
static void
incoming_start_journal (Incoming *in, gboolean guest_created)
{
  MdManager *manager = in->dest->manager;

  in->machine = md_machine_new (
      MD_MIGRATION_INCOMING, in, in->migration,
      md_journal_new (md_manager_get_config (manager)->state_dir, in->id, "incoming"));
  md_journal_set_string (md_machine_get_journal (in->machine), "guest", in->def->name);
  md_journal_set_string (md_machine_get_journal (in->machine), "guest-uuid", in->def->uuid);
  md_journal_set_string (md_machine_get_journal (in->machine), "owner-dn",
                         md_incoming_owner_get_dn (in->owner));
  md_journal_set_int (md_machine_get_journal (in->machine), "guest-created", guest_created);
  /* What a daemon restarted in postcopy needs to take the source's
   * Peer1.Recover again: its token (the file is 0600 in a 0700 directory)
   * and the options it prepared with. */
  md_journal_set_string (md_machine_get_journal (in->machine), "owner-token",
                         md_incoming_owner_get_token (in->owner));
  {
    g_autofree char *given = g_variant_print (in->opts->given, TRUE);
    md_journal_set_string (md_machine_get_journal (in->machine), "options", given);
  }
  md_journal_set_int (md_machine_get_journal (in->machine), "paused-on-destination",
                      in->opts->paused_on_destination);
  /* Named now: the record is on disk long before the object is made
   * (object-add waits for it) and a restarted daemon removes it. */
  /* The tunnel encrypts: QEMU's own TLS stays off on the local leg. */
  if (in->opts->tls && !in->offline && !incoming_tunnelled (in))
    {
      in->tls_object = g_strdup_printf ("md-tls-in-%s", in->tag);
      md_journal_list_add (md_machine_get_journal (in->machine), "qemu-objects", in->tls_object);
    }
}

/* The guest may arrive only if neither its name nor its UUID is active
 * here, and both name one guest (or none). FALSE once @invocation got
 * the error; @by_name is the inactive guest of that name, if any. */
static gboolean
check_guest_not_here (MdMigrationDest *dest, const MdDomain *def, GDBusMethodInvocation *invocation,
                      MdGuest **by_name_out)
{
  MdManager *manager = dest->manager;
  MdGuest *by_name, *by_uuid;

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
      return FALSE;
    }
  if (by_name != by_uuid && by_name != NULL && by_uuid != NULL)
    {
      g_dbus_method_invocation_return_error (
          invocation, MD_ERROR, MD_ERROR_ALREADY_EXISTS,
          "host %s, phase prepare: name %s and UUID %s belong to two different guests here",
          host_name (dest), def->name, def->uuid);
      return FALSE;
    }
  if (by_name == NULL && by_uuid != NULL)
    {
      g_dbus_method_invocation_return_error (
          invocation, MD_ERROR, MD_ERROR_ALREADY_EXISTS,
          "host %s, phase prepare: UUID %s already belongs to guest %s here", host_name (dest),
          def->uuid, md_guest_get_name (by_uuid));
      return FALSE;
    }

  *by_name_out = by_name;
  return TRUE;
}

/* QEMU's migration stream: a socket of ours on @address (NULL: unknown)
 * and the URI the source is told. */
static gboolean
listen_for_stream (Incoming *in, const char *address, GError **error)
{
  g_autoptr (MdAddress) endpoint = NULL;

  if (address == NULL)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_FAILED,
                   "cannot tell which address to listen on; give the migration-address option");
      return FALSE;
    }
  in->migration_socket =
      bind_listener (in->dest, address, in->opts->migration_port, "migration-port", error);
  if (in->migration_socket == NULL)
    return FALSE;
  /* The peer's options are checked again: a destination trusts nothing
   * it did not create. */
  endpoint = md_address_new_inet (address, md_listen_socket_get_port (in->migration_socket), error);
  in->uri = endpoint != NULL ? md_address_to_uri (endpoint, error) : NULL;
  return in->uri != NULL;
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
  MdGuest *by_name = NULL;
  const MdConfig *config = md_manager_get_config (manager);
  const MdMigrateOptionsLimits limits = { MD_MIGRATE_OPTIONS_FROM_PEER, config->migration_port_min,
                                          config->migration_port_max };
  g_autoptr (MdMigrateOptions) opts = md_migrate_options_parse (options, &limits, &error);
  const char *source_host;
  const char *wanted_address;
  g_autoptr (GVariant) disks_info = NULL;
  Incoming *in;
  g_autofree char *key = incoming_key (conn, id);

  if (opts == NULL)
    {
      g_prefix_error (&error, "host %s, phase prepare: ", host_name (dest));
      md_error_return (invocation, g_steal_pointer (&error));
      return TRUE;
    }
  source_host = opts->source_host;
  wanted_address = opts->migration_address;
  if (md_manager_is_recovering (manager))
    {
      g_dbus_method_invocation_return_error (
          invocation, MD_ERROR, MD_ERROR_INVALID_STATE,
          "host %s is still resolving migrations its previous daemon left open; try again in "
          "a moment",
          host_name (dest));
      return TRUE;
    }
  if (g_hash_table_contains (dest->incoming, key))
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
  if (!check_host_programs (dest, def, &error))
    {
      md_error_return (invocation, g_steal_pointer (&error));
      return TRUE;
    }
  if (!check_guest_not_here (dest, def, invocation, &by_name))
    return TRUE;

  disks_info = opts->disks_info != NULL ? g_variant_ref (opts->disks_info) : NULL;

  in = g_rc_box_new0 (Incoming);
  in->dest = dest;
  in->id = g_strdup (id);
  in->key = g_steal_pointer (&key);
  in->owner = md_incoming_owner_new (md_peer_connection_get_dn (conn));
  in->tag = md_migration_qemu_new_tag ();
  in->disks_info = g_steal_pointer (&disks_info);
  in->conn = g_object_ref (conn);
  in->offline = opts->offline;
  in->opts = g_steal_pointer (&opts);
  in->dest_had_config = by_name != NULL && md_guest_is_persistent (by_name);
  in->def = g_steal_pointer (&def);
  in->prepare_invocation = invocation;
  g_hash_table_insert (dest->incoming, in->key, in);
  in->closed_id = g_signal_connect (conn, "closed", G_CALLBACK (incoming_on_connection_closed), in);

  in->migration =
      md_migration_new (manager, md_manager_next_migration_number (manager), MD_MIGRATION_INCOMING,
                        by_name != NULL ? md_guest_get_object_path (by_name) : "/", in->def->name,
                        source_host != NULL ? source_host : md_peer_connection_get_host_name (conn),
                        0, in->opts->given);
  incoming_start_journal (in, by_name == NULL);
  md_machine_advance (in->machine, MD_PHASE_PREPARE);
  md_manager_add_migration (manager, md_migration_get_object_path (in->migration),
                            MD_DBUS_MIGRATION1 (in->migration));
  md_fault_point ("dest-prepare-started");

  address = wanted_address != NULL ? g_strdup (wanted_address) : local_address_of (conn);
  if (incoming_tunnelled (in))
    {
      in->address = g_steal_pointer (&address);
      if (!incoming_start_tunnel (in, &error))
        {
          prepare_failed (in, g_steal_pointer (&error));
          return TRUE;
        }
      admit_images (in);
      return TRUE;
    }
  if (in->offline)
    {
      /* No QEMU migration stream: only the NBD server listens. */
      in->address = g_steal_pointer (&address);
      admit_images (in);
      return TRUE;
    }
  if (!listen_for_stream (in, address, &error))
    {
      prepare_failed (in, g_steal_pointer (&error));
      return TRUE;
    }
  in->address = g_steal_pointer (&address);

  admit_images (in);
  return TRUE;
}

MdMigrationDest *
md_migration_dest_new (MdManager *manager, MdPeerListener *listener, GError **error)
{
  const MdConfig *config = md_manager_get_config (manager);
  gboolean configured = config->image_dirs != NULL && config->image_dirs[0] != NULL;
  g_auto (GStrv) dirs = md_config_get_image_dirs (config);
  MdImageAdmission *admission = md_image_admission_new (
      (const char *const *) dirs, !configured, config->reuse_existing_images,
      config->fs_check_timeout, config->host_name, error);
  MdMigrationDest *dest;

  if (admission == NULL)
    return NULL;
  dest = g_new0 (MdMigrationDest, 1);
  dest->admission = admission;

  dest->manager = manager;
  dest->listener = listener;
  dest->gate = md_data_stream_gate_new (listener, config->host_name);
  md_tunnel_remove_stale (config->runtime_dir);
  dest->incoming =
      g_hash_table_new_full (g_str_hash, g_str_equal, NULL, (GDestroyNotify) incoming_unref);
  dest->handler_ids[0] =
      g_signal_connect (listener, "handle-prepare", G_CALLBACK (on_handle_prepare), dest);
  dest->handler_ids[1] =
      g_signal_connect (listener, "handle-finish", G_CALLBACK (dest_handle_finish), dest);
  dest->handler_ids[2] =
      g_signal_connect (listener, "handle-abort", G_CALLBACK (dest_handle_abort), dest);
  dest->handler_ids[3] =
      g_signal_connect (listener, "handle-check-paths", G_CALLBACK (dest_handle_check_paths), dest);
  dest->handler_ids[4] =
      g_signal_connect (listener, "handle-resolve", G_CALLBACK (dest_handle_resolve), dest);
  dest->handler_ids[5] =
      g_signal_connect (listener, "handle-recover", G_CALLBACK (dest_handle_recover), dest);
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
  md_data_stream_gate_free (dest->gate);
  md_image_admission_free (dest->admission);
  g_free (dest);
}
