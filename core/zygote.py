"""The trader zygote: one process that has imported what every trader imports, forking each
trader it is asked for, in milliseconds instead of a fresh interpreter's 0.2-0.5 s of imports.

The manager (core/supervisor.py) starts it first thing (``Zygote.launch``: the console does so
right after loading the configuration, so its imports run on another core while the console
imports its own) and asks it for each trader's process; a trader so started is what
``python -m core.trader ...`` would be, property by property:

- its environment is the one the manager gives it (its own account's secrets, no other's:
  ARCHITECTURE.md, "Invariants" 6); the zygote itself is started without any account's secret
  and never reads a start's environment (the fork does), so no fork can inherit one. ``/proc/<pid>/environ`` and ``/proc/<pid>/cmdline`` show the
  trader's own (rewritten in place: the zygote is started with room for them), so ``ps``, the
  orphan search (core/orphans.py reads ``--socket-path`` there) and the isolation checks see a
  trader as they always did;
- its own session (``setsid``), stdin ``/dev/null``, stdout and stderr the account's rotated
  output file (the manager opens it and passes the descriptor over the zygote's socket), no
  other descriptor of the zygote's;
- a fresh state: the zygote runs no event loop and no thread and opens no socket but its own
  (closed in the child); the trader builds its own, as ``core.trader_process.main`` always does;
- the manager gets its exit code (the zygote reaps it and reports ``os.waitstatus_to_exitcode``,
  so SIGKILL is ``-9`` and ``EXIT_CONFIG`` is 2) and signals it by pid (a pidfd, so a pid reused
  after the exit is never hit).

If the zygote is not ready in time, refuses a start (no room for that environment) or dies, the
trader is started the plain way, and so is every later one until a new zygote is launched
(``RELAUNCH_AFTER`` later, at a start): nothing fails for the zygote's sake. A trader already forked when the zygote died runs on; its exit is still seen
(its pidfd), but not its code: it counts as killed (``-SIGKILL``), restarted as after a crash.

Wire: one ``SOCK_SEQPACKET`` Unix socket (the zygote's stdin), one JSON object per message;
the manager sends ``{"argv"}`` with two descriptors: the output file's, and a sealed memfd
holding the start ``{"argv", "env", "cwd"}``, read only by the forked trader (the zygote never
reads an environment, so no account's secret ever passes through its memory, nor from it into
another account's fork). The zygote answers ``{"ready", "room"}`` once (the bytes its
command line and environment can hold; with ``"refused"`` when it cannot start traders),
``{"pid"}`` or ``{"refused"}`` per request, and ``{"exited", "code"}`` per trader.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from config import AppConfig

log = logging.getLogger("qtrader.manager")

#: What every trader imports before it can trade; a gateway or strategy module of its own (CTP,
#: vnpy's CtaTemplate and pandas, TA-Lib) it imports after the fork, so no trader carries
#: another's libraries (nor their memory).
PRELOAD = ("core.trader", "gateways.sim", "strategies", "storage")
#: A zygote given up is launched again this long after, at the next start (until then: plain).
RELAUNCH_AFTER = 60.0
READY_WAIT = 20.0  # a zygote not ready by then (its imports on a very busy machine) is given up
REPLY_WAIT = 5.0  # a fork is milliseconds; a zygote silent this long is dead to us
ROOM_VARIABLE = "QTRADER_ZYGOTE_ROOM"  # the room for a trader's environment in /proc/<pid>/environ
ARG_ROOM = 8192  # room for a trader's command line in /proc/<pid>/cmdline
MAX_MESSAGE = 1 << 20


def _environment_size(env: dict[str, str]) -> int:
    return sum(len(os.fsencode(k)) + len(os.fsencode(v)) + 2 for k, v in env.items())


class ZygoteProcess:
    """A trader forked by the zygote: what the supervisor uses of ``asyncio.subprocess.Process``
    (``pid``, ``returncode``, ``wait``, ``terminate``, ``kill``)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._exited = asyncio.Event()
        self._pidfd: int | None = None
        self._gone = False  # exited before we held it: its exit report is on its way
        self._loop: asyncio.AbstractEventLoop | None = None  # watching the pidfd (zygote dead)
        try:
            self._pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            self._gone = True
        except OSError:
            pass  # no pidfds here (Linux < 5.3): signals go by pid

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is not None:
            return
        if self._gone:  # never by pid: it may be another process's by now
            raise ProcessLookupError(self.pid)
        if self._pidfd is None:
            os.kill(self.pid, sig)
        else:
            signal.pidfd_send_signal(self._pidfd, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _exit(self, code: int) -> None:
        if self.returncode is not None:
            return
        self.returncode = code
        self._unwatch()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        self._exited.set()

    def _orphaned(self, loop: asyncio.AbstractEventLoop) -> None:
        """The zygote died: its report will never come; the pidfd says when the trader exits."""
        if self.returncode is not None:
            return
        if self._pidfd is None:
            self._exit(-signal.SIGKILL)
            return
        self._loop = loop
        loop.add_reader(self._pidfd, self._exit, -signal.SIGKILL)

    def _unwatch(self) -> None:
        if self._loop is not None and self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            self._loop = None


class Zygote:
    """The manager's side: launch the zygote, ask it for traders (``spawn``), stop it."""

    def __init__(self, proc: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self._proc = proc
        self._sock = sock
        self._started = time.monotonic()
        self._ready: asyncio.Future[bool] | None = None
        self._waiting: deque[asyncio.Future[dict[str, Any]]] = deque()  # replies, in request order
        self._children: dict[int, ZygoteProcess] = {}
        self._early: dict[int, int] = {}  # exits read before their start's reply was taken
        self._reader: asyncio.Task[None] | None = None
        self._room = (0, 0)  # what a trader's command line and environment may take (its "ready")
        self.dead: str | None = None  # why it is no longer used (None: usable)
        self.died_at = 0.0  # when it was given up (time.monotonic)

    @classmethod
    def launch(cls, environment: dict[str, str], *, stderr: Path | None = None) -> Zygote | None:
        """Start the zygote with ``environment`` (no account's secrets: the caller's
        ``AppConfig.secret_variables`` removed) and room for any trader's environment; None
        if it cannot be started (then traders start the plain way)."""
        room = max(0, _environment_size(dict(os.environ)) - _environment_size(environment)) + 4096
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        err = None
        try:
            if stderr is not None:
                stderr.parent.mkdir(parents=True, exist_ok=True)
                err = open(stderr, "ab")  # noqa: SIM115 - handed to the child, closed below
            proc = subprocess.Popen(
                [sys.executable, "-m", "core.zygote", "." * ARG_ROOM],
                stdin=theirs,
                stdout=subprocess.DEVNULL,
                stderr=err if err is not None else subprocess.DEVNULL,
                env={**environment, ROOM_VARIABLE: "." * room},
                start_new_session=True,  # the terminal's Ctrl+C goes to us, not to it
                close_fds=True,
            )
        except OSError as exc:
            log.warning("trader zygote not started (%s): traders start the plain way", exc)
            ours.close()
            return None
        finally:
            theirs.close()
            if err is not None:
                err.close()
        ours.setblocking(False)
        return cls(proc, ours)

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _attach(self) -> None:
        """Bind to the running loop (the first ``spawn``: ``launch`` may come before any loop)."""
        if self._reader is not None:
            return
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._reader = loop.create_task(self._read(), name="trader-zygote")

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._ready is not None
        why = "it exited"
        try:
            while True:
                data = await loop.sock_recv(self._sock, MAX_MESSAGE)
                if not data:
                    break
                msg = json.loads(data)
                if "exited" in msg:
                    child = self._children.pop(msg["exited"], None)
                    if child is not None:
                        child._exit(msg["code"])
                    else:  # its start's reply is still queued for ``spawn``
                        self._early[msg["exited"]] = msg["code"]
                elif "ready" in msg:
                    if msg.get("refused"):
                        why = f"it cannot start traders: {msg['refused']}"
                        break
                    self._room = (msg["room"][0], msg["room"][1])
                    log.info(
                        "trader zygote ready (pid %d, %.2f s after launch)",
                        self.pid,
                        time.monotonic() - self._started,
                    )
                    self._ready.set_result(True)
                elif self._waiting:
                    waiter = self._waiting.popleft()
                    if not waiter.done():
                        waiter.set_result(msg)
        except (OSError, ValueError) as exc:
            why = f"its socket failed: {exc}"
        self._give_up(why)

    def _give_up(self, why: str) -> None:
        if self.dead is not None:
            return
        self.dead = why
        self.died_at = time.monotonic()
        log.warning("trader zygote (pid %d) no longer used: %s; traders start the plain way", self.pid, why)
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(False)
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result({})
        loop = asyncio.get_running_loop()
        for child in self._children.values():
            child._orphaned(loop)
        self._children.clear()
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()  # it stops waiting on the socket before the socket is closed
            loop.call_soon(self._sock.close)
        else:
            self._sock.close()
        with contextlib.suppress(ProcessLookupError):
            self._proc.kill()
        loop.run_in_executor(None, self._proc.wait)  # reaped, never a zombie

    async def spawn(self, argv: list[str], env: dict[str, str], output: int) -> ZygoteProcess | None:
        """A trader process running ``argv`` (``python -m core.trader ...``), or None: the
        zygote is not usable (the caller starts it the plain way). Starts asked for together
        go out together: the zygote answers them in order."""
        if self.dead is not None:
            return None
        self._attach()
        assert self._ready is not None
        try:
            ready = await asyncio.wait_for(asyncio.shield(self._ready), READY_WAIT)
        except TimeoutError:
            self._give_up(f"not ready within {READY_WAIT:g} s")
            return None
        if not ready or self.dead is not None:
            return None
        problem = _fits(argv, env, self._room)
        if problem is not None:
            log.warning("trader zygote cannot take a start: %s; started the plain way", problem)
            return None
        try:
            start = _start_file({"argv": argv, "env": env, "cwd": os.getcwd()})
        except OSError as exc:
            log.warning("trader zygote not used for a start (%s): started the plain way", exc)
            return None
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        try:
            socket.send_fds(self._sock, [json.dumps({"argv": argv}).encode()], [output, start])
            self._waiting.append(waiter)
            reply = await asyncio.wait_for(asyncio.shield(waiter), REPLY_WAIT)
        except (OSError, TimeoutError) as exc:
            self._give_up(f"a start failed: {exc!r}")
            return None
        finally:
            os.close(start)
        if "pid" not in reply:
            if reply.get("refused"):
                log.warning("trader zygote refused a start: %s; started the plain way", reply["refused"])
            return None
        child = ZygoteProcess(reply["pid"])
        if child.pid in self._early:
            child._exit(self._early.pop(child.pid))
        elif self.dead is not None:
            child._orphaned(asyncio.get_running_loop())
        else:
            self._children[child.pid] = child
        return child

    async def stop(self) -> None:
        """Close our socket (the zygote exits on it) and reap it. Traders it forked run on."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self.dead = self.dead or "stopped"
        self._sock.close()
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(None, self._proc.wait), 2.0)
        except TimeoutError:
            self._proc.kill()
            await loop.run_in_executor(None, self._proc.wait)

    def close(self) -> None:
        """Without an event loop (the owner is exiting): close our socket; the zygote exits."""
        self.dead = self.dead or "stopped"
        self._sock.close()


def _start_file(request: dict[str, Any]) -> int:
    """A memfd holding ``request``, sealed (the trader reads it as written), at offset 0."""
    fd = os.memfd_create("qtrader-trader-start", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        data = json.dumps(request).encode()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        fcntl.fcntl(
            fd,
            fcntl.F_ADD_SEALS,
            fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL,
        )
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _fits(argv: list[str], env: dict[str, str], room: tuple[int, int]) -> str | None:
    """Why a trader's ``argv`` and ``env`` cannot be the zygote's fork's (None: they can)."""
    args = sum(len(os.fsencode(a)) + 1 for a in argv)
    if args > room[0]:
        return f"a command line of {args} bytes, room for {room[0]}"
    size = _environment_size(env)
    if size > room[1]:
        return f"an environment of {size} bytes, room for {room[1]}"
    if "core.trader" not in argv:
        return "not a trader's command line (python -m core.trader ...)"
    return None


def launch_zygote(config: AppConfig, data_dir: Path) -> Zygote | None:
    """The zygote for ``config``'s traders: our environment without any account's secret (nor
    the Redis password), its own errors in ``logs/zygote.log``."""
    withheld = config.secret_variables()
    environment = {name: value for name, value in os.environ.items() if name not in withheld}
    return Zygote.launch(environment, stderr=data_dir / "logs" / "zygote.log")


# =========================================================================== the zygote


def _proc_areas() -> tuple[int, int, int, int]:
    """Where this process's command line and environment live (``/proc/self/stat`` 48-51)."""
    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    arg_start, arg_end, env_start, env_end = (int(fields[i - 3]) for i in (48, 49, 50, 51))
    return arg_start, arg_end, env_start, env_end


def _rewrite_areas(argv: list[str], env: dict[str, str] | None) -> None:
    """Write ``argv`` (and ``env``) over this process's command line (and environment) as the
    kernel shows them in ``/proc/self/cmdline`` (``environ``), NUL-padded. Raise ``ValueError``
    if one does not fit. ``os.environ`` must hold the environment already: nothing points into
    the old strings then (glibc's ``setenv`` copies)."""
    arg_start, arg_end, env_start, env_end = _proc_areas()
    args = b"".join(os.fsencode(a) + b"\0" for a in argv)
    envb = b"".join(os.fsencode(k) + b"=" + os.fsencode(v) + b"\0" for k, v in (env or {}).items())
    if len(args) > arg_end - arg_start:
        raise ValueError(f"a command line of {len(args)} bytes, room for {arg_end - arg_start}")
    if env is not None and len(envb) > env_end - env_start:
        raise ValueError(f"an environment of {len(envb)} bytes, room for {env_end - env_start}")
    fd = os.open("/proc/self/mem", os.O_RDWR)
    try:
        os.pwrite(fd, args.ljust(arg_end - arg_start, b"\0"), arg_start)
        if env is not None:
            os.pwrite(fd, envb.ljust(env_end - env_start, b"\0"), env_start)
    finally:
        os.close(fd)


def _send(sock: socket.socket, msg: dict[str, Any]) -> None:
    sock.sendall(json.dumps(msg).encode())


def _child(sock: socket.socket, wakeup: tuple[int, int], output: int, start: int) -> NoReturn:
    """In the forked trader: read its start (``start``, the memfd the zygote passed on unread),
    become what ``python -m core.trader ...`` would be, then run it. It leaves as that
    interpreter would (``sys.exit``, up through the zygote's frames, none of which catches it):
    its threads are waited for, its ``atexit`` handlers run, its output flushed."""
    try:
        with os.fdopen(start, "rb") as f:
            request: dict[str, Any] = json.loads(f.read())
        os.setsid()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        sock.close()
        for fd in wakeup:
            os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        env: dict[str, str] = request["env"]
        os.environ.clear()
        os.environ.update(env)
        os.chdir(request["cwd"])
        argv: list[str] = request["argv"]
        _rewrite_areas(argv, env)  # the manager checked that they fit
        args = argv[argv.index("core.trader") + 1 :]
        sys.argv = [str(Path(__file__).with_name("trader.py")), *args]
        import random

        random.seed()  # the zygote's state is every fork's: each its own
        from core.trader_process import main
    except BaseException:  # not a trader yet: never back into the zygote's loop
        with contextlib.suppress(Exception):
            traceback.print_exc()
            sys.stderr.flush()
        os._exit(1)
    sys.exit(main(args))


def main() -> int:
    """``python -m core.zygote``: import, then fork a trader per request on stdin (a socket)."""
    sock = socket.socket(fileno=os.dup(0))
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    try:
        # our own command line, short (the room stays), and the room variable out of our way
        os.environ.pop(ROOM_VARIABLE, None)
        _rewrite_areas([sys.executable, "-m", "core.zygote"], None)
        import importlib

        for name in PRELOAD:
            importlib.import_module(name)
        import gc

        gc.collect()
        gc.freeze()  # what every fork shares stays shared: no collection touches it
    except Exception as exc:  # any failure here: traders start the plain way
        _send(sock, {"ready": False, "refused": f"{type(exc).__name__}: {exc}"})
        return 1
    reader, writer = os.pipe()
    os.set_blocking(writer, False)
    signal.set_wakeup_fd(writer)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    arg_start, arg_end, env_start, env_end = _proc_areas()
    _send(sock, {"ready": True, "room": [arg_end - arg_start, env_end - env_start]})
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    selector.register(reader, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            if key.fileobj is reader:
                with contextlib.suppress(BlockingIOError):
                    os.read(reader, 4096)
                _reap(sock)
                continue
            try:
                data, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, 2)
            except OSError:
                return 0
            if not data:
                return 0  # the manager is gone (or stopped us): our traders run on
            # the start itself (its environment: an account's secrets) is the fork's to read
            argv = json.loads(data)["argv"]
            problem = None if len(fds) == 2 else "not an output file and a start"
            if problem is None and "core.trader" not in argv:
                problem = "not a trader's command line (python -m core.trader ...)"
            if problem is not None:
                for fd in fds:
                    os.close(fd)
                _send(sock, {"refused": problem})
                continue
            pid = os.fork()
            if pid == 0:
                selector.close()
                _child(sock, (reader, writer), fds[0], fds[1])
            for fd in fds:
                os.close(fd)
            _send(sock, {"pid": pid})
        _reap(sock)


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        with contextlib.suppress(OSError):
            _send(sock, {"exited": pid, "code": os.waitstatus_to_exitcode(status)})


if __name__ == "__main__":
    sys.exit(main())
