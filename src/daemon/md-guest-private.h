/* migrationd: what the modules of one guest share. MdGuest is one object,
 * but its jobs (starting QEMU, following it, its runtime record, the
 * Guest1 methods) live in files of their own; they meet here. Not for
 * other modules: they use md-guest.h. */
#pragma once

#include "md-guest.h"

G_BEGIN_DECLS

struct _MdGuest
{
  MdDbusGuest1Skeleton parent_instance;

  MdHost *host;   /* not owned: the manager's, which outlives its guests */
  MdDomain *def;  /* persistent definition, or the transient one */
  MdDomain *live; /* what QEMU runs with; NULL when shut off */
  gboolean persistent;
  MdGuestState state;
  char *object_path;

  MdQemuProcess *proc;
  MdQmp *qmp;
  char *qmp_path;
  char *log_path;

  /* One lifecycle operation at a time; its name for messages. */
  const char *busy;
  /* Shutdown waits for QEMU to go away, or for its own timeout. */
  GTask *shutdown_task;
  guint shutdown_timeout_id;
  guint shutdown_timeout; /* seconds, for the message */
  /* Set when we asked QEMU to go away, so its exit is not a crash. */
  gboolean stop_requested;
  /* QEMU waits for an incoming migration: a daemon restart must kill it,
   * since the migration it belongs to died with the old daemon. */
  gboolean incoming;
  GCancellable *start_wait; /* cancelled if QEMU exits before QMP is up */
  /* The running QEMU's identity and cgroup as its runtime record keeps
   * them (md_isolation_record()); NULL when shut off. */
  JsonObject *isolation;
};

/* md-guest.c: the object. */
const char *guest_host_name (MdGuest *self);
/* Every state change goes through here so the State property follows. */
void guest_set_state (MdGuest *self, MdGuestState state);
/* Signal "stopped": QEMU is gone. */
void guest_emit_stopped (MdGuest *self);

/* md-guest-process.c: following QEMU. Its exit and its QMP events are
 * what move the guest's state, so attaching connects them. */
void guest_attach_process (MdGuest *self, MdQemuProcess *proc);
void guest_attach_qmp (MdGuest *self, MdQmp *qmp);
/* Forgets QEMU: the process is gone (or we gave up on it); what the
 * start left in the runtime directory goes with it. */
void guest_release_process (MdGuest *self, MdGuestState final_state);

/* md-guest-runtime.c: the runtime record, which lets a restarted daemon
 * find a QEMU that outlived its predecessor. */
/* The name of the guest's QMP socket, log and runtime record. */
char *guest_runtime_name (MdGuest *self);
/* Rewritten whenever something a restarted daemon needs changes. */
void guest_write_runtime_record (MdGuest *self);
void guest_remove_runtime_record (MdGuest *self);

/* md-guest-methods.c: the Guest1 D-Bus method handlers. */
void guest_methods_iface_init (MdDbusGuest1Iface *iface);

G_END_DECLS
