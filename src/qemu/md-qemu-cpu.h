/* migrationd: the CPU models this host's QEMU can run, and host-model
 * expansion into a named model plus features (migration-safe CPUs). */
#pragma once

#include "domain/md-domain.h"

#include <gio/gio.h>

G_BEGIN_DECLS

typedef struct
{
  char *accel; /* the accelerator the probe ran with: "kvm" or "tcg" */
  /* name -> GINT_TO_POINTER (TRUE) when runnable here (query-cpu-definitions
   * reported no unavailable features); aliases included. */
  GHashTable *models;
  /* Boolean CPU properties the host CPU ("host" on KVM, "max" on TCG)
   * has on (query-cpu-model-expansion, static). */
  GHashTable *host_features;
  /* host-model expansion: the runnable named model with the most features,
   * and the host features it lacks. NULL when the probe found none. */
  char *host_model;
  GPtrArray *host_model_extra; /* char* feature names */
} MdQemuCpuInfo;

void md_qemu_cpu_info_free (MdQemuCpuInfo *info);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MdQemuCpuInfo, md_qemu_cpu_info_free)

/* Asks `@binary -machine none -qmp stdio` (two short runs, no guest) for
 * its CPU models and the host CPU's features under @accel. */
void md_qemu_cpu_probe_async (const char *binary, const char *accel, GCancellable *cancellable,
                              GAsyncReadyCallback callback, gpointer user_data);
MdQemuCpuInfo *md_qemu_cpu_probe_finish (GAsyncResult *result, GError **error);

/* Define time: <cpu mode='host-model'> becomes mode='custom' with
 * info->host_model and its extra features (policy require), so the guest
 * keeps exactly this CPU wherever it migrates. Other modes are unchanged. */
gboolean md_qemu_cpu_expand_host_model (const MdQemuCpuInfo *info, MdDomain *def, GError **error);

/* Can this host's QEMU run @def's CPU? A custom model must be runnable
 * here and each required feature one the host CPU has; @allow (NULL =
 * everything) further limits the models and features accepted (tests use
 * it to stand for an older QEMU). host-passthrough is refused unless
 * migratable='on' when @incoming. Appends one message per problem to
 * @problems. */
void md_qemu_cpu_check (const MdQemuCpuInfo *info, const MdDomain *def, const char *const *allow,
                        gboolean incoming, GPtrArray *problems);

G_END_DECLS
