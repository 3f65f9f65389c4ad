"""Idle cost: CPU % and resident memory of every process of the demo.

Runs ``qtrader-tui --no-ui`` on the demo's accounts and watchlists twice: with
the market frozen (``tick_rate: 0``: the idle target) and ticking at the
demo's 2 ticks/s per contract (for the memory figure).
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import psutil

from bench.harness import make_env
from bench.report import print_json, print_table
from config import demo_config_path, load_config_file


def _demo_accounts(rate: float) -> str:
    demo = load_config_file(demo_config_path())
    return "".join(
        f"  - account_id: {a.account_id}\n"
        f"    gateway: sim\n"
        f"    sim: {{initial_balance: {a.sim.initial_balance}, seed: {a.sim.seed}, tick_rate: {rate}}}\n"
        f"    watchlist: [{', '.join(a.watchlist)}]\n"
        for a in demo.accounts
    )


def _process_name(p: psutil.Process) -> str:
    cmd = [arg for arg in p.cmdline() if arg]  # a fork of the zygote: its command line NUL-padded
    if "--account-id" in cmd:
        return cmd[cmd.index("--account-id") + 1]
    return "zygote" if "core.zygote" in cmd else "manager"


def _measure(rate: float, window: float) -> list[dict[str, Any]]:
    env = make_env()
    env.write(_demo_accounts(rate))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tui.cli",
            "--no-ui",
            "--config",
            str(env.config_path),
            "--data-dir",
            str(env.data_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        connected = 0
        for line in proc.stdout:
            connected += " CONNECTED " in line
            if connected == 3:
                break
        time.sleep(3.0)  # let start-up work settle
        parent = psutil.Process(proc.pid)
        # the traders are the zygote's children (core/zygote.py), or ours if it is not used
        procs = sorted([parent, *parent.children(recursive=True)], key=_process_name)
        before = {p.pid: p.cpu_times() for p in procs}
        t0 = time.monotonic()
        time.sleep(window)
        elapsed = time.monotonic() - t0
        rows = []
        for p in procs:
            cpu = p.cpu_times()
            used = (cpu.user + cpu.system) - (before[p.pid].user + before[p.pid].system)
            rows.append(
                {
                    "process": _process_name(p),
                    "cpu_pct": round(100 * used / elapsed, 2),
                    "rss_mb": round(p.memory_info().rss / 2**20, 1),
                }
            )
        return rows
    finally:
        proc.terminate()
        proc.wait(30)
        env.cleanup()


def run(*, quick: bool = False) -> dict[str, Any]:
    window = 5.0 if quick else 20.0
    idle = _measure(0.0, window)
    live = _measure(2.0, window)
    table = [
        (i["process"], i["cpu_pct"], i["rss_mb"], t["cpu_pct"], t["rss_mb"])
        for i, t in zip(idle, live, strict=True)
    ]
    print_table(
        f"idle: demo daemon, {window:g} s window (targets: idle CPU <= 0.5 % per process, trader RSS <= 120 MB)",
        ["process", "idle CPU %", "idle RSS MB", "2 ticks/s CPU %", "2 ticks/s RSS MB"],
        table,
    )
    figures = {
        "window_s": window,
        "idle": idle,
        "ticking": live,
        "max_idle_cpu_pct": max(r["cpu_pct"] for r in idle),
        "max_trader_rss_mb": max(r["rss_mb"] for r in live if r["process"] not in ("manager", "zygote")),
        "target_idle_cpu_pct": 0.5,
        "target_trader_rss_mb": 120,
    }
    print_json("idle", figures)
    return figures
