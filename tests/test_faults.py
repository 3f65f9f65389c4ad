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
