"""The trader process on its own: standalone mode, one trader per account,
and reconnecting to a manager that went away and came back."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys

from core.manager import TradingManager
from core.models import TraderStatus
from core.trader import EXIT_ALREADY_RUNNING
from tests.conftest import CoreEnv, all_connected, pid_alive, sim_account, wait_until, wait_until_sync


def _trader(env: CoreEnv, account_id: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "core.trader",
            "--account-id",
            account_id,
            "--config",
            str(env.config_path),
            "--data-dir",
            str(env.data_dir),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_standalone_trader_logs_to_the_terminal_and_stops_on_sigterm(core_env: CoreEnv) -> None:
    core_env.write_config(sim_account("SA1", "au2612.SHFE"))
    proc = _trader(core_env, "SA1", "--mode", "standalone")
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "venue connected" in line:
                break
        assert any("trader SA1 starting: gateway sim" in line for line in lines)
        # only one trader per account: a second one refuses and says who holds it
        second = _trader(core_env, "SA1", "--mode", "standalone")
        out, _ = second.communicate(timeout=30)
        assert second.returncode == EXIT_ALREADY_RUNNING
        assert f"pid {proc.pid}" in out
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=15)
        assert proc.returncode == 0
        assert "trader SA1 stopped" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (core_env.data_dir / "trading_SA1.db").exists()


def test_unknown_account_is_a_clear_error(core_env: CoreEnv) -> None:
    core_env.write_config(sim_account("SA1", "au2612.SHFE"))
    proc = _trader(core_env, "NOPE")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "no account 'NOPE' (configured: SA1)" in out


async def test_traders_outlive_their_manager_and_join_the_next_one(core_env: CoreEnv) -> None:
    config = core_env.write_config(sim_account("AD1", "m2705.DCE") + sim_account("AD2", "i2705.DCE"))
    first = TradingManager(config, config_path=core_env.config_path, data_dir=core_env.data_dir)
    await first.start()
    second: TradingManager | None = None
    try:
        await wait_until(lambda: all_connected(first))
        pids = {aid: first.proxies[aid].pid for aid in first.proxies}
        # the first manager vanishes without stopping its traders (as if SIGKILLed)
        assert first._watchdog is not None
        first._watchdog.cancel()
        for proxy in first.proxies.values():
            proxy.wanted = False
            assert proxy.server is not None
            proxy.server.close()
            if proxy.link is not None:
                await proxy.link.close()
        await wait_until(lambda: all(p.link is None for p in first.proxies.values()), what="links dropped")
        assert all(pid_alive(p) for p in pids.values() if p)

        second = TradingManager(config, config_path=core_env.config_path, data_dir=core_env.data_dir)
        await second.start()
        await wait_until(lambda: all_connected(second), what="old traders joined the new manager")
        # the same processes carry on: adopted, not replaced
        assert {aid: second.proxies[aid].pid for aid in second.proxies} == pids
        assert all(second.state(a).restarts == 0 for a in second.proxies)
        reply = await second.status("AD1")
        assert reply.ok and reply.result.pid == pids["AD1"]

        await second.stop()
        assert all(second.state(a).status is TraderStatus.STOPPED for a in second.proxies)
        wait_until_sync(
            lambda: not any(pid_alive(p) for p in pids.values() if p), 10, "adopted traders stopped"
        )
    finally:
        if second is not None:
            await second.stop()
        with contextlib.suppress(Exception):
            await first.stop()
