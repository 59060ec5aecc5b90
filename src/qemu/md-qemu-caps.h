/* migrationd: what the local QEMU binary can do, probed once. */
#pragma once

#include "domain/md-domain.h"
#include "md-qemu-cpu.h"

#include <gio/gio.h>

G_BEGIN_DECLS

typedef struct
{
  char *binary;
  GPtrArray *machines; /* MdDomainMachineType* from `-machine help` */
  gboolean sandbox;    /* built with seccomp: -sandbox is available */
  gboolean kvm;        /* /dev/kvm usable by us */
  gboolean spice;      /* built with SPICE (-spice is listed by -h) */
  GStrv audio_drivers; /* from `-audiodev help` */
  MdQemuCpuInfo *cpu;  /* CPU models and host-model expansion (KVM if usable, else TCG) */
} MdQemuCaps;

void md_qemu_caps_free (MdQemuCaps *caps);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MdQemuCaps, md_qemu_caps_free)

/* Runs `@binary -machine help` and `@binary -h` without blocking. */
/* @accelerator: the configured one (auto, kvm, tcg): CPU models are probed
 * under the accelerator the guests will get. */
void md_qemu_caps_probe_async (const char *binary, const char *accelerator,
                               GCancellable *cancellable, GAsyncReadyCallback callback,
                               gpointer user_data);
MdQemuCaps *md_qemu_caps_probe_finish (GAsyncResult *result, GError **error);

/* "kvm" or "tcg" for the configured accelerator ("auto", "kvm", "tcg");
 * MD_ERROR_NOT_SUPPORTED when kvm is asked for and /dev/kvm is unusable. */
const char *md_qemu_caps_pick_accel (const MdQemuCaps *caps, const char *configured,
                                     GError **error);

/* What a host must check before it takes a definition (define time, and
 * Prepare on a migration's destination, @incoming TRUE):
 *  - the machine type is one this QEMU has (resolved in place: "q35" ->
 *    "pc-q35-7.2"; a versioned type must exist as is);
 *  - at define time, <cpu mode='host-model'> is expanded into a named model
 *    plus features (md_qemu_cpu_expand_host_model());
 *  - the CPU model and required features run here (@cpu_allow, NULL = all:
 *    the [daemon] cpu-model-allow list);
 *  - SPICE and the audio backends the guest uses are built into QEMU;
 *  - every <interface type='network'> is mapped in @networks ([networks])
 *    and every bridge (given or mapped) exists on this host.
 * Every problem is reported at once in one MD_ERROR_NOT_SUPPORTED error. */
gboolean md_qemu_caps_check_definition (const MdQemuCaps *caps, MdDomain *def, GHashTable *networks,
                                        const char *const *cpu_allow, gboolean incoming,
                                        GError **error);

G_END_DECLS
