"""Wire protocol between manager and traders (and daemon and attached consoles).

A frame is a 4-byte big-endian unsigned length followed by a UTF-8 JSON object::

    {"type": "order", "account_id": "DQ1", "seq": 17, "ts": 1763700000.1,
     "req_id": null, "data": {...}}

``data`` is decoded into the struct registered for ``type`` in ``MESSAGE_TYPES``
(msgspec validates while it decodes). Bad input is normal input: every way a
frame can be wrong raises a ``ProtocolError`` subclass whose ``fatal`` flag says
whether the stream can still be trusted (oversized or truncated: no, close the
connection; non-JSON, schema-invalid or unknown type: yes, log and carry on).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections import deque
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar, Literal, TypeVar, Union, get_args

import msgspec

from core.models import (
    MAX_NAME_LENGTH,
    PRINTABLE,
    SYMBOL_PATTERN,
    Account,
    Bar,
    CancelRequest,
    CloseRequest,
    ConditionalOrder,
    ConditionalRequest,
    Contract,
    EquityPoint,
    LogEntry,
    NameField,
    Order,
    OrderRequest,
    Position,
    ReverseRequest,
    StrategyState,
    StrategyTrigger,
    Struct,
    SymbolField,
    Tick,
    Trade,
    TraderInfo,
    TraderStatus,
    TradingState,
)

HEADER = struct.Struct(">I")
DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024
MAX_SUBSCRIBE = 5000  # contracts in one subscribe request (a whole CTP market is ~1,000)
MAX_HISTORY_ROWS = 10_000  # rows one history request may ask for


# --------------------------------------------------------------------------- payloads


class Empty(Struct, kw_only=True):
    """Payload of messages that carry nothing (status_req)."""


class Reply(Struct, kw_only=True):
    """The one answer to every request. ``error`` is for a human to read."""

    ok: bool
    error: str = ""
    result: Any = None


class CancelAllRequest(Struct, kw_only=True):
    vt_symbol: SymbolField | None = None  # None: every working order of the account
    account_id: NameField = ""


class StrategyCommand(Struct, kw_only=True):
    action: Literal["start", "stop", "auto_on", "auto_off"]
    name: NameField = ""  # instance name; empty for the account-wide auto switch


class StateRequest(Struct, kw_only=True):
    state: TradingState


class SubscribeRequest(Struct, kw_only=True):
    """Start market data for these contracts (the manager, for a paper account's quotes)."""

    symbols: Annotated[list[SymbolField], msgspec.Meta(max_length=MAX_SUBSCRIBE)]


#: contracts an account's watchlist may hold (the Market panel's rows)
MAX_WATCHLIST = 200
#: contracts of one product that a main-contract lookup subscribes (a year of months, twice)
MAX_PROBE = 24


class WatchlistRequest(Struct, kw_only=True):
    """The account's watchlist (core/watchlist.py). ``set``: it becomes ``symbols``, in that
    order, saved in the account's state before the reply, new contracts subscribed at once
    (each must be a contract the venue knows). ``listed``: the futures the venue lists for
    ``product`` ("" for all), for completion. ``probe``: subscribe the listed months of
    ``product``, so that their quotes (with open interest) show the main contract."""

    action: Literal["set", "listed", "probe"]
    symbols: Annotated[list[SymbolField], msgspec.Meta(max_length=MAX_WATCHLIST)] = msgspec.field(
        default_factory=list
    )
    product: Annotated[str, msgspec.Meta(pattern="^[A-Za-z]{0,3}$")] = ""


class Watchlist(Struct, kw_only=True):
    """The account's watchlist as the trader now has it (after a ``set``)."""

    symbols: Annotated[list[SymbolField], msgspec.Meta(max_length=MAX_WATCHLIST)] = msgspec.field(
        default_factory=list
    )


class QuoteSourceStatus(Struct, kw_only=True):
    """The manager tells a paper account whether its quote source is up (a down source means
    no real book to match against: the paper account refuses orders until it is back)."""

    source: str
    up: bool
    message: str = ""  # why it is down, in the source's own words


#: ``trade_report``: the trades of a range with their close P&L and day totals;
#: ``strategy_stats``: each strategy instance's record (both core/trade_stats.py)
HistoryKind = Literal[
    "orders", "trades", "account_snapshots", "triggers", "bars", "trade_report", "strategy_stats"
]


class HistoryRequest(Struct, kw_only=True):
    kind: HistoryKind
    since: Annotated[float, msgspec.Meta(ge=0, le=1e11)] | None = None  # epoch seconds
    until: Annotated[float, msgspec.Meta(ge=0, le=1e11)] | None = None  # epoch seconds, exclusive
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_HISTORY_ROWS)] = 1000
    vt_symbol: SymbolField | None = None
    # account_snapshots only: one point (the last) per ``every`` seconds, so a chart of days
    # gets the whole span in a few thousand points instead of the newest ``limit`` raw ones
    every: Annotated[float, msgspec.Meta(gt=0, le=1e8)] | None = None


class ConditionalCommand(Struct, kw_only=True):
    """Cancel one conditional order, or re-arm every one the kill switch suspended."""

    action: Literal["cancel", "rearm"]
    cond_id: NameField = ""  # cancel: the one to cancel


class KillRequest(Struct, kw_only=True):
    """The kill switch: HALTED, strategies stopped, working orders cancelled.

    ``keep_protective``: the account's protective strategies (a strategy class with
    ``PROTECTIVE = True``, such as the stop guard) keep running, and their closing orders,
    which only ever reduce a position, pass the HALT as if the account were REDUCING; their
    own working closes stay working. Everything else is as without it. Off by default, and
    the command line's ``--kill`` never sets it."""

    keep_protective: bool = False


class ShutdownRequest(Struct, kw_only=True):
    cancel_orders: bool = False


class Snapshot(Struct, kw_only=True):
    """Everything a trader knows, sent after every (re)connect to the manager."""

    info: TraderInfo
    account: Account | None = None
    contracts: list[Contract] = msgspec.field(default_factory=list)
    ticks: list[Tick] = msgspec.field(default_factory=list)
    positions: list[Position] = msgspec.field(default_factory=list)
    orders: list[Order] = msgspec.field(default_factory=list)
    trades: list[Trade] = msgspec.field(default_factory=list)
    strategies: list[StrategyState] = msgspec.field(default_factory=list)
    triggers: list[StrategyTrigger] = msgspec.field(default_factory=list)
    equity: list[EquityPoint] = msgspec.field(default_factory=list)
    #: the Market panel's contracts in order (core/watchlist.py); None from a trader that
    #: does not say (the console then lists every quote)
    watchlist: list[str] | None = None
    #: every live conditional order and the recent finished ones (``core/conditional.py``)
    conditionals: list[ConditionalOrder] = msgspec.field(default_factory=list)


class TraderCommand(Struct, kw_only=True):
    """An attached console asks the daemon to start, stop or restart an account's trader."""

    action: Literal["start", "stop", "restart"]


class TraderStatusUpdate(Struct, kw_only=True):
    """The manager's view of one trader (status light, pid, restarts), for attached consoles."""

    status: TraderStatus
    message: str = ""
    pid: int | None = None
    restarts: int = 0


class ConsoleState(Struct, kw_only=True):
    """Everything the daemon knows of one account, sent to a console when it attaches."""

    account_id: str
    gateway: str
    trader: TraderStatusUpdate
    snapshot: Snapshot | None = None  # None until the trader has registered
    logs: list[LogEntry] = msgspec.field(default_factory=list)


# --------------------------------------------------------------------------- message types

#: A request: answered by exactly one ``reply``. Manager -> trader first, then the ones only
#: an attached console sends to the daemon (trading requests reuse the trader's).
RequestType = Literal[
    "order_req",
    "cancel_req",
    "cancel_all_req",
    "close_req",
    "reverse_req",
    "cond_req",
    "cond_cmd_req",
    "strategy_req",
    "state_req",
    "status_req",
    "kill_req",
    "history_req",
    "subscribe_req",
    "watchlist_req",
    "shutdown",
    "attach",
    "info_req",
    "trader_req",
]

#: Every type a frame can carry, exactly as it is spelled on the wire.
MessageType = Literal[
    # trader -> manager (and, relayed, daemon -> attached console)
    "register",
    "heartbeat",
    "status",
    "snapshot",
    "account",
    "order",
    "trade",
    "position",
    "tick",
    "bar",
    "contract",
    "strategy",
    "trigger",
    "conditional",
    "equity",
    "log",
    "watchlist",
    "reply",
    # manager -> trader, with no reply wanted: a paper account's quotes and their source's state
    "quote",
    "quote_source",
    # daemon -> attached console
    "console_state",
    "trader_status",
    RequestType,
]

#: One message on its way out: (type, data, req_id).
Outgoing = tuple[MessageType, Any, int | None]

# type name -> payload struct. Trader -> manager first, then manager -> trader.
MESSAGE_TYPES: dict[MessageType, type] = {
    "register": TraderInfo,
    "heartbeat": TraderInfo,
    "status": TraderInfo,
    "snapshot": Snapshot,
    "account": Account,
    "order": Order,
    "trade": Trade,
    "position": Position,
    "tick": Tick,
    "bar": Bar,
    "contract": Contract,
    "strategy": StrategyState,
    "trigger": StrategyTrigger,
    "conditional": ConditionalOrder,
    "equity": EquityPoint,
    "log": LogEntry,
    "watchlist": Watchlist,
    "reply": Reply,
    "order_req": OrderRequest,
    "cancel_req": CancelRequest,
    "cancel_all_req": CancelAllRequest,
    "close_req": CloseRequest,
    "reverse_req": ReverseRequest,
    "cond_req": ConditionalRequest,
    "cond_cmd_req": ConditionalCommand,
    "strategy_req": StrategyCommand,
    "state_req": StateRequest,
    "status_req": Empty,
    "kill_req": KillRequest,
    "history_req": HistoryRequest,
    "subscribe_req": SubscribeRequest,
    "watchlist_req": WatchlistRequest,
    "quote": Tick,  # a source account's tick relayed to a paper account
    "quote_source": QuoteSourceStatus,  # the source's status, to its paper accounts
    "shutdown": ShutdownRequest,
    # attached console <-> daemon (control socket); trading requests reuse the types above
    "attach": Empty,
    "info_req": Empty,
    "trader_req": TraderCommand,
    "console_state": ConsoleState,
    "trader_status": TraderStatusUpdate,
}

REQUEST_TYPES: frozenset[RequestType] = frozenset(get_args(RequestType))


# --------------------------------------------------------------------------- errors


class ProtocolError(Exception):
    """A frame that cannot be used. ``fatal``: the stream is no longer trustworthy."""

    fatal = False

    def __init__(self, message: str, *, req_id: int | None = None, msg_type: str = "") -> None:
        super().__init__(message)
        self.req_id = req_id
        self.msg_type = msg_type


class FrameTooLarge(ProtocolError):
    fatal = True


class TruncatedFrame(ProtocolError):
    fatal = True


class NotJson(ProtocolError):
    pass


class SchemaError(ProtocolError):
    pass


class UnknownType(ProtocolError):
    pass


# --------------------------------------------------------------------------- messages


class Message(msgspec.Struct, kw_only=True, gc=False):
    """One frame. Each type has its own subclass, tagged by ``type`` on the wire, whose
    ``data`` is that type's payload struct (``MESSAGE_TYPES``): build one with ``Message.new``;
    ``decode_payload`` returns one as msgspec decoded it, envelope and payload in one pass.

    ``gc=False``: a frame holds its payload and is never part of a reference cycle, so the
    garbage collector need not track the thousands a second that arrive."""

    type: ClassVar[MessageType]
    account_id: Annotated[str, msgspec.Meta(max_length=MAX_NAME_LENGTH)] = ""  # decoded: refused if longer
    seq: int = 0
    ts: float = 0.0
    req_id: int | None = None
    data: Any = None

    @classmethod
    def new(
        cls,
        *,
        type: MessageType,  # the field's name on the wire
        account_id: str = "",
        seq: int = 0,
        ts: float = 0.0,
        req_id: int | None = None,
        data: Any = None,
    ) -> Message:
        """The frame of ``type`` (KeyError for a type not in ``MESSAGE_TYPES``)."""
        return _MESSAGE_CLASSES[type](account_id=account_id, seq=seq, ts=ts, req_id=req_id, data=data)


class _Incoming(msgspec.Struct, kw_only=True):
    type: str  # any string: an unknown type is refused as such (UnknownType), not as a schema error
    account_id: str = ""
    seq: int = 0
    ts: float = 0.0
    req_id: int | None = None
    data: msgspec.Raw = msgspec.Raw(b"{}")


_encoder = msgspec.json.Encoder()
_envelope_decoder = msgspec.json.Decoder(_Incoming)
_payload_decoders = {name: msgspec.json.Decoder(t) for name, t in MESSAGE_TYPES.items()}


def _message_class(name: MessageType, payload: type) -> type[Message]:
    """The frame of one message type: ``Message`` with ``data`` typed, tagged by ``type``."""
    return msgspec.defstruct(
        f"Message_{name}",
        [("data", payload)],
        bases=(Message,),
        kw_only=True,
        tag_field="type",
        tag=name,
        gc=False,
        namespace={"type": name},
    )


_MESSAGE_CLASSES: dict[MessageType, type[Message]] = {
    name: _message_class(name, t) for name, t in MESSAGE_TYPES.items()
}
_CLASSES = tuple(_MESSAGE_CLASSES.values())
#: one pass over a well-formed frame: envelope and payload decoded together. Anything it
#: refuses is decoded again the two-step way (``_decode_checked``), which says what is wrong.
_frame_decoder = msgspec.json.Decoder(_CLASSES[0] if len(_CLASSES) == 1 else Union[_CLASSES])  # noqa: UP007


# --------------------------------------------------------------------------- sizes

#: A stored row (order, trade, trigger, log line) larger than this holds what no venue sends:
#: the text of a hostile request from before requests were bounded (models.SymbolField...).
#: Such rows are left out of snapshots and history replies, so no row can make an account's
#: state too large to send.
MAX_ROW_BYTES = 4096

T = TypeVar("T")


def encoded_size(obj: Any) -> int:
    return len(_encoder.encode(obj))


def fit_rows(rows: Sequence[T], budget: int) -> tuple[list[T], int]:
    """The newest of ``rows`` (oldest first, as kept) that fit in ``budget`` encoded bytes,
    leaving out any row over ``MAX_ROW_BYTES``; and how many were left out."""
    kept: list[T] = []
    used = 0
    for row in reversed(rows):
        size = encoded_size(row)
        if size > MAX_ROW_BYTES:
            continue
        if used + size > budget:
            break
        kept.append(row)
        used += size
    kept.reverse()
    return kept, len(rows) - len(kept)


def fit_snapshot(snap: Snapshot, max_bytes: int) -> tuple[Snapshot, str]:
    """``snap`` cut to at most about ``max_bytes`` encoded, whatever the database holds: what
    the account is now (account, positions, working orders, contracts, quotes, strategies) is
    kept whole; the recent history (finished orders, trades, triggers, equity) gives up its
    oldest rows first, and oversized rows always. The second value says what was left out
    ("" if nothing), for the log."""
    active = [o for o in snap.orders if o.is_active]
    finished = [o for o in snap.orders if not o.is_active]
    live = [c for c in snap.conditionals if c.is_live]
    done = [c for c in snap.conditionals if not c.is_live]
    now = msgspec.structs.replace(snap, orders=active, trades=[], triggers=[], equity=[], conditionals=live)
    room = max(0, max_bytes - encoded_size(now))
    finished, n_orders = fit_rows(finished, room * 30 // 100)
    trades, n_trades = fit_rows(snap.trades, room * 30 // 100)
    triggers, n_triggers = fit_rows(snap.triggers, room * 15 // 100)
    equity, n_equity = fit_rows(snap.equity, room * 15 // 100)
    done, n_done = fit_rows(done, room * 10 // 100)
    left = [
        f"{n} {what}"
        for n, what in (
            (n_orders, "finished orders"),
            (n_trades, "trades"),
            (n_triggers, "triggers"),
            (n_equity, "equity points"),
            (n_done, "finished conditional orders"),
        )
        if n
    ]
    note = f"left out of the snapshot (too large, or rows over {MAX_ROW_BYTES} bytes): {', '.join(left)}"
    fitted = msgspec.structs.replace(
        snap,
        orders=[*finished, *active],
        trades=trades,
        triggers=triggers,
        equity=equity,
        conditionals=[*done, *live],
    )
    return fitted, note if left else ""


def encode_frame(message: Message) -> bytes:
    """Length prefix + JSON of ``message``."""
    buf = bytearray(HEADER.size)
    _encoder.encode_into(message, buf, HEADER.size)
    HEADER.pack_into(buf, 0, len(buf) - HEADER.size)
    return bytes(buf)


#: how a refusal names the patterns of models' bounded fields (msgspec would quote the regex)
_PATTERN_WORDS = {
    f"`str` matching regex {SYMBOL_PATTERN!r}": "a contract symbol such as au2612.SHFE",
    f"`str` matching regex {PRINTABLE!r}": "printable text (no line break or control character)",
}


def _words(exc: Exception) -> str:
    text = str(exc)
    for regex, words in _PATTERN_WORDS.items():
        text = text.replace(regex, words)
    return text


def _printable(value: Any) -> bool:
    """One field's value: printable if it is text, or a list of which every text is."""
    if isinstance(value, str):
        return value.isprintable()
    if isinstance(value, list):
        return all(t.isprintable() for t in value if isinstance(t, str))
    return True


def _printable_fields(data: Any, msg_type: str, req_id: int | None) -> None:
    """A request's text is printable all through (``str.isprintable``: no control, format,
    separator or unassigned character, which a pattern cannot list), beyond the patterns'
    C0/C1 bound: a bidi override or a zero-width space in a reference would mislead a reader.

    On every request's way in (the order path's included): the values are taken in one call
    and looked at as they are; the fields are named only for a refusal."""
    if not isinstance(data, msgspec.Struct) or all(map(_printable, msgspec.structs.astuple(data))):
        return
    for name in data.__struct_fields__:
        if not _printable(getattr(data, name)):
            raise SchemaError(
                f"invalid '{msg_type}' data: Expected printable text (no line break or control "
                f"character) - at `$.{name}`",
                req_id=req_id,
                msg_type=msg_type,
            )


def decode_payload(payload: bytes | memoryview) -> Message:
    """JSON body of one frame -> Message with a typed ``data``."""
    try:
        msg: Message = _frame_decoder.decode(payload)
    except Exception:  # refused, for whatever reason: the checked way says which
        return _decode_checked(payload)  # e.g. an account id too long: refused in its words
    if msg.type in REQUEST_TYPES:
        _printable_fields(msg.data, msg.type, msg.req_id)
    return msg


def _decode_checked(payload: bytes | memoryview) -> Message:
    """The envelope first, then the payload by its type: each refusal in its own words."""
    try:
        env = _envelope_decoder.decode(payload)
    except msgspec.ValidationError as exc:
        raise SchemaError(f"bad envelope: {exc}") from None
    except msgspec.DecodeError as exc:
        raise NotJson(f"frame is not JSON: {exc}") from None
    except UnicodeDecodeError:  # a string of invalid UTF-8: msgspec says so in its own way
        raise NotJson("frame is not JSON: a string is not valid UTF-8") from None
    except RecursionError:  # msgspec's guard against deep nesting: the frame is whole, refuse it
        raise SchemaError("frame nested too deeply") from None
    if len(env.account_id) > MAX_NAME_LENGTH:
        raise SchemaError(
            f"account id longer than {MAX_NAME_LENGTH} characters", req_id=env.req_id, msg_type=env.type
        )
    decoder = _payload_decoders.get(env.type)
    if decoder is None:
        if len(env.type) > MAX_NAME_LENGTH or not env.type.isprintable():
            raise UnknownType("unknown message type", req_id=env.req_id)
        raise UnknownType(f"unknown message type '{env.type}'", req_id=env.req_id, msg_type=env.type)
    try:
        data = decoder.decode(env.data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise SchemaError(
            f"invalid '{env.type}' data: {_words(exc)}", req_id=env.req_id, msg_type=env.type
        ) from None
    except UnicodeDecodeError:
        raise SchemaError(
            f"invalid '{env.type}' data: a string is not valid UTF-8", req_id=env.req_id, msg_type=env.type
        ) from None
    except RecursionError:
        raise SchemaError(
            f"'{env.type}' data nested too deeply", req_id=env.req_id, msg_type=env.type
        ) from None
    if env.type in REQUEST_TYPES:
        _printable_fields(data, env.type, env.req_id)
    return Message.new(
        type=env.type,  # type: ignore[arg-type]  # one of MESSAGE_TYPES: it has a decoder
        account_id=env.account_id,
        seq=env.seq,
        ts=env.ts,
        req_id=env.req_id,
        data=data,
    )


class FrameBuffer:
    """Sans-IO frame splitter: ``feed`` bytes, get the complete payloads back.

    Payloads are read-only memoryviews of the bytes fed (no copy per frame; a frame that
    spans two feeds costs one copy of that frame, not of the chunks). Raises FrameTooLarge as soon as
    a header announces more than ``max_frame_bytes`` (before buffering the body).
    """

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()  # the start of a frame not yet complete

    def feed(self, data: bytes) -> list[memoryview]:
        out: list[memoryview] = []
        header = HEADER.size
        pos = 0
        buf = self._buf
        if buf:  # first complete the frame begun in an earlier chunk, copying only its bytes
            if len(buf) < header:
                pos = min(header - len(buf), len(data))
                buf += data[:pos]
                if len(buf) < header:
                    return out
            (length,) = HEADER.unpack_from(buf, 0)
            if length > self.max_frame_bytes:
                raise FrameTooLarge(f"frame of {length} bytes exceeds the maximum of {self.max_frame_bytes}")
            need = header + length - len(buf)
            if len(data) - pos < need:  # a large frame still arriving: kept, no copy per chunk of it
                buf += memoryview(data)[pos:]
                return out
            buf += memoryview(data)[pos : pos + need]
            out.append(memoryview(bytes(buf))[header:].toreadonly())
            buf.clear()
            pos += need
        view = memoryview(data).toreadonly()  # ``data`` is immutable: the views stay valid
        size = len(data)
        unpack = HEADER.unpack_from
        try:
            while size - pos >= header:
                (length,) = unpack(data, pos)
                if length > self.max_frame_bytes:
                    raise FrameTooLarge(
                        f"frame of {length} bytes exceeds the maximum of {self.max_frame_bytes}"
                    )
                end = pos + header + length
                if size < end:
                    break
                out.append(view[pos + header : end])
                pos = end
        finally:
            if pos < size:
                buf += view[pos:]
        return out

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame still buffered."""
        return len(self._buf)

    def close(self) -> None:
        """At end of stream: a partial frame left over is a truncation."""
        if self._buf:
            n = len(self._buf)
            self._buf.clear()
            raise TruncatedFrame(f"stream ended inside a frame ({n} bytes pending)")


# --------------------------------------------------------------------------- asyncio link


def peer_credentials(writer: asyncio.StreamWriter) -> tuple[int, int] | None:
    """(pid, uid) of the process at the other end of a Unix socket, from the kernel."""
    sock = writer.get_extra_info("socket")
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", creds)
    return pid, uid


_WRITE_HIGH_WATER = 1 << 20
_FLUSH_BYTES = 1 << 16  # frames queued past this are written at once, not at the end of the loop turn
_READ_CHUNK = 1 << 18
#: What a transport asks the kernel for per read. asyncio's own (256 KiB) is past glibc's
#: mmap threshold (128 KiB), so every read, however small, mapped a fresh buffer, shrank and
#: unmapped it: 7.7 us to read one 250-byte frame on the 2-core VM, 0.6 us at 64 KiB.
_TRANSPORT_READ = 1 << 16
_NO_HEADER = bytes(HEADER.size)  # room for a frame's length, filled in once it is encoded


class Link:
    """A framed, typed connection over an asyncio stream pair.

    ``send`` stamps ``seq`` and ``ts``; ``recv`` returns the next decoded message
    or raises ``ProtocolError`` (fatal ones mean: close this link) or
    ``ConnectionError`` at end of stream.

    The first frames sent in a turn of the event loop (one ``send_nowait`` or ``send_many``)
    are written at once, as a request or reply should be; frames sent after them in the same
    turn are queued, in order, and leave in one write (one system call, not one per frame)
    at the end of the turn, or when more than ``_FLUSH_BYTES`` are queued, or on ``close``.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        account_id: str = "",
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        self.reader = reader
        self.writer = writer
        transport = writer.transport
        if getattr(transport, "max_size", 0) > _TRANSPORT_READ:  # asyncio's selector transports
            transport.max_size = _TRANSPORT_READ  # type: ignore[attr-defined]
        self.account_id = account_id
        self.max_frame_bytes = max_frame_bytes
        self._seq = 0
        self._frames = FrameBuffer(max_frame_bytes)
        self._ready: deque[memoryview] = deque()
        self._out = bytearray()  # frames queued for the end of this loop turn
        self._flush_scheduled = False

    @property
    def closed(self) -> bool:
        return self.writer.is_closing()

    @property
    def backlog(self) -> int:
        """Bytes sent but not yet taken by the peer (queued here or in the transport)."""
        return len(self._out) + self.writer.transport.get_write_buffer_size()

    def _frame(
        self, msg_type: MessageType, data: Any, req_id: int | None, account_id: str | None = None
    ) -> None:
        """Encode one frame onto the end of the queue (msgspec writes it in place: no copy)."""
        self._seq += 1
        out = self._out
        start = len(out)
        out += _NO_HEADER
        try:
            _encoder.encode_into(
                _MESSAGE_CLASSES[msg_type](
                    account_id=self.account_id if account_id is None else account_id,
                    seq=self._seq,
                    ts=time.time(),
                    req_id=req_id,
                    data=data,
                ),
                out,
                start + HEADER.size,
            )
        except BaseException:
            del out[start:]  # nothing of a frame that could not be encoded
            raise
        HEADER.pack_into(out, start, len(out) - start - HEADER.size)

    def _queued(self) -> None:
        if len(self._out) >= _FLUSH_BYTES:
            self.flush()
        elif not self._flush_scheduled:
            # the first frames of a loop turn leave at once (a request or a reply waits for
            # nothing); the ones after them in the same turn, at its end, in one write
            self.flush()
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop turn to wait for: every frame leaves at once
                return
            self._flush_scheduled = True
            loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self.flush()

    def flush(self) -> None:
        """Write the queued frames now, in one write (a closed link drops them)."""
        if not self._out:
            return
        data, self._out = self._out, bytearray()  # the transport may keep it: never touched again
        if not self.writer.is_closing():
            self.writer.write(data)

    def send_nowait(
        self, msg_type: MessageType, data: Any, req_id: int | None = None, *, account_id: str | None = None
    ) -> None:
        """Queue a frame without waiting for the peer (raises if closed). ``account_id``
        overrides the link's own (a daemon streams every account to a console)."""
        if self.writer.is_closing():
            raise ConnectionError("link is closed")
        self._frame(msg_type, data, req_id, account_id)
        self._queued()

    def send_many(self, messages: list[Outgoing]) -> None:
        """Queue several frames, to leave in one write: ``(type, data, req_id)`` each."""
        if self.writer.is_closing():
            raise ConnectionError("link is closed")
        start = len(self._out)
        try:
            for t, d, r in messages:
                self._frame(t, d, r)
        except BaseException:
            del self._out[start:]  # all of them or none, as one write would
            raise
        self._queued()

    async def send(self, msg_type: MessageType, data: Any, req_id: int | None = None) -> None:
        """``send_nowait``, then wait while the peer has more than ``_WRITE_HIGH_WATER``
        bytes to take (checked when the queue has just been written: only then can it grow)."""
        self.send_nowait(msg_type, data, req_id)
        if not self._out and self.writer.transport.get_write_buffer_size() > _WRITE_HIGH_WATER:
            await self.writer.drain()

    async def drain(self) -> None:
        """Write what is queued and wait until the transport has room again."""
        self.flush()
        await self.writer.drain()

    def recv_nowait(self) -> Message | None:
        """The next message if its frame has already arrived, else None (then ``await recv()``):
        a read loop that takes what has arrived this way makes no coroutine per message.
        Raises as ``recv`` does for a bad frame."""
        ready = self._ready
        return decode_payload(ready.popleft()) if ready else None

    async def recv(self) -> Message:
        """Next message. Reads in large chunks, so a burst of small frames
        costs one read, not two per frame."""
        ready = self._ready
        while not ready:
            data = await self.reader.read(_READ_CHUNK)
            if not data:
                self._frames.close()  # raises TruncatedFrame inside a frame
                raise ConnectionError("peer closed the connection")
            ready.extend(self._frames.feed(data))
        return decode_payload(ready.popleft())

    async def close(self) -> None:
        self.flush()
        if not self.writer.is_closing():
            self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass
