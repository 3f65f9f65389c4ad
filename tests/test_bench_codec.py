"""bench codec still runs against today's models (its dataclass twins follow the structs)."""

from __future__ import annotations

from bench import codec


def test_bench_codec_runs_and_both_sides_carry_the_same_content() -> None:
    figures = codec.run(quick=True)  # asserts itself that both codecs give back what was sent
    assert {"tick_speedup", "order_speedup"} <= figures.keys()
