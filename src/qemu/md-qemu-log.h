/* migrationd: the tail of a QEMU log file, quoted in errors (shared by the
 * QMP client and the process module, so neither includes the other). */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The last @n_lines lines of @log_path (NULL if it is unset, unreadable or
 * empty); reads at most the last 8 KiB. */
char *md_qemu_log_tail (const char *log_path, guint n_lines);

G_END_DECLS
