/* migrationd: opening, as the daemon, every file and socket of a guest that
 * QEMU would otherwise open by path (md-qemu-files.h says what each device
 * gets). Blocking: the daemon calls it from a worker thread. */
#include "config.h"

#include "md-qemu-argv.h"
#include "md-qemu-argv-private.h"
#include "md-qemu-files.h"
#include "md-qemu.h"

#include "common/md-error.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

/* Appends to @path through an fdset of one descriptor. */
static gboolean
open_append (MdQemuFiles *files, const char *path, const char *key, GError **error)
{
  int fd = open (path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);

  if (fd < 0)
    {
      int errsv = errno;

      g_set_error (error, MD_ERROR, MD_ERROR_FAILED,
                   "cannot open %s for QEMU: %s (check that its directory exists)", path,
                   g_strerror (errsv));
      return FALSE;
    }
  md_qemu_files_set (files, key, md_qemu_files_add_set (files, &fd, 1));
  return TRUE;
}

static gboolean
open_disks (MdQemuFiles *files, const MdDomain *dom, GError **error)
{
  for (guint i = 0; i < dom->disks->len; i++)
    {
      const MdDomainDisk *d = dom->disks->pdata[i];
      gboolean cdrom = d->device == MD_DOMAIN_DISK_DEVICE_CDROM;
      GPtrArray *layers;

      if (d->source == NULL)
        continue;
      layers = md_qemu_files_open_image (
          files, d->source, md_domain_disk_format_to_string (d->format), d->readonly, cdrom, error);
      if (layers == NULL)
        {
          g_prefix_error (error, "disk %s: ", d->target);
          return FALSE;
        }
      md_qemu_files_set_disk_layers (files, i, layers);
    }
  return TRUE;
}

static gboolean
open_serials (MdQemuFiles *files, const MdDomain *dom, const MdQemuArgvOptions *o, GError **error)
{
  gsize n_paths = o->serial_paths ? g_strv_length ((char **) o->serial_paths) : 0;

  for (guint i = 0; i < dom->serials->len; i++)
    {
      const MdDomainChardev *c = dom->serials->pdata[i];
      g_autofree char *key = NULL;
      g_autofree char *log = NULL;

      if (c->type == MD_DOMAIN_CHARDEV_FILE)
        {
          const char *path = i < n_paths && o->serial_paths[i] && *o->serial_paths[i]
                                 ? o->serial_paths[i]
                                 : c->path;

          key = g_strdup_printf ("serial%u", i);
          if (!open_append (files, path, key, error))
            return FALSE;
        }
      else if (o->serial_log_dir)
        {
          g_autofree char *file = g_strdup_printf ("%s-%s.log", dom->name, c->alias);

          log = g_build_filename (o->serial_log_dir, file, NULL);
          key = g_strdup_printf ("serial-log%u", i);
          if (!open_append (files, log, key, error))
            return FALSE;
        }
    }
  return TRUE;
}

/* A listening unix socket at @path for QEMU to serve on (socket,fd=N). */
static gboolean
listen_at (MdQemuFiles *files, const char *path, const char *key, GError **error)
{
  int fd;

  g_unlink (path);
  fd = md_qemu_listen_qmp (path, 3, error);
  if (fd < 0)
    return FALSE;
  md_qemu_files_set (files, key, md_qemu_files_take (files, fd));
  return TRUE;
}

static gboolean
open_sockets_and_secrets (MdQemuFiles *files, const MdDomain *dom, const MdQemuArgvOptions *o,
                          const char *host_name, GError **error)
{
  for (guint i = 0; i < dom->channels->len; i++)
    {
      const MdDomainChannel *ch = dom->channels->pdata[i];
      g_autofree char *path = NULL;
      g_autofree char *key = g_strdup_printf ("channel%u", i);

      if (ch->type != MD_DOMAIN_CHANNEL_UNIX)
        continue;
      path = md_qemu_channel_socket_path (dom, o, ch);
      if (!listen_at (files, path, key, error))
        return FALSE;
    }
  for (guint i = 0; i < dom->graphics->len; i++)
    {
      const MdDomainGraphics *g = dom->graphics->pdata[i];
      g_autofree char *key = g_strdup_printf ("secret%u", i);
      int fd;

      if (g->passwd == NULL)
        continue;
      fd = md_qemu_files_memfd ("migrationd-secret", g->passwd, strlen (g->passwd), error);
      if (fd < 0)
        return FALSE;
      md_qemu_files_set (files, key, md_qemu_files_take (files, fd));
    }
  if (g_getenv ("MIGRATIOND_DEBUG_QMP_DIR") != NULL && host_name != NULL)
    {
      g_autofree char *path = md_argv_debug_qmp_path (dom, host_name);

      if (!listen_at (files, path, "debug-qmp", error))
        return FALSE;
    }
  return TRUE;
}

static gboolean
open_boot_files (MdQemuFiles *files, const MdDomain *dom, GError **error)
{
  const char *paths[] = { dom->os.kernel, dom->os.initrd };
  const char *keys[] = { "kernel", "initrd" };

  for (guint i = 0; i < G_N_ELEMENTS (paths); i++)
    {
      int fd;

      if (paths[i] == NULL)
        continue;
      fd = md_qemu_files_open_readable (paths[i], error);
      if (fd < 0)
        return FALSE;
      md_qemu_files_set (files, keys[i], md_qemu_files_take (files, fd));
    }
  return TRUE;
}

static gboolean
tap_fail (GError **error, const char *bridge, const char *what, int fd, int sock)
{
  int errsv = errno;

  g_set_error (error, MD_ERROR, MD_ERROR_FAILED,
               "cannot give QEMU a tap device on bridge '%s': %s: %s", bridge, what,
               g_strerror (errsv));
  if (fd >= 0)
    close (fd);
  if (sock >= 0)
    close (sock);
  return FALSE;
}

/* A tap device on @bridge, up, with the bridge's MTU: the daemon makes it
 * (a confined QEMU cannot run the setuid qemu-bridge-helper) and QEMU gets
 * the descriptor (-netdev tap,fd=N); the device goes when QEMU does. */
static gboolean
open_tap (MdQemuFiles *files, const char *bridge, const char *key, GError **error)
{
  struct ifreq tap = { 0 }, br = { 0 };
  int fd = open ("/dev/net/tun", O_RDWR | O_CLOEXEC);
  int sock = -1;

  if (fd < 0)
    return tap_fail (error, bridge, "/dev/net/tun", fd, sock);
  tap.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  g_strlcpy (tap.ifr_name, "mdtap%d", IFNAMSIZ);
  if (ioctl (fd, TUNSETIFF, &tap) < 0)
    return tap_fail (error, bridge, "TUNSETIFF", fd, sock);
  sock = socket (AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  g_strlcpy (br.ifr_name, bridge, IFNAMSIZ);
  if (sock < 0 || ioctl (sock, SIOCGIFMTU, &br) < 0)
    return tap_fail (error, bridge, "the bridge's MTU", fd, sock);
  tap.ifr_mtu = br.ifr_mtu;
  if (ioctl (sock, SIOCSIFMTU, &tap) < 0)
    return tap_fail (error, bridge, "the tap's MTU", fd, sock);
  br.ifr_ifindex = (int) if_nametoindex (tap.ifr_name);
  if (br.ifr_ifindex == 0 || ioctl (sock, SIOCBRADDIF, &br) < 0)
    return tap_fail (error, bridge, "adding the tap to the bridge", fd, sock);
  if (ioctl (sock, SIOCGIFFLAGS, &tap) < 0)
    return tap_fail (error, bridge, "the tap's flags", fd, sock);
  tap.ifr_flags |= IFF_UP;
  if (ioctl (sock, SIOCSIFFLAGS, &tap) < 0)
    return tap_fail (error, bridge, "bringing the tap up", fd, sock);
  close (sock);
  md_qemu_files_set (files, key, md_qemu_files_take (files, fd));
  return TRUE;
}

static gboolean
open_taps (MdQemuFiles *files, const MdDomain *dom, const MdQemuArgvOptions *o, GError **error)
{
  for (guint i = 0; i < dom->interfaces->len; i++)
    {
      const MdDomainInterface *n = dom->interfaces->pdata[i];
      g_autofree char *key = g_strdup_printf ("tap%u", i);
      const char *bridge = n->type == MD_DOMAIN_INTERFACE_BRIDGE ? n->source
                           : n->type == MD_DOMAIN_INTERFACE_NETWORK && o->networks != NULL
                               ? g_hash_table_lookup (o->networks, n->source)
                               : NULL;

      if (bridge != NULL && !open_tap (files, bridge, key, error))
        {
          g_prefix_error (error, "interface %s: ", n->alias);
          return FALSE;
        }
    }
  return TRUE;
}

MdQemuFiles *
md_qemu_open_guest_files (const MdDomain *dom, const MdQemuArgvOptions *opts, const char *host_name,
                          int first_fd, GError **error)
{
  g_autoptr (MdQemuFiles) files = md_qemu_files_new (first_fd);

  if (!open_disks (files, dom, error) || !open_serials (files, dom, opts, error)
      || !open_sockets_and_secrets (files, dom, opts, host_name, error)
      || !open_boot_files (files, dom, error)
      || (opts->taps && !open_taps (files, dom, opts, error)))
    return NULL;
  return g_steal_pointer (&files);
}
