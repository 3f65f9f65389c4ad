"""Shared fixtures: temporary data/socket directories, configs, a running manager,
and ``wait_until`` (every test waits for conditions, never sleeps and hopes)."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from config import AppConfig, load_config_file
from core.manager import TradingManager, pid_alive
from core.models import TraderStatus

# a loaded CI machine is slow: no example deadline, no "too slow" health check failure
settings.register_profile("qtrader", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("qtrader")


async def wait_until(predicate: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll ``predicate`` on the loop until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.02)


def wait_until_sync(
    predicate: Callable[[], object], timeout: float = 20.0, what: str | Callable[[], str] = "condition"
) -> None:
    """``what`` may be a callable: then it is asked at the timeout (what the logs say by then)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout:g} s waiting for {said}")
        time.sleep(0.02)


@dataclass
class CoreEnv:
    """Directories and a config file for one test."""

    root: Path
    data_dir: Path
    sock_dir: Path
    config_path: Path

    def write_config(self, accounts_yaml: str, extra: str = "", manager: str = "") -> AppConfig:
        self.config_path.write_text(
            f"""
manager:
  heartbeat_interval: 0.2
  heartbeat_timeout: 5.0
  restart_backoff: [0, 0.5, 1]
  stable_after: 5
{manager}
socket:
  socket_dir: {self.sock_dir}
database:
  data_dir: {self.data_dir}
  snapshot_interval: 1.0
accounts:
{accounts_yaml}
{extra}
"""
        )
        return load_config_file(self.config_path)


def sim_account(
    account_id: str, watchlist: str, *, seed: int = 1, mode: str = "process", rate: float = 5.0
) -> str:
    return f"""
  - account_id: {account_id}
    gateway: sim
    mode: {mode}
    sim: {{initial_balance: 1000000, seed: {seed}, tick_rate: {rate}}}
    watchlist: [{watchlist}]
"""


THREE_ACCOUNTS = (
    sim_account("DQ1", "au2612.SHFE, rb2705.SHFE, IF2612.CFFEX", seed=1)
    + sim_account("DQ2", "ag2612.SHFE, i2705.DCE, m2705.DCE", seed=2)
    + sim_account("DQ3", "sc2701.INE, TA705.CZCE", seed=3)
)


@pytest.fixture
def core_env() -> Iterator[CoreEnv]:
    # short paths: Unix socket paths are limited to ~107 bytes
    root = Path(tempfile.mkdtemp(prefix="qt-"))
    env = CoreEnv(root=root, data_dir=root / "data", sock_dir=root / "s", config_path=root / "config.yaml")
    yield env
    _kill_leftover_traders(env.data_dir)
    shutil.rmtree(root, ignore_errors=True)


def _kill_leftover_traders(data_dir: Path) -> None:
    """Safety net: no trader of a test may outlive it."""
    for lock in data_dir.glob("state/*/trader.lock"):
        try:
            pid = int(lock.read_text().strip() or 0)
        except (OSError, ValueError):
            continue
        if pid and pid != os.getpid() and pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
async def manager(core_env: CoreEnv) -> AsyncIterator[TradingManager]:
    config = core_env.write_config(THREE_ACCOUNTS)
    mgr = TradingManager(config, config_path=core_env.config_path, data_dir=core_env.data_dir)
    await mgr.start()
    try:
        yield mgr
    finally:
        await mgr.stop()


def all_connected(mgr: TradingManager) -> bool:
    return all(mgr.state(a).status is TraderStatus.CONNECTED and mgr.state(a).ticks for a in mgr.proxies)


class _Keep(logging.Handler):
    def __init__(self, kept: list[str], level: int) -> None:
        super().__init__(level)
        self.kept = kept

    def emit(self, record: logging.LogRecord) -> None:
        self.kept.append(record.getMessage())


def kept_log(logger: logging.Logger, level: int) -> Iterator[list[str]]:
    """What ``logger`` (the module's own object) says at ``level`` and above, from a handler of
    its own on it, whatever the rest of the suite did to logging (levels, the root's handlers,
    a ``logging.disable`` left behind)."""
    kept: list[str] = []
    handler = _Keep(kept, level)
    old_level, old_disabled, old_disable = logger.level, logger.disabled, logging.root.manager.disable
    logging.disable(logging.NOTSET)
    logger.disabled = False
    logger.setLevel(level)
    logger.addHandler(handler)
    try:
        yield kept
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.disabled = old_disabled
        logging.disable(old_disable)
