"""``python -m bench NAME``: run a benchmark; each prints a table and, last, one JSON line."""

from __future__ import annotations

import argparse
import importlib
import sys

BENCHES = {
    "codec": "bench.codec",
    "ipc": "bench.ipc",
    "order": "bench.order",
    "idle": "bench.idle",
    "memory": "bench.memory",
    "restart": "bench.restart",
    "ui": "bench.ui",
    "replay": "bench.replay",
    "redis": "bench.redis",
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("name", choices=[*BENCHES, "all"])
    p.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    p.add_argument("--accounts", type=int, help="ui: sim accounts ticking into the console (default 8)")
    p.add_argument(
        "--contracts", type=int, help="ui: contracts per account (default 100; 1000: a whole market)"
    )
    p.add_argument("--start-only", action="store_true", help="ui: only the start -> first quote figures")
    args = p.parse_args(argv)
    names = list(BENCHES) if args.name == "all" else [args.name]
    scale: dict[str, object] = {
        k: v for k, v in (("accounts", args.accounts), ("contracts", args.contracts)) if v is not None
    }
    if args.start_only:
        scale["start_only"] = True
    if scale and names != ["ui"]:
        p.error("--accounts, --contracts and --start-only are options of the ui bench")
    for name in names:
        module = importlib.import_module(BENCHES[name])
        module.run(quick=args.quick, **scale)
    return 0


if __name__ == "__main__":
    sys.exit(main())
