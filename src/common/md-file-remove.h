/* migrationd: removing a file off the main loop (a state directory on a
 * slow or hung file system must not stop the daemon). */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* Removes @path (taken) in a worker thread; a missing file is no error. */
void md_file_remove_async (char *path, gpointer source_object, GAsyncReadyCallback callback,
                           gpointer user_data);
gboolean md_file_remove_finish (GAsyncResult *result, GError **error);

/* The same, for files whose removal nobody waits for: a failure is logged. */
void md_file_remove_in_background (char *path);

G_END_DECLS
