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

/* Rewrite @error's message for a failed start: @prefix, QEMU's own last
 * error line, then (in parentheses) the first line of what we saw, e.g. the
 * QMP socket closing, then at most 20 lines of this start's log (none when
 * @log_path is NULL: QEMU was never spawned). */
void md_qemu_log_explain_start_failure (GError *error, const char *prefix, const char *log_path);

G_END_DECLS
