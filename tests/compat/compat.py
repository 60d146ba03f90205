"""Compatibility runner: our wheel in real apps' virtualenvs, from the oldest OpenTelemetry
release we support to the newest, and the test suite of our sdist in each.

For each matrix entry, as a real app would:

1. the app's own packages (its OpenTelemetry release, framework, instrumentations) go into a
   fresh virtualenv first;
2. our wheel goes in with an ordinary ``pip install`` (dependencies resolved, not ``--no-deps``),
   then again with the extras the entry names: neither may change any OpenTelemetry package
   the app had (new ones may be added), and ``pip check`` must pass;
3. the test tools (``sqreen-otel[test]``) go in, constrained to what the venv already has;
4. the whole test suite runs, from the unpacked sdist (so the sdist's tests are proven to run),
   against the installed wheel. Tests that need a framework instrumentation the entry lacks
   skip, naming it; those the entry has are required (``SQREEN_OTEL_TEST_INSTRUMENTATIONS``).

The sdist is built once per run (and the wheel from it), and checked to hold every file git
tracks but the CI's; each of our extras, alone and together, is then resolved for a new app (a
pip dry run) and must pick one coherent OpenTelemetry release train. Virtualenvs are cached
under ``.venv-compat/<entry>`` with the app's packages alone: a later run (same app
requirements, same Python) uninstalls what the previous one added, so steps 2 to 4 always start
from the app's state.

    python tests/compat/compat.py oldest newest   # `make test` runs the two ends
    python tests/compat/compat.py all             # `make compat`: the whole matrix
    python tests/compat/compat.py --list
    python tests/compat/compat.py newest -- -x -k zero_code   # arguments after -- go to pytest

Needs ``build`` in the running interpreter (the dev extra has it) and the package index.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Bumped when what a cached venv holds would change for the same entry.
CACHE_FORMAT = 2
#: Tracked files the sdist leaves out on purpose.
NOT_IN_SDIST = (".ci/", ".gitignore")


@dataclass(frozen=True)
class Entry:
    name: str
    about: str
    #: The app's own requirements, installed before our wheel.
    app: tuple[str, ...]
    #: Our extras the app then asks for (``sqreen-otel[...]``).
    extras: tuple[str, ...] = ()
    #: Framework instrumentations the entry has: their tests must run, not skip.
    instrumentations: tuple[str, ...] = ()
    #: "3.10": that Python if the machine has it (else the running one, said so).
    python: str | None = None


#: Contrib 0.59b0 is the train of api/sdk 1.38.0, 0.60b1 of 1.39.1 ... 0.66b2 of 1.45.2.
NEWEST_APP = (
    "opentelemetry-distro==0.66b2",
    "opentelemetry-exporter-otlp-proto-http==1.45.2",
    "opentelemetry-instrumentation-django==0.66b2",
    "django",
)
MATRIX = (
    Entry(
        "oldest",
        "the oldest supported release, its Flask and Django instrumentations and the distro; "
        "the oldest Python, Flask and Django we support",
        app=(
            "opentelemetry-api==1.38.0",
            "opentelemetry-sdk==1.38.0",
            "opentelemetry-distro==0.59b0",
            "opentelemetry-instrumentation-flask==0.59b0",
            "opentelemetry-instrumentation-django==0.59b0",
            "flask==3.0.*",
            "werkzeug==3.0.*",
            "django==4.2.*",
        ),
        extras=("auto", "flask", "django"),
        instrumentations=("flask", "django"),
        python="3.10",
    ),
    Entry(
        # Bump with each OpenTelemetry release (`make compat`'s "fresh" shows what pip picks today).
        "newest",
        "the newest release (1.45.2 / 0.66b2) with the distro and the OTLP/HTTP exporter, and "
        "Django; upstream has no Flask instrumentation 0.66b2, so its tests skip",
        app=NEWEST_APP,
        extras=("auto", "django"),
        instrumentations=("django",),
        python="3.11",
    ),
    Entry(
        "newest-flask",
        "the newest release that has a Flask instrumentation (1.45.1 / 0.66b1)",
        app=(
            "opentelemetry-sdk==1.45.1",
            "opentelemetry-distro==0.66b1",
            "opentelemetry-instrumentation-flask==0.66b1",
            "opentelemetry-instrumentation-django==0.66b1",
            "flask",
            "django",
        ),
        extras=("auto", "flask", "django"),
        instrumentations=("flask", "django"),
        python="3.11",
    ),
    Entry(
        "1.39",
        "1.39.1 / 0.60b1 with Flask and Django, no distro",
        app=(
            "opentelemetry-sdk==1.39.1",
            "opentelemetry-instrumentation-flask==0.60b1",
            "opentelemetry-instrumentation-django==0.60b1",
            "flask",
            "django",
        ),
        extras=("flask", "django"),
        instrumentations=("flask", "django"),
        python="3.11",
    ),
    Entry(
        "1.41",
        "1.41.1 / 0.62b1 with Flask, the distro and the full OTLP exporter",
        app=(
            "opentelemetry-sdk==1.41.1",
            "opentelemetry-distro==0.62b1",
            "opentelemetry-exporter-otlp==1.41.1",
            "opentelemetry-instrumentation-flask==0.62b1",
            "flask",
        ),
        extras=("auto", "flask"),
        instrumentations=("flask",),
        python="3.10",
    ),
    Entry(
        "1.43",
        "1.43.0 / 0.64b0 with Django only",
        app=("opentelemetry-sdk==1.43.0", "opentelemetry-instrumentation-django==0.64b0", "django"),
        extras=("django",),
        instrumentations=("django",),
        python="3.11",
    ),
    Entry(
        "fresh",
        "no app packages: `pip install sqreen-otel[auto,flask,django]` picks the release itself",
        app=(),
        extras=("auto", "flask", "django"),
        instrumentations=("flask", "django"),
    ),
    Entry(
        "py3.12",
        "the newest release on Python 3.12",
        app=NEWEST_APP,
        extras=("auto", "django"),
        instrumentations=("django",),
        python="3.12",
    ),
    Entry(
        "py3.13",
        "the newest release on Python 3.13",
        app=NEWEST_APP,
        extras=("auto", "django"),
        instrumentations=("django",),
        python="3.13",
    ),
)
ENDS = ("oldest", "newest")
#: Our extras, alone and together, each resolved into an empty environment.
EXTRAS = ("", "otlp", "auto", "wsgi", "flask", "django", "flask,django", "auto,flask,django", "test")


class CompatError(Exception):
    """A step failed: the message says which and why."""


def say(message: str) -> None:
    print(message, flush=True)


def run(
    command: Sequence[str | Path], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> str:
    """Run a command; its output when it succeeds, CompatError with the output when not."""
    completed = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if completed.returncode != 0:
        shown = " ".join(str(part) for part in command)
        raise CompatError(f"`{shown}` failed ({completed.returncode}):\n{completed.stdout}{completed.stderr}")
    return completed.stdout


# -- the sdist and the wheel -------------------------------------------------------------------


@dataclass(frozen=True)
class Build:
    sdist: Path
    wheel: Path
    #: The unpacked sdist: the tests run from here.
    source: Path


def build(workdir: Path) -> Build:
    """The sdist, then the wheel built from it (as ``python -m build`` does), checked."""
    dist = workdir / "dist"
    say("building the sdist and the wheel from it...")
    run([sys.executable, "-m", "build", "--outdir", dist, ROOT])
    (sdist,) = dist.glob("*.tar.gz")
    (wheel,) = dist.glob("*.whl")
    with tarfile.open(sdist) as archive:
        archive.extractall(workdir, filter="data")
    (source,) = (path for path in workdir.iterdir() if path.is_dir() and path.name != "dist")
    check_sdist(source)
    say(f"built {sdist.name} and {wheel.name}")
    return Build(sdist, wheel, source)


def check_sdist(source: Path) -> None:
    """Every file git tracks is in the sdist, but the CI's (skipped outside a git checkout)."""
    if not (ROOT / ".git").exists():
        return
    tracked = run(["git", "-C", ROOT, "ls-files"]).splitlines()
    missing = [
        path for path in tracked if not path.startswith(NOT_IN_SDIST) and not (source / path).is_file()
    ]
    if missing:
        raise CompatError(f"the sdist lacks tracked files: {', '.join(missing)} (see MANIFEST.in)")


def resolve_extras(wheel: Path) -> None:
    """Each of ``EXTRAS``, resolved by pip for a new app (a dry run, nothing installed), picks one
    coherent release train: one version for the 1.x packages (api, sdk, exporters) and one for
    the 0.x (contrib). The train may be older than the newest: upstream's Flask instrumentation
    lags, and pip settles on a train that has every package asked for."""
    say("resolving our extras for a new app:")
    for extras in EXTRAS:
        requirement = f"{wheel}[{extras}]" if extras else str(wheel)
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]
        report = json.loads(run([*command, "--report", "-", requirement]))
        chosen = {
            canonical(item["metadata"]["name"]): item["metadata"]["version"]
            for item in report["install"]
            if canonical(item["metadata"]["name"]).startswith("opentelemetry-")
        }
        stable = {version for version in chosen.values() if not version.startswith("0.")}
        contrib = {version for version in chosen.values() if version.startswith("0.")}
        if len(stable) != 1 or len(contrib) > 1:
            raise CompatError(f"sqreen-otel[{extras}] resolves to mixed releases: {versions(chosen)}")
        train = " / ".join([*stable, *contrib])
        say(f"  sqreen-otel[{extras}]: {train} ({len(chosen)} OpenTelemetry packages)")


# -- interpreters and virtualenvs ----------------------------------------------------------------


def python_version(executable: str) -> str | None:
    try:
        completed = subprocess.run(
            [executable, "-c", "import platform, venv; print(platform.python_version())"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except OSError:
        return None
    return completed.stdout.strip() if completed.returncode == 0 else None


def find_python(wanted: str | None) -> tuple[str, str]:
    """(executable, full version) of Python ``wanted`` ("3.10"): on PATH or in pyenv's versions;
    the running interpreter when it is None or not on this machine (which is then said)."""
    current = (sys.executable, python_version(sys.executable) or "?")
    if wanted is None:
        return current
    pyenv = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates = [
        shutil.which(f"python{wanted}"),
        *sorted(glob.glob(f"{pyenv}/versions/{wanted}.*/bin/python{wanted}")),
    ]
    for candidate in candidates:
        version = python_version(candidate) if candidate else None
        if version is not None and version.startswith(f"{wanted}."):
            return candidate or "", version
    say(f"  Python {wanted} is not on this machine: using {current[1]} instead")
    return current


def distributions(python: Path) -> dict[str, str]:
    """Installed distributions, canonical name -> version."""
    listed = json.loads(run([python, "-m", "pip", "list", "--format=json", "--disable-pip-version-check"]))
    return {canonical(item["name"]): item["version"] for item in listed}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def opentelemetry(installed: Mapping[str, str]) -> dict[str, str]:
    return {name: version for name, version in sorted(installed.items()) if name.startswith("opentelemetry-")}


def versions(packages: Mapping[str, str]) -> str:
    return ", ".join(f"{name} {version}" for name, version in packages.items()) or "none"


@dataclass
class Venv:
    path: Path
    python: Path
    #: What the app had installed before our wheel.
    app: dict[str, str]


def prepare(entry: Entry, cache: Path) -> Venv:
    """The entry's venv holding the app's packages and nothing else. A cached one (same app
    requirements, same Python) is brought back to that state: what earlier runs added is
    uninstalled. It is made anew if missing, changed or unrestorable."""
    executable, full = find_python(entry.python)
    path = cache / entry.name
    python = path / "bin" / "python"
    key = hashlib.sha256(json.dumps([CACHE_FORMAT, entry.app, full]).encode()).hexdigest()
    key_file, app_file = path / "compat-key", path / "compat-app.json"
    if key_file.is_file() and app_file.is_file() and key_file.read_text() == key and python.exists():
        app = json.loads(app_file.read_text())
        now = distributions(python)
        if all(now.get(name) == version for name, version in app.items()):
            added = sorted(set(now) - set(app))
            if added:
                run([python, "-m", "pip", "uninstall", "--quiet", "--yes", *added])
            say(f"  Python {full}, cached venv {path}, back to the app's packages alone")
            return Venv(path, python, app)
    say(f"  Python {full}, new venv {path}")
    shutil.rmtree(path, ignore_errors=True)
    run([executable, "-m", "venv", path])
    run([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip>=25"])
    if entry.app:
        run([python, "-m", "pip", "install", "--quiet", *entry.app])
    app = distributions(python)
    app_file.write_text(json.dumps(app, indent=1))
    key_file.write_text(key)
    return Venv(path, python, app)


def install(venv: Venv, requirement: str, hold: Mapping[str, str] | None = None) -> str:
    """``pip install`` one requirement, with the ``hold`` versions as constraints; CompatError if
    any OpenTelemetry package the app had changed, or ``pip check`` fails. Says which
    OpenTelemetry packages it added."""
    with constraints(hold or {}) as pinned:
        run([venv.python, "-m", "pip", "install", "--quiet", "--constraint", pinned, requirement])
    now = distributions(venv.python)
    before, after = opentelemetry(venv.app), opentelemetry(now)
    changed = {
        name: f"{version} -> {after.get(name, 'removed')}"
        for name, version in before.items()
        if after.get(name) != version
    }
    if changed:
        raise CompatError(f"`pip install {requirement}` changed the app's OpenTelemetry packages: {changed}")
    problems = subprocess.run(
        [venv.python, "-m", "pip", "check"], capture_output=True, text=True, timeout=300, check=False
    )
    if problems.returncode != 0:
        raise CompatError(
            f"`pip check` after `pip install {requirement}`:\n{problems.stdout}{problems.stderr}"
        )
    added = {name: version for name, version in after.items() if name not in before}
    return f"no OpenTelemetry package changed, pip check ok; added {versions(added)}"


@contextmanager
def constraints(versions: Mapping[str, str]) -> Iterator[Path]:
    """A constraints file pinning these versions (our own package excepted)."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="constraints-", delete=False) as file:
        file.write(
            "".join(f"{name}=={version}\n" for name, version in versions.items() if name != "sqreen-otel")
        )
    try:
        yield Path(file.name)
    finally:
        os.unlink(file.name)


def clean_env(**settings: str) -> dict[str, str]:
    """The caller's environment without OpenTelemetry, sqreen-otel, Python or venv settings."""
    prefixes = ("OTEL_", "SQREEN_", "PYTHON", "VIRTUAL_ENV")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)} | settings


def smoke(venv: Venv, otlp_missing: bool) -> str:
    """tests/compat/smoke.py in the venv as it is (the core only): the local store gets the
    events, scrubbed; ``SQREEN_EXPORTER=local,otlp`` without the otlp extra breaks nothing."""
    exporters = ["local", "local,otlp"] if otlp_missing else ["local"]
    for exporter in exporters:
        with tempfile.TemporaryDirectory(prefix="sqreen-otel-smoke-") as folder:
            output = run(
                [
                    venv.python,
                    Path(__file__).with_name("smoke.py"),
                    Path(folder) / "events.db",
                    exporter,
                ],
                cwd=Path(folder),
                env=clean_env(XDG_DATA_HOME=folder),
            )
        report = json.loads(output.splitlines()[-1])
        said = [message for message in report["logged"] if "sqreen-otel[otlp]" in message]
        if (
            report["events"] != ["smoke.checked", "users.login.failure"]
            or "hunter2" in output
            or len(said) != len(report["logged"])
            or bool(said) != ("otlp" in exporter)
        ):
            raise CompatError(f"the core alone, SQREEN_EXPORTER={exporter}: {output}")
    return f"events stored, scrubbed and read back (SQREEN_EXPORTER={' and '.join(exporters)})"


def run_entry(entry: Entry, built: Build, cache: Path, pytest_args: Sequence[str]) -> None:
    say(f"\n== {entry.name}: {entry.about}")
    venv = prepare(entry, cache)
    say(f"  the app's OpenTelemetry: {versions(opentelemetry(venv.app))}")
    wheel, extras = str(built.wheel), ",".join(entry.extras)
    if entry.app:
        # As the app's owner would: a plain install (nothing held), then the extras with the
        # app's packages held (its lock or constraints file).
        say(f"  pip install {built.wheel.name}: {install(venv, wheel)}")
        otlp_missing = "opentelemetry-exporter-otlp-proto-http" not in distributions(venv.python)
        say(f"  the core alone: {smoke(venv, otlp_missing)}")
        if extras:
            result = install(venv, f"{wheel}[{extras}]", hold=venv.app)
            say(f"  pip install {built.wheel.name}[{extras}], the app's packages held: {result}")
    else:
        # A new app: one `pip install sqreen-otel[...]` chooses the release.
        result = install(venv, f"{wheel}[{extras}]")
        say(f"  pip install {built.wheel.name}[{extras}] into an empty venv: {result}")
    chosen = distributions(venv.python)
    say(f"  OpenTelemetry now: {versions(opentelemetry(chosen))}")
    install(venv, f"{wheel}[test]", hold=chosen)
    env = clean_env(SQREEN_OTEL_TEST_INSTRUMENTATIONS=",".join(entry.instrumentations))
    env["PATH"] = f"{venv.python.parent}{os.pathsep}{env.get('PATH', '')}"
    say(f"  the test suite of {built.sdist.name}, against the installed wheel:")
    completed = subprocess.run(
        # The pytest script, not `python -m pytest`: the sdist's folder must not go on sys.path
        # (its sources would shadow the installed wheel), and `python -P` needs Python 3.11.
        [venv.python.with_name("pytest"), "-q", "-p", "no:cacheprovider", *pytest_args],
        cwd=built.source,
        env=env,
        timeout=3600,
        check=False,
    )
    if completed.returncode != 0:
        raise CompatError(f"the test suite failed in {entry.name} ({completed.returncode})")


def main(argv: Sequence[str] | None = None) -> int:
    names = [entry.name for entry in MATRIX]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("entries", nargs="*", help=f"matrix entries ({', '.join(names)}) or 'all'")
    parser.add_argument("--list", action="store_true", help="list the matrix and exit")
    parser.add_argument("--cache", type=Path, default=ROOT / ".venv-compat", help="where the venvs are kept")
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    arguments = parser.parse_args(argv[:split])
    pytest_args = argv[split + 1 :]
    if arguments.list or not arguments.entries:
        for entry in MATRIX:
            say(f"{entry.name:13} {entry.about}\n{'':13} app: {' '.join(entry.app) or '(nothing)'}")
        return 0
    wanted = names if arguments.entries == ["all"] else arguments.entries
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        parser.error(f"unknown entries {unknown}: choose from {names} or 'all'")
    arguments.cache.mkdir(parents=True, exist_ok=True)
    results: list[tuple[str, str, float]] = []
    with tempfile.TemporaryDirectory(prefix="sqreen-otel-compat-") as workdir:
        try:
            built = build(Path(workdir))
            resolve_extras(built.wheel)
        except CompatError as error:
            say(f"FAILED: {error}")
            return 1
        for entry in (entry for entry in MATRIX if entry.name in wanted):
            started = time.monotonic()
            try:
                run_entry(entry, built, arguments.cache, pytest_args)
                results.append((entry.name, "passed", time.monotonic() - started))
            except CompatError as error:
                say(f"  FAILED: {error}")
                results.append((entry.name, "FAILED", time.monotonic() - started))
    say(
        "\ncompatibility: "
        + ", ".join(f"{name} {result} ({seconds:.0f} s)" for name, result, seconds in results)
    )
    return 0 if all(result == "passed" for _, result, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
