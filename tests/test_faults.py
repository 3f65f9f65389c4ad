"""Faults a daemon must live through, with real processes."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from config import paths as cfg_paths
from tests.conftest import CoreEnv, pid_alive, sim_account, wait_until_sync
from tests.test_daemon import CONNECTED, Daemon, _worker_pids

TWO = sim_account("P1", "m2705.DCE", seed=1) + sim_account("P2", "au2612.SHFE", seed=2)


def test_a_daemon_paused_past_the_heartbeat_timeout_keeps_its_healthy_traders(core_env: CoreEnv) -> None:
    core_env.write_config(TWO)  # heartbeat_timeout 5 s
    daemon = Daemon(core_env)
    try:
        daemon.wait_for_accounts(CONNECTED, ("P1", "P2"))
        before = sorted(_worker_pids(core_env))
        assert len(before) == 2
        runtime_log = cfg_paths.runtime_log_path(core_env.data_dir)

        os.kill(daemon.proc.pid, signal.SIGSTOP)  # 8 s of nothing: the fault itself, not a wait
        time.sleep(8.0)
        os.kill(daemon.proc.pid, signal.SIGCONT)

        wait_until_sync(
            lambda: "the manager was paused for" in runtime_log.read_text(),
            20,
            "the daemon noticing its own pause",
        )
        # the traders stream on: a tick-driven status line cannot prove it, the pids do. Give the
        # watchdog a whole heartbeat timeout after the pause to get it wrong.
        deadline = time.monotonic() + 6.0
        while time.monotonic() < deadline:
            assert "no heartbeat" not in daemon.output(), daemon.output()
            assert sorted(_worker_pids(core_env)) == before
            time.sleep(0.2)
        assert all(pid_alive(pid) for pid in before)
        assert "killing pid" not in runtime_log.read_text()

        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(timeout=15) == 0
    finally:
        daemon.kill()


def test_a_config_broken_at_run_time_is_named_and_retried_on_a_back_off(core_env: CoreEnv) -> None:
    core_env.write_config(TWO)
    good = core_env.config_path.read_text()
    daemon = Daemon(core_env)
    try:
        daemon.wait_for_accounts(CONNECTED, ("P1", "P2"))
        lock = core_env.data_dir / "state" / "P1" / "trader.lock"
        old = int(lock.read_text())
        core_env.config_path.write_text(good.replace("seed: 1", "seed: one"))  # edited under it
        os.kill(old, signal.SIGKILL)
        daemon.wait_for_line("configuration refused: config.yaml:")
        line = next(ln for ln in daemon.lines if "configuration refused" in ln)
        assert "seed" in line and "retry 1 in 5 s (then 10 s, 30 s, 60 s)" in line, line
        assert "(^)" not in daemon.output()
        assert " P2 " not in "\n".join(ln for ln in daemon.lines if "configuration refused" in ln)

        core_env.config_path.write_text(good)  # fixed: the next try (5 s later) connects
        wait_until_sync(
            lambda: any(
                " P1 " in ln and CONNECTED in ln and f" pid {old} " not in ln for ln in daemon.lines[-20:]
            ),
            30,
            "P1 connected again once the file loads:\n" + daemon.output(),
        )
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(timeout=15) == 0
    finally:
        daemon.kill()


def test_an_account_held_by_a_trader_that_never_joins_is_retried_on_a_back_off(core_env: CoreEnv) -> None:
    from tests.test_trader_process import _trader

    core_env.write_config(TWO)
    stray = _trader(core_env, "P1", "--mode", "standalone")  # holds P1, joins no manager
    daemon: Daemon | None = None
    try:
        assert stray.stdout is not None
        for line in stray.stdout:
            if "venue connected" in line:
                break
        daemon = Daemon(core_env)
        daemon.wait_for_line("waiting for it to join")
        daemon.wait_for_line("has not joined; retry 2 in 10 s (then 30 s, 60 s)", timeout=30)
        assert f"pid {stray.pid}" in next(ln for ln in daemon.lines if "has not joined" in ln)
        daemon.wait_for_accounts(CONNECTED, ("P2",))  # the other account is not held up
    finally:
        stray.kill()
        stray.wait()
        if daemon is not None:
            daemon.proc.send_signal(signal.SIGTERM)
            try:
                daemon.proc.wait(timeout=15)
            finally:
                daemon.kill()


# ---------------------------------------------------------------- the data directory is private


def _run_cli(env: CoreEnv, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tui.cli",
            "--config",
            str(env.config_path),
            "--data-dir",
            str(env.data_dir),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_trading_data_is_readable_by_its_user_only(core_env: CoreEnv) -> None:
    core_env.write_config(TWO)
    core_env.data_dir.mkdir(mode=0o755)  # as an older version left it
    daemon = Daemon(core_env)
    try:
        daemon.wait_for_accounts(CONNECTED, ("P1", "P2"))
        wait_until_sync(lambda: list(core_env.data_dir.rglob("*.db")), 10, "the databases")
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(timeout=15) == 0
    finally:
        daemon.kill()
    assert stat.S_IMODE(core_env.data_dir.stat().st_mode) == 0o700
    shared = [
        (str(p.relative_to(core_env.data_dir)), oct(stat.S_IMODE(p.lstat().st_mode)))
        for p in core_env.data_dir.rglob("*")
        if stat.S_IMODE(p.lstat().st_mode) & 0o077
    ]
    assert not shared, f"readable or writable by others: {shared}"
    assert {p.name for p in core_env.data_dir.rglob("*.db")} >= {"trading_P1.db", "trading_P2.db"}


def test_a_planted_pid_file_symlink_is_refused_and_its_target_untouched(core_env: CoreEnv) -> None:
    core_env.write_config(TWO)
    core_env.data_dir.mkdir(mode=0o700)
    victim = core_env.root / "victim.txt"
    victim.write_text("precious\n")
    (core_env.data_dir / "qtrader.pid").symlink_to(victim)
    done = _run_cli(core_env, "--no-ui")
    assert done.returncode == 1, done.stderr
    assert "qtrader.pid is a symbolic link; refusing to write through it" in done.stderr
    assert victim.read_text() == "precious\n"
    assert not _worker_pids(core_env), "nothing started"


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give the directory to another user")
def test_a_data_directory_owned_by_another_user_is_refused(core_env: CoreEnv) -> None:
    core_env.write_config(TWO)
    core_env.data_dir.mkdir(mode=0o777)
    os.chown(core_env.data_dir, 65534, 65534)  # nobody
    done = _run_cli(core_env, "--no-ui")
    assert done.returncode == 2, done.stderr
    assert "data directory" in done.stderr and "is owned by uid 65534, not by you" in done.stderr
    assert list(core_env.data_dir.iterdir()) == []
