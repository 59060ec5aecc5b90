/* migrationd: what the local QEMU binary can do, probed once. */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

typedef struct
{
  char *binary;
  GPtrArray *machines; /* MdDomainMachineType* from `-machine help` */
  gboolean sandbox;    /* built with seccomp: -sandbox is available */
  gboolean kvm;        /* /dev/kvm usable by us */
} MdQemuCaps;

void md_qemu_caps_free (MdQemuCaps *caps);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MdQemuCaps, md_qemu_caps_free)

/* Runs `@binary -machine help` and `@binary -h` without blocking. */
void md_qemu_caps_probe_async (const char *binary, GCancellable *cancellable,
                               GAsyncReadyCallback callback, gpointer user_data);
MdQemuCaps *md_qemu_caps_probe_finish (GAsyncResult *result, GError **error);

/* "kvm" or "tcg" for the configured accelerator ("auto", "kvm", "tcg");
 * MD_ERROR_NOT_SUPPORTED when kvm is asked for and /dev/kvm is unusable. */
const char *md_qemu_caps_pick_accel (const MdQemuCaps *caps, const char *configured,
                                     GError **error);

G_END_DECLS
