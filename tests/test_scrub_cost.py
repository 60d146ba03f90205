"""The scrubber's cost is linear in its input, whatever an attacker puts in a value.

A correctness property (no quadratic pattern), not a speed target (those live in benchmarks/):
for every rule, a hostile 8 KB input must cost at most a few times a benign input of the same
length (16x: the worst measured is ~6.6x on Python 3.11, ``make bench`` (f), and 8-11x on 3.10,
the oldest supported, whose regex engine is slower on Arabic-Indic digit groups; the margin
absorbs a busy machine), and an input eight times longer must not cost much more than eight
times as much (linear: 8x, quadratic: 64x; the bound is 24x, wide because the shorter input's
fixed costs weigh more). A quadratic pattern (the JWT pattern of the review took ~50 ms on
``"eyJ-" * 2000``) fails both by far. Each timing is the best of several runs of this process's
CPU time (other processes on a busy machine do not count), with a fresh scrubber (no cache).
"""

from __future__ import annotations

import time

import pytest
from scrub_corpus import BENIGN, HOSTILE, SIZE, sized

from sqreen_otel._scrubbing.scrubber import Scrubber


def cost(text: str, repeat: int = 9) -> float:
    best = float("inf")
    for _ in range(repeat):
        scrubber = Scrubber()
        started = time.process_time()
        scrubber.scrub_text(text)
        best = min(best, time.process_time() - started)
    return best


@pytest.mark.parametrize("hostile", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_input_costs_a_few_times_a_benign_one_and_grows_linearly(hostile: str) -> None:
    hostile = sized(hostile, SIZE)
    benign = cost(sized(BENIGN, SIZE))
    assert cost(hostile) < 16 * benign + 0.001
    small, large = sized(hostile, SIZE // 4), sized(hostile, 2 * SIZE)  # both within the 16 KiB budget
    assert cost(large) < 24 * cost(small) + 0.001
