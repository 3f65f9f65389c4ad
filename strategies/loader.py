"""Finding a strategy class by name: the built-ins, a user's own code on a configured path, or
``package.module:ClassName``. A vnpy ``CtaTemplate`` subclass found any of these ways comes back
in its host (strategies/cta_host.py), so the engine runs it as one of ours."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
from pathlib import Path

from .base import Strategy, StrategyError
from .cta_host import CtaHost, host_class, is_cta_class
from .grid import GridStrategy
from .ma_cross import MaCrossStrategy
from .ma_rsi import MaRsiStrategy
from .rsi import RsiStrategy
from .stop_guard import StopGuardStrategy

__all__ = ["BUILTINS", "load_strategy_class"]

#: The strategies shipped with qtrader-tui, by class name.
BUILTINS: dict[str, type[Strategy]] = {
    cls.class_name: cls
    for cls in (MaCrossStrategy, RsiStrategy, MaRsiStrategy, StopGuardStrategy, GridStrategy)
}


def load_strategy_class(class_name: str, search_path: str | None = None) -> type[Strategy]:
    """The strategy class called ``class_name``.

    ``search_path`` (optional) is where user strategies live: a directory of ``.py`` files or a
    dotted module name. A class found there wins over a built-in of the same name (a user who
    copies a built-in to change it keeps its name). In a directory only files that define
    ``class <class_name>`` are imported; the directory goes on ``sys.path`` so they can import
    their own helper modules. ``StrategyError`` names the class and every place looked at.
    """
    if ":" in class_name:
        return _from_module_path(class_name)
    problems: list[str] = []
    if search_path:
        found = _from_search_path(class_name, search_path, problems)
        if found is not None:
            return found
    builtin = BUILTINS.get(class_name)
    if builtin is not None:
        return builtin
    where = f"built-ins ({', '.join(BUILTINS)})"
    if search_path:
        where += f" and {search_path}"
    detail = f"; {'; '.join(problems)}" if problems else ""
    raise StrategyError(f"strategy class '{class_name}' not found in {where}{detail}")


def _from_module_path(spec: str) -> type[Strategy]:
    """``package.module:ClassName``: a class importable from the environment (a vnpy
    ``CtaTemplate`` as vnpy users name it, ``vnpy_ctastrategy.strategies.double_ma_strategy:
    DoubleMaStrategy``, or a ``Strategy`` in an installed package)."""
    module_name, _, class_name = spec.partition(":")
    if not module_name or not class_name or not class_name.isidentifier():
        raise StrategyError(f"strategy class '{spec}': write 'package.module:ClassName'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a user's module may fail in any way; the message must say how
        raise StrategyError(
            f"strategy class '{spec}': module '{module_name}' failed to import: {type(exc).__name__}: {exc}"
        ) from None
    obj = getattr(module, class_name, None)
    if obj is None:
        raise StrategyError(f"strategy class '{spec}': module '{module_name}' has no '{class_name}'")
    return _checked(obj, class_name, f"module '{module_name}'")


def _from_search_path(class_name: str, search_path: str, problems: list[str]) -> type[Strategy] | None:
    directory = Path(search_path).expanduser()
    if directory.is_dir():
        return _from_directory(class_name, directory, problems)
    if search_path.endswith(".py") or "/" in search_path or "\\" in search_path:
        problems.append(f"{search_path} is not a directory")
        return None
    try:
        module = importlib.import_module(search_path)
    except Exception as exc:  # a user's module may fail in any way; the message must say how
        problems.append(f"module '{search_path}' failed to import: {type(exc).__name__}: {exc}")
        return None
    obj = getattr(module, class_name, None)
    if obj is None:
        problems.append(f"module '{search_path}' has no '{class_name}'")
        return None
    return _checked(obj, class_name, f"module '{search_path}'")


def _from_directory(class_name: str, directory: Path, problems: list[str]) -> type[Strategy] | None:
    pattern = re.compile(rf"^\s*class\s+{re.escape(class_name)}\b", re.MULTILINE)
    files = sorted(p for p in directory.glob("*.py") if not p.name.startswith("_"))
    candidates = []
    for path in files:
        try:
            if pattern.search(path.read_text(encoding="utf-8")):
                candidates.append(path)
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{path}: cannot read ({exc})")
    if not candidates:
        names = ", ".join(p.name for p in files) or "no .py files"
        problems.append(f"no file in {directory} defines it ({names})")
        return None
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
    for path in candidates:
        try:
            module = _import_file(path)
        except Exception as exc:  # a user's file may fail in any way; the message must say how
            problems.append(f"{path} failed to import: {type(exc).__name__}: {exc}")
            continue
        obj = getattr(module, class_name, None)
        if obj is not None:
            return _checked(obj, class_name, str(path))
        problems.append(f"{path} does not define '{class_name}' at module level")
    return None


def _import_file(path: Path) -> object:
    """Import one user file under a private module name (so ``grid.py`` cannot shadow ours)."""
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    module_name = f"qtrader_user_strategy_{path.stem}_{digest}"
    module = sys.modules.get(module_name)
    if module is not None:
        return module
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def _checked(obj: object, class_name: str, where: str) -> type[Strategy]:
    """Our ``Strategy`` subclass as it is; a vnpy ``CtaTemplate`` subclass in its host."""
    if is_cta_class(obj):
        assert isinstance(obj, type)
        if getattr(obj, "__abstractmethods__", None):
            missing = ", ".join(sorted(obj.__abstractmethods__))
            raise StrategyError(f"'{class_name}' in {where} does not implement {missing}")
        return host_class(obj)
    if not (isinstance(obj, type) and issubclass(obj, Strategy)) or obj is Strategy or obj is CtaHost:
        raise StrategyError(
            f"'{class_name}' in {where} is not a subclass of strategies.Strategy "
            "or vnpy_ctastrategy.CtaTemplate"
        )
    return obj
