"""The operator console in a real browser (Debian's Chromium, driven by Selenium through chromium-driver)
against `make run`: the stack in a child process on free ports, real handlers, the ApiToken authorizer.

An operator signs in with the API token, finds a quarantined Graph mail, reads its raw body (a hostile
string in it is shown as text, never run), resolves it, replays another after its fix and sees the
effect (one ticket) happen once even when the button is clicked twice; the browser logs no error. The
Overview's per-layer chart shows the duplicates Graph delivered, stopped at ingest, with their count.
``CONSOLE_SCREENSHOTS=docs/img`` writes the README's screenshots there (else into the test's tmp dir).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from devstack import launcher
from devstack.fake_graph import graph_message
from tests.graph_support import body, item

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
HOSTILE = "<img src=x onerror=window.__pwned=1><script>window.__pwned=2</script>"

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (make install)")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER) and not os.environ.get("CI"),
    reason="Chromium or chromium-driver is missing: apt-get install -y chromium chromium-driver",
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[launcher.RunningStack]:
    name = f"eo_console_{uuid.uuid4().hex[:8]}"
    state_dir = tmp_path_factory.mktemp("console-stack")
    env = {"DATABASE_URL": "", "LOCAL_DB_NAME": name, "LOCAL_NO_SCHEDULES": "1"}
    try:
        with (
            (state_dir / "stack.log").open("wb") as log,
            launcher.child_stack(fresh=True, state_dir=state_dir, extra_env=env, log=log) as running,  # type: ignore[arg-type]
        ):
            yield running
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(DRIVER)), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def post_json(url: str, payload: Any) -> Any:
    request = urllib.request.Request(
        url, json.dumps(payload).encode(), {"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read() or b"null")


def wait_for(check: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    """Poll ``check`` until it is truthy; an element the page re-rendered meanwhile (stale) means "not yet"."""
    from selenium.common.exceptions import StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
        except StaleElementReferenceException:
            found = None
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def screenshot_dir(tmp_path: Path) -> Path:
    target = Path(os.environ.get("CONSOLE_SCREENSHOTS") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target


def test_an_operator_finds_reads_resolves_and_replays_quarantined_mail(stack, browser, tmp_path):
    from selenium.webdriver.common.by import By

    database = stack.parameters()["DATABASE_URL"]
    client_state = stack.parameters()["GRAPH_CLIENT_STATE"]
    token = stack.parameters()["API_TOKEN"]

    def rows(query: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(database) as conn:
            return conn.execute(query, args).fetchall()  # type: ignore[arg-type]

    # The stack watches one mailbox from its start: its notifications come on the subscription it made
    managed = launcher.get_json(stack.url + "/local/state")["graph_subscriptions"]
    user, subscription = sorted(managed.items())[0]

    # GIVEN two Graph mails without an internetMessageId, quarantined by the worker; one carries a hostile string
    for mid in ("m1", "m2"):
        post_json(
            f"{stack.url}/fake/_fake/state", {"provider": "graph", "user": user, "message": graph_message(mid, "")}
        )
        notification = item(mid, client_state=client_state, user=user)
        notification["subscriptionId"] = subscription
        notification["resourceData"]["hostile"] = HOSTILE
        post_json(f"{stack.url}/webhooks/graph", json.loads(body(notification)))
    wait_for(lambda: len(rows("SELECT id FROM quarantine WHERE status = 'open'")) == 2, "two quarantined mails")
    # AND Graph delivers m1's notification twice more: its ingest record stops both
    notification = item("m1", client_state=client_state, user=user)
    notification["subscriptionId"] = subscription
    notification["resourceData"]["hostile"] = HOSTILE
    for _ in range(2):
        assert post_json(f"{stack.url}/webhooks/graph", json.loads(body(notification)))["duplicates"] == 1
    started = time.monotonic()

    # WHEN a wrong token is typed, the page says so; with the right one the overview shows the open quarantine
    browser.get(f"{stack.url}/console")
    sign_in(browser, "not-the-token", "alice@oncall")
    wait_for(lambda: "refused" in browser.find_element(By.ID, "status").text, "the refusal")
    sign_in(browser, token, "alice@oncall")
    graph_card = wait_for(
        lambda: browser.find_elements(By.CSS_SELECTOR, "article[data-provider=graph]"), "the graph card"
    )
    assert "2 open in quarantine" in graph_card[0].text and "0 effects made" in graph_card[0].text
    assert not browser.find_element(By.ID, "login").is_displayed()
    # AND the per-layer chart (CloudWatch metrics, relayed from the functions' EMF lines) counts each layer
    refreshed_until(browser, lambda: graph_layers(browser).get("ingest") == 2, "2 stopped at ingest")
    shown = graph_layers(browser)
    assert {k: shown[k] for k in ("accepted", "ingest", "queue", "database", "effects")} == {
        "accepted": 2, "ingest": 2, "queue": 0, "database": 0, "effects": 0
    }  # fmt: skip
    card = browser.find_element(By.CSS_SELECTOR, "[data-layers-provider=graph]")
    assert "2 stopped at ingest (DynamoDB)" in card.text and "2 accepted" in card.text
    chart = card.find_element(By.CSS_SELECTOR, "svg[data-testid=layer-chart]")
    drawn = {
        series: sum(int(r.get_attribute("data-count")) for r in chart.find_elements(By.CSS_SELECTOR, f"rect.{series}"))
        for series in ("accepted", "ingest", "queue", "database")
    }
    assert drawn == {"accepted": 2, "ingest": 2, "queue": 0, "database": 0}

    # AND the quarantine lists both; the first's raw body is shown pretty-printed, the hostile string as text
    browser.find_element(By.CSS_SELECTOR, "a[data-tab=quarantine]").click()
    listed = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#quarantine-body tr.pick"), "quarantine rows")
    assert len(listed) == 2
    wait_for(lambda: click_row(browser, "|m1|"), "m1's row")
    raw = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "[data-testid=raw-body]"), "the raw body")[0]
    assert HOSTILE in raw.text and '"changeType": "created"' in raw.text and client_state not in raw.text
    assert browser.find_elements(By.CSS_SELECTOR, "#quarantine-detail img") == []
    assert browser.execute_script("return window.__pwned") is None

    # AND the operator resolves it with a note
    browser.find_element(By.ID, "q-note").send_keys("sender fixed their mail server")
    browser.find_element(By.CSS_SELECTOR, "[data-testid=resolve]").click()
    wait_for(
        lambda: "resolved" in browser.find_element(By.CSS_SELECTOR, "[data-testid=quarantine-detail] h3").text,
        "resolved",
    )

    # AND replays the other once its mail is fixed, clicking twice
    post_json(
        f"{stack.url}/fake/_fake/state",
        {"provider": "graph", "user": user, "message": graph_message("m2", "<m2@example.com>")},
    )
    wait_for(lambda: click_row(browser, "|m2|"), "m2's row")
    wait_for(lambda: "m2" in browser.find_element(By.CSS_SELECTOR, "[data-testid=raw-body]").text, "m2's body")
    replay = browser.find_element(By.CSS_SELECTOR, "[data-testid=replay]")
    browser.execute_script("arguments[0].click(); arguments[0].click();", replay)
    wait_for(lambda: rows("SELECT count(*) FROM tickets")[0][0] == 1, "the ticket")
    wait_for(lambda: rows("SELECT outcome FROM replay_log")[0][0] is not None, "the replay settled")
    browser.find_element(By.CSS_SELECTOR, "#quarantine-form select[name=status] option[value=all]").click()
    browser.find_element(By.CSS_SELECTOR, "#quarantine-form button").click()
    wait_for(lambda: "replayed" in browser.find_element(By.ID, "quarantine-body").text, "the replayed row")
    browser.save_screenshot(str(screenshot_dir(tmp_path) / "console-quarantine.png"))
    elapsed = time.monotonic() - started

    # THEN the rows say who did what, once: one resolve, one replay, one ticket
    assert rows("SELECT status, handled_by, note FROM quarantine ORDER BY id") == [
        ("resolved", "alice@oncall", "sender fixed their mail server"),
        ("replayed", "alice@oncall", None),
    ]
    assert rows("SELECT requested_by, outcome FROM replay_log") == [("alice@oncall", "ticket")]
    assert rows("SELECT external_message_id FROM tickets") == [("<m2@example.com>",)]
    # AND the event's trace in the Events view names the replay and the ticket
    browser.find_element(By.CSS_SELECTOR, "a[data-tab=events]").click()
    link = wait_for(
        lambda: [a for a in browser.find_elements(By.CSS_SELECTOR, "a.trace-link") if "|m2|" in a.text], "m2"
    )
    link[0].click()
    trace = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "[data-testid=trace]"), "the trace")[0]
    assert "ticket" in trace.text and "alice@oncall" in trace.text
    # AND the other views load (empty here, but the Graph view's watched mailbox) without an error
    for tab in ("sends", "jobs", "graph", "dlq"):
        browser.find_element(By.CSS_SELECTOR, f"a[data-tab={tab}]").click()
        expected = user if tab == "graph" else "nothing here"
        wait_for(
            lambda tab=tab, expected=expected: expected in browser.find_element(By.ID, f"{tab}-body").text,
            f"the {tab} view",
        )
    # AND back on the Overview, the replay's ticket is counted as an effect (the line in the chart)
    browser.find_element(By.CSS_SELECTOR, "a[data-tab=overview]").click()
    refreshed_until(browser, lambda: graph_layers(browser).get("effects") == 1, "1 effect made")
    assert graph_layers(browser)["ingest"] == 2
    card = browser.find_element(By.CSS_SELECTOR, "[data-layers-provider=graph]")
    assert card.find_elements(By.CSS_SELECTOR, "svg[data-testid=layer-chart] polyline.effects")
    browser.save_screenshot(str(screenshot_dir(tmp_path) / "console-overview.png"))
    # AND the browser logged no error (the wrong token's 403 aside, which the page handled)
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and "403" not in e["message"]]
    assert errors == []
    assert elapsed < 60, f"the browser part took {elapsed:.1f} s"


def graph_layers(browser: Any) -> dict[str, int]:
    """The totals the Graph card of the per-layer chart shows, by series ({} before it is drawn)."""
    from selenium.webdriver.common.by import By

    cards = browser.find_elements(By.CSS_SELECTOR, "[data-layers-provider=graph]")
    if not cards:
        return {}
    items = cards[0].find_elements(By.CSS_SELECTOR, "li[data-series]")
    return {i.get_attribute("data-series"): int(i.find_element(By.TAG_NAME, "b").text) for i in items}


def refreshed_until(browser: Any, check: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    """Refresh the overview (at most once a second) until ``check``: the metrics reach CloudWatch a second late."""
    from selenium.webdriver.common.by import By

    last = [time.monotonic()]

    def checked() -> Any:
        found = check()
        if not found and time.monotonic() - last[0] > 1:
            browser.find_element(By.CSS_SELECTOR, "#overview-form button").click()
            last[0] = time.monotonic()
        return found

    return wait_for(checked, what, timeout)


def click_row(browser: Any, containing: str) -> bool:
    from selenium.webdriver.common.by import By

    for row in browser.find_elements(By.CSS_SELECTOR, "#quarantine-body tr.pick"):
        if containing in row.text:
            row.click()
            return True
    return False


def sign_in(browser: Any, token: str, operator: str) -> None:
    from selenium.webdriver.common.by import By

    form = wait_for(lambda: [f for f in browser.find_elements(By.ID, "login") if f.is_displayed()], "the sign-in form")[
        0
    ]
    token_field = form.find_element(By.XPATH, ".//label[contains(., 'API token')]//input")
    token_field.clear()
    token_field.send_keys(token)
    operator_field = form.find_element(By.ID, "operator")
    operator_field.clear()
    operator_field.send_keys(operator)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
