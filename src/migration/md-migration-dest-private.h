/* migrationd: what the incoming migration's modules share (Prepare in
 * md-migration-dest.c; lifetime and the failure path in
 * md-migration-dest-fail.c; Finish, Abort, Resolve in
 * md-migration-dest-finish.c). Not for other modules. */
#pragma once

#include "common/md-options.h"
#include "md-incoming-owner.h"
#include "md-migration-dest.h"
#include "md-migration-machine.h"
#include "md-tunnel.h"
#include "storage/md-image-admission.h"
#include "storage/md-nbd-server.h"

G_BEGIN_DECLS

#define FINISH_WAIT_MS 60000
/* Names of our listening sockets inside the incoming QEMU (getfd). */
#define MIGRATION_FDNAME "md-migration-listen"
#define NBD_FDNAME "md-nbd-listen"

struct _MdMigrationDest
{
  MdManager *manager;
  MdPeerListener *listener;
  MdImageAdmission *admission; /* which files incoming migrations may touch */
  MdDataStreamGate *gate;      /* tunnel data streams on the peer port */
  GHashTable *incoming;        /* "owner DN\nmigration id" -> Incoming */
  gulong handler_ids[6];
};

/* One incoming migration: a reference-counted box (g_rc_box); the
 * table of open migrations holds one reference, every pending QMP
 * command, QEMU start, storage call and timer another. */
typedef struct
{
  MdMigrationDest *dest;
  MdMachine *machine; /* phases, authority, journal */
  char *id;
  char *key;              /* in dest->incoming: two sources may use the same id */
  MdIncomingOwner *owner; /* the peer that prepared it, and its token */
  char *tag;              /* unique prefix of our names inside QEMU */
  MdQmp *event_qmp;       /* QEMU's MIGRATION events */
  gulong event_id;
  guint finish_timeout_id;
  MdPeerConnection *conn;
  gulong closed_id;
  MdGuest *guest;
  gboolean guest_created;
  gboolean dest_had_config;
  MdMigration *migration;
  MdMigrateOptions *opts; /* Prepare's options, checked */
  MdDomain *def;
  char *uri;
  char *address;        /* where QEMU and the NBD server listen */
  GVariant *disks_info; /* disks the source mirrors to us (aa{sv}) */
  GStrv created;        /* target images we made: removed on failure */
  guint16 nbd_port;
  GSocket *migration_socket; /* ours until QEMU has its copy */
  GSocket *nbd_socket;
  gboolean nbd_socket_given; /* tunnel: NBD streams come through the tunnel */
  guint exports_added;
  MdNbdServer *nbd_server; /* offline copies: qemu-storage-daemon */
  MdTunnelIn *tunnel;      /* transport=tunnel: the data streams */
  char *tls_object;
  guint setup_pending; /* QMP set-up commands not answered yet */
  GError *setup_error; /* the first of them that failed */
  gboolean offline;
  gboolean prepared;
  gboolean ended;
  GError *split_error;      /* a failure after the switch-over, while we wait for QEMU's exit */
  const char *fail_outcome; /* journal outcome of a failure: aborted, lost, running */
  guint split_wait_id;
  GError *abort_error; /* set when Abort/Finish(false) came during Prepare */
  gulong stopped_id;   /* the prepared QEMU went away before Finish */
  GDBusMethodInvocation *prepare_invocation;
  GDBusMethodInvocation *finish_invocation;
  gboolean finishing; /* Finish (or its adoption after a lost source) runs */
  MdQmp *resume_qmp;  /* watched for RESUME while `cont` is on its way */
  gulong resume_id;
  gboolean resume_seen; /* QEMU said the guest runs here (it may have run) */
  gboolean cont_waits;  /* authority journaled here, "cont" not sent yet */

  /* Postcopy (md-migration-dest-recovery.c): the guest runs here while
   * QEMU still pulls pages from the source; the migration ends when QEMU
   * says completed, and a broken stream is recovered on the source's
   * Peer1.Recover until postcopy-recovery-timeout. */
  gboolean postcopy;       /* QEMU's incoming status was postcopy-* at Finish */
  gboolean postcopy_watch; /* Finish done, waiting for QEMU's completed */
  guint recovery_deadline_id;
  guint recovery_attempts;
  guint recover_polls;
  guint switch_wait_id; /* source lost, QEMU still in precopy: a switch may be in flight */
  guint switch_waits;
  char *recover_fdname;
  GSocket *recover_socket;
  GDBusMethodInvocation *recover_invocation;
} Incoming;

typedef Incoming IncomingRef;

Incoming *incoming_ref (Incoming *in);
void incoming_unref (Incoming *in);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (IncomingRef, incoming_unref)

const char *host_name (MdMigrationDest *dest);
void incoming_stop_events (Incoming *in);
/* The migration is over here: the table lets go of it, and @outcome
 * ("running", "aborted") stays in the journal for a source that asks. */
void incoming_end (Incoming *in, const char *outcome);
/* transport=tunnel: whether this migration's streams go through the peer port. */
gboolean incoming_tunnelled (Incoming *in);
/* The one failure path (md_machine_fail()): before the destination holds
 * the guest, the undo list removes the prepared QEMU and what Prepare
 * made; after, the copy is left as it is (needs-attention) or reported
 * lost when its QEMU is gone. */
void incoming_abort (Incoming *in, const GError *error);
/* Undo steps, pushed as Prepare makes what they undo. */
void incoming_push_undo_images (Incoming *in);
void incoming_push_undo_qemu (Incoming *in);
void incoming_push_undo_nbd_server (Incoming *in);
/* Signal handlers: the prepared QEMU exited; the source's connection
 * closed (autokill before the switch, adoption after it). */
void incoming_on_qemu_stopped (MdGuest *guest, Incoming *in);
void incoming_on_connection_closed (MdPeerConnection *conn, Incoming *in);
/* A Peer1 call of this migration failed in @phase: answer it with @error
 * (taken) and remove what Prepare made. */
void call_failed (Incoming *in, GDBusMethodInvocation **pending, const char *phase, GError *error);
typedef void (*InStep) (Incoming *in, GError *error);
/* A QMP command on the incoming QEMU (shared step runner, holds a ref). */
void in_qmp (Incoming *in, const char *command, JsonObject *args, InStep next);
char *incoming_key (MdPeerConnection *conn, const char *id);
Incoming *incoming_for_call (MdMigrationDest *dest, MdPeerConnection *conn, const char *id,
                             const char *token, const char *method, GError **error);

/* md-migration-dest-tunnel.c: transport=tunnel. The tunnel and QEMU's
 * migration listening socket; the NBD server's socket; the definition
 * QEMU starts with (sparse copy targets). */
gboolean incoming_start_tunnel (Incoming *in, GError **error);
gboolean incoming_tunnel_nbd_socket (Incoming *in, GError **error);
MdDomain *incoming_live_definition (Incoming *in);
/* Hands QEMU our listening @socket under @fdname. */
void in_qmp_getfd (Incoming *in, GSocket *socket, const char *fdname, InStep next);
/* The address @conn reached us on (NULL: not an inet socket). */
char *local_address_of (MdPeerConnection *conn);
/* A listening socket for QEMU (@what names the option that picks the port). */
GSocket *bind_listener (MdMigrationDest *dest, const char *address, guint16 wanted,
                        const char *what, GError **error);

/* md-migration-dest-recovery.c */
void dest_recovery_watch (Incoming *in);
void dest_recovery_source_lost (Incoming *in);
void dest_recovery_clear (Incoming *in);
gboolean dest_handle_recover (MdPeerListener *listener, MdPeerConnection *conn,
                              GDBusMethodInvocation *invocation, const char *id, GVariant *options,
                              MdMigrationDest *dest);

/* md-migration-dest-finish.c */
GVariant *finish_result (Incoming *in);
/* Removes the incoming TLS credentials from QEMU (the stream is over). */
void drop_tls_object (Incoming *in);
void adopt_after_lost_source (Incoming *in);
gboolean dest_handle_finish (MdPeerListener *listener, MdPeerConnection *conn,
                             GDBusMethodInvocation *invocation, const char *id, gboolean success,
                             GVariant *options, MdMigrationDest *dest);
gboolean dest_handle_abort (MdPeerListener *listener, MdPeerConnection *conn,
                            GDBusMethodInvocation *invocation, const char *id, const char *reason,
                            MdMigrationDest *dest);
gboolean dest_handle_resolve (MdPeerListener *listener, MdPeerConnection *conn,
                              GDBusMethodInvocation *invocation, const char *id,
                              MdMigrationDest *dest);
gboolean dest_handle_check_paths (MdPeerListener *listener, MdPeerConnection *conn,
                                  GDBusMethodInvocation *invocation, const char *const *paths,
                                  MdMigrationDest *dest);

G_END_DECLS
