"""Scrubbing: what leaves the process, or reaches the host's telemetry, is scrubbed here.

scrubber (keys, values, URLs, query strings; linear), pseudonym (keyed user pseudonyms).
"""
