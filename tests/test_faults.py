"""Faults a daemon must live through, with real processes."""

from __future__ import annotations

import os
import signal
import time

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
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()


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
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()


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
                if daemon.proc.poll() is None:
                    daemon.proc.kill()
                    daemon.proc.wait()
