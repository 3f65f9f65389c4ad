"""Typed configuration schema: what a qtrader-tui YAML file may contain.

Every section is a pydantic model that forbids unknown fields, so a typo such as
``gatway:`` is an error instead of a silently ignored key. Field constraints and
the cross-field checks (``model_validator``) run both when the loader validates
YAML and when code builds a config by keyword arguments, so an ``AppConfig``
object is always valid (assigning to an attribute afterwards is not checked).

The schema's own checks raise ``PydanticCustomError`` of type ``CHECK_ERROR``
whose context carries ``loc`` (the offending field, relative to the model or
field being checked) and ``detail`` (what is wrong). The loader
(``config.loader``) joins ``loc`` with the location pydantic reports, giving
messages such as ``config.yaml: accounts[1].ctp: gateway 'ctp' needs a 'ctp'
section``; nothing is parsed back out of message text.

Secrets (passwords, auth codes) stay plain ``str`` attributes, for the gateways,
and live only in the settings classes derived from ``_SecretSection``: their
``repr``, ``str`` and rich repr mask them and ``redacted()`` gives a loggable
dict. A ``ValidationError`` never quotes input values (``hide_input_in_errors``).
Never serialise a config with ``model_dump`` / ``model_dump_json``: those bypass
the masking.

This module imports nothing from the rest of the project: ``core`` depends on
``config``, never the other way.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Annotated, Any, ClassVar, Literal, NoReturn

from annotated_types import Ge, Gt, Le, MinLen
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    model_validator,
)
from pydantic_core import PydanticCustomError, PydanticKnownError

from config.symbols import product_problem, symbol_problem

__all__ = [
    "ACCOUNT_ID_PATTERN",
    "CHECK_ERROR",
    "EXCHANGE_NAMES",
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
    "check_vt_symbol",
]

#: Account ids go into file names, socket names and database names, hence the
#: conservative alphabet and the length cap (a longer id would not fit in a
#: Unix socket path, see ``config.paths``).
ACCOUNT_ID_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
_ACCOUNT_ID_RE = re.compile(ACCOUNT_ID_PATTERN)

#: What a secret looks like in a repr, in ``redacted()`` and in logs.
MASK = "***"

#: The exchanges a ``SYMBOL.EXCHANGE`` may name, in the order messages list them.
#: The same names as ``core.models.Exchange`` (a test keeps the two equal); kept
#: here so that config does not import the trading core.
EXCHANGE_NAMES: tuple[str, ...] = ("SHFE", "INE", "DCE", "CZCE", "CFFEX", "GFEX")

#: Error type of the schema's own checks; context: ``loc`` (a path relative to
#: where pydantic reports the error), ``detail`` and ``message``.
CHECK_ERROR = "qtrader_config"


def _fail(loc: tuple[str | int, ...], detail: str) -> NoReturn:
    """Raise a check error about the field at ``loc`` (relative to the model or field being checked)."""
    where = _display(loc)
    # "message" last: pydantic fills the template with each context value in turn, so a detail that
    # happens to contain "{loc}" is not expanded again.
    context = {"loc": loc, "detail": detail, "message": f"{where}: {detail}" if where else detail}
    raise PydanticCustomError(CHECK_ERROR, "{message}", context)


def _display(loc: tuple[str | int, ...]) -> str:
    """``("strategies", 1, "name")`` -> ``strategies[1].name`` (for exceptions raised in code)."""
    out = ""
    for seg in loc:
        out += f"[{seg}]" if isinstance(seg, int) else (f".{seg}" if out else seg)
    return out


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


def check_vt_symbol(vt_symbol: str) -> str:
    """Return ``vt_symbol`` if it is ``SYMBOL.EXCHANGE`` with a known exchange, else raise ValueError.

    The messages are those of ``core.models.split_vt_symbol``, which the trading
    core uses on the same strings.
    """
    symbol, sep, exchange = vt_symbol.rpartition(".")
    if not sep or not symbol:
        raise ValueError(f"'{vt_symbol}' is not symbol.EXCHANGE (e.g. au2612.SHFE)")
    if exchange not in EXCHANGE_NAMES:
        names = ", ".join(EXCHANGE_NAMES)
        raise ValueError(f"'{vt_symbol}': unknown exchange '{exchange}' (expected {names})")
    return vt_symbol


def _valid_account_id(value: str) -> str:
    try:
        return check_account_id(value)
    except ValueError as exc:
        _fail((), str(exc))


def _valid_vt_symbol(value: str) -> str:
    try:
        check_vt_symbol(value)
    except ValueError as exc:
        _fail((), str(exc))
    symbol, _, exchange = value.rpartition(".")
    problem = symbol_problem(symbol, exchange)  # case, product, month digits (config.symbols)
    if problem is not None:
        _fail((), problem)
    return value


def _no_bool(error_type: str) -> Any:
    """A before-validator refusing booleans where a number belongs.

    Validation is lax so that ``"20"`` from an ``${ENV}`` variable becomes 20,
    but lax pydantic also reads ``true`` as 1: a boolean in a number field is a
    mistake, never a number.
    """

    def check(value: Any) -> Any:
        if isinstance(value, bool):
            raise PydanticKnownError(error_type)
        return value

    return BeforeValidator(check)


Int = Annotated[int, _no_bool("int_type")]
Float = Annotated[float, _no_bool("float_type")]
AccountId = Annotated[str, AfterValidator(_valid_account_id)]
VtSymbol = Annotated[str, AfterValidator(_valid_vt_symbol)]
NonEmptyStr = Annotated[str, MinLen(1)]
PositiveFloat = Annotated[Float, Gt(0)]
NonNegativeFloat = Annotated[Float, Ge(0)]
PositiveInt = Annotated[Int, Ge(1)]

GatewayName = Literal["sim", "ctp", "tqsdk"]


def _redact_value(value: Any) -> Any:
    if isinstance(value, _Section):
        return value.redacted()
    if isinstance(value, list):
        return [_redact_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    return value


class _Section(BaseModel):
    """Base of every config model: keyword arguments only, unknown keys rejected."""

    model_config = ConfigDict(
        extra="forbid",
        # Code writes the Python name (class_name=...), YAML the key (class:); the loader
        # validates by key only, so `class_name:` in a file is an unknown field.
        validate_by_name=True,
        validate_by_alias=True,
        # A ValidationError's text would otherwise quote the offending values, secrets included.
        hide_input_in_errors=True,
    )

    #: Field names (Python names) whose values must never be shown.
    secret_fields: ClassVar[frozenset[str]] = frozenset()

    def redacted(self) -> dict[str, Any]:
        """This section as plain data (YAML key names) with every secret masked; safe to log."""
        out: dict[str, Any] = {}
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            key = info.alias or name
            if name in self.secret_fields:
                out[key] = MASK if value else value
            else:
                out[key] = _redact_value(value)
        return out


class _SecretSection(_Section):
    """A section holding credentials: repr, str and rich repr mask them."""

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # pydantic builds __repr__, __str__ and __rich_repr__ from these pairs.
        for name, value in super().__repr_args__():
            yield name, MASK if name in self.secret_fields and value else value


# --------------------------------------------------------------------------- gateway settings


def _speed(value: Any) -> Any:
    """``speed: max`` is infinitely many simulated seconds per second; other text must be a number."""
    if isinstance(value, str):
        text = value.strip()
        if text.lower() == "max":
            return math.inf
        try:
            float(text)
        except ValueError:
            _fail((), f"expected a number > 0 or 'max', got {value!r}")
    return value


class SimSettings(_Section):
    """Built-in simulated exchange: starting cash and the synthetic market."""

    initial_balance: PositiveFloat = 1_000_000.0
    seed: Int = 0
    #: Ticks per second per contract; 0 freezes the synthetic market.
    tick_rate: NonNegativeFloat = 2.0
    #: Recorded history that drives one contract's market instead of the random walk: a CSV of
    #: 1-minute bars (vnpy DataManager export) or of ticks (gateways/sim_replay.py). A relative
    #: path is taken from the config file's directory.
    replay: NonEmptyStr | None = None
    #: The contract the replay drives; default: the file's symbol and exchange columns.
    replay_symbol: VtSymbol | None = None
    #: Simulated seconds per second of the replay; "max" (read as infinity): as fast as it goes.
    speed: Annotated[PositiveFloat, BeforeValidator(_speed)] = 60.0
    #: Follow the exchanges' trading sessions (core/sessions.py): no ticks and no matching
    #: outside them, and orders on a closed market refused. Off: the market moves at any hour.
    sessions: bool = False
    #: The exchange's clock starts at this instant (with its zone, e.g. 2026-12-05T03:00:00+08:00)
    #: when the trader starts and runs on at the wall clock's pace: to try a session at
    #: another hour. Unset: the wall clock.
    clock_start: AwareDatetime | None = None

    @model_validator(mode="after")
    def _check_replay(self) -> SimSettings:
        if self.replay is None and self.replay_symbol is not None:
            _fail(("replay_symbol",), "only with replay (the file it names drives that contract)")
        if self.replay is not None and self.sessions:
            _fail(("sessions",), "not with replay (a replay plays the file's own hours)")
        if self.replay is not None and self.clock_start is not None:
            _fail(("clock_start",), "not with replay (a replay's quotes carry the file's times)")
        return self


class CtpSettings(_SecretSection):
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


class TqsdkSettings(_SecretSection):
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

    @model_validator(mode="after")
    def _check(self) -> TqsdkSettings:
        if self.account_type == "account":
            for name in ("broker", "user", "password"):
                if not getattr(self, name):
                    _fail((name,), "required when account_type is 'account'")
        return self


# --------------------------------------------------------------------------- risk and strategies


class RiskConfig(_Section):
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
    #: Refuse orders while the contract's market is closed (core/sessions.py), with the next
    #: open time. Real venues only: a sim account follows ``sim.sessions`` instead.
    market_hours: bool = True


class StrategyRiskConfig(_Section):
    """A strategy instance's own limits (percentages of the entry price)."""

    stop_loss_pct: PositiveFloat | None = None
    take_profit_pct: PositiveFloat | None = None
    max_position: PositiveInt = 1


class StrategyConfig(_Section):
    """One strategy instance: class + symbol + parameters + its own risk limits."""

    name: NonEmptyStr
    #: Written ``class:`` in YAML (``class`` is a Python keyword).
    class_name: NonEmptyStr = Field(alias="class")
    symbol: VtSymbol
    #: Checked by the strategy class itself when the engine creates the instance.
    params: dict[str, Any] = {}
    #: vnpy's word for ``params`` (a ``CtaTemplate``'s parameters by name): either, not both.
    setting: dict[str, Any] | None = None
    risk: StrategyRiskConfig = Field(default_factory=StrategyRiskConfig)
    autostart: bool = True

    @model_validator(mode="after")
    def _setting_is_params(self) -> StrategyConfig:
        if self.setting is not None:
            if self.params:
                _fail(("setting",), "give the parameters as 'params' or as 'setting' (vnpy's word), not both")
            self.params = dict(self.setting)
        return self

    @property
    def params_key(self) -> str:
        """The key the parameters were written under (``params`` or ``setting``)."""
        return "setting" if self.setting is not None else "params"


# --------------------------------------------------------------------------- accounts


class AccountConfig(_Section):
    """One trading account: its venue, how its trader runs, what it watches and its limits."""

    account_id: AccountId
    gateway: GatewayName
    enabled: bool = True
    #: process: own OS process (isolation); embedded: an asyncio task in the manager (debugging).
    mode: Literal["process", "embedded"] = "process"
    sim: SimSettings = Field(default_factory=SimSettings)
    ctp: CtpSettings | None = None
    tqsdk: TqsdkSettings | None = None
    #: A paper (sim) account matching locally against quotes taken from this other account.
    market_data_from: str | None = None
    watchlist: list[VtSymbol] = []
    auto_trading: bool = False
    risk: RiskConfig = Field(default_factory=RiskConfig)
    strategies: list[StrategyConfig] = []

    def venue_identity(self) -> str:
        """Which account at which venue this section's orders reach, in words and without a
        secret (``ctp user 123456 at broker 9999, td tcp://...``): what a trader says it runs
        when it joins a manager, which adopts only the same (ARCHITECTURE.md, "Processes").
        Risk limits, strategies and the watchlist are no part of it: editing them does not
        make a running trader someone else's."""
        words = f"{self.account_id}: {self.gateway}"
        if self.gateway == "ctp" and self.ctp is not None:
            words += f" user {self.ctp.userid} at broker {self.ctp.brokerid}, td {self.ctp.td_address}"
        elif self.gateway == "tqsdk" and self.tqsdk is not None:
            tq = self.tqsdk
            words += f" {tq.account_type} of {tq.auth_user}"
            if tq.account_type == "account":
                words += f", user {tq.user} at broker {tq.broker}"
        elif self.market_data_from is not None:
            words += f" paper, quotes from {self.market_data_from}"
        return words

    @model_validator(mode="after")
    def _check(self) -> AccountConfig:
        if self.gateway == "ctp" and self.ctp is None:
            _fail(
                ("ctp",),
                "gateway 'ctp' needs a 'ctp' section (userid, password, brokerid, td_address, md_address)",
            )
        if self.gateway == "tqsdk" and self.tqsdk is None:
            _fail(("tqsdk",), "gateway 'tqsdk' needs a 'tqsdk' section (at least auth_user, auth_password)")
        if self.market_data_from is not None:
            if self.gateway != "sim":
                _fail(
                    ("market_data_from",),
                    f"only a sim (paper) account can take quotes from another account; this gateway is "
                    f"'{self.gateway}'",
                )
            if self.market_data_from == self.account_id:
                _fail(("market_data_from",), "an account cannot take quotes from itself")
        seen: dict[str, int] = {}
        for i, vt_symbol in enumerate(self.watchlist):
            if vt_symbol in seen:
                _fail(("watchlist", i), f"'{vt_symbol}' is listed twice (also watchlist[{seen[vt_symbol]}])")
            seen[vt_symbol] = i
        names: dict[str, int] = {}
        for i, strategy in enumerate(self.strategies):
            if strategy.name in ("manual", "external"):  # orders and trades say who sent them
                _fail(
                    ("strategies", i, "name"),
                    f"'{strategy.name}' is reserved (manual: the operator's own orders; "
                    "external: orders placed outside qtrader)",
                )
            if strategy.name in names:
                _fail(
                    ("strategies", i, "name"),
                    f"duplicate strategy name '{strategy.name}' (also strategies[{names[strategy.name]}])",
                )
            names[strategy.name] = i
        return self


# --------------------------------------------------------------------------- process-wide sections


class ManagerConfig(_Section):
    """How the TradingManager supervises traders: heartbeats, restarts, request timeouts (seconds)."""

    heartbeat_interval: PositiveFloat = 1.0
    #: No heartbeat for this long = hung: the trader is killed and restarted.
    heartbeat_timeout: PositiveFloat = 5.0
    #: Delay before the 1st, 2nd, ... restart; the last value repeats. 0 = restart at once.
    restart_backoff: Annotated[list[NonNegativeFloat], MinLen(1)] = Field(
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
    venue_backoff: Annotated[list[NonNegativeFloat], MinLen(1)] = Field(
        default_factory=lambda: [5.0, 10.0, 30.0, 60.0]
    )

    @model_validator(mode="after")
    def _check(self) -> ManagerConfig:
        if self.heartbeat_timeout <= self.heartbeat_interval:
            _fail(
                ("heartbeat_timeout",),
                f"must be longer than heartbeat_interval ({self.heartbeat_timeout:g} <= "
                f"{self.heartbeat_interval:g})",
            )
        return self


class SocketConfig(_Section):
    """Where the Unix sockets live and how large one frame may be."""

    #: None = $XDG_RUNTIME_DIR/qtrader, else <tempdir>/qtrader-<uid> (see config.paths.socket_dir).
    socket_dir: str | None = None
    #: Frames carry a 4-byte length, hence the upper bound.
    max_frame_bytes: Annotated[Int, Ge(1024), Le(2**32 - 1)] = 16 * 1024 * 1024


class DatabaseConfig(_Section):
    """Where account databases and logs go, and how often account snapshots are taken."""

    #: None = $QTRADER_HOME, else the platform's user data dir (see config.paths.data_dir).
    data_dir: str | None = None
    snapshot_interval: PositiveFloat = 10.0


#: events that can ring the console's bell (tui/alerts.py)
BellEvent = Literal["fill", "rejection", "disconnect", "kill_switch"]


#: the most lots ``ui.default_volume`` may propose (a typo of 5000 for 5 must not be a prefill)
MAX_DEFAULT_VOLUME = 1000


class UiConfig(_Section):
    """Console preferences."""

    #: cn: red = up, green = down (China convention); intl: the reverse.
    color_scheme: Literal["cn", "intl"] = "cn"
    #: action name -> key(s), e.g. {buy: "b", cancel_all: "X"}; validated by the console.
    keys: dict[str, str] = {}
    #: Enter confirms too (besides y). Off by default: Enter submits the order form, and a
    #: held Enter must not go through both it and its confirmation.
    confirm_with_enter: bool = False
    #: what rings the terminal bell (a burst rings once); [] for silence
    bell: list[BellEvent] = ["fill", "rejection", "disconnect", "kill_switch"]
    #: lots the order entry proposes, by product (``rb``), full vt_symbol (``rb2610.SHFE``) or
    #: ``default``; the last volume sent for a contract comes first (README, "Order entry")
    default_volume: dict[str, Annotated[Int, Ge(1), Le(MAX_DEFAULT_VOLUME)]] = {"default": 1}
    #: risk degree (margin / balance) at or above which the header and the dashboard warn
    risk_degree_warning: Annotated[Float, Gt(0), Le(10)] = 0.8

    @model_validator(mode="after")
    def _check_default_volume(self) -> UiConfig:
        for key in self.default_volume:
            if key == "default":
                continue
            if "." in key:
                try:
                    _valid_vt_symbol(key)
                except PydanticCustomError as exc:
                    _fail(("default_volume", key), str(exc.context["detail"] if exc.context else exc))
                continue
            problem = product_problem(key)
            if problem is not None:
                _fail(
                    ("default_volume", key),
                    f"{problem} (a key is a product such as rb, a contract such as rb2610.SHFE, or default)",
                )
        return self


class LogConfig(_Section):
    """Logging verbosity of the manager and the traders."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


_REDIS_URL_RE = re.compile(r"^rediss?://[^\s:@/]+(:\d{1,5})?(/\d{1,2})?$")
_HOST_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _valid_redis_url(value: str) -> str:
    if not _REDIS_URL_RE.match(value):
        _fail(
            (),
            f"expected redis://HOST[:PORT][/DB] or rediss://... (TLS), with no user or password in it "
            f"(username, password: fields of their own), got {value!r}"
            if "@" not in value
            else "expected redis://HOST[:PORT][/DB] or rediss://... with no user or password in it "
            "(username, password: fields of their own; the password from the environment)",
        )
    return value


def _valid_host_name(value: str) -> str:
    if not _HOST_NAME_RE.match(value):
        _fail((), f"expected 1-64 characters: letters, digits, '_', '.' or '-', got {value!r}")
    return value


class PublishConfig(_SecretSection):
    """Mirror every account onto Redis Streams (core/redis_publish.py) and take commands from
    there; a console attaches with ``qtrader-tui --attach redis://...``. The credentials are the
    Redis ACL user's; the password comes from the environment like every secret."""

    secret_fields: ClassVar[frozenset[str]] = frozenset({"password"})

    #: redis://HOST:PORT/DB or rediss://... (TLS); no user or password in it (they are fields)
    url: Annotated[str, AfterValidator(_valid_redis_url)]
    #: this daemon's name on that Redis (default: the machine's host name); unique per Redis
    host: Annotated[str, AfterValidator(_valid_host_name)] | None = None
    username: str | None = None
    password: str | None = None
    #: seconds between snapshots of an account (only when it changed)
    snapshot_interval: Annotated[float, Gt(0), Le(60)] = 2.0
    #: entries kept per account stream (MAXLEN ~): what a console may fall behind before resyncing
    stream_maxlen: Annotated[Int, Ge(100), Le(10_000_000)] = 100_000


class AppConfig(_Section):
    """The whole configuration: accounts plus the process-wide sections."""

    accounts: list[AccountConfig]
    manager: ManagerConfig = Field(default_factory=ManagerConfig)
    socket: SocketConfig = Field(default_factory=SocketConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    ui: UiConfig = Field(default_factory=UiConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    publish: PublishConfig | None = None
    # where user strategies live: a directory of .py files or a dotted module (class by name)
    strategy_path: str | None = None
    #: account id -> the environment variables its secrets came from (``${NAME}``), set by the
    #: loader: a trader process is given only its own (``secret_variables_of_others``)
    _secret_variables: dict[str, frozenset[str]] = PrivateAttr(default_factory=dict)
    #: the variables of ``publish:``'s secrets: no trader needs the Redis password
    _publish_variables: frozenset[str] = PrivateAttr(default_factory=frozenset)

    def secret_variables(self) -> frozenset[str]:
        """Every variable holding a secret (every account's and the Redis password): what a
        process that starts traders for all accounts (core/zygote.py) must not hold."""
        return frozenset().union(*self._secret_variables.values(), self._publish_variables)

    def secret_variables_of_others(self, account_id: str) -> frozenset[str]:
        """The variables holding other accounts' secrets and the Redis password (and none of
        this account's): what this account's trader process must not find in its environment."""
        own = self._secret_variables.get(account_id, frozenset())
        others = (names for aid, names in self._secret_variables.items() if aid != account_id)
        return frozenset().union(*others, self._publish_variables) - own

    @model_validator(mode="after")
    def _check(self) -> AppConfig:
        if not self.accounts:
            _fail(("accounts",), "at least one account is required")
        # Case-insensitive: ids name files, and DQ1/dq1 collide on macOS and Windows file systems.
        ids: dict[str, int] = {}
        for i, account in enumerate(self.accounts):
            key = account.account_id.lower()
            if key in ids:
                other = self.accounts[ids[key]].account_id
                _fail(
                    ("accounts", i, "account_id"),
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
                    ("accounts", i, "market_data_from"),
                    f"'{source_id}' is not a configured account ({known})",
                )
            elif source.market_data_from is not None:
                # One hop only: a chain (or a cycle) would leave someone without a real quote source.
                _fail(
                    ("accounts", i, "market_data_from"),
                    f"'{source_id}' takes its own quotes from '{source.market_data_from}'; name an account "
                    "with its own market data",
                )
        return self

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
