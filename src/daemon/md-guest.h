/* migrationd: org.migrationd.Guest1 — one guest and its QEMU process. */
#pragma once

#include "md-dbus-generated.h"
#include "domain/md-domain.h"
#include "md-host.h"
#include "qemu/md-qemu.h"

G_BEGIN_DECLS

typedef enum
{
  MD_GUEST_STATE_SHUT_OFF,
  MD_GUEST_STATE_RUNNING,
  MD_GUEST_STATE_PAUSED,
  MD_GUEST_STATE_MIGRATING_OUT,
  MD_GUEST_STATE_MIGRATING_IN,
  MD_GUEST_STATE_CRASHED,
  MD_GUEST_STATE_SAVED, /* shut off; its state is in a save file */
} MdGuestState;

const char *md_guest_state_to_string (MdGuestState state);

#define MD_TYPE_GUEST (md_guest_get_type ())
G_DECLARE_FINAL_TYPE (MdGuest, md_guest, MD, GUEST, MdDbusGuest1Skeleton)

/* Signal "stopped" (void handler (MdGuest *guest)): QEMU is gone; a
 * transient guest is removed by the manager then. */

/* Takes @def. The guest is not exported until the manager does it. */
MdGuest *md_guest_new (MdHost *host, MdDomain *def, gboolean persistent);

const char *md_guest_get_name (MdGuest *self);
const char *md_guest_get_uuid (MdGuest *self);
const char *md_guest_get_object_path (MdGuest *self);
MdGuestState md_guest_get_state (MdGuest *self);
/* Running, paused, migrating or crashed-but-present: QEMU exists. */
gboolean md_guest_is_active (MdGuest *self);
gboolean md_guest_is_persistent (MdGuest *self);
void md_guest_set_persistent (MdGuest *self, gboolean persistent);
/* The persistent (inactive) definition, or the live one of a transient
 * guest. */
const MdDomain *md_guest_get_definition (MdGuest *self);
/* The definition QEMU runs with; NULL when shut off. */
const MdDomain *md_guest_get_live_definition (MdGuest *self);
/* Replaces the persistent definition (takes @def); the running QEMU, if
 * any, keeps its live definition until it stops. */
void md_guest_set_definition (MdGuest *self, MdDomain *def);

/* A lifecycle operation (start, shutdown, destroy...) is under way. */
gboolean md_guest_is_busy (MdGuest *self);

/* Save bookkeeping: QEMU is gone and the state is in a file; @managed:
 * in the managed-save file (HasManagedSave). */
void md_guest_mark_saved (MdGuest *self, gboolean managed);
void md_guest_set_has_managed_save (MdGuest *self, gboolean has);
/* Where the managed save of guest @name lives: save/NAME.save in the
 * state directory. */
char *md_guest_managed_save_path (const MdConfig *config, const char *name);
/* After a failed restore: QEMU is gone as planned, not crashed; the guest
 * is "saved" if a managed save remains, else "shut-off". */
void md_guest_settle_stopped (MdGuest *self);

MdQmp *md_guest_get_qmp (MdGuest *self);
MdQemuProcess *md_guest_get_process (MdGuest *self);

void md_guest_start_async (MdGuest *self, gboolean paused, GCancellable *cancellable,
                           GAsyncReadyCallback callback, gpointer user_data);
gboolean md_guest_start_finish (MdGuest *self, GAsyncResult *result, GError **error);

/* Start QEMU with -incoming defer for a migration to this host, with the
 * definition @live (taken); the guest is migrating-in afterwards. */
void md_guest_start_incoming_async (MdGuest *self, MdDomain *live, GCancellable *cancellable,
                                    GAsyncReadyCallback callback, gpointer user_data);

/* Migration bookkeeping: the Migration property and migrating-in/out
 * state while a migration runs; afterwards running or paused (QEMU still
 * there) as the caller observed. */
void md_guest_begin_migration (MdGuest *self, const char *migration_path, gboolean incoming);
void md_guest_end_migration (MdGuest *self, gboolean running);

/* Adopt a QEMU left running by an earlier daemon instance. */
void md_guest_reattach_async (MdGuest *self, MdQemuRuntime *record, GCancellable *cancellable,
                              GAsyncReadyCallback callback, gpointer user_data);
gboolean md_guest_reattach_finish (MdGuest *self, GAsyncResult *result, GError **error);

/* An ACPI power-off, waiting @timeout seconds for QEMU to exit (Timeout
 * error otherwise; the guest keeps running). The guest must be active and
 * idle (md_guest_is_busy() FALSE). */
void md_guest_shutdown_async (MdGuest *self, guint timeout, GAsyncReadyCallback callback,
                              gpointer user_data);
gboolean md_guest_shutdown_finish (MdGuest *self, GAsyncResult *result, GError **error);
/* Kill QEMU (quit, SIGTERM, SIGKILL); completes when it is gone. */
void md_guest_destroy_async (MdGuest *self, GAsyncReadyCallback callback, gpointer user_data);
gboolean md_guest_destroy_finish (MdGuest *self, GAsyncResult *result, GError **error);

G_END_DECLS
