/* migrationd: the daemon — bus connection, name ownership, modules. */
#pragma once

#include "common/md-config.h"

#include <gio/gio.h>

G_BEGIN_DECLS

#define MD_TYPE_DAEMON (md_daemon_get_type ())
G_DECLARE_FINAL_TYPE (MdDaemon, md_daemon, MD, DAEMON, GObject)

typedef struct
{
  const char *bus_address; /* NULL: the system bus */
  gboolean replace;
} MdDaemonOptions;

/* Takes ownership of @config. */
MdDaemon *md_daemon_new (MdConfig *config);

/* Connects, exports, asks for the bus name. The daemon emits "done" with an
 * exit status when it must stop: the name was refused (1) or lost to a
 * replacement (0), or md_daemon_stop() was called (0). */
gboolean md_daemon_start (MdDaemon *self, const MdDaemonOptions *options, GError **error);
void md_daemon_stop (MdDaemon *self);

G_END_DECLS
