/* migrationd: reading a guest's QEMU log for error messages. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The part of @log_path written by the latest start (after the last
 * "migrationd starting:" header md_qemu_spawn() writes), at most
 * @max_lines lines, or NULL when there is none. *@last_error (if not NULL)
 * gets QEMU's own last error line of that part ("qemu-system-x86_64: ..."
 * without the timestamp), or NULL. */
char *md_qemu_log_this_start (const char *log_path, guint max_lines, char **last_error);

G_END_DECLS
