"""Zero-code set-up under ``opentelemetry-instrument``: hook (the pre-instrument entry point)
and instrumentors (SqreenMiddleware around Flask and Django).
"""
