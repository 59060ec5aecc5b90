/* migrationd: reading a guest's QEMU log: its tail, this start's part,
 * QEMU's last error line. */
#include "config.h"

#include "md-qemu-log.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOG_TAIL_MAX_BYTES 8192

char *
md_qemu_log_tail (const char *log_path, guint n_lines)
{
  g_autofree char *buf = NULL;
  struct stat st;
  off_t offset;
  gssize len;
  char *start;
  char *end;
  guint lines = 0;
  int fd;

  if (log_path == NULL || n_lines == 0)
    return NULL;
  fd = open (log_path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0)
    return NULL;
  if (fstat (fd, &st) < 0 || st.st_size == 0)
    {
      close (fd);
      return NULL;
    }
  offset = st.st_size > LOG_TAIL_MAX_BYTES ? st.st_size - LOG_TAIL_MAX_BYTES : 0;
  buf = g_malloc (LOG_TAIL_MAX_BYTES + 1);
  do
    len = pread (fd, buf, LOG_TAIL_MAX_BYTES, offset);
  while (len < 0 && errno == EINTR);
  close (fd);
  if (len <= 0)
    return NULL;
  buf[len] = '\0';

  start = buf;
  if (offset > 0)
    {
      /* Drop the partial first line. */
      char *nl = strchr (buf, '\n');

      start = nl != NULL ? nl + 1 : buf;
    }
  end = buf + strlen (buf);
  while (end > start && g_ascii_isspace (end[-1]))
    end--;
  *end = '\0';
  if (end == start)
    return NULL;
  for (char *p = end; p > start; p--)
    {
      if (p[-1] == '\n' && ++lines == n_lines)
        {
          start = p;
          break;
        }
    }
  return g_utf8_make_valid (start, -1);
}

/* A start-up log is short; a long-running guest's is not, and only the
 * latest start matters. */
#define LOG_READ_MAX (256 * 1024)

static char *
read_end (const char *path)
{
  g_autoptr (GMappedFile) map = g_mapped_file_new (path, FALSE, NULL);
  gsize len;
  const char *data;

  if (!map)
    return NULL;
  len = g_mapped_file_get_length (map);
  data = g_mapped_file_get_contents (map);
  if (!data || len == 0)
    return NULL;
  if (len > LOG_READ_MAX)
    {
      data += len - LOG_READ_MAX;
      len = LOG_READ_MAX;
    }
  return g_utf8_make_valid (data, len);
}

/* "2026-12-02T05:00:00.000000Z qemu-system-x86_64: -netdev ...: msg" ->
 * "qemu-system-x86_64: -netdev ...: msg"; NULL if not a QEMU message. */
static const char *
qemu_message (const char *line)
{
  const char *p = strstr (line, "qemu-system-");

  if (!p)
    p = strstr (line, "qemu: ");
  if (!p || !strchr (p, ':'))
    return NULL;
  return p;
}

char *
md_qemu_log_this_start (const char *log_path, guint max_lines, char **last_error)
{
  g_autofree char *text = log_path ? read_end (log_path) : NULL;
  g_auto (GStrv) lines = NULL;
  g_autoptr (GPtrArray) kept = g_ptr_array_new ();
  guint first = 0, n;

  if (last_error)
    *last_error = NULL;
  if (!text)
    return NULL;
  lines = g_strsplit (text, "\n", -1);
  n = g_strv_length (lines);
  for (guint i = 0; i < n; i++)
    if (strstr (lines[i], ": migrationd starting: "))
      first = i + 1;
  for (guint i = first; i < n; i++)
    {
      g_strchomp (lines[i]);
      if (*lines[i])
        g_ptr_array_add (kept, lines[i]);
    }
  if (kept->len == 0)
    return NULL;
  if (last_error)
    for (guint i = kept->len; i > 0 && !*last_error; i--)
      {
        const char *msg = qemu_message (kept->pdata[i - 1]);

        if (msg)
          *last_error = g_strdup (msg);
      }
  if (kept->len > max_lines)
    g_ptr_array_remove_range (kept, 0, kept->len - max_lines);
  g_ptr_array_add (kept, NULL);
  return g_strjoinv ("\n", (char **) kept->pdata);
}

void
md_qemu_log_explain_start_failure (GError *error, const char *prefix, const char *log_path)
{
  g_autofree char *last_error = NULL;
  g_autofree char *log = log_path ? md_qemu_log_this_start (log_path, 20, &last_error) : NULL;
  g_auto (GStrv) first_line = g_strsplit (error->message, "\n", 2);
  GString *msg = g_string_new (prefix);

  /* QEMU's own words first; earlier runs' log would only mislead. */
  if (last_error)
    g_string_append_printf (msg, "%s\n(%s)", last_error, first_line[0] ? first_line[0] : "");
  else
    g_string_append (msg, first_line[0] ? first_line[0] : "");
  if (log)
    g_string_append_printf (msg, "\nQEMU log of this start (%s):\n%s", log_path, log);
  g_free (error->message);
  error->message = g_string_free (msg, FALSE);
}
