/* migrationd: what the save and restore halves share. Not for other
 * modules. */
#pragma once

#include "md-save.h"
#include "md-save-file.h"

G_BEGIN_DECLS

#define MD_SAVE_POLL_INTERVAL_MS 200

/* Spawns @argv (a compressor) with @stdin_fd and @stdout_fd (both taken)
 * and its stderr on a pipe, so its own message reaches the user. */
GSubprocess *md_save_spawn_filter (const char *const *argv, int stdin_fd, int stdout_fd,
                                   GError **error);

/* Prefixes @error with what @filter (argv[0]) printed on stderr. */
void md_save_filter_error (const char *program, const char *stderr_text, int status,
                           GError **error);

/* Removes @path (taken) in a worker: it may sit on any file system the
 * caller named, and a hung mount must not stop the daemon. */

G_END_DECLS
