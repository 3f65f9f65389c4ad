"""Building one TqSdk session: ``TqAuth``, the account object and a ``TqApi`` that a stop flag ends.

All of it blocks (TqSdk logs in and loads its books inside the constructor) and runs on the
gateway's TqSdk thread. tqsdk is imported late, here only: it takes seconds to import and must
not delay the trader's loop.

Construction failures. No network: ``requests`` errors; md front unreachable: ``TqTimeoutError``
after TqSdk's own 60 s; both are worth retrying. A refusal that cannot heal by retrying with
the same settings (the auth service rejecting the login, a licence without the needed feature)
is told apart by ``is_refusal``.

TqSdk's own logger ("TqApi", whose debug records carry the auth token) is detached from the
process's handlers, and TqSdk writes no log file (``debug=False``) and prints nothing
(``disable_print=True``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from gateways.tqsdk.settings import TqsdkSettingsView

if TYPE_CHECKING:
    from tqsdk import TqApi, TqAuth

POLL_SECONDS = 0.2  # longest wait_update; requests normally wake it at once

_AUTH_ENV_LOCK = threading.Lock()  # TQ_AUTH_URL is process-wide: one TqAuth built at a time


def is_refusal(exc: BaseException) -> bool:
    """The venue refused these settings for good (bad login, missing licence feature)."""
    text = str(exc)
    return text.startswith("用户权限认证失败") or "需要购买后才能使用" in text


@functools.cache
def _stoppable_api_class() -> type[TqApi]:
    """TqApi whose every wait, its constructor's included, gives up once ``stop`` is set.

    The constructor may wait 60 s for an unreachable md front; slicing ``wait_update`` into
    ``POLL_SECONDS`` pieces lets ``close()`` end it. Slices that time out leave TqSdk's change
    tracking untouched, so the slicing is invisible otherwise.
    """
    from tqsdk import TqApi

    class StoppableTqApi(TqApi):
        def __init__(self, stop: threading.Event, *args: Any, **kwargs: Any) -> None:
            self._qt_stop = stop
            super().__init__(*args, **kwargs)

        def wait_update(self, deadline: float | None = None, _task: Any = None) -> bool:
            while True:
                end = time.time() + POLL_SECONDS
                if deadline is not None:
                    end = min(end, deadline)
                if super().wait_update(deadline=end, _task=_task):
                    return True
                if self._qt_stop.is_set() or (deadline is not None and time.time() >= deadline):
                    return False

    return StoppableTqApi


def quiet_tqsdk_logging() -> None:
    # TqSdk's debug records, and those of the websockets client it uses, carry request headers
    # (the auth token): keep them away from the process's handlers. TqSdk's WARNING and above
    # still reach stderr through logging's last resort.
    logging.getLogger("TqApi").propagate = False
    ws_log = logging.getLogger("websockets.client")
    if ws_log.level == logging.NOTSET:
        ws_log.setLevel(logging.INFO)


def _build_auth(cfg: TqsdkSettingsView) -> TqAuth:
    """``TqAuth`` logs in at construction, against ``TQ_AUTH_URL`` when the settings name one."""
    from tqsdk import TqAuth

    with _AUTH_ENV_LOCK:
        before = os.environ.get("TQ_AUTH_URL")
        if cfg.auth_url:
            os.environ["TQ_AUTH_URL"] = cfg.auth_url
        try:
            return TqAuth(cfg.auth_user, cfg.auth_password)
        finally:
            if cfg.auth_url:
                if before is None:
                    os.environ.pop("TQ_AUTH_URL", None)
                else:
                    os.environ["TQ_AUTH_URL"] = before


def _build_account(cfg: TqsdkSettingsView, account_id: str) -> Any:
    from tqsdk import TqAccount, TqKq, TqSim

    if cfg.account_type == "tqsim":
        return TqSim(init_balance=cfg.init_balance, account_id=account_id)
    if cfg.account_type == "tqkq":
        return TqKq()
    return TqAccount(cfg.broker, cfg.user, cfg.password)


def open_api(cfg: TqsdkSettingsView, account_id: str, stop: threading.Event) -> tuple[TqApi, TqAuth]:
    """Build auth, account and TqApi (blocking; TqSdk logs in and loads its books)."""
    auth = _build_auth(cfg)
    account = _build_account(cfg, account_id)
    kwargs: dict[str, Any] = {"auth": auth, "disable_print": True, "debug": False}
    if cfg.md_url:
        kwargs["_md_url"] = cfg.md_url
    loop = asyncio.SelectorEventLoop()  # ours, so a construction that fails can be cleaned up
    try:
        api = _stoppable_api_class()(stop, account, loop=loop, **kwargs)
    except BaseException:
        _discard_loop(loop)
        raise
    return api, auth


def _discard_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Close the loop of a TqApi whose construction failed (TqSdk leaves it open when its
    login fails): its never-started tasks are cancelled, so nothing leaks or warns."""
    if loop.is_closed():
        return
    try:
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    finally:
        loop.close()
