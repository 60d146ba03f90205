"""The scrubber's cost is linear in its input, whatever an attacker puts in a value.

A correctness property (no quadratic pattern), not a speed target (those live in benchmarks/):
for every rule, a hostile 8 KB input must cost at most a few times a benign input of the same
length, and doubling a hostile input must not much more than double its cost. A quadratic
pattern (the JWT pattern of the review took ~50 ms on ``"eyJ-" * 2000``) fails both by far.
Each timing is the best of several runs, with a fresh scrubber (no cache).
"""

from __future__ import annotations

import time

import pytest
from scrub_corpus import BENIGN, HOSTILE, SIZE, sized

from sqreen_otel._scrub import Scrubber


def cost(text: str, repeat: int = 7) -> float:
    best = float("inf")
    for _ in range(repeat):
        scrubber = Scrubber()
        started = time.perf_counter()
        scrubber.scrub_text(text)
        best = min(best, time.perf_counter() - started)
    return best


@pytest.mark.parametrize("hostile", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_input_costs_a_few_times_a_benign_one_and_grows_linearly(hostile: str) -> None:
    hostile = sized(hostile, SIZE)
    benign = cost(sized(BENIGN, SIZE))
    assert cost(hostile) < 8 * benign + 0.001
    doubled = sized(hostile, 2 * SIZE)
    assert cost(doubled) < 3 * cost(hostile) + 0.001
