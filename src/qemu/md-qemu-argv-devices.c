/* migrationd: QEMU arguments for graphics (with password secrets), channels,
 * sound, USB redirection, watchdog and panic devices. */
#include "config.h"

#include "md-qemu-argv.h"
#include "md-qemu-argv-private.h"
#include "common/md-error.h"

#include <errno.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <string.h>

static char *
files_dir (const MdQemuArgvOptions *opts)
{
  if (opts->runtime_files_dir)
    return g_strdup (opts->runtime_files_dir);
  return g_path_get_dirname (opts->qmp_socket);
}

static char *
guest_file (const MdDomain *dom, const MdQemuArgvOptions *opts, const char *what,
            const char *suffix)
{
  g_autofree char *dir = files_dir (opts);
  g_autofree char *file = g_strdup_printf ("%s.%s.%s", dom->name, what, suffix);

  return g_build_filename (dir, file, NULL);
}

char *
md_qemu_channel_socket_path (const MdDomain *dom, const MdQemuArgvOptions *opts,
                             const MdDomainChannel *ch)
{
  return guest_file (dom, opts, ch->alias, "sock");
}

static char *
secret_path (const MdDomain *dom, const MdQemuArgvOptions *opts, guint i)
{
  g_autofree char *what = g_strdup_printf ("graphics%u", i);

  return guest_file (dom, opts, what, "secret");
}

gboolean
md_qemu_write_secrets (const MdDomain *dom, const MdQemuArgvOptions *opts, GError **error)
{
  for (guint i = 0; i < dom->graphics->len; i++)
    {
      const MdDomainGraphics *g = dom->graphics->pdata[i];
      g_autofree char *path = NULL;
      g_autoptr (GError) local = NULL;

      if (!g->passwd)
        continue;
      path = secret_path (dom, opts, i);
      /* Mode 0600 from the start: the file never exists readable by others. */
      if (!g_file_set_contents_full (path, g->passwd, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0600,
                                     &local))
        return md_argv_fail (error, MD_ERROR_FAILED,
                             "guest %s: cannot write the graphics password secret: %s", dom->name,
                             local->message);
    }
  return TRUE;
}

void
md_qemu_remove_secrets (const MdDomain *dom, const char *runtime_files_dir)
{
  MdQemuArgvOptions dir = { .runtime_files_dir = runtime_files_dir };
  const MdQemuArgvOptions *opts = &dir;

  for (guint i = 0; i < dom->graphics->len; i++)
    {
      g_autofree char *path = secret_path (dom, opts, i);

      if (g_unlink (path) < 0 && errno != ENOENT)
        g_warning ("guest %s: cannot remove %s: %s", dom->name, path, g_strerror (errno));
    }
}

void
md_qemu_remove_runtime_files (const MdDomain *dom, const char *runtime_files_dir)
{
  MdQemuArgvOptions dir = { .runtime_files_dir = runtime_files_dir };
  const MdQemuArgvOptions *opts = &dir;

  md_qemu_remove_secrets (dom, runtime_files_dir);
  for (guint i = 0; i < dom->channels->len; i++)
    {
      const MdDomainChannel *ch = dom->channels->pdata[i];
      g_autofree char *path = NULL;

      if (ch->type != MD_DOMAIN_CHANNEL_UNIX)
        continue;
      path = md_qemu_channel_socket_path (dom, opts, ch);
      g_unlink (path);
    }
}

static gboolean
tcp_port_free (const char *listen, int port)
{
  g_autoptr (GSocket) sock = NULL;
  g_autoptr (GInetAddress) ia = g_inet_address_new_from_string (listen);
  g_autoptr (GSocketAddress) sa = NULL;

  if (!ia)
    ia = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  sock = g_socket_new (g_inet_address_get_family (ia), G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP,
                       NULL);
  if (!sock)
    return FALSE;
  sa = g_inet_socket_address_new (ia, port);
  return g_socket_bind (sock, sa, FALSE, NULL);
}

GArray *
md_qemu_pick_graphics_ports (const MdDomain *dom, GError **error)
{
  GArray *ports = g_array_new (FALSE, TRUE, sizeof (int));
  int next = 5900;

  for (guint i = 0; i < dom->graphics->len; i++)
    {
      const MdDomainGraphics *g = dom->graphics->pdata[i];
      int port = 0;

      if (g->type == MD_DOMAIN_GRAPHICS_SPICE && g->autoport)
        {
          const char *listen = g->listen ? g->listen : "127.0.0.1";

          /* Like QEMU's VNC "to=": the first free one of 100 ports. */
          for (; next < 6000 && !port; next++)
            if (tcp_port_free (listen, next))
              port = next;
          if (!port)
            {
              g_array_unref (ports);
              g_set_error (error, MD_ERROR, MD_ERROR_FAILED,
                           "guest %s: no free TCP port in 5900..5999 for SPICE on %s", dom->name,
                           listen);
              return NULL;
            }
        }
      g_array_append_val (ports, port);
    }
  return ports;
}

char *
md_argv_debug_qmp_path (const MdDomain *dom, const char *host_name)
{
  g_autofree char *file = g_strdup_printf ("%s-%s.qmp", host_name, dom->name);

  return g_build_filename (g_getenv ("MIGRATIOND_DEBUG_QMP_DIR"), file, NULL);
}

GStrv
md_qemu_build_start_argv (const MdDomain *dom, const MdQemuArgvOptions *opts, const char *host_name,
                          GError **error)
{
  MdQemuArgvOptions o = *opts;
  g_autoptr (GArray) ports = md_qemu_pick_graphics_ports (dom, error);
  g_autofree char *debug_qmp = NULL;
  g_auto (GStrv) argv = NULL;

  if (!ports)
    return NULL;
  o.graphics_ports = (const int *) ports->data;
  o.n_graphics_ports = ports->len;
  if (g_getenv ("MIGRATIOND_DEBUG_QMP_DIR") != NULL)
    {
      /* A second monitor for inspection (tests); never set in production. */
      debug_qmp = md_argv_debug_qmp_path (dom, host_name);
      o.debug_qmp_socket = debug_qmp;
    }
  argv = md_qemu_build_argv (dom, &o, error);
  /* With passed files the secrets travel as memfds, never as files. */
  if (!argv || (o.files == NULL && !md_qemu_write_secrets (dom, &o, error)))
    return NULL;
  return g_steal_pointer (&argv);
}

/* ---- graphics ---- */

/* FALSE when @port is below VNC's display 0. */
static gboolean
add_vnc (Builder *b, int port, const char *listen, const char *secret)
{
  GString *s = g_string_new (NULL);
  gboolean v6 = strchr (listen, ':') != NULL;

  if (port >= 0 && port < 5900)
    {
      g_string_free (s, TRUE);
      return FALSE;
    }
  g_string_append_printf (s, v6 ? "[%s]:%d" : "%s:%d", listen, port >= 0 ? port - 5900 : 0);
  if (port < 0)
    g_string_append (s, ",to=100");
  if (secret)
    g_string_append_printf (s, ",password-secret=%s", secret);
  md_argv_add2 (b, "-vnc", g_string_free (s, FALSE));
  return TRUE;
}

static void
add_spice (Builder *b, const MdDomainGraphics *g, int port, const char *listen, const char *secret)
{
  g_autofree char *addr = md_argv_qo (listen);
  GString *s = g_string_new (NULL);

  g_string_append_printf (s, "port=%d,addr=%s", port, addr);
  if (secret)
    g_string_append_printf (s, ",password-secret=%s", secret);
  else
    g_string_append (s, ",disable-ticketing=on");
  if (g->image_compression)
    g_string_append_printf (s, ",image-compression=%s", g->image_compression);
  /* The guest's SPICE agent channel, when there is one, drives the mouse. */
  g_string_append (s, ",seamless-migration=on");
  md_argv_add2 (b, "-spice", g_string_free (s, FALSE));
}

gboolean
md_argv_add_graphics (Builder *b, GError **error)
{
  const MdQemuArgvOptions *o = b->opts;

  for (guint i = 0; i < b->dom->graphics->len; i++)
    {
      const MdDomainGraphics *g = b->dom->graphics->pdata[i];
      int port = i < o->n_graphics_ports && o->graphics_ports[i] > 0 ? o->graphics_ports[i]
                 : g->autoport                                       ? -1
                                                                     : g->port;
      const char *listen = g->listen ? g->listen : "127.0.0.1";
      g_autofree char *secret = NULL;

      if (g->passwd)
        {
          g_autofree char *key = g_strdup_printf ("secret%u", i);
          int fd = md_qemu_files_get (o->files, key);
          g_autofree char *path =
              fd >= 0 ? g_strdup_printf ("/proc/self/fd/%d", fd) : secret_path (b->dom, o, i);
          g_autofree char *file = md_argv_qo (path);

          /* The password reaches QEMU through a file only we can read:
           * argv (visible in ps and our log) names the file, not the word. */
          secret = g_strdup_printf ("graphics%u-secret", i);
          md_argv_add2 (b, "-object",
                        g_strdup_printf ("secret,id=%s,file=%s,format=raw", secret, file));
        }
      if (g->type == MD_DOMAIN_GRAPHICS_VNC)
        {
          if (!add_vnc (b, port, listen, secret))
            return md_argv_fail (error, MD_ERROR_INVALID_ARGUMENT,
                                 "graphics vnc: port %d is below 5900 (VNC display 0)", port);
        }
      else
        {
          if (port <= 0)
            return md_argv_fail (error, MD_ERROR_INVALID_ARGUMENT,
                                 "graphics spice: autoport needs a port allocated by the caller "
                                 "(MdQemuArgvOptions.graphics_ports)");
          add_spice (b, g, port, listen, secret);
        }
    }
  return TRUE;
}

/* ---- channels ---- */

static int
channel_fd (Builder *b, guint i)
{
  g_autofree char *key = g_strdup_printf ("channel%u", i);

  return md_qemu_files_get (b->opts->files, key);
}

gboolean
md_argv_add_channels (Builder *b, GError **error)
{
  for (guint i = 0; i < b->dom->channels->len; i++)
    {
      const MdDomainChannel *ch = b->dom->channels->pdata[i];
      const MdDomainAddress *a = &ch->address;
      const MdDomainController *vs =
          md_argv_controller (b->dom, MD_DOMAIN_CONTROLLER_VIRTIO_SERIAL, a->controller);

      if (!vs || a->type != MD_DOMAIN_ADDRESS_VIRTIO_SERIAL)
        return md_argv_fail (error, MD_ERROR_INVALID_ARGUMENT,
                             "channel %s: no virtio-serial controller %u", ch->alias,
                             a->controller);
      if (ch->type == MD_DOMAIN_CHANNEL_UNIX && channel_fd (b, i) >= 0)
        md_argv_add2 (b, "-chardev",
                      g_strdup_printf ("socket,id=char%s,fd=%d,server=on,wait=off", ch->alias,
                                       channel_fd (b, i)));
      else if (ch->type == MD_DOMAIN_CHANNEL_UNIX)
        {
          g_autofree char *path = md_qemu_channel_socket_path (b->dom, b->opts, ch);
          g_autofree char *p = md_argv_qo (path);

          md_argv_add2 (
              b, "-chardev",
              g_strdup_printf ("socket,id=char%s,path=%s,server=on,wait=off", ch->alias, p));
        }
      else
        md_argv_add2 (b, "-chardev",
                      g_strdup_printf ("spicevmc,id=char%s,name=vdagent", ch->alias));
      md_argv_add2 (b, "-device",
                    g_strdup_printf ("virtserialport,bus=%s.%u,nr=%u,chardev=char%s,id=%s,name=%s",
                                     vs->alias, a->vs_bus, a->vs_port, ch->alias, ch->alias,
                                     ch->target_name));
    }
  return TRUE;
}

/* ---- sound ---- */

gboolean
md_argv_add_sound (Builder *b, GError **error)
{
  for (guint i = 0; i < b->dom->audios->len; i++)
    {
      const MdDomainAudio *a = b->dom->audios->pdata[i];

      md_argv_add2 (b, "-audiodev", g_strdup_printf ("%s,id=audio%u", a->type, a->id));
    }
  for (guint i = 0; i < b->dom->sounds->len; i++)
    {
      const MdDomainSound *snd = b->dom->sounds->pdata[i];
      g_autofree char *props = NULL;
      gboolean hda = strcmp (snd->model, "ac97") != 0;

      if (hda)
        props = g_strdup_printf ("%s,id=%s",
                                 strcmp (snd->model, "ich9") == 0 ? "ich9-intel-hda" : "intel-hda",
                                 snd->alias);
      else
        props = g_strdup_printf ("AC97,id=%s,audiodev=audio%u", snd->alias, snd->audio_id);
      if (!md_argv_add_pci_device (b, props, &snd->address, error))
        return FALSE;
      if (hda)
        md_argv_add2 (b, "-device",
                      g_strdup_printf ("hda-duplex,id=%s-codec0,bus=%s.0,cad=0,audiodev=audio%u",
                                       snd->alias, snd->alias, snd->audio_id));
    }
  return TRUE;
}

/* ---- redirdev, watchdog, panic ---- */

gboolean
md_argv_add_misc_devices (Builder *b, GError **error)
{
  const MdDomain *dom = b->dom;

  for (guint i = 0; i < dom->redirdevs->len; i++)
    {
      const MdDomainRedirdev *r = dom->redirdevs->pdata[i];
      const MdDomainController *usb = md_argv_controller (dom, MD_DOMAIN_CONTROLLER_USB, 0);

      if (!usb || g_strcmp0 (usb->model, "none") == 0)
        return md_argv_fail (error, MD_ERROR_INVALID_ARGUMENT, "redirdev %s needs a USB controller",
                             r->alias);
      md_argv_add2 (b, "-chardev", g_strdup_printf ("spicevmc,id=char%s,name=usbredir", r->alias));
      md_argv_add2 (b, "-device",
                    g_strdup_printf ("usb-redir,chardev=char%s,id=%s,bus=%s.0,port=%u", r->alias,
                                     r->alias, usb->alias, r->address.usb_port));
    }
  for (guint i = 0; i < dom->watchdogs->len; i++)
    {
      const MdDomainWatchdog *w = dom->watchdogs->pdata[i];

      if (strcmp (w->model, "i6300esb") == 0)
        {
          g_autofree char *props = g_strdup_printf ("i6300esb,id=%s", w->alias);

          if (!md_argv_add_pci_device (b, props, &w->address, error))
            return FALSE;
        }
      else /* itco: the ICH9 LPC's TCO timer only reboots when told to */
        md_argv_add2 (b, "-global", g_strdup ("ICH9-LPC.noreboot=off"));
      md_argv_add2 (b, "-watchdog-action", g_strdup (w->action ? w->action : "reset"));
    }
  for (guint i = 0; i < dom->panics->len; i++)
    {
      const MdDomainPanic *p = dom->panics->pdata[i];

      if (strcmp (p->model, "isa") == 0)
        md_argv_add2 (b, "-device", g_strdup_printf ("pvpanic,id=%s,ioport=1285", p->alias));
      else
        {
          g_autofree char *props = g_strdup_printf ("pvpanic-pci,id=%s", p->alias);

          if (!md_argv_add_pci_device (b, props, &p->address, error))
            return FALSE;
        }
    }
  if (dom->suspend_to_mem || dom->suspend_to_disk)
    {
      const char *pm = b->q35 ? "ICH9-LPC" : "PIIX4_PM";

      if (dom->suspend_to_mem)
        md_argv_add2 (b, "-global",
                      g_strdup_printf ("%s.disable_s3=%d", pm,
                                       dom->suspend_to_mem == MD_DOMAIN_TRISTATE_OFF));
      if (dom->suspend_to_disk)
        md_argv_add2 (b, "-global",
                      g_strdup_printf ("%s.disable_s4=%d", pm,
                                       dom->suspend_to_disk == MD_DOMAIN_TRISTATE_OFF));
    }
  return TRUE;
}
