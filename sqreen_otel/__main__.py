"""``python -m sqreen_otel``: the ``sqreen-otel`` command (for when its script is not on PATH)."""

from sqreen_otel._cli.events import main

if __name__ == "__main__":
    raise SystemExit(main())
