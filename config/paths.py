"""Where qtrader-tui keeps its files: data, logs, per-account state and Unix sockets.

Layout under the data directory (ARCHITECTURE.md, "Settings, logs and files")::

    <data_dir>/trading_<ID>.db          one database per account (storage/)
    <data_dir>/logs/runtime.log         the manager
    <data_dir>/logs/<ID>/trader.log     one trader
    <data_dir>/state/<ID>/              gateway flow files, sim exchange state

Only ``socket_dir`` touches the file system (it must create and secure the
directory before anyone binds a socket in it); the other functions compute
paths and leave creation to the component that writes there.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from pathlib import Path

import platformdirs

from config.errors import ConfigError
from config.schema import AppConfig, check_account_id

__all__ = [
    "HOME_ENV_VAR",
    "SOCKET_PATH_MAX",
    "account_log_dir",
    "account_state_dir",
    "control_socket_path",
    "data_dir",
    "runtime_log_path",
    "socket_dir",
    "socket_dir_path",
    "socket_dir_problem",
    "trader_log_path",
    "trader_socket_path",
]

#: Environment variable overriding the default data directory.
HOME_ENV_VAR = "QTRADER_HOME"

#: Longest usable Unix socket path in bytes: sun_path is 108 bytes on Linux (104 on
#: macOS/BSD), including the terminating NUL.
SOCKET_PATH_MAX = 107 if sys.platform.startswith("linux") else 103

# The longest trader socket name a valid account id can produce (ids are at most 32 characters).
_LONGEST_SOCKET_NAME = f"trader-{'X' * 32}.sock"


def data_dir(config: AppConfig, cli_data_dir: str | None = None) -> Path:
    """The data directory: ``--data-dir``, else ``database.data_dir``, else ``$QTRADER_HOME``,
    else the platform's user data directory for ``qtrader``. Always absolute; not created."""
    for candidate in (cli_data_dir, config.database.data_dir, os.environ.get(HOME_ENV_VAR)):
        if candidate:
            return Path(candidate).expanduser().absolute()
    return Path(platformdirs.user_data_dir("qtrader", appauthor=False)).absolute()


def secure_data_dir(path: Path) -> Path:
    """The data directory made private before anything is written in it: created (0700) or
    checked to be a directory owned by this user, then chmod'ed to 0700 so that no other local
    user can read the databases, logs and sim state in it, or plant a file (a symlink named
    ``qtrader.pid``...) there. Files inside are then created 0600 (``PRIVATE_UMASK``).
    Raises ``ConfigError`` naming the problem."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.stat(path)
    except OSError as exc:
        raise ConfigError(
            f"data directory {path}: cannot create it: {exc.strerror or exc}", field="database.data_dir"
        ) from None
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"data directory {path} exists and is not a directory", field="database.data_dir")
    uid = os.getuid()
    if info.st_uid != uid:
        raise ConfigError(
            f"data directory {path} is owned by uid {info.st_uid}, not by you (uid {uid}); its files "
            "could be read or replaced by its owner: use a directory of your own",
            field="database.data_dir",
        )
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path


#: the processes' umask: every file they create is the user's alone (0600, directories 0700)
PRIVATE_UMASK = 0o077


def account_log_dir(data_dir: Path, account_id: str) -> Path:
    """``<data_dir>/logs/<ID>/``: one trader's logs."""
    return data_dir / "logs" / check_account_id(account_id)


def trader_log_path(data_dir: Path, account_id: str) -> Path:
    """``<data_dir>/logs/<ID>/trader.log``."""
    return account_log_dir(data_dir, account_id) / "trader.log"


def runtime_log_path(data_dir: Path) -> Path:
    """``<data_dir>/logs/runtime.log``: the manager's log."""
    return data_dir / "logs" / "runtime.log"


def account_state_dir(data_dir: Path, account_id: str) -> Path:
    """``<data_dir>/state/<ID>/``: gateway flow files and sim exchange state of one account."""
    return data_dir / "state" / check_account_id(account_id)


def trader_socket_path(sock_dir: Path, account_id: str) -> Path:
    """``<sock_dir>/trader-<ID>.sock``."""
    return sock_dir / f"trader-{check_account_id(account_id)}.sock"


def control_socket_path(sock_dir: Path) -> Path:
    """``<sock_dir>/control.sock``: the daemon's control socket for ``--attach``."""
    return sock_dir / "control.sock"


def socket_dir_path(config: AppConfig) -> Path:
    """Where the sockets go (computed, nothing created): ``socket.socket_dir``, else
    ``$XDG_RUNTIME_DIR/qtrader`` (if that directory exists), else ``<tempdir>/qtrader-<uid>``."""
    configured = config.socket.socket_dir
    if configured:
        return Path(configured).expanduser().absolute()
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / "qtrader"
    # XDG_RUNTIME_DIR is often unset or stale (su, cron, containers): fall back to a per-user dir.
    return Path(tempfile.gettempdir()) / f"qtrader-{os.getuid()}"


def socket_dir(config: AppConfig) -> Path:
    """The socket directory (``socket_dir_path``), created (mode 0700) or checked and secured.

    An existing directory must be a real directory (not a symlink) owned by this user and
    writable by no one else; it is then chmod'ed to 0700 so no other user can reach the
    sockets. Raises ``ConfigError`` (field ``socket.socket_dir``) when the directory is unsafe
    or too long for a trader socket path.
    """
    path = socket_dir_path(config)
    problem = socket_dir_problem(path)
    if problem is not None:
        raise ConfigError(f"socket.socket_dir: {problem}", field="socket.socket_dir")
    _ensure_private_dir(path, create_parents=bool(config.socket.socket_dir))
    return path


def socket_dir_problem(path: Path) -> str | None:
    """Why ``path`` cannot hold our Unix sockets (too long for ``sun_path``), or None."""
    longest = path / _LONGEST_SOCKET_NAME
    size = len(os.fsencode(longest))
    if size > SOCKET_PATH_MAX:
        return (
            f"{path} is too long for Unix sockets: a trader socket in it ({_LONGEST_SOCKET_NAME}) "
            f"would be {size} bytes, the limit is {SOCKET_PATH_MAX} (the directory may have at most "
            f"{SOCKET_PATH_MAX - size + len(os.fsencode(path))} bytes); set socket.socket_dir to a shorter path"
        )
    return None


def _ensure_private_dir(path: Path, *, create_parents: bool) -> None:
    if create_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # Created with 0700 from the start: no moment in which another user could enter it.
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigError(
            f"socket.socket_dir: {path}: cannot create it: {exc.strerror or exc}", field="socket.socket_dir"
        ) from None
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise ConfigError(
            f"socket.socket_dir: {path} is a symbolic link; refusing to use it (set socket.socket_dir to the "
            "real directory)",
            field="socket.socket_dir",
        )
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(
            f"socket.socket_dir: {path} exists and is not a directory", field="socket.socket_dir"
        )
    uid = os.getuid()
    if info.st_uid != uid:
        # Someone else's directory (e.g. planted in /tmp): their sockets could impersonate ours.
        raise ConfigError(
            f"socket.socket_dir: {path} is owned by uid {info.st_uid}, not by you (uid {uid}); remove it or set "
            "socket.socket_dir to a directory of your own",
            field="socket.socket_dir",
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o022:
        # Others could write in it until now: a socket or link of theirs may wait there under
        # one of our names. Tightening it would not remove them: refuse it.
        raise ConfigError(
            f"socket.socket_dir: {path} is writable by other users (mode {mode:04o}): anything in it may "
            "have been planted; remove it or set socket.socket_dir to a directory of your own",
            field="socket.socket_dir",
        )
    if mode != 0o700:
        os.chmod(path, 0o700)
