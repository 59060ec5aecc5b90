/* migrationd: each guest's QEMU in a scope of its own, registered with
 * systemd-machined, so `machinectl list` shows the guests and systemd
 * accounts their resources apart from the daemon's. */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* The machine name migrationd registers for guest @guest_name: "md-" and
 * the name with everything but letters and digits replaced by '-', no
 * trailing '-', at most 64 characters. */
char *md_machined_machine_name (const char *guest_name);

/* Asks machined on @bus (asynchronously; never blocks) to move @leader
 * into machine-NAME.scope and register it as a virtual machine with
 * @uuid (canonical text; ignored when not a UUID). Without machined on the
 * bus (containers, private test buses) the QEMU simply stays where it is:
 * logged at debug level, nothing else changes. */
void md_machined_register (GDBusConnection *bus, const char *guest_name, const char *uuid,
                           GPid leader, guint64 memory_max, guint64 tasks_max);

G_END_DECLS
