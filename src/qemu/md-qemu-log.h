/* migrationd: the tail of a QEMU log file, quoted in errors (shared by the
 * QMP client and the process module, so neither includes the other). */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The last @n_lines lines of @log_path (NULL if it is unset, unreadable or
 * empty); reads at most the last 8 KiB. */
char *md_qemu_log_tail (const char *log_path, guint n_lines);

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
