"""``qtrader-tui``: the console, or with ``--no-ui`` the headless daemon.

The ``--no-ui`` path imports nothing from Textual: a daemon on a server needs
no terminal UI libraries loaded.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from config import DEMO_NOTICE, ConfigError, load_config
from config import paths as cfg_paths


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="qtrader-tui",
        description="Terminal operations console for multi-account China futures trading.",
    )
    p.add_argument("--config", help="config file (else $QTRADER_CONFIG, ./config/config.yaml, the demo)")
    p.add_argument("--data-dir", help="data directory (else database.data_dir, $QTRADER_HOME, user data dir)")
    p.add_argument("--no-ui", action="store_true", help="run the trading core headless, as a daemon")
    p.add_argument(
        "--cancel-on-exit",
        action="store_true",
        help="with --no-ui: cancel every working order when the daemon stops",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        loaded = load_config(args.config)
        data_dir = cfg_paths.data_dir(loaded.config, args.data_dir)
    except ConfigError as exc:
        print(f"qtrader-tui: {exc}", file=sys.stderr)
        return 2
    if loaded.is_demo:
        print(DEMO_NOTICE, file=sys.stderr)
    if not args.no_ui:
        # The Textual console is not built yet: run the same core headless in the
        # foreground rather than refuse, and say so.
        print(
            "qtrader-tui: the Textual console is not part of this build yet; "
            "running the trading core headless (Ctrl+C stops it)",
            file=sys.stderr,
        )
    from core.daemon import run_daemon

    return asyncio.run(run_daemon(loaded, data_dir=data_dir, cancel_on_exit=args.cancel_on_exit))


if __name__ == "__main__":
    sys.exit(main())
