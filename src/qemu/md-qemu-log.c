/* migrationd: the tail of a QEMU log file, quoted in errors. */
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
