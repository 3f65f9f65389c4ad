"""The account's ``ctp:`` settings as the gateway reads them, and as vnpy_ctp wants them.

``userid``, ``password``, ``brokerid``, ``td_address``, ``md_address``, ``appid``, ``auth_code``,
``product_info`` (sent as ``UserProductInfo`` at login), ``environment`` (``实盘`` or ``测试``),
``connect_timeout``. They arrive validated (config.schema.CtpSettings); nothing is checked again
here. ``password`` and ``auth_code`` never reach a log line, status or error: every text the
gateway passes on is scrubbed of ``secrets`` (those of at least ``MIN_SECRET_LENGTH`` characters).
"""

from __future__ import annotations

from typing import Protocol

MIN_SECRET_LENGTH = 4  # shorter secrets are not scrubbed from texts (it would mangle them)


class CtpSettingsView(Protocol):
    """What the gateway reads of its validated ``ctp:`` settings (config.schema.CtpSettings)."""

    userid: str
    password: str
    brokerid: str
    td_address: str
    md_address: str
    appid: str
    auth_code: str
    product_info: str
    environment: str
    connect_timeout: float


def vnpy_setting(settings: CtpSettingsView) -> dict[str, str]:
    """The ``ctp:`` section as vnpy_ctp's ``CtpGateway.default_setting`` keys."""
    return {
        "用户名": settings.userid,
        "密码": settings.password,
        "经纪商代码": settings.brokerid,
        "交易服务器": settings.td_address,
        "行情服务器": settings.md_address,
        "产品名称": settings.appid,
        "授权编码": settings.auth_code,
        "柜台环境": settings.environment,
    }


def secrets(settings: CtpSettingsView) -> list[str]:
    """The texts to scrub from everything the gateway passes on."""
    return [s for s in (settings.password, settings.auth_code) if len(s) >= MIN_SECRET_LENGTH]
