"""A real ``redis-server`` for one test (or one bench run): a free loopback port, its own
directory, no persistence unless asked (``aof``), stopped and started again on the same port
to play a Redis restart. Never a fake: what the daemons and consoles meet in production."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

#: What to do when the machine has no redis-server (make test installs it: see the Makefile).
MISSING = (
    "redis-server is not on PATH: the Redis tests need a real server "
    "(Debian/Ubuntu: apt-get install redis-server; or run make test as root, which installs it)"
)


def _die_with_us() -> None:
    """In the server's process before exec: SIGKILLed when the test or bench that started it
    dies (Linux), so no redis-server outlives an interrupted run."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process on 127.0.0.1:``port``."""

    def __init__(self, *, aof: bool = False, acl_lines: list[str] | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(MISSING)
        self.binary = binary
        self.dir = Path(tempfile.mkdtemp(prefix="qt-redis-"))
        self.port = free_port()
        self.aof = aof
        self.acl_file = self.dir / "users.acl"
        self.acl_file.write_text(
            "".join(f"{line}\n" for line in acl_lines or ["user default on nopass ~* &* +@all"])
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.aof else "no",
            "--aclfile",
            str(self.acl_file),
            "--logfile",
            str(self.dir / "redis.log"),
        ]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_us
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                log = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}:\n{log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(64).startswith((b"+PONG", b"-NOAUTH")):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout:g} s")
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGKILL: Redis gone at once, as a crashed or rebooted server (AOF keeps what it had)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
