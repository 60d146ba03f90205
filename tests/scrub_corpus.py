"""Inputs for the scrubber's cost: ordinary text, and the worst case an attacker can write for
each built-in rule (shared by tests/test_scrub_cost.py and benchmarks/run.py)."""

from __future__ import annotations

SIZE = 8000
# Ordinary text: words, numbers, a URL, key=value and key: value pairs, as logs and user agents.
BENIGN = (
    "GET /api/v1/items?page=2&sort=asc from Mozilla/5.0 (X11; Linux x86_64; rv:109.0) user: ann "
    "took 123 ms, order 48213 at 2026-11-28 12:30:45 status=ok see https://shop.example/p?q=1 "
)

HOSTILE = {
    "jwt": "eyJ-" * 2000,
    "jwt-dots": "eyJ." * 2000,
    "jwt-long-segment": "eyJa.eyJ" + "a" * 8000,
    "bearer-spaces": "bearer" + " " * 8000,
    "bearer-repeated": "bearer " * 1200,
    "pair-spaces": "password" + " " * 8000 + "=x",
    "pair-repeated": "password=" * 900,
    "pair-unclosed-quotes": 'a:"' * 2700,
    "pair-separators": "a:" * 4000,
    "pair-long-keys": ("k" * 127 + "=") * 63,
    "card-spaced-digits": "4 " * 4000,
    "card-runs": ("1" * 64 + "x") * 124,
    "card-grouped-runs": "4111 1111 1111 1111 1234 5678 9012 3456 x" * 196,
    "card-glued-runs": ("4111111111111111123" + "-") * 400,
    "private-key-begins": "-----BEGIN PRIVATE KEY-----" * 300,
    "private-key-unended": "-----BEGIN PRIVATE KEY-----" + "-----END " + "A" * 8000,
    "tokens": "ghp_" * 2000,
    "token-long": "ghp_" + "A" * 8000,
    "url-credentials": "://a:" * 1600,
    "digits": "1" * 8000,
    "card-non-ascii-groups": "\u0664 " * 63 + "\u0664x",
    "pair-tuples": "('a', 'b'), " * 800,
    "pair-brackets": '{"password": [' * 500,
    "pair-escapes": '{"password": "' + "\\x" * 4000,
}


def sized(pattern: str, size: int = SIZE) -> str:
    """``pattern`` repeated and cut to exactly ``size`` characters."""
    return (pattern * (size // len(pattern) + 1))[:size]
