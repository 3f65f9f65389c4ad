"""Every log file rotates: the handlers core/logs.py sets up, and a trader process's stderr.log."""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC
from pathlib import Path

import pytest

from config import paths as cfg_paths
from core import logs
from core.manager import TradingManager
from tests.conftest import CoreEnv, sim_account, wait_until


def _files(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name))


@pytest.fixture
def small_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "MAX_BYTES", 2_000)
    monkeypatch.setattr(logs, "BACKUPS", 2)


def test_a_trader_log_rotates_at_its_limit_and_keeps_its_backups(small_logs: None, tmp_path: Path) -> None:
    logger = logs.embedded_trader_logger(tmp_path, "ROT1")
    try:
        assert logs.embedded_trader_logger(tmp_path, "ROT1") is logger
        assert len(logger.handlers) == 1  # set up twice (a restart): still one file handler
        for n in range(200):
            logger.warning("line %03d %s", n, "x" * 40)
        path = cfg_paths.trader_log_path(tmp_path, "ROT1")
        assert _files(path) == ["trader.log", "trader.log.1", "trader.log.2"]
        sizes = [(path.parent / name).stat().st_size for name in _files(path)]
        assert max(sizes) <= 2_000
        # the newest lines are in the live file, in the common line format
        assert " WARNING qtrader.trader.ROT1: line 199 " in path.read_text()
    finally:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()


def test_the_runtime_log_rotates_at_its_limit(small_logs: None, tmp_path: Path) -> None:
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    try:
        logs.setup_runtime_logging(tmp_path, "INFO")
        logs.setup_runtime_logging(tmp_path, "INFO")  # once per file
        added = [h for h in root.handlers if h not in before]
        assert len(added) == 1
        for n in range(200):
            logging.getLogger("qtrader.test").info("runtime line %03d %s", n, "y" * 40)
        path = cfg_paths.runtime_log_path(tmp_path)
        assert _files(path) == ["runtime.log", "runtime.log.1", "runtime.log.2"]
        assert all((path.parent / name).stat().st_size <= 2_000 for name in _files(path))
    finally:
        for handler in [h for h in root.handlers if h not in before]:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(level)


def test_worker_output_is_rotated_at_each_start_when_over_its_limit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(logs, "WORKER_OUTPUT_MAX_BYTES", 1_000)
    monkeypatch.setattr(logs, "WORKER_OUTPUT_BACKUPS", 3)
    path = logs.rotate_worker_output(tmp_path, "W1")
    assert path == logs.worker_output_path(tmp_path, "W1") and path.parent.is_dir()
    for run in range(10):  # ten (re)starts, each run printing more than the limit
        path = logs.rotate_worker_output(tmp_path, "W1")
        with open(path, "ab") as out:
            out.write(f"run {run}\n".encode() + b"z" * 1_500 + b"\n")
    assert _files(path) == ["stderr.log", "stderr.log.1", "stderr.log.2", "stderr.log.3"]
    assert path.read_text().startswith("run 9\n")  # the live file: the last run only
    assert (path.parent / "stderr.log.3").read_text().startswith("run 6\n")
    # a run that printed little is not rotated away at the next start
    logs.rotate_worker_output(tmp_path, "W1")
    path.write_text("short\n")
    logs.rotate_worker_output(tmp_path, "W1")
    assert path.read_text() == "short\n"


async def test_stderr_log_stays_bounded_across_a_crash_loop(
    core_env: CoreEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs, "WORKER_OUTPUT_MAX_BYTES", 100)  # below one crash's traceback
    monkeypatch.setattr(logs, "WORKER_OUTPUT_BACKUPS", 2)
    config = core_env.write_config(sim_account("LOOP", "au2612.SHFE"))
    config.manager.restart_backoff = [0.0, 0.05]
    config.manager.max_restarts = 1000  # no cool-down: keep crashing
    (core_env.data_dir / "trading_LOOP.db").mkdir(parents=True)  # the database cannot open
    mgr = TradingManager(config, config_path=core_env.config_path, data_dir=core_env.data_dir)
    await mgr.start()
    crash = "sqlite3.OperationalError: unable to open database file"
    try:
        state = mgr.state("LOOP")
        # the crash's last words reach the status: read before the next start rotates them away
        await wait_until(
            lambda: state.restarts >= 5 and crash in state.status_message, timeout=90, what="five crashes"
        )
    finally:
        await mgr.stop()
    path = logs.worker_output_path(core_env.data_dir, "LOOP")
    assert _files(path) == ["stderr.log", "stderr.log.1", "stderr.log.2"]  # never more files
    for name in ("stderr.log.1", "stderr.log.2"):
        assert (path.parent / name).read_text().count(crash) == 1  # one crash each: none grows
    assert path.read_text().count(crash) <= 1  # the last start's run (it may have been stopped first)


# --------------------------------------------------------------------------- one clock: exchange time


def test_log_lines_are_in_exchange_time_with_the_zone_whatever_the_machines_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time as time_module
    from datetime import datetime

    monkeypatch.setenv("TZ", "America/New_York")  # a server far from the exchange
    time_module.tzset()
    try:
        record = logging.LogRecord("qtrader.daemon", logging.INFO, __file__, 1, "started", None, None)
        record.created = datetime(2026, 12, 3, 13, 35, 3, 250_000, tzinfo=UTC).timestamp()
        record.msecs = 250.0
        line = logs.ExchangeTimeFormatter().format(record)
    finally:
        monkeypatch.undo()
        time_module.tzset()
    assert line == "2026-12-03 21:35:03.250 CST INFO    qtrader.daemon: started"


def test_every_log_file_uses_the_exchange_time_format(tmp_path: Path) -> None:
    handler = logs.file_handler(tmp_path / "x.log")
    try:
        assert isinstance(handler.formatter, logs.ExchangeTimeFormatter)
    finally:
        handler.close()


def test_daemon_status_lines_are_stamped_in_exchange_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    from datetime import datetime

    from core import daemon
    from core.aggregator import DataAggregator
    from core.models import CHINA_TZ

    monkeypatch.setattr(daemon, "now", lambda: datetime(2026, 12, 3, 21, 5, 3, tzinfo=CHINA_TZ))
    out = io.StringIO()
    daemon.StatusPrinter(DataAggregator(), out).line("DQ1", "CONNECTED")
    assert out.getvalue() == "21:05:03 DQ1    CONNECTED\n"


def test_a_log_file_on_a_full_disk_says_so_once_not_a_traceback_per_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = logs.file_handler(tmp_path / "runtime.log")
    logger = logging.getLogger("test.full_disk")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        assert isinstance(handler, logging.FileHandler)
        good = handler.stream
        full = handler.stream = open("/dev/full", "w")  # noqa: SIM115 - every write fails with ENOSPC
        for n in range(50):
            logger.warning("line %d", n)
        err = capsys.readouterr().err
        assert err.splitlines() == [
            f"qtrader: cannot write {tmp_path / 'runtime.log'} ([Errno 28] No space left on device): "
            "its lines are dropped until it can"
        ]
        handler.stream = good  # space again
        with contextlib.suppress(OSError):  # its last lines are still waiting to be written
            full.close()
        logger.warning("back")
        assert capsys.readouterr().err == f"qtrader: {tmp_path / 'runtime.log'} is written again\n"
        assert (tmp_path / "runtime.log").read_text().endswith("back\n")
    finally:
        logger.removeHandler(handler)
        handler.close()
