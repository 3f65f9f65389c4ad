"""Where the trade and market data fronts stand, as the CTP api's callbacks say it (``CtpLinkEvent``).

vnpy_ctp tells connection and login only in log lines, in Chinese, worded as a release of it
chose (``交易服务器连接成功``, ``交易服务器登录失败，代码：3，信息：...``). The status light must not hang
on that wording: vnpy_ext.py's td and md apis put a ``CtpLinkEvent`` on the EventEngine after
vnpy_ctp's own handling of each connection callback (``OnFrontConnected``,
``OnFrontDisconnected``, ``OnRspAuthenticate``, ``OnRspUserLogin``,
``OnRspSettlementInfoConfirm``, the last ``OnRspQryInstrument``), with CTP's own error fields and
disconnect reason. Behind vnpy_ctp's events on the same queue, it reaches the gateway after
everything the callback produced (the contracts before ``CONTRACTS_LOADED``). vnpy_ctp's log
lines are still passed on, as log lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from gateways.ctp.fields import error_text


class LinkKind(StrEnum):
    """A step of a front's connection, login and loading."""

    TD_CONNECTED = "TD_CONNECTED"  # the trade front's OnFrontConnected
    TD_DISCONNECTED = "TD_DISCONNECTED"  # its OnFrontDisconnected (``reason``)
    AUTHENTICATED = "AUTHENTICATED"  # OnRspAuthenticate without an error
    AUTH_FAILED = "AUTH_FAILED"  # OnRspAuthenticate with one
    LOGGED_IN = "LOGGED_IN"  # the trade front's OnRspUserLogin without an error
    LOGIN_FAILED = "LOGIN_FAILED"  # with one
    SETTLEMENT_CONFIRMED = "SETTLEMENT_CONFIRMED"  # OnRspSettlementInfoConfirm
    CONTRACTS_LOADED = "CONTRACTS_LOADED"  # the instrument query's last answer
    MD_DISCONNECTED = "MD_DISCONNECTED"  # the market data front's OnFrontDisconnected
    MD_LOGGED_IN = "MD_LOGGED_IN"  # its OnRspUserLogin without an error
    MD_LOGIN_FAILED = "MD_LOGIN_FAILED"  # with one


@dataclass(frozen=True, slots=True)
class CtpLinkEvent:
    """One connection callback of the CTP api, with CTP's own error and reason."""

    kind: LinkKind
    error_id: int = 0
    error_msg: str = ""
    reason: int = 0  # OnFrontDisconnected's reason code

    @classmethod
    def answer(cls, ok: LinkKind, failed: LinkKind, error: Mapping[str, Any] | None) -> CtpLinkEvent:
        """An answer to a request: ``ok`` when CTP's error field says no error, else ``failed``."""
        error_id = int((error or {}).get("ErrorID") or 0)
        if not error_id:
            return cls(ok)
        return cls(failed, error_id, str((error or {}).get("ErrorMsg") or ""))

    @property
    def error(self) -> str:
        """CTP's error as text ("" when there is none)."""
        return error_text({"ErrorID": self.error_id, "ErrorMsg": self.error_msg})
