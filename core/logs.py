"""Logging of every qtrader process: one line format, and every file rotates.

The files, under the data directory:

- ``logs/runtime.log`` - the manager's process (the daemon, or the console running the core);
- ``logs/console.log`` - a console attached to a daemon (the daemon owns runtime.log);
- ``logs/<ID>/trader.log`` - one account's trader (its process, or its logger in embedded mode);
- ``logs/<ID>/stderr.log`` - what a trader process writes outside logging (a traceback it dies
  of, a library's prints): its stdout and stderr, opened by the manager.

The log handlers rotate by size as they write. stderr.log cannot: the trader process holds
it open as its file descriptors 1 and 2, and renaming it under a writer changes nothing (and
a pipe through the manager would stop a trader that outlives its manager at its next print).
It is rotated instead each time the manager (re)starts the trader, if it is over its limit;
what grows it is a crash loop, and every turn of that loop is a restart.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from datetime import datetime
from pathlib import Path

from config import paths as cfg_paths
from core.models import CHINA_TZ

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
MAX_BYTES = 20 * 1024 * 1024  # per log file, then it rotates
BACKUPS = 5  # rotated files kept: trader.log.1 ... trader.log.5
#: stderr.log holds only what escaped logging: a few tracebacks fit many times over.
WORKER_OUTPUT_MAX_BYTES = 5 * 1024 * 1024
WORKER_OUTPUT_BACKUPS = 3


class ExchangeTimeFormatter(logging.Formatter):
    """The common line format, its time in exchange time (China Standard Time, the time of the
    console, the orders and the venues) whatever the machine's zone, and saying so:
    ``2026-12-03 21:05:03.123 CST INFO    qtrader.daemon: ...``."""

    def __init__(self) -> None:
        super().__init__(FORMAT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        moment = datetime.fromtimestamp(record.created, CHINA_TZ)
        return f"{moment:%Y-%m-%d %H:%M:%S}.{int(record.msecs):03d} {CHINA_TZ.tzname(None)}"


class RotatingLogFile(logging.handlers.RotatingFileHandler):
    """A rotating log file that a full (or failing) disk cannot turn into a storm: the first
    line it cannot write is reported on stderr in one line, the lines after it are dropped
    quietly (not a traceback each, logging's default), and the first line written again says
    so. Errors other than the disk's are logging's usual report."""

    _failing = ""  # the disk's error while lines are being dropped
    _failed_now = False

    def emit(self, record: logging.LogRecord) -> None:
        self._failed_now = False
        super().emit(record)
        if self._failing and not self._failed_now:
            self._failing = ""
            self._tell(f"qtrader: {self.baseFilename} is written again")

    def handleError(self, record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            super().handleError(record)
            return
        self._failed_now = True
        if str(exc) != self._failing:
            self._failing = str(exc)
            self._tell(
                f"qtrader: cannot write {self.baseFilename} ({exc}): its lines are dropped until it can"
            )

    @staticmethod
    def _tell(text: str) -> None:
        try:
            print(text, file=sys.stderr, flush=True)
        except (OSError, ValueError):  # stderr on the same full disk, or gone
            pass


def file_handler(path: Path) -> logging.Handler:
    """A handler writing ``path`` in the common format, rotated at ``MAX_BYTES``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = RotatingLogFile(path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8")
    handler.setFormatter(ExchangeTimeFormatter())
    return handler


def log_to_file(logger: logging.Logger, path: Path) -> None:
    """Add a rotating handler of ``path`` to ``logger``, once (a second call for the same file,
    e.g. a trader restarted in the same process, adds nothing)."""
    target = os.path.abspath(path)
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler) and handler.baseFilename == target:
            return
    logger.addHandler(file_handler(path))


def _setup_process(path: Path, level: str, *, to_terminal: bool = False) -> None:
    root = logging.getLogger()
    root.setLevel(level)
    log_to_file(root, path)
    if to_terminal:
        term = logging.StreamHandler(sys.stderr)
        term.setFormatter(ExchangeTimeFormatter())
        root.addHandler(term)


def setup_runtime_logging(data_dir: Path, level: str) -> None:
    """The manager's process (daemon or console): everything to runtime.log; the terminal
    belongs to the console or to the daemon's status lines."""
    _setup_process(cfg_paths.runtime_log_path(data_dir), level)


def setup_console_logging(data_dir: Path, level: str) -> None:
    """A console attached to a daemon: console.log (the daemon owns runtime.log)."""
    _setup_process(cfg_paths.runtime_log_path(data_dir).with_name("console.log"), level)


def setup_trader_logging(data_dir: Path, account_id: str, level: str, *, to_terminal: bool) -> None:
    """A trader process: trader.log, and the terminal too when it runs standalone."""
    _setup_process(cfg_paths.trader_log_path(data_dir, account_id), level, to_terminal=to_terminal)


def embedded_trader_logger(data_dir: Path, account_id: str) -> logging.Logger:
    """The logger of a trader running inside the manager's process: its own trader.log, and
    (propagating) the manager's runtime.log."""
    logger = logging.getLogger(f"qtrader.trader.{account_id}")
    log_to_file(logger, cfg_paths.trader_log_path(data_dir, account_id))
    return logger


def worker_output_path(data_dir: Path, account_id: str) -> Path:
    """``logs/<ID>/stderr.log``: a trader process's stdout and stderr."""
    return cfg_paths.account_log_dir(data_dir, account_id) / "stderr.log"


def rotate_worker_output(data_dir: Path, account_id: str) -> Path:
    """stderr.log, ready for a trader process about to start: its folder made, and the file
    rotated first if it is over ``WORKER_OUTPUT_MAX_BYTES`` (see the module's docstring)."""
    path = worker_output_path(data_dir, account_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    rotate_if_over(path, WORKER_OUTPUT_MAX_BYTES, WORKER_OUTPUT_BACKUPS)
    return path


def rotate_if_over(path: Path, max_bytes: int, backups: int) -> bool:
    """Rotate ``path`` like a RotatingFileHandler (``path.1`` the newest of ``backups`` old
    files, the oldest dropped) when it holds more than ``max_bytes``; True if it did."""
    try:
        if path.stat().st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    for n in range(backups - 1, 0, -1):
        older = path.with_name(f"{path.name}.{n}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{n + 1}"))
    if backups > 0:
        os.replace(path, path.with_name(f"{path.name}.1"))
    else:
        path.unlink()
    return True
