/* migrationd: internals shared by the md-domain*.c files (one module,
 * split by job: model, XML parser, formatter, validation, addresses, ABI). */
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
extern const char *const md_dom_disk_detect_zeroes_names[];
extern const char *const md_dom_channel_type_names[];
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
extern const char *const md_dom_sound_models[];
extern const char *const md_dom_audio_types[];
extern const char *const md_dom_watchdog_models[];
extern const char *const md_dom_watchdog_actions[];
extern const char *const md_dom_panic_models[];

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
void md_dom_channel_free (MdDomainChannel *c);
void md_dom_sound_free (MdDomainSound *s);
void md_dom_audio_free (MdDomainAudio *a);
void md_dom_redirdev_free (MdDomainRedirdev *r);
void md_dom_watchdog_free (MdDomainWatchdog *w);
void md_dom_panic_free (MdDomainPanic *p);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MdDomainAudio, md_dom_audio_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MdDomainRedirdev, md_dom_redirdev_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MdDomainWatchdog, md_dom_watchdog_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MdDomainPanic, md_dom_panic_free)

/* Six hex pairs separated by ':', not multicast. */
gboolean md_dom_valid_mac (const char *mac);

/* The controller of @type with @index, or NULL. */
MdDomainController *md_dom_find_controller (const MdDomain *dom, MdDomainControllerType type,
                                            guint index);

/* "vdb" -> 1, "sdaa" -> 26; -1 if @target is not vd/sd/hd + letters. */
int md_dom_target_index (const char *target);

/* Set MD_ERROR_INVALID_XML "domain definition: <message>"; returns FALSE. */
gboolean md_dom_invalid (GError **error, const char *format, ...) G_GNUC_PRINTF (2, 3);

/* One device of any kind, for checks that span kinds (aliases, addresses). */
typedef struct
{
  const char *alias;
  const MdDomainAddress *address; /* NULL for devices without one (serials) */
  const char *what;
} DevRef;

/* Append a DevRef for every device of @dom to @out (a GArray of DevRef). */
void md_dom_collect_devices (const MdDomain *dom, GArray *out);

G_END_DECLS
