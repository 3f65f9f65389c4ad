"""Typed configuration schema: what a qtrader-tui YAML file may contain.

Every section is a msgspec Struct that forbids unknown fields, so a typo such as
``gatway:`` is an error instead of a silently ignored key. Field constraints
(``Meta``) and the cross-field checks in ``__post_init__`` run both when the
loader converts YAML and when code builds a config by hand, so an ``AppConfig``
object is always valid.

Cross-field checks raise ``ValueError("<field path>: <what is wrong>")`` with a
path relative to the struct being checked; the loader (``config.loader``)
joins it with the location msgspec reports, giving messages such as
``config.yaml: accounts[1].ctp: gateway 'ctp' needs a 'ctp' section``.

Secrets (passwords, auth codes) live only in the settings classes derived from
``_SecretSection``: their ``repr`` and rich repr mask them and ``redacted()``
gives a loggable dict. Never serialise a config with ``msgspec.json.encode`` or
``msgspec.to_builtins``: those bypass the masking.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import Meta

from core.models import split_vt_symbol

__all__ = [
    "ACCOUNT_ID_PATTERN",
    "MASK",
    "SECRET_FIELD_NAMES",
    "AccountConfig",
    "AppConfig",
    "CtpSettings",
    "DatabaseConfig",
    "LogConfig",
    "ManagerConfig",
    "RiskConfig",
    "SimSettings",
    "SocketConfig",
    "StrategyConfig",
    "StrategyRiskConfig",
    "TqsdkSettings",
    "UiConfig",
    "check_account_id",
]

#: Account ids go into file names, socket names and database names, hence the
#: conservative alphabet and the length cap (a longer id would not fit in a
#: Unix socket path, see ``config.paths``).
ACCOUNT_ID_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
_ACCOUNT_ID_RE = re.compile(ACCOUNT_ID_PATTERN)

#: What a secret looks like in a repr, in ``redacted()`` and in logs.
MASK = "***"

AccountId = Annotated[str, Meta(pattern=ACCOUNT_ID_PATTERN)]
NonEmptyStr = Annotated[str, Meta(min_length=1)]
PositiveFloat = Annotated[float, Meta(gt=0)]
NonNegativeFloat = Annotated[float, Meta(ge=0)]
PositiveInt = Annotated[int, Meta(ge=1)]

GatewayName = Literal["sim", "ctp", "tqsdk"]


def check_account_id(account_id: str) -> str:
    """Return ``account_id`` if it is a valid id, else raise ValueError.

    For ids that do not come through the schema (``qtrader-trader --account-id``)
    but still end up in file and socket names.
    """
    if not _ACCOUNT_ID_RE.match(account_id):
        raise ValueError(
            f"invalid account id {account_id!r} (expected 1-32 characters: letters, digits, '_' or '-')"
        )
    return account_id


def _fail(field_path: str, detail: str) -> None:
    """Raise a cross-field error in the ``"<relative path>: <detail>"`` form the loader understands."""
    raise ValueError(f"{field_path}: {detail}")


def _redact_value(value: Any) -> Any:
    if isinstance(value, _Section):
        return value.redacted()
    if isinstance(value, list):
        return [_redact_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    return value


class _Section(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base of every config struct: keyword-only, unknown keys rejected."""

    #: Field names (Python names) whose values must never be shown.
    secret_fields: ClassVar[frozenset[str]] = frozenset()

    def redacted(self) -> dict[str, Any]:
        """This section as plain data (YAML key names) with every secret masked; safe to log."""
        out: dict[str, Any] = {}
        for name, key in zip(self.__struct_fields__, self.__struct_encode_fields__, strict=True):
            value = getattr(self, name)
            if name in self.secret_fields:
                out[key] = MASK if value else value
            else:
                out[key] = _redact_value(value)
        return out


class _SecretSection(_Section, kw_only=True, forbid_unknown_fields=True):
    """A section holding credentials: repr and rich repr mask them."""

    def _masked_items(self) -> list[tuple[str, Any]]:
        return [
            (name, MASK if name in self.secret_fields and getattr(self, name) else getattr(self, name))
            for name in self.__struct_fields__
        ]

    def __repr__(self) -> str:
        body = ", ".join(f"{name}={value!r}" for name, value in self._masked_items())
        return f"{type(self).__name__}({body})"

    def __rich_repr__(self) -> Any:
        yield from self._masked_items()


# --------------------------------------------------------------------------- gateway settings


class SimSettings(_Section, kw_only=True, forbid_unknown_fields=True):
    """Built-in simulated exchange: starting cash and the synthetic market."""

    initial_balance: PositiveFloat = 1_000_000.0
    seed: int = 0
    #: Ticks per second per contract; 0 freezes the synthetic market.
    tick_rate: NonNegativeFloat = 2.0


class CtpSettings(_SecretSection, kw_only=True, forbid_unknown_fields=True):
    """A CTP broker login (vnpy_ctp). Put password and auth_code in ``${ENV}`` variables."""

    secret_fields: ClassVar[frozenset[str]] = frozenset({"password", "auth_code"})

    userid: NonEmptyStr
    password: NonEmptyStr
    brokerid: NonEmptyStr
    td_address: NonEmptyStr
    md_address: NonEmptyStr
    appid: str = ""
    auth_code: str = ""
    product_info: str = ""
    #: vnpy_ctp's 柜台环境: 实盘 (production front) or 测试 (a broker's test front).
    environment: Literal["实盘", "测试"] = "实盘"
    #: Seconds to wait for the trade front to answer before the login counts as failed.
    connect_timeout: PositiveFloat = 15.0


class TqsdkSettings(_SecretSection, kw_only=True, forbid_unknown_fields=True):
    """A TqSdk login: auth is the shinnytech account; broker/user/password only for real accounts."""

    secret_fields: ClassVar[frozenset[str]] = frozenset({"password", "auth_password"})

    #: tqsim: TqSim local paper account; tqkq: 快期模拟 (shinnytech paper); account: a real broker account.
    account_type: Literal["tqsim", "tqkq", "account"] = "tqsim"
    broker: str = ""
    user: str = ""
    password: str = ""
    auth_user: NonEmptyStr
    auth_password: NonEmptyStr
    #: Overrides of TqSdk's endpoints (offline tests point them at a local fake).
    auth_url: str | None = None
    md_url: str | None = None
    init_balance: PositiveFloat = 1_000_000.0

    def __post_init__(self) -> None:
        if self.account_type == "account":
            for name in ("broker", "user", "password"):
                if not getattr(self, name):
                    _fail(name, "required when account_type is 'account'")


# --------------------------------------------------------------------------- risk and strategies


class RiskConfig(_Section, kw_only=True, forbid_unknown_fields=True):
    """Per-account pre-trade limits, checked by the trader before any order reaches a gateway."""

    max_order_volume: PositiveInt = 100
    #: price x volume x multiplier; None = no notional limit.
    max_order_notional: PositiveFloat | None = None
    max_orders_per_second: PositiveInt = 10
    max_cancels_per_second: PositiveInt = 10
    max_active_orders: PositiveInt = 50
    max_daily_orders: PositiveInt = 2000
    max_daily_cancels: PositiveInt = 1000
    max_position_per_contract: PositiveInt = 200
    check_self_trade: bool = True
    #: Seconds within which an identical order is refused as a duplicate; 0 disables the check.
    duplicate_window: NonNegativeFloat = 1.0


class StrategyRiskConfig(_Section, kw_only=True, forbid_unknown_fields=True):
    """A strategy instance's own limits (percentages of the entry price)."""

    stop_loss_pct: PositiveFloat | None = None
    take_profit_pct: PositiveFloat | None = None
    max_position: PositiveInt = 1


class StrategyConfig(_Section, kw_only=True, forbid_unknown_fields=True):
    """One strategy instance: class + symbol + parameters + its own risk limits."""

    name: NonEmptyStr
    #: Written ``class:`` in YAML (``class`` is a Python keyword).
    class_name: NonEmptyStr = msgspec.field(name="class")
    symbol: str
    #: Checked by the strategy class itself when the engine creates the instance.
    params: dict[str, Any] = {}
    risk: StrategyRiskConfig = msgspec.field(default_factory=StrategyRiskConfig)
    autostart: bool = True

    def __post_init__(self) -> None:
        try:
            split_vt_symbol(self.symbol)
        except ValueError as exc:
            _fail("symbol", str(exc))


# --------------------------------------------------------------------------- accounts


class AccountConfig(_Section, kw_only=True, forbid_unknown_fields=True):
    """One trading account: its venue, how its trader runs, what it watches and its limits."""

    account_id: AccountId
    gateway: GatewayName
    enabled: bool = True
    #: process: own OS process (isolation); embedded: an asyncio task in the manager (debugging).
    mode: Literal["process", "embedded"] = "process"
    sim: SimSettings = msgspec.field(default_factory=SimSettings)
    ctp: CtpSettings | None = None
    tqsdk: TqsdkSettings | None = None
    #: A paper (sim) account matching locally against quotes taken from this other account.
    market_data_from: str | None = None
    watchlist: list[str] = []
    auto_trading: bool = False
    risk: RiskConfig = msgspec.field(default_factory=RiskConfig)
    strategies: list[StrategyConfig] = []

    def __post_init__(self) -> None:
        if self.gateway == "ctp" and self.ctp is None:
            _fail(
                "ctp",
                "gateway 'ctp' needs a 'ctp' section (userid, password, brokerid, td_address, md_address)",
            )
        if self.gateway == "tqsdk" and self.tqsdk is None:
            _fail("tqsdk", "gateway 'tqsdk' needs a 'tqsdk' section (at least auth_user, auth_password)")
        if self.market_data_from is not None:
            if self.gateway != "sim":
                _fail(
                    "market_data_from",
                    f"only a sim (paper) account can take quotes from another account; this gateway is "
                    f"'{self.gateway}'",
                )
            if self.market_data_from == self.account_id:
                _fail("market_data_from", "an account cannot take quotes from itself")
        seen: dict[str, int] = {}
        for i, vt_symbol in enumerate(self.watchlist):
            try:
                split_vt_symbol(vt_symbol)
            except ValueError as exc:
                _fail(f"watchlist[{i}]", str(exc))
            if vt_symbol in seen:
                _fail(f"watchlist[{i}]", f"'{vt_symbol}' is listed twice (also watchlist[{seen[vt_symbol]}])")
            seen[vt_symbol] = i
        names: dict[str, int] = {}
        for i, strategy in enumerate(self.strategies):
            if strategy.name in ("manual", "external"):  # orders and trades say who sent them
                _fail(
                    f"strategies[{i}].name",
                    f"'{strategy.name}' is reserved (manual: the operator's own orders; "
                    "external: orders placed outside qtrader)",
                )
            if strategy.name in names:
                _fail(
                    f"strategies[{i}].name",
                    f"duplicate strategy name '{strategy.name}' (also strategies[{names[strategy.name]}])",
                )
            names[strategy.name] = i


# --------------------------------------------------------------------------- process-wide sections


class ManagerConfig(_Section, kw_only=True, forbid_unknown_fields=True):
    """How the TradingManager supervises traders: heartbeats, restarts, request timeouts (seconds)."""

    heartbeat_interval: PositiveFloat = 1.0
    #: No heartbeat for this long = hung: the trader is killed and restarted.
    heartbeat_timeout: PositiveFloat = 5.0
    #: Delay before the 1st, 2nd, ... restart; the last value repeats. 0 = restart at once.
    restart_backoff: Annotated[list[NonNegativeFloat], Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: [0.0, 1.0, 2.0, 5.0, 10.0, 30.0]
    )
    #: More than max_restarts restarts within restart_window seconds => wait `cooldown` seconds.
    max_restarts: PositiveInt = 5
    restart_window: PositiveFloat = 60.0
    cooldown: NonNegativeFloat = 300.0
    #: A trader up this long is considered healthy again: its backoff starts over.
    stable_after: NonNegativeFloat = 30.0
    request_timeout: PositiveFloat = 5.0
    #: After a venue refused the login (or its front was unreachable), the trader is
    #: restarted after these delays; the last value repeats until it connects.
    venue_backoff: Annotated[list[NonNegativeFloat], Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: [5.0, 10.0, 30.0, 60.0]
    )

    def __post_init__(self) -> None:
        if self.heartbeat_timeout <= self.heartbeat_interval:
            _fail(
                "heartbeat_timeout",
                f"must be longer than heartbeat_interval ({self.heartbeat_timeout:g} <= "
                f"{self.heartbeat_interval:g})",
            )


class SocketConfig(_Section, kw_only=True, forbid_unknown_fields=True):
    """Where the Unix sockets live and how large one frame may be."""

    #: None = $XDG_RUNTIME_DIR/qtrader, else <tempdir>/qtrader-<uid> (see config.paths.socket_dir).
    socket_dir: str | None = None
    #: Frames carry a 4-byte length, hence the upper bound.
    max_frame_bytes: Annotated[int, Meta(ge=1024, le=2**32 - 1)] = 16 * 1024 * 1024


class DatabaseConfig(_Section, kw_only=True, forbid_unknown_fields=True):
    """Where account databases and logs go, and how often account snapshots are taken."""

    #: None = $QTRADER_HOME, else the platform's user data dir (see config.paths.data_dir).
    data_dir: str | None = None
    snapshot_interval: PositiveFloat = 10.0


class UiConfig(_Section, kw_only=True, forbid_unknown_fields=True):
    """Console preferences."""

    #: cn: red = up, green = down (China convention); intl: the reverse.
    color_scheme: Literal["cn", "intl"] = "cn"
    #: action name -> key(s), e.g. {buy: "b", cancel_all: "X"}; validated by the console.
    keys: dict[str, str] = {}


class LogConfig(_Section, kw_only=True, forbid_unknown_fields=True):
    """Logging verbosity of the manager and the traders."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class AppConfig(_Section, kw_only=True, forbid_unknown_fields=True):
    """The whole configuration: accounts plus the process-wide sections."""

    accounts: list[AccountConfig]
    manager: ManagerConfig = msgspec.field(default_factory=ManagerConfig)
    socket: SocketConfig = msgspec.field(default_factory=SocketConfig)
    database: DatabaseConfig = msgspec.field(default_factory=DatabaseConfig)
    ui: UiConfig = msgspec.field(default_factory=UiConfig)
    log: LogConfig = msgspec.field(default_factory=LogConfig)
    # where user strategies live: a directory of .py files or a dotted module (class by name)
    strategy_path: str | None = None

    def __post_init__(self) -> None:
        if not self.accounts:
            _fail("accounts", "at least one account is required")
        # Case-insensitive: ids name files, and DQ1/dq1 collide on macOS and Windows file systems.
        ids: dict[str, int] = {}
        for i, account in enumerate(self.accounts):
            key = account.account_id.lower()
            if key in ids:
                other = self.accounts[ids[key]].account_id
                _fail(
                    f"accounts[{i}].account_id",
                    f"duplicate account id '{account.account_id}' (also accounts[{ids[key]}]: '{other}')",
                )
            ids[key] = i
        by_id = {account.account_id: account for account in self.accounts}
        for i, account in enumerate(self.accounts):
            source_id = account.market_data_from
            if source_id is None:
                continue
            source = by_id.get(source_id)
            if source is None:
                known = ", ".join(by_id)
                _fail(
                    f"accounts[{i}].market_data_from", f"'{source_id}' is not a configured account ({known})"
                )
            elif source.market_data_from is not None:
                # One hop only: a chain (or a cycle) would leave someone without a real quote source.
                _fail(
                    f"accounts[{i}].market_data_from",
                    f"'{source_id}' takes its own quotes from '{source.market_data_from}'; name an account "
                    "with its own market data",
                )

    def account(self, account_id: str) -> AccountConfig:
        """The account with this id; KeyError (naming the known ids) if there is none."""
        for account in self.accounts:
            if account.account_id == account_id:
                return account
        known = ", ".join(a.account_id for a in self.accounts)
        raise KeyError(f"no account '{account_id}' in the configuration (configured: {known})")

    @property
    def enabled_accounts(self) -> list[AccountConfig]:
        """Accounts whose traders should be started."""
        return [a for a in self.accounts if a.enabled]


#: Every field name that holds a secret somewhere in the schema (for masking values in error messages).
SECRET_FIELD_NAMES: frozenset[str] = CtpSettings.secret_fields | TqsdkSettings.secret_fields
