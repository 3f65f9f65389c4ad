"""``qtrader-tui --no-ui`` as an operator runs it: a real daemon process."""

from __future__ import annotations

import os
import queue
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from config import paths as cfg_paths
from core.models import TraderStatus
from tests.conftest import THREE_ACCOUNTS, CoreEnv, pid_alive, sim_account, wait_until_sync

CONNECTED = " CONNECTED "  # not DISCONNECTED
SECRET = "s3cr3t-Passw0rd-never-logged"
DISABLED_CTP = """
  - account_id: REAL1
    gateway: ctp
    enabled: false
    ctp: {userid: "u1", password: "${QT_TEST_SECRET}", brokerid: "9999",
          td_address: "tcp://127.0.0.1:1", md_address: "tcp://127.0.0.1:2", auth_code: "${QT_TEST_SECRET}"}
"""


class Daemon:
    """A daemon subprocess whose stdout lines are collected on a thread."""

    def __init__(self, env: CoreEnv, *extra: str) -> None:
        self.lines: list[str] = []
        self._q: queue.Queue[str] = queue.Queue()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tui.cli",
                "--no-ui",
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
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for_line(self, needle: str, count: int = 1, timeout: float = 30) -> None:
        wait_until_sync(
            lambda: sum(needle in line for line in self.lines) >= count,
            timeout,
            f"{count} x {needle!r} in daemon output:\n" + "\n".join(self.lines[-20:]),
        )

    def wait_for_accounts(self, needle: str, accounts: tuple[str, ...] = ("DQ1", "DQ2", "DQ3")) -> None:
        """Every account has printed a status line with ``needle`` (counting lines would not do:
        one account may print the same status twice as its details arrive)."""

        statuses = {s.name for s in TraderStatus}

        def seen(aid: str) -> bool:  # a status line (not a log line that happens to say it)
            for line in self.lines:
                words = line.split()
                if words[1:2] == [aid] and words[2:3] and words[2] in statuses and needle in line:
                    return True
            return False

        wait_until_sync(
            lambda: all(seen(aid) for aid in accounts),
            30,
            f"{needle!r} from each of {accounts} in daemon output",
        )

    def output(self) -> str:
        return "\n".join(self.lines)

    def kill(self) -> None:
        """A test's last word: a daemon still running (the test failed before it stopped it)
        is SIGKILLed and reaped."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _worker_pids(env: CoreEnv) -> list[int]:
    pids = []
    for lock in env.data_dir.glob("state/*/trader.lock"):
        text = lock.read_text().strip()
        if text:
            pids.append(int(text))
    return pids


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_daemon_runs_three_workers_and_stops_cleanly(
    core_env: CoreEnv, sig: signal.Signals, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QT_TEST_SECRET", SECRET)  # needed even by a disabled account
    config = core_env.write_config(THREE_ACCOUNTS + DISABLED_CTP)
    daemon = Daemon(core_env)
    try:
        daemon.wait_for_accounts(CONNECTED)
        pids = _worker_pids(core_env)
        assert len(pids) == 3 and all(pid_alive(p) for p in pids)
        for aid in ("DQ1", "DQ2", "DQ3"):
            assert (core_env.data_dir / f"trading_{aid}.db").exists()
            assert (core_env.data_dir / "logs" / aid / "trader.log").exists()
        assert (core_env.data_dir / "logs" / "runtime.log").exists()
        assert (core_env.data_dir / "qtrader.pid").read_text().strip() == str(daemon.proc.pid)
        # the worker command line names its account
        for pid in pids:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            assert b"--account-id" in cmdline
        # private sockets
        sock_dir = cfg_paths.socket_dir(config)
        assert stat.S_IMODE(sock_dir.stat().st_mode) == 0o700
        socks = list(sock_dir.glob("trader-*.sock"))
        assert len(socks) == 3
        assert all(stat.S_IMODE(s.stat().st_mode) == 0o600 for s in socks)

        # a second daemon on the same data directory refuses to start
        second = subprocess.run(
            [sys.executable, "-m", "tui.cli", "--no-ui", "--config", str(core_env.config_path),
             "--data-dir", str(core_env.data_dir)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert second.returncode == 3
        assert "already runs" in second.stderr and str(daemon.proc.pid) in second.stderr
        assert len(socks) == len(list(sock_dir.glob("trader-*.sock")))  # it removed nothing

        started = time.monotonic()
        daemon.proc.send_signal(sig)
        assert daemon.proc.wait(timeout=15) == 0
        assert time.monotonic() - started < 10.5
        wait_until_sync(lambda: not any(pid_alive(p) for p in pids), 5, "workers gone")
        assert not (core_env.data_dir / "qtrader.pid").exists()
        assert not list(sock_dir.glob("trader-*.sock"))
        daemon.wait_for_line("stopped cleanly")
    finally:
        daemon.kill()
    # secrets never reach the output or the logs
    logs = "".join(p.read_text(errors="replace") for p in core_env.data_dir.glob("logs/**/*.log"))
    assert SECRET not in daemon.output()
    assert SECRET not in logs


def test_daemon_brings_back_a_sigkilled_worker(core_env: CoreEnv) -> None:
    core_env.write_config(THREE_ACCOUNTS)
    daemon = Daemon(core_env)
    try:
        daemon.wait_for_accounts(CONNECTED)
        lock = core_env.data_dir / "state" / "DQ2" / "trader.lock"
        old = int(lock.read_text())
        os.kill(old, signal.SIGKILL)
        daemon.wait_for_line("killed by SIGKILL")

        # a status line may be printed twice for one account (its trading state arrives after
        # CONNECTED), so count nothing: wait for DQ2 connected under a pid that is not the old one
        def dq2_back() -> bool:
            return any(
                " DQ2 " in line and CONNECTED in line and " pid " in line and f" pid {old} " not in line
                for line in daemon.lines
            )

        wait_until_sync(dq2_back, 30, "DQ2 connected again under a new pid:\n" + daemon.output())
        new = int(lock.read_text())
        assert new != old and pid_alive(new)
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(timeout=15) == 0
    finally:
        daemon.kill()


def test_bad_config_is_a_clear_error(core_env: CoreEnv) -> None:
    core_env.config_path.write_text("accounts:\n  - account_id: X1\n    gateway: ctpx\n")
    result = subprocess.run(
        [sys.executable, "-m", "tui.cli", "--no-ui", "--config", str(core_env.config_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "config.yaml: accounts[0].gateway" in result.stderr
    assert "ctpx" in result.stderr


def _control(env: CoreEnv, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", "--config", str(env.config_path), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_kill_switch_and_resume_through_the_control_socket(core_env: CoreEnv) -> None:
    core_env.write_config(THREE_ACCOUNTS)
    assert "no qtrader core (console or daemon) listening" in _control(core_env, "--kill", "all").stderr
    daemon = Daemon(core_env)
    try:
        daemon.wait_for_accounts(CONNECTED)
        daemon.wait_for_line("control socket")
        unknown = _control(core_env, "--kill", "NOPE")
        assert unknown.returncode == 1 and "no running account 'NOPE'" in unknown.stderr
        killed = _control(core_env, "--kill", "all")
        assert killed.returncode == 0, killed.stderr
        assert {line.split(":")[0] for line in killed.stdout.splitlines()} == {"DQ1", "DQ2", "DQ3"}
        daemon.wait_for_accounts("HALTED")
        status = _control(core_env, "--status")
        assert status.returncode == 0
        header, *lines = status.stdout.splitlines()  # a table, one line an account
        assert header.split() == [
            "Account",
            "Status",
            "State",
            "Balance",
            "Today",
            "P&L",
            "Pos",
            "Working",
            "Strategies",
            "Message",
        ]
        assert [line.split()[:3] for line in lines] == [
            [a, "CONNECTED", "HALTED"] for a in ("DQ1", "DQ2", "DQ3")
        ]
        resumed = _control(core_env, "--resume", "DQ2")
        assert resumed.returncode == 0, resumed.stderr
        assert [line.split()[2] for line in resumed.stdout.splitlines()[1:]] == ["HALTED", "ACTIVE", "HALTED"]
        status = _control(core_env, "--status")
        assert [line.split()[2] for line in status.stdout.splitlines()[1:]] == ["HALTED", "ACTIVE", "HALTED"]
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(timeout=15) == 0
    finally:
        daemon.kill()


def test_a_terminal_that_goes_away_never_stops_the_daemon_or_its_clean_stop(core_env: CoreEnv) -> None:
    """SSH drops: SIGHUP arrives and stdout's reader is gone. Trading goes on, and a later
    SIGTERM still stops every trader cleanly."""
    core_env.write_config(sim_account("H1", "m2705.DCE"))
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "--no-ui", "--config", str(core_env.config_path),
         "--data-dir", str(core_env.data_dir)],
        stdout=write_end, stderr=subprocess.STDOUT,
    )  # fmt: skip
    os.close(write_end)
    try:
        seen = b""
        with os.fdopen(read_end, "rb", buffering=0) as out:
            deadline = time.monotonic() + 30
            while CONNECTED.encode() not in seen:
                assert time.monotonic() < deadline, seen.decode(errors="replace")
                chunk = out.read(4096)
                assert chunk, "the daemon ended early"
                seen += chunk
            proc.send_signal(signal.SIGHUP)
        # the reading end is closed now: the next status line hits a broken pipe
        pids = _worker_pids(core_env)
        assert pids and all(pid_alive(p) for p in pids)
        killed = _control(core_env, "--kill", "H1")  # status lines follow: into the closed pipe
        assert killed.returncode == 0, killed.stderr
        wait_until_sync(
            lambda: "stdout is gone" in (core_env.data_dir / "logs" / "runtime.log").read_text(),
            timeout=20,
            what="a status line written to the closed pipe",
        )
        assert proc.poll() is None  # still running, still trading
        assert _control(core_env, "--status").returncode == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        wait_until_sync(lambda: not any(pid_alive(p) for p in pids), 5, "workers stopped with it")
        log_text = (core_env.data_dir / "logs" / "runtime.log").read_text()
        assert "SIGHUP (terminal hung up): running on" in log_text and "stopped cleanly" in log_text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
