"""PidLock: a file locked (flock) for as long as its owner process runs, holding its pid.

The kernel drops the lock when the process dies, however it dies, so a lock left
by a SIGKILLed process never blocks the next one. Used for "one daemon per data
directory" and "one trader per account". ``lock_holder`` tells who holds one without
taking it (``--status`` looking for traders left without a manager).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from pathlib import Path

PROC_LOCKS = Path("/proc/locks")


def lock_holder(path: Path) -> int | None:
    """The pid written in a lock file whose lock a live process holds; None when nobody
    holds it (or there is no such file).

    On Linux the kernel's lock table (``/proc/locks``) answers without touching the lock,
    so a process acquiring it at that moment is never refused because we looked; elsewhere
    a shared lock is tried and dropped at once. A holder that wrote no pid reads as 0.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        info = os.fstat(fd)
        held = _held_per_kernel(info.st_dev, info.st_ino)
        if held is None:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                held = True
            else:
                fcntl.flock(fd, fcntl.LOCK_UN)
                held = False
        if not held:
            return None
        text = os.read(fd, 32).decode(errors="replace").strip()
    finally:
        os.close(fd)
    return int(text) if text.isdigit() else 0


def _held_per_kernel(dev: int, inode: int) -> bool | None:
    """Whether ``/proc/locks`` lists a lock on that file; None when it cannot be read."""
    try:
        table = PROC_LOCKS.read_text()
    except OSError:
        return None
    wanted = f"{os.major(dev):02x}:{os.minor(dev):02x}:{inode}"
    return any(len(f) > 5 and f[5] == wanted for f in (line.split() for line in table.splitlines()))


class LockHeld(Exception):
    """Another live process holds the lock; ``holder`` is the pid it wrote ("?" if none)."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


class UnsafeLockFile(OSError):
    """The lock's path is a symlink, or not a regular file of this user's: never written."""


class PidLock:
    def __init__(self, path: Path, *, mode: int = 0o600, remove_on_release: bool = False) -> None:
        self.path = path
        self.mode = mode
        self.remove_on_release = remove_on_release
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock and write our pid; LockHeld when a live process has it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # never through a symlink (one planted in the directory would make us write our pid
        # over whatever it points at), and only a regular file of our own
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, self.mode)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafeLockFile(
                    f"{self.path} is a symbolic link; refusing to write through it"
                ) from None
            raise
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
            os.close(fd)
            raise UnsafeLockFile(f"{self.path} is not a regular file of your own; refusing to use it")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise LockHeld(holder) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        if self.remove_on_release:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
