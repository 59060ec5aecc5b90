/* migrationd: internals shared by md-domain.c, md-domain-xml.c and
 * md-domain-format.c (one module split in three files to stay readable). */
#pragma once

#include "md-domain.h"

G_BEGIN_DECLS

/* Name tables, index = enum value, NULL-terminated. */
extern const char *const md_dom_disk_type_names[];
extern const char *const md_dom_disk_device_names[];
extern const char *const md_dom_disk_format_names[];
extern const char *const md_dom_disk_bus_names[];
extern const char *const md_dom_disk_cache_names[];
extern const char *const md_dom_disk_discard_names[];
extern const char *const md_dom_disk_io_names[];
extern const char *const md_dom_controller_type_names[];
extern const char *const md_dom_interface_type_names[];
extern const char *const md_dom_chardev_type_names[];
extern const char *const md_dom_graphics_type_names[];
extern const char *const md_dom_lifecycle_names[];
extern const char *const md_dom_cpu_mode_names[];
extern const char *const md_dom_clock_offset_names[];
extern const char *const md_dom_tristate_names[];
extern const char *const md_dom_address_type_names[];
/* Accepted values of string fields. */
extern const char *const md_dom_controller_models[];
extern const char *const md_dom_nic_models[];
extern const char *const md_dom_video_models[];
extern const char *const md_dom_input_types[];
extern const char *const md_dom_input_buses[];

/* Index of @s in @names, -1 if absent or NULL. */
int md_dom_lookup (const char *const *names, const char *s);

void md_dom_disk_free (MdDomainDisk *d);
void md_dom_controller_free (MdDomainController *c);
void md_dom_interface_free (MdDomainInterface *i);
void md_dom_chardev_free (MdDomainChardev *c);
void md_dom_graphics_free (MdDomainGraphics *g);
void md_dom_video_free (MdDomainVideo *v);
void md_dom_input_free (MdDomainInput *i);
void md_dom_memballoon_free (MdDomainMemballoon *m);
void md_dom_rng_free (MdDomainRng *r);
void md_dom_cpu_feature_free (MdDomainCpuFeature *f);
void md_dom_timer_free (MdDomainTimer *t);

/* Six hex pairs separated by ':', not multicast. */
gboolean md_dom_valid_mac (const char *mac);

/* "vdb" -> 1, "sdaa" -> 26; -1 if @target is not vd/sd/hd + letters. */
int md_dom_target_index (const char *target);

G_END_DECLS
