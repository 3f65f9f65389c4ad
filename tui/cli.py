"""``qtrader-tui``: the console, or with ``--no-ui`` the headless daemon.

The ``--no-ui`` path imports nothing from Textual: a daemon on a server needs
no terminal UI libraries loaded.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from config import DEMO_NOTICE, ConfigError, LoadedConfig, load_config
from config import paths as cfg_paths

if TYPE_CHECKING:
    from config import PublishConfig
    from core.orphans import Orphan
    from core.zygote import Zygote


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="qtrader-tui",
        description="Terminal operations console for multi-account China futures trading.",
    )
    p.add_argument("--config", help="config file (else $QTRADER_CONFIG, ./config/config.yaml, the demo)")
    p.add_argument("--data-dir", help="data directory (else database.data_dir, $QTRADER_HOME, user data dir)")
    p.add_argument("--no-ui", action="store_true", help="run the trading core headless, as a daemon")
    p.add_argument(
        "--kill",
        metavar="ACCOUNT",
        help="kill switch on the running console or daemon: HALT, stop strategies, cancel orders "
        "('all': every account); with none running, on the traders it left running",
    )
    p.add_argument(
        "--resume",
        metavar="ACCOUNT",
        help="set a halted account of the running console or daemon ACTIVE again",
    )
    p.add_argument(
        "--status",
        action="store_true",
        help="print the running console's or daemon's account states (with none: the traders left running)",
    )
    p.add_argument(
        "--history",
        metavar="ACCOUNT",
        help="print the account's trades from the running console or daemon, one per line, with the "
        "totals of each trading day (volume, commission, close P&L)",
    )
    p.add_argument("--from", dest="from_day", metavar="YYYY-MM-DD", help="with --history: first trading day")
    p.add_argument("--to", dest="to_day", metavar="YYYY-MM-DD", help="with --history: last trading day")
    p.add_argument(
        "--symbol",
        metavar="VT_SYMBOL",
        help="with --history: one contract, e.g. rb2705.SHFE; with --replay: the contract replayed",
    )
    p.add_argument("--csv", action="store_true", help="with --history: CSV with a header, trades only")
    p.add_argument(
        "--trigger-stats",
        metavar="ACCOUNT",
        help="print one line per strategy instance of the account: triggers by action and result, "
        "executed, round trips, win rate, P&L",
    )
    p.add_argument(
        "--attach",
        nargs="?",
        const="",
        default=None,
        metavar="redis://HOST:PORT/DB",
        help="console for a running daemon or console: quitting detaches, the traders keep running; "
        "with a Redis URL, for every daemon publishing there",
    )
    p.add_argument(
        "--publish",
        metavar="redis://HOST:PORT/DB",
        help="with --no-ui: also publish every account on this Redis (else the config's publish:)",
    )
    p.add_argument(
        "--cancel-on-exit",
        action="store_true",
        help="with --no-ui: cancel every working order when the daemon stops",
    )
    replay = p.add_argument_group('batch replay (no console, no daemon; README.md, "Replay")')
    replay.add_argument("--replay", action="store_true", help="replay one vnpy CtaTemplate over a bar file")
    replay.add_argument("--strategy", metavar="CLASS", help="the template class, as package.module:Class")
    replay.add_argument("--bars", metavar="CSV", help="1-minute bars in vnpy DataManager export format")
    replay.add_argument("--setting", metavar="JSON", help="the template's parameters, a JSON object")
    replay.add_argument("--capital", type=float, default=1_000_000, help="starting capital (1,000,000)")
    replay.add_argument("--rate", type=float, default=0.0, help="commission, a fraction of turnover (0)")
    replay.add_argument("--slippage", type=float, default=0.0, help="slippage per unit of price (0)")
    replay.add_argument("--size", type=float, help="contract multiplier (default: the sim's contract table)")
    replay.add_argument("--pricetick", type=float, help="price tick (default: the sim's contract table)")
    return p


def replay_command(args: argparse.Namespace) -> int:
    """``--replay``: the checked job run to its end, the report printed (``tui/replay_report.py``)."""
    from core.replay import ReplayInputError, ReplayRunError, prepare, run
    from tui.replay_report import print_report

    missing = [f"--{name}" for name in ("strategy", "symbol", "bars") if not getattr(args, name)]
    if missing:
        print(f"qtrader-tui: --replay needs {', '.join(missing)}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        job = prepare(
            args.strategy,
            args.symbol,
            args.bars,
            setting=args.setting,
            capital=args.capital,
            rate=args.rate,
            slippage=args.slippage,
            size=args.size,
            pricetick=args.pricetick,
        )
        replay = run(job)
    except ReplayInputError as exc:
        print(f"qtrader-tui: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except ReplayRunError as exc:
        print(f"qtrader-tui: {exc}", file=sys.stderr)
        return 1
    print_report(replay, sys.stdout)
    return 0


#: Exit code of a configuration refused at load (every entry point).
EXIT_CONFIG = 2


def refuse(exc: ConfigError | ValueError, source: str | None) -> int:
    """Print ``qtrader-tui: <file>: <field>: <reason>`` and return ``EXIT_CONFIG``. ``source``
    (the file's name) is added when the error does not name its file itself (a socket directory,
    a key binding)."""
    text = str(exc)
    if source is not None and not (isinstance(exc, ConfigError) and exc.source):
        text = f"{source}: {text}"
    print(f"qtrader-tui: {text}", file=sys.stderr)
    return EXIT_CONFIG


def check_config(
    loaded: LoadedConfig, *, starting: bool, meanwhile: Callable[[], object] | None = None
) -> dict[str, str]:
    """What every entry point refuses at load, beyond the file's own validation: a socket
    directory that cannot hold our sockets (made and secured here, as the manager and the
    control commands would); and, ``starting`` a console or a daemon, the key bindings
    (``tui.actions.validate_keymap``) and what needs the other layers or today's date
    (``core.config_checks``: expired months, symbols the sim does not list, strategy classes
    and parameters). Returns the validated keymap.

    The second part runs in a fork (``StartupCheck``: a vnpy strategy's imports take about
    0.25 s) while this process does ``meanwhile`` (the imports of what it starts next); its
    verdict comes before anything starts, as if checked here.

    ``--kill``, ``--resume`` and ``--status`` skip the second part: they start nothing, and the
    kill switch must work on a running daemon even when a month in its file ran out since.
    """
    from tui.actions import validate_keymap  # no Textual: the binding table only

    cfg_paths.socket_dir(loaded.config)
    if not starting:
        return {}
    keymap = validate_keymap(loaded.config.ui.keys)
    from core.config_checks import StartupCheck

    check = StartupCheck(loaded)
    if meanwhile is not None:
        meanwhile()
    check.result()
    return keymap


def _console_imports() -> None:
    """What the console imports next (``run_console``, ``run_attached``), imported early."""
    for name in ("core.client", "core.control", "tui.app"):
        importlib.import_module(name)


def _daemon_imports() -> None:
    importlib.import_module("core.daemon")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.replay:
        return replay_command(args)
    os.umask(cfg_paths.PRIVATE_UMASK)  # databases, logs and state: this user's alone
    try:
        loaded = load_config(args.config)
    except ConfigError as exc:
        return refuse(exc, None)
    control = bool(args.kill or args.resume or args.status or args.history or args.trigger_stats)
    zygote: Zygote | None = None
    try:
        data_dir = cfg_paths.secure_data_dir(cfg_paths.data_dir(loaded.config, args.data_dir))
        if not (control or args.no_ui or args.attach is not None):
            zygote = early_zygote(loaded, data_dir)
        meanwhile = None if control else _daemon_imports if args.no_ui else _console_imports
        keymap = check_config(loaded, starting=not control, meanwhile=meanwhile)
    except (ConfigError, ValueError) as exc:
        if zygote is not None:
            zygote.close()
        return refuse(exc, loaded.source.name)
    if control:
        return control_command(loaded, args, data_dir)
    if args.attach:
        return run_attached_redis(loaded, data_dir, keymap, args.attach)
    if args.attach is not None:
        return run_attached(loaded, data_dir, keymap)
    if loaded.is_demo:
        print(DEMO_NOTICE, file=sys.stderr)
    if args.no_ui:
        from core.daemon import run_daemon

        try:
            publish = publish_settings(loaded, args.publish)
        except ValueError as exc:
            return refuse(exc, None)
        return asyncio.run(
            run_daemon(loaded, data_dir=data_dir, cancel_on_exit=args.cancel_on_exit, publish=publish)
        )
    return run_console(loaded, data_dir, keymap, zygote)


def early_zygote(loaded: LoadedConfig, data_dir: Path) -> Zygote | None:
    """The console's trader zygote (core/zygote.py), launched before the console imports
    Textual, so that its imports run on another core meanwhile; None without process traders."""
    if not any(a.enabled and a.mode == "process" for a in loaded.config.accounts):
        return None
    from core.zygote import launch_zygote

    return launch_zygote(loaded.config, data_dir)


def publish_settings(loaded: LoadedConfig, url: str | None) -> PublishConfig | None:
    """The config's ``publish:`` with ``--publish URL`` (if given) as its url; ValueError
    naming the option for a URL that is not redis:// or rediss://HOST[:PORT][/DB]."""
    from pydantic import ValidationError

    from config import PublishConfig

    base = loaded.config.publish
    if url is None:
        return base
    try:
        return PublishConfig.model_validate({**(base.model_dump() if base else {}), "url": url})
    except ValidationError:
        raise ValueError(
            f"--publish {url}: expected redis://HOST[:PORT][/DB] or rediss://... (TLS), with no "
            "user or password in it (publish.username / publish.password in the config)"
        ) from None


STATUS_COLUMNS = (
    ("Account", "account", "<"),
    ("Status", "status", "<"),
    ("State", "trading_state", "<"),
    ("Balance", "balance", ">"),
    ("Today P&L", "today_pnl", ">"),
    ("Pos", "positions", ">"),
    ("Working", "working_orders", ">"),
    ("Strategies", "strategies_running", ">"),
    ("Message", "message", "<"),
)


def status_table(accounts: dict[str, dict[str, object]]) -> str:
    """The daemon's accounts as a table for the terminal (``--status``, ``--resume``)."""

    def cell(key: str, row: dict[str, object]) -> str:
        value = row.get(key)
        if value is None:
            return "-"
        if key in ("balance", "today_pnl") and isinstance(value, int | float):
            return f"{value:+,.2f}" if key == "today_pnl" else f"{value:,.2f}"
        return str(value)

    rows = [
        [cell(key, {"account": aid, **row}) for _, key, _ in STATUS_COLUMNS] for aid, row in accounts.items()
    ]
    widths = [max([len(title), *(len(r[i]) for r in rows)]) for i, (title, _, _) in enumerate(STATUS_COLUMNS)]

    def line(cells: list[str]) -> str:
        parts = [f"{c:{align}{w}}" for c, w, (_, _, align) in zip(cells, widths, STATUS_COLUMNS, strict=True)]
        return "  ".join(parts).rstrip()

    return "\n".join([line([title for title, _, _ in STATUS_COLUMNS]), *(line(r) for r in rows)])


def _kill_words(answer: object) -> str:
    """One account's answer to the kill switch, in words."""
    if not (isinstance(answer, dict) and "ok" in answer):
        return str(answer)
    said = "done" if answer["ok"] else f"FAILED: {answer.get('error')}"
    result = answer.get("result")
    if isinstance(result, dict):  # {"strategies_stopped": 1, ...}
        result = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in result.items())
    return f"{said} {result or ''}".rstrip()


def control_command(loaded: LoadedConfig, args: argparse.Namespace, data_dir: Path) -> int:
    """Talk to the running core (console or daemon) over its control socket; exit 0 when it
    did what was asked. With no core, the traders it left running are listed (and ``--kill``
    reaches them: ``core/orphans.py``)."""
    from core.control import NO_CORE, send_control
    from core.models import TradingState
    from core.protocol import Empty, KillRequest, StateRequest

    try:
        sock_dir = cfg_paths.socket_dir(loaded.config)
    except ConfigError as exc:
        return refuse(exc, loaded.source.name)
    path = cfg_paths.control_socket_path(sock_dir)
    if args.history or args.trigger_stats:
        return report_command(args, path)
    if args.kill:
        target = "" if args.kill.lower() == "all" else args.kill
        # from the shell the kill switch always stops everything, protective strategies too
        reply = asyncio.run(send_control(path, "kill_req", KillRequest(), account_id=target))
        answers = reply.result if isinstance(reply.result, dict) else {}
        for account_id, answer in answers.items():
            print(f"{account_id}: {_kill_words(answer)}")
    elif args.resume:
        reply = asyncio.run(
            send_control(path, "state_req", StateRequest(state=TradingState.ACTIVE), args.resume)
        )
        if reply.ok:  # what the accounts are now, in the --status layout
            status = asyncio.run(send_control(path, "status_req", Empty()))
            if status.ok and isinstance(status.result, dict):
                print(status_table(status.result))
    else:
        reply = asyncio.run(send_control(path, "status_req", Empty()))
        if reply.ok and isinstance(reply.result, dict):
            print(status_table(reply.result))
    if not reply.ok and reply.error.startswith(NO_CORE):
        return no_core(loaded, args, data_dir, sock_dir, reply.error)
    if not reply.ok:
        print(f"qtrader-tui: {reply.error}", file=sys.stderr)
        return 1
    return 0


def report_command(args: argparse.Namespace, path: Path) -> int:
    """``--history`` / ``--trigger-stats``: the figures of one account from the running core
    (its trader computes them: core/trade_stats.py). 0 when printed; 1 when no core runs, the
    account is unknown or its trader cannot answer; 2 for a bad date or symbol."""
    import re

    from core.control import NO_CORE, send_control
    from core.manager import typed_history
    from core.models import SYMBOL_PATTERN
    from core.protocol import MAX_HISTORY_ROWS, HistoryRequest
    from tui import reports

    account_id = args.history or args.trigger_stats
    if args.history:
        try:
            first = reports.parse_day(args.from_day, "--from") if args.from_day else None
            last = reports.parse_day(args.to_day, "--to") if args.to_day else None
            since, until = reports.trading_day_range(first, last)
        except ValueError as exc:
            print(f"qtrader-tui: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        if args.symbol is not None and not re.fullmatch(SYMBOL_PATTERN, args.symbol):
            print(
                f"qtrader-tui: --symbol: '{args.symbol}' is not a contract such as rb2705.SHFE",
                file=sys.stderr,
            )
            return EXIT_CONFIG
        req = HistoryRequest(
            kind="trade_report", since=since, until=until, vt_symbol=args.symbol, limit=MAX_HISTORY_ROWS
        )
    else:
        req = HistoryRequest(kind="strategy_stats")
    reply = asyncio.run(send_control(path, "history_req", req, account_id, timeout=30.0))
    if not reply.ok:
        if reply.error.startswith(NO_CORE):
            print(
                f"qtrader-tui: {reply.error}: --history and --trigger-stats ask a running console or "
                "daemon (start one: qtrader-tui --no-ui)",
                file=sys.stderr,
            )
        else:
            print(f"qtrader-tui: {account_id}: {reply.error}", file=sys.stderr)
        return 1
    reply = typed_history(req.kind, reply)
    if req.kind == "strategy_stats":
        rows = reply.result or []
        for stats in rows:
            print(reports.instance_line(stats))
        if not rows:
            print(f"{account_id}: no strategy instance, no trigger")
        return 0
    report = reply.result
    if args.csv:
        sys.stdout.write(reports.report_csv(report))
        for note in reports.report_notes(report):
            print(note, file=sys.stderr)
    else:
        for line in reports.report_lines(report):
            print(line)
    return 0


ADOPT_HINT = "run qtrader-tui (or qtrader-tui --no-ui) on this data directory: it adopts them"


def orphan_table(orphans: list[Orphan], sock_dir: Path) -> str:
    """Traders that no manager reaches, one line each (``--status`` with no core running)."""
    from core.orphans import unreachable

    rows = [
        [
            o.account_id,
            str(o.pid),
            o.trading_state,
            o.alone_since.strftime("%Y-%m-%d %H:%M:%S") if o.alone_since else "?",
            unreachable(o, sock_dir) or "",
        ]
        for o in orphans
    ]
    titles = ["Account", "Pid", "State", "No manager since", "Note"]
    widths = [max([len(t), *(len(r[i]) for r in rows)]) for i, t in enumerate(titles)]
    return "\n".join(
        "  ".join(f"{c:<{w}}" for c, w in zip(cells, widths, strict=True)).rstrip()
        for cells in [titles, *rows]
    )


def no_core(
    loaded: LoadedConfig, args: argparse.Namespace, data_dir: Path, sock_dir: Path, error: str
) -> int:
    """No core answers on the control socket: say so, and what still runs without one."""
    import msgspec

    from core.daemon import DaemonBusy, PidFile
    from core.lockfile import UnsafeLockFile, lock_holder
    from core.orphans import find_orphans, kill_orphans

    holder = lock_holder(PidFile(data_dir).path)
    if holder is not None:  # starting, stopping or stuck: it owns the traders, not us
        print(
            f"qtrader-tui: {error}; but a qtrader core (pid {holder}) holds {data_dir}: it may be "
            "starting or stopping; try again (if it stays so, see logs/runtime.log there)",
            file=sys.stderr,
        )
        return 1
    print(f"qtrader-tui: {error}; no console or daemon holds {data_dir}", file=sys.stderr)
    orphans = find_orphans(data_dir, (a.account_id for a in loaded.config.accounts))
    if args.kill and args.kill.lower() != "all":
        orphans = [o for o in orphans if o.account_id == args.kill]
    if not orphans:
        what = f"no trader of {args.kill}" if args.kill and args.kill.lower() != "all" else "no trader"
        print(f"{what} is left running there either: nothing trades", file=sys.stderr)
        return 1
    if not args.kill:
        print(f"{len(orphans)} trader(s) still run there with no manager (they trade on):")
        print(orphan_table(orphans, sock_dir))
        print(f"to reach them: {ADOPT_HINT}; or qtrader-tui --kill ID|all (they stay running, HALTED)")
        return 1
    try:
        replies = asyncio.run(kill_orphans(loaded, data_dir, orphans))
    except DaemonBusy as exc:
        print(f"qtrader-tui: {exc} meanwhile: ask it, run qtrader-tui --kill again", file=sys.stderr)
        return 1
    except UnsafeLockFile as exc:
        print(f"qtrader-tui: {exc}", file=sys.stderr)
        return 1
    print("kill switch on the traders left running with no manager:")
    for account_id, reply in replies.items():
        print(f"{account_id}: {_kill_words(msgspec.to_builtins(reply))}")
    done = all(r.ok for r in replies.values())
    which = "they stay" if done else "those done stay"
    print(f"{which} running, HALTED; to watch and trade them, {ADOPT_HINT}")
    return 0 if done else 1


def run_attached(loaded: LoadedConfig, data_dir: Path, keymap: dict[str, str]) -> int:
    """The Textual console over a running core: a daemon's or a plain console's (its control
    socket)."""
    from core.client import RemoteConsoleClient
    from core.logs import setup_console_logging
    from tui.app import QTraderApp
    from tui.volumes import STATE_FILE_NAME, VolumeMemory

    config = loaded.config
    try:
        path = cfg_paths.control_socket_path(cfg_paths.socket_dir(config))
    except ConfigError as exc:
        return refuse(exc, loaded.source.name)
    try:
        accounts = asyncio.run(RemoteConsoleClient.discover(path))
    except ConnectionError as exc:
        print(f"qtrader-tui: {exc} (start one: qtrader-tui --no-ui, or qtrader-tui)", file=sys.stderr)
        return 1
    setup_console_logging(data_dir, config.log.level)  # the terminal belongs to the console
    client = RemoteConsoleClient(path, accounts)
    app = QTraderApp(
        client,
        scheme=config.ui.color_scheme,
        keymap=keymap,
        confirm_with_enter=config.ui.confirm_with_enter,
        bell=config.ui.bell,
        volumes=VolumeMemory(config.ui.default_volume, data_dir / STATE_FILE_NAME),
        risk_degree_warning=config.ui.risk_degree_warning,
        start_core=client.connect,
        stop_core=client.close,
        stop_message="detaching (the daemon and its traders keep running)...",
    )
    return app.run() or 0


def run_attached_redis(loaded: LoadedConfig, data_dir: Path, keymap: dict[str, str], url: str) -> int:
    """The Textual console over every daemon publishing on a Redis (``--attach redis://...``);
    the Redis user and password are the config's ``publish.username`` / ``publish.password``."""
    from config import PublishConfig
    from core.logs import setup_console_logging
    from core.redis_client import RedisConsoleClient
    from tui.app import QTraderApp

    config = loaded.config
    try:
        PublishConfig(url=url)
    except ValueError:
        print(
            f"qtrader-tui: --attach {url}: expected redis://HOST[:PORT][/DB] or rediss://...", file=sys.stderr
        )
        return EXIT_CONFIG
    creds = config.publish
    username, password = (creds.username, creds.password) if creds else (None, None)
    try:
        accounts = asyncio.run(RedisConsoleClient.discover(url, username=username, password=password))
    except ConnectionError as exc:
        print(f"qtrader-tui: {exc}", file=sys.stderr)
        return 1
    if not accounts:
        print(f"qtrader-tui: no daemon publishes on {url} (start one: qtrader-tui --no-ui --publish {url})")
        return 1
    setup_console_logging(data_dir, config.log.level)  # the terminal belongs to the console
    client = RedisConsoleClient(url, accounts, username=username, password=password)
    app = QTraderApp(
        client,
        scheme=config.ui.color_scheme,
        keymap=keymap,
        confirm_with_enter=config.ui.confirm_with_enter,
        bell=config.ui.bell,
        start_core=client.connect,
        stop_core=client.close,
        stop_message="detaching (the daemons and their traders keep running)...",
    )
    return app.run() or 0


def run_console(
    loaded: LoadedConfig, data_dir: Path, keymap: dict[str, str], zygote: Zygote | None = None
) -> int:
    """The Textual console over an in-process trading core, which serves the same control
    socket as the daemon: ``--status``, ``--kill``, ``--resume`` and ``--attach`` work
    against it from another shell while it runs."""
    from core.client import LocalConsoleClient
    from core.control import ServedManager
    from core.daemon import DaemonBusy, PidFile
    from core.lockfile import UnsafeLockFile
    from core.logs import setup_runtime_logging
    from core.manager import TradingManager
    from tui.app import QTraderApp
    from tui.volumes import STATE_FILE_NAME, VolumeMemory

    config = loaded.config
    pid_file = PidFile(data_dir)
    try:
        pid_file.acquire()
    except (DaemonBusy, UnsafeLockFile) as exc:
        if zygote is not None:
            zygote.close()
        if isinstance(exc, DaemonBusy):
            print(f"qtrader-tui: {exc}; to watch and trade it, run: qtrader-tui --attach", file=sys.stderr)
            return 3
        print(f"qtrader-tui: {exc}", file=sys.stderr)
        return 1
    try:
        setup_runtime_logging(data_dir, config.log.level)  # the terminal belongs to the console
        manager = TradingManager(
            config,
            config_path=loaded.source,
            data_dir=data_dir,
            zygote=zygote if zygote is not None else True,
        )
        core = ServedManager(manager)
        app = QTraderApp(
            LocalConsoleClient(manager),
            scheme=config.ui.color_scheme,
            keymap=keymap,
            confirm_with_enter=config.ui.confirm_with_enter,
            bell=config.ui.bell,
            volumes=VolumeMemory(config.ui.default_volume, data_dir / STATE_FILE_NAME),
            risk_degree_warning=config.ui.risk_degree_warning,
            start_core=core.start,
            stop_core=core.stop,
            quit_stops_core=True,
        )
        try:
            return app.run() or 0
        finally:
            # normally the app stopped the core already; after a crash, the traders it
            # started must not trade on unattended
            left = manager.terminate_children()
            if left:
                print(f"qtrader-tui: stopped traders {left} left running by the console", file=sys.stderr)
            core.control.discard()
    finally:
        pid_file.release()


if __name__ == "__main__":
    sys.exit(main())
