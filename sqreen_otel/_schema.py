"""Attribute names of the event schema (documented in docs/events.md).

One place for every key we write, so the SDK, the processor and the exporters agree.
"""

from __future__ import annotations

from typing import Final

# On every event we record.
EVENT_TYPE: Final = "sqreen.event.type"  # "track" | "auth" | "signup" | "identify"
PROPERTIES_PREFIX: Final = "sqreen.properties."
USER_PREFIX: Final = "sqreen.user."
USER_SOURCE: Final = "sqreen.event.user_source"  # "event" | "identify"
AUTH_SUCCESS: Final = "sqreen.auth.success"
DROPPED_PROPERTIES: Final = "sqreen.event.dropped_properties"
EVENT_ID: Final = "sqreen.event.id"  # unique per event, the same on every copy (for de-duplication)

# On the request span.
TRAITS_PREFIX: Final = "sqreen.traits."
CLIENT_IP_SOURCE: Final = "sqreen.client_ip.source"  # a header name, or "ambiguous"
CLIENT_IP_CANDIDATES: Final = "sqreen.client_ip.candidates"  # an ambiguous request's clients

# On a span we start ourselves to carry events that have no live request span.
CARRIER_REASON: Final = "sqreen.carrier.reason"  # "no_request" | "late" | "evicted" | "unsampled"
CARRIER_SPAN_NAME: Final = "sqreen.events"

# Semantic conventions we write.
USER_ID: Final = "user.id"
USER_EMAIL: Final = "user.email"
USER_NAME: Final = "user.name"
USER_HASH: Final = "user.hash"
CLIENT_ADDRESS: Final = "client.address"
NETWORK_PEER_ADDRESS: Final = "network.peer.address"

# What a redacted value becomes (scrubbing), and a value whose key had to be truncated.
REDACTED: Final = "<Redacted by Sqreen>"

IDENTIFY_EVENT_NAME: Final = "sq.identify"
LOGIN_SUCCESS_EVENT: Final = "users.login.success"
LOGIN_FAILURE_EVENT: Final = "users.login.failure"
SIGNUP_EVENT: Final = "users.signup"
RESERVED_PREFIX: Final = "sq."

# Identifier keys that map onto a semantic-convention user attribute (matched lower-cased).
SEMCONV_USER_KEYS: Final[dict[str, str]] = {
    "id": USER_ID,
    "uid": USER_ID,
    "user_id": USER_ID,
    "userid": USER_ID,
    "email": USER_EMAIL,
    "mail": USER_EMAIL,
    "user_email": USER_EMAIL,
    "username": USER_NAME,
    "user_name": USER_NAME,
    "login": USER_NAME,
}
