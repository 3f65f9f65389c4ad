"""Frame codec and decoder: round trips, and every kind of bad input."""

from __future__ import annotations

import asyncio
import json
import struct
from typing import get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.models import (
    DEPTH_LEVELS,
    Account,
    Direction,
    Offset,
    Order,
    OrderRequest,
    OrderType,
    Status,
    Tick,
    depth_fields,
    now,
)
from core.protocol import (
    HEADER,
    MESSAGE_TYPES,
    REQUEST_TYPES,
    FrameBuffer,
    FrameTooLarge,
    Link,
    Message,
    MessageType,
    NotJson,
    ProtocolError,
    Reply,
    SchemaError,
    TruncatedFrame,
    UnknownType,
    decode_payload,
    encode_frame,
)


def _order() -> Order:
    return Order(
        account_id="DQ1",
        order_id="SIM.1",
        vt_symbol="au2612.SHFE",
        direction=Direction.SHORT,
        offset=Offset.CLOSETODAY,
        type=OrderType.FAK,
        price=912.34,
        volume=3,
        traded=1,
        status=Status.PARTTRADED,
        datetime=now(),
        reference="au_ma",
    )


def test_frame_is_big_endian_length_then_json() -> None:
    frame = encode_frame(Message.new(type="order", account_id="DQ1", seq=5, ts=1.5, data=_order()))
    (length,) = struct.unpack(">I", frame[:4])
    assert length == len(frame) - 4
    obj = json.loads(frame[4:])
    assert obj["type"] == "order" and obj["account_id"] == "DQ1" and obj["seq"] == 5
    # enums travel by NAME
    assert obj["data"]["direction"] == "SHORT"
    assert obj["data"]["offset"] == "CLOSETODAY"
    assert obj["data"]["status"] == "PARTTRADED"


def test_round_trip_is_typed() -> None:
    order = _order()
    msg = decode_payload(encode_frame(Message.new(type="order", req_id=None, data=order))[4:])
    assert isinstance(msg.data, Order)
    assert msg.data == order
    assert msg.data.direction is Direction.SHORT


def test_every_type_round_trips_a_default_instance() -> None:
    samples = {
        "order_req": OrderRequest(vt_symbol="rb2605.SHFE", direction=Direction.LONG, volume=1),
        "account": Account(account_id="DQ1", balance=1e6),
        "reply": Reply(ok=False, error="no", result={"a": 1}),
        "tick": Tick(vt_symbol="IF2612.CFFEX", datetime=now(), last_price=4600.2),
    }
    for name, value in samples.items():
        assert isinstance(value, MESSAGE_TYPES[name])
        msg = decode_payload(encode_frame(Message.new(type=name, req_id=7, data=value))[4:])
        assert msg.data == value and msg.req_id == 7


_prices = st.floats(min_value=0, max_value=1e7, allow_nan=False)
_volumes = st.integers(min_value=0, max_value=10**6).map(float)
_levels = st.lists(st.tuples(_prices, _volumes), max_size=DEPTH_LEVELS)


@settings(max_examples=200, deadline=None)
@given(bids=_levels, asks=_levels, limits=st.tuples(_prices, _prices, _prices, _volumes))
def test_a_tick_round_trips_its_levels_and_limits(
    bids: list[tuple[float, float]],
    asks: list[tuple[float, float]],
    limits: tuple[float, float, float, float],
) -> None:
    up, down, pre, oi = limits
    tick = Tick(
        vt_symbol="rb2605.SHFE",
        datetime=now(),
        last_price=3500,
        limit_up=up,
        limit_down=down,
        pre_settlement=pre,
        open_interest=oi,
        **depth_fields(bids, asks),
    )
    msg = decode_payload(encode_frame(Message.new(type="tick", data=tick))[4:])
    assert isinstance(msg.data, Tick) and msg.data == tick
    blank = ((0.0, 0.0),) * (DEPTH_LEVELS - len(bids))
    assert msg.data.bids == (*bids, *blank)
    assert (msg.data.limit_up, msg.data.limit_down, msg.data.pre_settlement, msg.data.open_interest) == limits


def test_levels_a_venue_did_not_report_stay_off_the_wire() -> None:
    """A level-1 front's tick pays nothing for levels 2-5; a frame without them (an older
    trader's) decodes with them blank."""
    tick = Tick(
        vt_symbol="m2605.DCE", datetime=now(), last_price=2800, **depth_fields([(2800, 3)], [(2801, 4)])
    )
    data = json.loads(encode_frame(Message.new(type="tick", data=tick))[4:])["data"]
    assert "bid_price_1" in data and not any(k.endswith(("_2", "_3", "_4", "_5")) for k in data)
    assert decode_payload(json.dumps({"type": "tick", "data": data}).encode()).data.bids[1:] == ((0, 0),) * 4


def test_the_type_names_are_one_list_with_a_payload_each() -> None:
    names = get_args(MessageType)
    assert len(names) == len(set(names))
    assert set(names) == set(MESSAGE_TYPES)  # each spelled once, each with its struct
    assert set(names) > REQUEST_TYPES and "reply" not in REQUEST_TYPES


def test_not_json_is_not_fatal() -> None:
    with pytest.raises(NotJson) as err:
        decode_payload(b"\xff\x00garbage")
    assert not err.value.fatal


def test_schema_invalid_names_the_field_and_keeps_req_id() -> None:
    body = json.dumps(
        {
            "type": "order_req",
            "req_id": 9,
            "data": {"vt_symbol": "au2612.SHFE", "direction": "UP", "volume": 1},
        }
    ).encode()
    with pytest.raises(SchemaError) as err:
        decode_payload(body)
    assert "direction" in str(err.value)
    assert err.value.req_id == 9 and not err.value.fatal


def test_unknown_type() -> None:
    with pytest.raises(UnknownType) as err:
        decode_payload(b'{"type": "launch_missiles", "req_id": 3, "data": {}}')
    assert "launch_missiles" in str(err.value) and err.value.req_id == 3


def test_envelope_without_type_is_schema_error() -> None:
    with pytest.raises(SchemaError):
        decode_payload(b'{"data": {}}')


def test_oversized_frame_is_fatal_before_body_arrives() -> None:
    buf = FrameBuffer(max_frame_bytes=1024)
    with pytest.raises(FrameTooLarge) as err:
        buf.feed(HEADER.pack(1025))
    assert err.value.fatal and "1025" in str(err.value)


def test_truncated_stream() -> None:
    buf = FrameBuffer()
    frame = encode_frame(Message.new(type="order", data=_order()))
    assert buf.feed(frame[:-3]) == []
    with pytest.raises(TruncatedFrame):
        buf.close()


@settings(max_examples=200, deadline=None)
@given(chunks=st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=50))
def test_frames_split_anywhere_decode_identically(chunks: list[int]) -> None:
    order = _order()
    msgs = [Message.new(type="order", seq=i, data=order) for i in range(3)]
    stream = b"".join(encode_frame(m) for m in msgs)
    buf = FrameBuffer()
    out: list[Message] = []
    pos = 0
    for size in chunks * (len(stream) // sum(chunks) + 1):
        if pos >= len(stream):
            break
        out.extend(decode_payload(p) for p in buf.feed(stream[pos : pos + size]))
        pos += size
    assert [m.seq for m in out] == [0, 1, 2]
    assert all(m.data == order for m in out)
    buf.close()


@settings(max_examples=300, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=300), max_size=12),
    chunks=st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=20),
)
def test_split_frames_come_back_whole_and_stay_valid(payloads: list[bytes], chunks: list[int]) -> None:
    """Any payloads, the stream cut anywhere: each comes back exactly once, whole, in order,
    and the views handed out stay valid while later chunks are fed (they are never reused)."""
    stream = b"".join(HEADER.pack(len(p)) + p for p in payloads)
    buf = FrameBuffer(max_frame_bytes=300)
    views: list[memoryview] = []
    pos = 0
    for size in chunks * (len(stream) // sum(chunks) + 1):
        if pos >= len(stream):
            break
        views.extend(buf.feed(stream[pos : pos + size]))
        pos += size
    assert [bytes(v) for v in views] == payloads
    assert buf.pending == 0
    buf.close()


@pytest.mark.parametrize("cut", [1, 2, 3])  # 1-3 of the 4 header bytes in the first chunk
def test_an_oversized_header_split_across_chunks_is_fatal(cut: int) -> None:
    buf = FrameBuffer(max_frame_bytes=128)
    frame = encode_frame(Message.new(type="reply", data=Reply(ok=True)))
    head = frame + HEADER.pack(129) + b"x"
    assert len(buf.feed(head[: len(frame) + cut])) == 1
    with pytest.raises(FrameTooLarge):
        buf.feed(head[len(frame) + cut :] + b"more")


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=256))
def test_arbitrary_bytes_only_raise_protocol_errors(data: bytes) -> None:
    buf = FrameBuffer(max_frame_bytes=128)
    try:
        for payload in buf.feed(data):
            try:
                decode_payload(payload)
            except ProtocolError as exc:
                assert not exc.fatal
    except FrameTooLarge:
        pass


@settings(max_examples=200, deadline=None)
@given(
    obj=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=10,
    )
)
def test_arbitrary_json_only_raises_protocol_errors(obj: object) -> None:
    try:
        decode_payload(json.dumps(obj).encode())
    except ProtocolError:
        pass


async def test_link_over_a_socketpair_and_bad_frames() -> None:
    import socket

    a, b = socket.socketpair()
    ra, wa = await asyncio.open_connection(sock=a)
    rb, wb = await asyncio.open_connection(sock=b)
    left = Link(ra, wa, account_id="DQ1", max_frame_bytes=4096)
    right = Link(rb, wb, account_id="MGR", max_frame_bytes=4096)

    await left.send("order", _order())
    msg = await asyncio.wait_for(right.recv(), 5)
    assert msg.type == "order" and msg.account_id == "DQ1" and msg.seq == 1

    # garbage JSON inside a well-formed frame: error, link still usable
    wa.write(HEADER.pack(5) + b"nope!")
    await left.send("order", _order())
    with pytest.raises(NotJson):
        await asyncio.wait_for(right.recv(), 5)
    msg = await asyncio.wait_for(right.recv(), 5)
    assert msg.seq == 2

    # oversized announcement: fatal
    wa.write(HEADER.pack(10_000))
    with pytest.raises(FrameTooLarge):
        await asyncio.wait_for(right.recv(), 5)

    # peer closes mid-frame: truncated
    wb.write(HEADER.pack(100) + b"{")
    await right.close()
    with pytest.raises(TruncatedFrame):
        await asyncio.wait_for(left.recv(), 5)
    await left.close()


async def test_frames_of_one_loop_turn_leave_in_one_write_in_order() -> None:
    """The first frame of a loop turn is written at once; the ones after it in the same
    turn reach the transport in one write, in order; backlog counts them meanwhile; close
    writes what is still queued."""
    import socket

    a, b = socket.socketpair()
    ra, wa = await asyncio.open_connection(sock=a)
    rb, wb = await asyncio.open_connection(sock=b)
    left = Link(ra, wa, account_id="DQ1")
    right = Link(rb, wb, account_id="MGR")
    writes: list[int] = []
    write = wa.write

    def counted(data: bytes) -> None:
        writes.append(len(data))
        write(data)

    wa.write = counted  # type: ignore[method-assign]
    for _ in range(50):
        left.send_nowait("order", _order())
    assert len(writes) == 1 and left.backlog > 49 * 100  # the first written, 49 queued
    got = [await asyncio.wait_for(right.recv(), 5) for _ in range(50)]
    assert [m.seq for m in got] == list(range(1, 51))
    assert len(writes) == 2

    left.send_many([("order", _order(), None), ("reply", Reply(ok=True), 7)])  # a new turn: at once
    left.send_nowait("order", _order())  # after it in the same turn: queued
    assert len(writes) == 3
    await left.close()  # flushes the queue before closing
    got = [await asyncio.wait_for(right.recv(), 5) for _ in range(3)]
    assert [(m.type, m.seq, m.req_id) for m in got] == [
        ("order", 51, None),
        ("reply", 52, 7),
        ("order", 53, None),
    ]
    assert len(writes) == 4
    await right.close()


async def test_recv_nowait_takes_what_has_arrived_in_order_with_recv() -> None:
    """``recv_nowait`` returns a message only once its frame has arrived (None before), in the
    same order as ``recv`` and mixed with it, and refuses a bad frame as ``recv`` does."""
    import socket

    a, b = socket.socketpair()
    ra, wa = await asyncio.open_connection(sock=a)
    rb, wb = await asyncio.open_connection(sock=b)
    left = Link(ra, wa, account_id="DQ1")
    right = Link(rb, wb, account_id="MGR")
    assert right.recv_nowait() is None
    left.send_many([("order", _order(), None)] * 3)
    wa.write(HEADER.pack(5) + b"nope!")
    left.send_nowait("reply", Reply(ok=True), 9)
    first = await asyncio.wait_for(right.recv(), 5)  # reads the burst: the rest is now ready
    got = [first, right.recv_nowait(), right.recv_nowait()]
    assert [(m.type, m.seq) for m in got] == [("order", 1), ("order", 2), ("order", 3)]
    with pytest.raises(NotJson):
        right.recv_nowait() or await asyncio.wait_for(right.recv(), 5)
    last = right.recv_nowait() or await asyncio.wait_for(right.recv(), 5)
    assert (last.type, last.seq, last.req_id, last.data) == ("reply", 4, 9, Reply(ok=True))
    assert right.recv_nowait() is None
    await left.close()
    await right.close()


def test_a_message_is_its_types_own_struct() -> None:
    """``Message.new`` builds the frame of a type, ``type`` its tag; a decoded frame is the
    same struct (equal to the one sent); a type not in MESSAGE_TYPES cannot be built."""
    sent = Message.new(type="order", account_id="DQ1", seq=3, ts=1.5, req_id=None, data=_order())
    assert isinstance(sent, Message) and sent.type == "order"
    got = decode_payload(encode_frame(sent)[HEADER.size :])
    assert got == sent and type(got) is type(sent)
    assert got != Message.new(type="trade", account_id="DQ1", seq=3, ts=1.5, data=_order())
    with pytest.raises(KeyError):
        Message.new(type="nope")  # type: ignore[arg-type]


def test_structs_out_of_the_collectors_sight_hold_only_scalars() -> None:
    """A ``gc=False`` struct is never tracked by the garbage collector, so it must never be in a
    reference cycle: every model struct marked so holds only scalars (text, numbers, enums,
    datetimes, None), nothing that could point back at it. Frames hold their payload, a tree."""
    import datetime as dt
    import enum
    import inspect
    import types
    import typing

    import msgspec

    from core import models

    def scalar(t: object) -> bool:
        if typing.get_origin(t) is typing.Annotated:
            return scalar(typing.get_args(t)[0])
        if typing.get_origin(t) in (typing.Union, types.UnionType):
            return all(scalar(a) for a in typing.get_args(t))
        return t in (str, int, float, bool, type(None), dt.datetime, dt.date) or (
            inspect.isclass(t) and issubclass(t, enum.Enum)
        )

    untracked = [
        c
        for c in vars(models).values()
        if inspect.isclass(c) and issubclass(c, msgspec.Struct) and not c.__struct_config__.gc
    ]
    assert {c.__name__ for c in untracked} >= {"Tick", "Bar", "Order", "Trade", "Position", "Account"}
    for cls in untracked:
        hints = typing.get_type_hints(cls, include_extras=True)
        assert all(scalar(hints[f]) for f in cls.__struct_fields__), cls.__name__


async def test_a_batch_that_cannot_be_encoded_sends_nothing_of_it() -> None:
    import socket

    a, b = socket.socketpair()
    ra, wa = await asyncio.open_connection(sock=a)
    rb, wb = await asyncio.open_connection(sock=b)
    left = Link(ra, wa, account_id="DQ1")
    right = Link(rb, wb)
    left.send_nowait("order", _order())
    with pytest.raises(TypeError):
        left.send_many([("order", _order(), None), ("reply", Reply(ok=True, result=object()), 1)])
    left.send_nowait("order", _order())
    first, second = [await asyncio.wait_for(right.recv(), 5) for _ in range(2)]
    assert (first.type, second.type) == ("order", "order")
    await left.close()
    await right.close()


@settings(max_examples=100, deadline=None)
@given(
    account_id=st.text(max_size=80),
    seq=st.integers(min_value=0, max_value=2**40),
    req_id=st.none() | st.integers(min_value=0, max_value=2**40),
    msg_type=st.sampled_from(["order", "tick", "reply", "status_req", "order_req", "nope"]),
)
def test_the_one_pass_decoder_agrees_with_the_checked_one(
    account_id: str, seq: int, req_id: int | None, msg_type: str
) -> None:
    """decode_payload's one pass and its step-by-step fallback give the same message or the
    same refusal, for well-formed frames and refused ones alike."""
    from core.protocol import _decode_checked

    data = {
        "order": _order(),
        "tick": Tick(vt_symbol="au2612.SHFE", datetime=now(), last_price=912.0),
        "reply": Reply(ok=True, result={"order_id": "x"}),
        "status_req": {},
        "order_req": OrderRequest(
            vt_symbol="au2612.SHFE", direction=Direction.LONG, offset=Offset.OPEN, price=1.0, volume=1
        ),
        "nope": {},
    }[msg_type]
    body = json.dumps(
        {
            "type": msg_type,
            "account_id": account_id,
            "seq": seq,
            "req_id": req_id,
            "data": json.loads(encode_frame(Message.new(type="reply", data=data))[HEADER.size :])["data"],
        }
    ).encode()
    outcomes = []
    for decode in (decode_payload, _decode_checked):
        try:
            outcomes.append(decode(body))
        except ProtocolError as exc:
            outcomes.append((type(exc), str(exc), exc.req_id, exc.msg_type))
    assert outcomes[0] == outcomes[1]
