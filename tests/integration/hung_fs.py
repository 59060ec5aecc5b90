#!/usr/bin/python3
"""A FUSE file system that never answers: what a hung NFS mount looks like
to the daemon. Mounted at MOUNTPOINT in the foreground; every lookup
below the root blocks until the process is killed (then the kernel fails
the blocked calls with ENOTCONN).

    hung_fs.py MOUNTPOINT
"""

import errno
import stat
import sys
import threading
import time

from fusepy import FUSE, FuseOSError, Operations


class Hung(Operations):
    def getattr(self, path, fh=None):
        if path == "/":
            now = time.time()
            return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2, "st_ctime": now, "st_mtime": now,
                    "st_atime": now}
        threading.Event().wait()  # forever
        raise FuseOSError(errno.EIO)

    def readdir(self, path, fh):
        threading.Event().wait()
        return []


if __name__ == "__main__":
    FUSE(Hung(), sys.argv[1], foreground=True, nothreads=False, allow_other=True)
