"""The build backend: setuptools', with one default changed for editable installs.

``exporters/`` installs as ``sqreen_otel.exporters`` through a package-dir mapping. For such a
mapping setuptools' default ("lenient") editable install puts an import hook in site-packages
instead of a path, and static tools (mypy, pyright, IDEs) cannot follow import hooks: after a
plain ``pip install -e .`` they could not find ``sqreen_otel.exporters``. Editable installs here
default to setuptools' "strict" mode instead, a tree of links to the sources that every tool can
read. (Its one cost: a module added or removed needs ``pip install -e .`` again; ``make`` redoes
it.) An explicit ``--config-settings editable_mode=...`` still wins. Everything else is
setuptools' own backend, unchanged.
"""

from __future__ import annotations

from setuptools import build_meta as _setuptools
from setuptools.build_meta import (
    build_sdist,
    build_wheel,
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

__all__ = [
    "build_editable",
    "build_sdist",
    "build_wheel",
    "get_requires_for_build_editable",
    "get_requires_for_build_sdist",
    "get_requires_for_build_wheel",
    "prepare_metadata_for_build_editable",
    "prepare_metadata_for_build_wheel",
]
_ConfigSettings = dict[str, str | list[str] | None] | None


def build_editable(
    wheel_directory: str, config_settings: _ConfigSettings = None, metadata_directory: str | None = None
) -> str:
    settings = dict(config_settings or {})
    if "editable-mode" not in settings and "editable_mode" not in settings:
        settings["editable_mode"] = "strict"
    return _setuptools.build_editable(wheel_directory, settings, metadata_directory)
