"""What is refused at load, through the real entry points: ``qtrader-tui`` (console), ``--no-ui``,
``--attach`` and ``--status`` print ``qtrader-tui: <file>: <field>: <reason>`` and exit 2, before
anything starts. Also the checks behind them that need more than config/ (core/config_checks.py)
and the key bindings (tui/actions.py)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from config import ConfigError, LoadedConfig, parse_config
from core.config_checks import StartupCheck, check_startup
from tui.actions import validate_keymap

ROOT = Path(__file__).resolve().parents[1]

ACCOUNT = "accounts:\n  - account_id: A\n    gateway: sim\n"


def grid(symbol: str = "rb2710.SHFE", cls: str = "GridStrategy", params: str = "{grid_step: 2}") -> str:
    return f"    strategies:\n      - {{name: g1, class: {cls}, symbol: {symbol}, params: {params}}}\n"


# (config text, the one line expected on stderr after "qtrader-tui: config.yaml: ")
CASES = {
    "secret": (
        "accounts:\n  - {account_id: A, gateway: tqsdk, tqsdk: {auth_user: u, auth_password: hunter2}}\n",
        "accounts[0].tqsdk.auth_password: secret written in the file: refused (put it in an environment "
        'variable, export A_AUTH_PASSWORD=..., and write auth_password: "${A_AUTH_PASSWORD}")',
    ),
    "symbol-case": (
        ACCOUNT + "    watchlist: [RB2705.SHFE]\n",
        "accounts[0].watchlist[0]: 'RB2705.SHFE': SHFE writes products in lower case; did you mean rb2705.SHFE?",
    ),
    "czce-month": (
        ACCOUNT + grid("SA2705.CZCE"),
        "accounts[0].strategies[0].symbol: 'SA2705.CZCE': CZCE months have 3 digits (YMM, e.g. SA705); "
        "did you mean SA705.CZCE?",
    ),
    "expired": (
        ACCOUNT + "    watchlist: [rb2710.SHFE, rb2001.SHFE]\n",
        "accounts[0].watchlist[1]: 'rb2001.SHFE': the 2020-01 contract has expired (today is {today}, "
        "exchange time); move the month forward",
    ),
    "not-in-sim": (
        ACCOUNT + "    watchlist: [fu2710.SHFE]\n",
        "accounts[0].watchlist[0]: unknown contract fu2710.SHFE: product 'fu' is not listed on the sim "
        "exchange (this account's gateway is sim)",
    ),
    "strategy-class": (
        ACCOUNT + grid(cls="GirdStrategy"),
        "accounts[0].strategies[0].class: strategy class 'GirdStrategy' not found in built-ins "
        "(MaCrossStrategy, RsiStrategy, MaRsiStrategy, StopGuardStrategy, GridStrategy)",
    ),
    "strategy-param-type": (
        ACCOUNT + grid(params="{grid_step: '2'}"),
        "accounts[0].strategies[0].params.grid_step: strategy 'g1' (GridStrategy): parameter 'grid_step' "
        "must be an integer between 1 and 100000, got '2' (str)",
    ),
    "strategy-param-unknown": (
        ACCOUNT + grid(params="{grid_stp: 2}"),
        "accounts[0].strategies[0].params.grid_stp: strategy 'g1' (GridStrategy): unknown parameter "
        "'grid_stp' (known parameters: grid_step, levels, volume, base_price)",
    ),
    "cta-setting-unknown": (
        ACCOUNT
        + "    strategies:\n      - {name: g1, class: 'vnpy_ctastrategy.strategies.double_ma_strategy:"
        "DoubleMaStrategy', symbol: rb2710.SHFE, setting: {fast: 5}}\n",
        "accounts[0].strategies[0].setting.fast: strategy 'g1' (DoubleMaStrategy): unknown parameter 'fast' "
        "(known parameters: fast_window, slow_window)",
    ),
    "cta-setting-and-params": (
        ACCOUNT + "    strategies:\n      - {name: g1, class: DoubleMa, symbol: rb2710.SHFE, params: {a: 1}, "
        "setting: {a: 1}}\n",
        "accounts[0].strategies[0].setting: give the parameters as 'params' or as 'setting' (vnpy's word), "
        "not both",
    ),
    "keys-hide": (
        ACCOUNT + "ui: {keys: {buy: s}}\n",
        "ui.keys.buy: 's' is the default key of sell (Sell), which it would hide: pick another key, or "
        "rebind sell too",
    ),
    "keys-quit-y": (
        ACCOUNT + "ui: {keys: {quit: y}}\n",
        "ui.keys.quit: 'y' is reserved: y answers yes in a confirmation",
    ),
    "alias-bomb": (
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8)
        ),
        "line 5: refused: more than 100,000 values once its aliases (*name) are expanded",
    ),
    "deep": (
        "accounts: " + "[" * 5000 + "]" * 5000 + "\n",
        "line 1: refused: nested more than 64 levels deep",
    ),
    "socket-dir": (
        ACCOUNT + f"socket: {{socket_dir: /tmp/{'s' * 70}}}\n",
        f"socket.socket_dir: /tmp/{'s' * 70} is too long for Unix sockets: a trader socket in it "
        f"(trader-{'X' * 32}.sock) would be 120 bytes, the limit is 107",
    ),
}


def run_cli(config: Path, *args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    """``python -m tui.cli`` in a child: 512 MB of address space and 30 s of CPU at most, so a
    regression fails instead of eating the machine or starting a console."""
    limits = (
        "import resource, runpy, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1024 * 2**20, 1024 * 2**20))\n"
        "resource.setrlimit(resource.RLIMIT_CPU, (30, 30))\n"
        "sys.argv = ['qtrader-tui', *sys.argv[1:]]\n"
        "runpy.run_module('tui.cli', run_name='__main__')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("QTRADER")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-c", limits, "--config", str(config), "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def today_cst() -> str:
    from core.models import now

    return f"{now().date():%Y-%m-%d}"


@pytest.mark.parametrize("entry", [(), ("--no-ui",)], ids=["console", "no-ui"])
@pytest.mark.parametrize("case", list(CASES))
def test_refused_at_load_by_the_console_and_the_daemon(
    case: str, entry: tuple[str, ...], tmp_path: Path
) -> None:
    text, expected = CASES[case]
    config = tmp_path / "config.yaml"
    config.write_text(text, encoding="utf-8")
    before = today_cst()
    done = run_cli(config, *entry, data_dir=tmp_path / "data")
    assert done.returncode == 2, done.stderr[-3000:]
    wanted = [
        f"qtrader-tui: config.yaml: {expected.replace('{today}', today)}" for today in {before, today_cst()}
    ]
    assert any(done.stderr.startswith(w) for w in wanted), done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "data" / "qtrader.pid").exists()  # nothing started


@pytest.mark.parametrize("case", ["secret", "symbol-case", "keys-hide", "alias-bomb", "socket-dir"])
def test_refused_by_attach_too(case: str, tmp_path: Path) -> None:
    text, expected = CASES[case]
    config = tmp_path / "config.yaml"
    config.write_text(text, encoding="utf-8")
    done = run_cli(config, "--attach", data_dir=tmp_path / "data")
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.startswith(f"qtrader-tui: config.yaml: {expected}"), done.stderr


@pytest.mark.parametrize("case", ["secret", "symbol-case", "deep", "socket-dir"])
def test_refused_by_status_too(case: str, tmp_path: Path) -> None:
    text, expected = CASES[case]
    config = tmp_path / "config.yaml"
    config.write_text(text, encoding="utf-8")
    done = run_cli(config, "--status", data_dir=tmp_path / "data")
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.startswith(f"qtrader-tui: config.yaml: {expected}"), done.stderr


def test_the_kill_switch_is_not_blocked_by_a_month_that_ran_out(tmp_path: Path) -> None:
    """--kill, --resume, --status start nothing: a daemon started with rb2001 last month must
    still be killable. No daemon runs here, so the answer is 'not running', not a refusal."""
    short = Path(tempfile.mkdtemp(prefix="qt-"))  # a socket path must fit in 107 bytes
    try:
        config = tmp_path / "config.yaml"
        config.write_text(ACCOUNT + f"    watchlist: [rb2001.SHFE]\nsocket: {{socket_dir: {short / 's'}}}\n")
        done = run_cli(config, "--kill", "all", data_dir=tmp_path / "data")
    finally:
        shutil.rmtree(short, ignore_errors=True)
    assert done.returncode == 1, done.stderr
    assert "expired" not in done.stderr


# --------------------------------------------------------------------------- the checks themselves


def loaded(text: str) -> LoadedConfig:
    return LoadedConfig(
        config=parse_config(text, "config.yaml"), source=Path("/x/config.yaml"), is_demo=False
    )


def check_error(text: str, today: date = date(2026, 12, 3)) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        check_startup(loaded(text), today=today)
    return info.value


def test_an_expired_month_names_its_field_and_the_day() -> None:
    err = check_error(ACCOUNT + "    watchlist: [au2612.SHFE]\n" + grid("au2611.SHFE"))
    assert str(err) == (
        "config.yaml: accounts[0].strategies[0].symbol: 'au2611.SHFE': the 2026-11 contract has expired "
        "(today is 2026-12-03, exchange time); move the month forward"
    )
    assert (err.source, err.field) == ("config.yaml", "accounts[0].strategies[0].symbol")
    # this month still trades; CZCE's one-digit year is read near today
    check_startup(loaded(ACCOUNT + "    watchlist: [au2612.SHFE, SR701.CZCE]\n"), today=date(2026, 12, 31))
    assert "the 2026-05 contract" in str(check_error(ACCOUNT + "    watchlist: [SR605.CZCE]\n"))


def test_a_real_venue_may_watch_products_the_sim_does_not_list() -> None:
    text = (
        "accounts:\n  - {account_id: C, gateway: ctp, watchlist: [fu2709.SHFE, T2703.CFFEX],\n"
        "      ctp: {userid: u, password: '${P}', brokerid: '1', td_address: t, md_address: m}}\n"
    )
    cfg = parse_config(text, "config.yaml", environ={"P": "p"})
    check_startup(
        LoadedConfig(config=cfg, source=Path("config.yaml"), is_demo=False), today=date(2026, 12, 3)
    )


def test_a_cross_parameter_rule_points_at_its_parameter() -> None:
    text = ACCOUNT + grid("rb2710.SHFE", "MaCrossStrategy", "{fast_window: 30, slow_window: 10}")
    assert str(check_error(text)).startswith(
        "config.yaml: accounts[0].strategies[0].params.fast_window: strategy 'g1' (MaCrossStrategy): "
        "parameter 'fast_window' must be less than slow_window (10), got 30"
    )


def test_a_user_strategy_directory_is_searched(tmp_path: Path) -> None:
    (tmp_path / "mine.py").write_text(
        "from strategies import Param, Strategy\n\n"
        "class MyStrategy(Strategy):\n"
        "    parameters = {'n': Param(3, int, min=1)}\n\n"
        "    def bars_needed(self) -> int:\n"
        "        return 0\n"
    )
    text = ACCOUNT + grid(cls="MyStrategy", params="{n: 2}") + f"strategy_path: {tmp_path}\n"
    check_startup(loaded(text), today=date(2026, 12, 3))
    bad = ACCOUNT + grid(cls="MyStrategy", params="{n: 0}") + f"strategy_path: {tmp_path}\n"
    assert "params.n: strategy 'g1' (MyStrategy): parameter 'n' must be an integer >= 1, got 0" in str(
        check_error(bad)
    )


def test_the_demo_passes_every_check_today() -> None:
    from config import demo_config_path, load_config_file

    demo = LoadedConfig(config=load_config_file(demo_config_path()), source=demo_config_path(), is_demo=True)
    check_startup(demo)  # when this fails, roll the demo's months forward (config/demo.yaml)
    validate_keymap(demo.config.ui.keys)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"buy": "s"}, "ui.keys.buy: 's' is the default key of sell (Sell), which it would hide"),
        ({"buy": "f", "sell": "f"}, "ui.keys.sell: 'f' is also bound to buy (Buy): one key, one action"),
        ({"quit": "y"}, "ui.keys.quit: 'y' is reserved: y answers yes in a confirmation"),
        ({"cancel": "n"}, "ui.keys.cancel: 'n' is reserved: n answers no in a confirmation"),
        ({"halt": "escape"}, "ui.keys.halt: 'escape' is reserved: escape closes dialogs and forms"),
        ({"dashboard": "b"}, "ui.keys.dashboard: 'b' is the default key of buy (Buy)"),  # global vs account
        ({"help": "x, up"}, "ui.keys.help: 'up' is reserved: up moves the cursor in tables and lists"),
        ({"buy": ""}, "ui.keys.buy: expected a key name such as 'f' or 'ctrl+f'"),
    ],
)
def test_conflicting_key_bindings_are_refused(keys: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        validate_keymap(keys)


def test_swapped_keys_and_keys_on_different_screens_are_fine() -> None:
    assert validate_keymap({"buy": "s", "sell": "b"}) == {"buy": "s", "sell": "b"}
    assert validate_keymap({"start": "b"}) == {"start": "b"}  # dashboard only; b is Buy on an account
    assert validate_keymap({}) == {}  # the defaults agree with each other


def test_the_daemon_path_checks_keys_without_loading_textual() -> None:
    code = (
        "import sys, tui.actions; tui.actions.validate_keymap({'buy': 'f'}); print('textual' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.stdout.strip() == "False"


def _strategy_refused() -> LoadedConfig:
    return loaded(
        ACCOUNT
        + "    strategies:\n      - {name: g1, class: 'vnpy_ctastrategy.strategies.double_ma_strategy:"
        "DoubleMaStrategy', symbol: rb2710.SHFE, setting: {fast: 5}}\n"
    )


def test_the_check_in_a_fork_gives_the_verdict_of_the_check_here() -> None:
    with pytest.raises(ConfigError) as here:
        check_startup(_strategy_refused())
    with pytest.raises(ConfigError) as forked:
        StartupCheck(_strategy_refused()).result()
    assert (str(forked.value), forked.value.source, forked.value.field) == (
        str(here.value),
        here.value.source,
        here.value.field,
    )
    StartupCheck(loaded(ACCOUNT + grid())).result()  # passes: no error


def test_a_fork_that_gives_no_verdict_is_checked_here(monkeypatch: pytest.MonkeyPatch) -> None:
    import core.config_checks as checks

    parent, real = os.getpid(), checks.check_startup
    ran_here: list[int] = []

    def dies_in_the_child(*args: Any, **kwargs: Any) -> None:
        if os.getpid() != parent:
            os._exit(9)  # the child dies before its verdict
        ran_here.append(os.getpid())
        real(*args, **kwargs)

    monkeypatch.setattr(checks, "check_startup", dies_in_the_child)
    with pytest.raises(ConfigError, match="unknown parameter 'fast'"):
        StartupCheck(_strategy_refused()).result()
    assert ran_here == [parent]

    def no_fork() -> int:
        raise OSError("fork refused")

    ran_here.clear()
    monkeypatch.setattr(checks.os, "fork", no_fork)
    StartupCheck(loaded(ACCOUNT + grid())).result()
    assert ran_here == [parent]
