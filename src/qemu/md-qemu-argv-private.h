/* migrationd: internals shared by md-qemu-argv.c (machine, disks, network,
 * serials, inputs, video) and md-qemu-argv-devices.c (graphics, channels,
 * sound, USB redirection, watchdog, panic, secrets). */
#pragma once

#include "md-qemu-argv.h"

G_BEGIN_DECLS

typedef struct
{
  const MdDomain *dom;
  const MdQemuArgvOptions *opts;
  GPtrArray *argv;
  gboolean q35;
  gboolean kvm;
} Builder;

void md_argv_add (Builder *b, const char *arg);
void md_argv_addf (Builder *b, const char *format, ...) G_GNUC_PRINTF (2, 3);
/* Takes @value. */
void md_argv_add2 (Builder *b, const char *opt, char *value);
/* QemuOpts values: a ',' is written as ",,". */
char *md_argv_qo (const char *value);
gboolean md_argv_fail (GError **error, int code, const char *format, ...) G_GNUC_PRINTF (3, 4);
const MdDomainController *md_argv_controller (const MdDomain *dom, MdDomainControllerType type,
                                              guint index);
/* -device @props,bus=...,addr=... for the PCI address @a. */
gboolean md_argv_add_pci_device (Builder *b, const char *props, const MdDomainAddress *a,
                                 GError **error);

/* <MIGRATIOND_DEBUG_QMP_DIR>/<host>-<name>.qmp (tests only). */
char *md_argv_debug_qmp_path (const MdDomain *dom, const char *host_name);

gboolean md_argv_add_graphics (Builder *b, GError **error);
gboolean md_argv_add_channels (Builder *b, GError **error);
gboolean md_argv_add_sound (Builder *b, GError **error);
gboolean md_argv_add_misc_devices (Builder *b, GError **error);

G_END_DECLS
