"""The web Event Explorer in a real headless browser (Debian's chromium, driven by its
chromedriver), on the demo shop's events: the timeline shows the login-failure burst, filters
and group-by match `sqreen-otel events --json`, blocking an IP from its page makes the running
demo app answer 403, hostile stored values are shown as text, and state-changing requests need
the token. Screenshots of the main views go to docs/screenshots/ (referenced by the README)."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _instrumentations import needs

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "docs" / "screenshots"
DEMO_APP = Path(__file__).with_name("ui_demo_app.py")
HOSTILE_EMAIL = "<script>window.__pwned=1</script>\x1b[31m\u202eevil@example.com"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

pytestmark = needs("flask")  # the demo shop is instrumented with FlaskInstrumentor


def cli(env: dict[str, str], *argv: str) -> str:
    completed = subprocess.run(
        [str(Path(sys.executable).with_name("sqreen-otel")), *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def until(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, "not within the deadline"
        time.sleep(0.1)


def http_request(
    port: int, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


@dataclass
class Demo:
    env: dict[str, str]
    shop_port: int
    ui_port: int
    url: str
    token: str


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    folder = tmp_path_factory.mktemp("ui")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SQREEN_"))}
    env.update(
        {
            "SQREEN_LOCAL_STORE": str(folder / "events.db"),
            "SQREEN_ACTIONS_STORE": str(folder / "actions.db"),
            "SQREEN_TRUSTED_PROXIES": "127.0.0.1/32",
            "SQREEN_ACTIONS_REFRESH": "0.2",
            "SQREEN_SPOOL_INTERVAL": "0.1",
        }
    )
    shop = subprocess.Popen(
        [sys.executable, str(DEMO_APP)], env=env, cwd=folder, stdout=subprocess.PIPE, text=True
    )
    ui: subprocess.Popen[str] | None = None
    try:
        assert shop.stdout is not None
        shop_port = int(shop.stdout.readline().split()[-1])
        expected = int(shop.stdout.readline().split()[-1])  # the events the traffic recorded
        until(lambda: len(cli(env, "events", "--limit", "1000", "--json").splitlines()) >= expected)
        ui = subprocess.Popen(
            [str(Path(sys.executable).with_name("sqreen-otel")), "ui", "--port", "0"],
            env=env,
            cwd=folder,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert ui.stdout is not None
        line = ""
        while not line.startswith("open "):
            line = ui.stdout.readline()
            assert line, "sqreen-otel ui exited"
        url = line.split()[1]
        parts = urllib.parse.urlsplit(url)
        token = parts.fragment.removeprefix("token=")
        assert parts.hostname == "127.0.0.1" and parts.port is not None and len(token) >= 32
        yield Demo(env, shop_port, parts.port, url, token)
    finally:
        for process in (ui, shop):
            if process is not None:
                process.terminate()
                process.wait(10)
                if process.stdout is not None:
                    process.stdout.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail(
            "chromium and chromedriver are installed by `make test` (Debian's chromium, chromium-driver)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1100",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def ready(driver: Any, view: str) -> None:
    until(lambda: driver.find_element("css selector", "body").get_attribute("data-ready") in (view, "error"))
    error = driver.find_element("id", "error")
    assert not error.is_displayed(), error.text
    assert driver.find_element("css selector", "body").get_attribute("data-ready") == view


def go(driver: Any, demo: Demo, fragment: str, view: str) -> None:
    driver.execute_script("document.body.dataset.ready = ''; location.hash = arguments[0];", fragment)
    ready(driver, view)


def screenshot(driver: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def table(driver: Any, table_id: str) -> list[list[str]]:
    rows = driver.find_elements("css selector", f"#{table_id} tbody tr")
    return [[cell.text for cell in row.find_elements("css selector", "td")] for row in rows]


def apply(driver: Any, **fields: str) -> None:
    for name, value in fields.items():
        box = driver.find_element("css selector", f"#filters [name={name}]")
        box.clear()
        box.send_keys(value)
    driver.execute_script("document.body.dataset.ready = ''")
    driver.find_element("css selector", "#filters button").click()


def test_the_explorer_in_a_browser(demo: Demo, browser: Any) -> None:
    driver = browser
    driver.get(demo.url)
    ready(driver, "explore")
    assert "token" not in driver.current_url  # taken from the address, kept in the tab only
    # The timeline shows the demo's burst of login failures.
    bars = driver.find_elements("css selector", "#timeline rect.bar[data-name='users.login.failure']")
    assert sum(int(bar.get_attribute("data-count")) for bar in bars) == 7
    screenshot(driver, "explorer")

    # Filtering and group-by give what the terminal explorer gives for the same query.
    apply(driver, name="users.login.failure")
    ready(driver, "explore")
    shown = [(row[0], int(row[1])) for row in table(driver, "groups")]
    expected = [
        (record["ip"], record["count"])
        for record in map(
            json.loads,
            cli(
                demo.env, "events", "--name", "users.login.failure", "--group-by", "ip", "--json"
            ).splitlines(),
        )
    ]
    assert shown == expected and shown[0] == ("192.0.2.66", 6)
    events = [row[1] for row in table(driver, "events")]
    assert events == ["users.login.failure"] * 7

    # From the IP's page, block it: the running demo app answers 403 to it.
    assert (
        http_request(demo.shop_port, "POST", "/password-reset", {"X-Forwarded-For": "192.0.2.66"})[0] == 202
    )
    driver.execute_script("document.body.dataset.ready = ''")
    driver.find_element("link text", "192.0.2.66").click()
    ready(driver, "ip")
    screenshot(driver, "ip-page")
    duration = driver.find_element("css selector", "#block-form [name=duration]")
    duration.clear()
    duration.send_keys("2h")
    driver.execute_script("document.body.dataset.ready = ''")
    driver.find_element("id", "block-button").click()
    ready(driver, "ip")
    assert "Blocked by ui-" in driver.find_element("id", "target-actions").text
    until(
        lambda: (
            http_request(demo.shop_port, "POST", "/password-reset", {"X-Forwarded-For": "192.0.2.66"})[0]
            == 403
        ),
        5,
    )
    assert (
        http_request(demo.shop_port, "POST", "/password-reset", {"X-Forwarded-For": "203.0.113.10"})[0] == 202
    )
    listed = json.loads(cli(demo.env, "actions", "list", "--json").splitlines()[0])
    assert listed["action"] == "block_ip" and listed["target"] == "192.0.2.66/32"

    # A hostile stored value is shown as text: no markup, no script, control characters escaped.
    go(driver, demo, "view=explore", "explore")
    apply(driver, name="users.signup")
    ready(driver, "explore")
    hostile_row = [
        row for row in driver.find_elements("css selector", "#events tbody tr") if "script" in row.text
    ]
    assert hostile_row, table(driver, "events")
    driver.execute_script("document.body.dataset.ready = ''")
    hostile_row[0].find_element("css selector", "a").click()
    ready(driver, "event")
    user = driver.find_element("css selector", "dd[data-field='user']").text
    assert "<script>window.__pwned=1</script>" in user and "\\x1b[31m" in user and "\\u202e" in user
    assert driver.execute_script("return window.__pwned") is None
    assert driver.execute_script("return document.scripts.length") == 1  # ours only
    trace = driver.find_element("css selector", "dd[data-field='trace id']").text
    assert re.fullmatch(r"[0-9a-f]{32}", trace)
    screenshot(driver, "event")

    # Playbooks: a dry run over the range fires on the demo's credential stuffing.
    go(driver, demo, "view=playbooks", "playbooks")
    area = driver.find_element("css selector", "#dry-run textarea")
    area.clear()
    area.send_keys(
        (ROOT / "examples" / "playbooks" / "account-takeover.toml")
        .read_text()
        .replace('"20 in 10m"', '"5 in 10m"')
    )
    driver.find_element("css selector", "#dry-run button").click()
    until(lambda: driver.find_element("css selector", "body").get_attribute("data-dry-run"))
    rows = table(driver, "dry-results")
    assert [(row[1], row[2]) for row in rows] == [("credential-stuffing", "client_ip=192.0.2.66")]
    screenshot(driver, "playbooks")


def test_the_api_refuses_requests_without_the_token_or_from_elsewhere(demo: Demo) -> None:
    port, token = demo.ui_port, demo.token
    block = json.dumps({"action": "block_ip", "ip": "198.51.100.99", "duration": "1h"}).encode()
    json_headers = {"Content-Type": "application/json"}
    assert http_request(port, "POST", "/api/actions", json_headers, block)[0] == 401  # no token
    wrong = {**json_headers, "Authorization": "Bearer " + "x" * len(token)}
    assert http_request(port, "POST", "/api/actions", wrong, block)[0] == 401
    assert http_request(port, "GET", "/api/events")[0] == 401  # the data too
    good = {**json_headers, "Authorization": f"Bearer {token}"}
    cross = {**good, "Origin": "http://evil.example"}
    assert http_request(port, "POST", "/api/actions", cross, block)[0] == 403  # CSRF
    form = {**good, "Content-Type": "application/x-www-form-urlencoded"}
    assert http_request(port, "POST", "/api/actions", form, b"action=block_ip")[0] == 415
    rebinding = {**good, "Host": f"evil.example:{port}"}
    assert http_request(port, "GET", "/api/events", rebinding)[0] == 421
    assert "198.51.100.99" not in cli(demo.env, "actions", "list")  # none of those blocked anything
    status, headers, body = http_request(port, "GET", "/")
    assert status == 200 and b'<script src="/static/app.js"' in body
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    status, _, body = http_request(port, "GET", "/api/event?id=oops", {"Authorization": f"Bearer {token}"})
    assert status == 400 and b"oops" not in body  # no request data in error answers


def test_read_only_mode_refuses_changes_and_says_so(demo: Demo) -> None:
    ui = subprocess.Popen(
        [str(Path(sys.executable).with_name("sqreen-otel")), "ui", "--port", "0", "--read-only"],
        env=demo.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert ui.stdout is not None
        lines = [ui.stdout.readline(), ui.stdout.readline(), ui.stdout.readline()]
        assert lines[1].startswith("read-only")
        parts = urllib.parse.urlsplit(lines[2].split()[1])
        assert parts.port is not None
        auth = {"Authorization": "Bearer " + parts.fragment.removeprefix("token=")}
        status, _, body = http_request(parts.port, "GET", "/api/meta", auth)
        assert status == 200 and json.loads(body)["read_only"] is True
        block = json.dumps({"action": "block_ip", "ip": "198.51.100.98"}).encode()
        headers = {**auth, "Content-Type": "application/json"}
        assert http_request(parts.port, "POST", "/api/actions", headers, block)[0] == 403
        assert "198.51.100.98" not in cli(demo.env, "actions", "list")
    finally:
        ui.terminate()
        ui.wait(10)
        if ui.stdout is not None:
            ui.stdout.close()
