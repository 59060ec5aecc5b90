/* migrationd: Manager1.Evacuate — every running guest off this host to a
 * set of peers, at most N migrations at once, reported as one
 * org.migrationd.Evacuation1 object whose children are ordinary outgoing
 * Migration1 objects. */
#pragma once

#include "daemon/md-manager.h"

G_BEGIN_DECLS

#define MD_TYPE_EVACUATION (md_evacuation_get_type ())
G_DECLARE_FINAL_TYPE (MdEvacuation, md_evacuation, MD, EVACUATION, MdDbusEvacuation1Skeleton)

/* Checks @peers and @options, asks every peer for its free memory
 * (Peer1.HostInfo) and starts; completes with the Evacuation1 object's
 * path once it is exported (nothing started on an error). */
void md_evacuation_start_async (MdManager *manager, const char *const *peers, GVariant *options,
                                guint owner_uid, GAsyncReadyCallback callback, gpointer user_data);
char *md_evacuation_start_finish (GAsyncResult *result, GError **error);

G_END_DECLS
