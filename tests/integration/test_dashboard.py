"""The live dashboard in a real browser, against a real worker on a real broker.

Debian's Chromium (``apt-get install -y chromium chromium-driver``), driven by
Playwright for Python: the page is opened as a person would (``?access_token=`` for
the cookie, the ingest token in the fragment), alerts are made through the page's
own simulator form and through the ingest API behind its back, and the test checks
what the page shows: rows, map features, the detail panel with the state views, the
simulator's verdict; and the cases: a case's row and its live count, the case view,
a snooze and a label with the precision they move. Any console error, uncaught
exception, failed request or request to a host other than 127.0.0.1 fails it.
Screenshots are left in ``test-artifacts/`` (``dashboard.png``, ``dashboard-cases.png``).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from playwright.sync_api import (
    BrowserContext,
    ConsoleMessage,
    Page,
    Request,
    expect,
    sync_playwright,
)

from fraudapp.cli import procs
from fraudapp.cli.workerproc import WorkerProcess
from fraudapp.core.caseids import case_id
from tests.integration.helpers import AppSpace, running, wait_for

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
WAIT_MS = 60_000  # one step of the pipeline, at most

PARIS = (48.8566, 2.3522)
LONDON = (51.5074, -0.1278)
ROME = (41.9028, 12.4964)  # 1 434 km from London
TOKYO = (35.6762, 139.6503)


class BrowserLog:
    """What the browser said that a healthy page never says."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def watch(self, context: BrowserContext) -> None:
        context.on("request", self._request)
        context.on("requestfailed", self._failed)
        context.on("page", self._page)

    def _page(self, page: Page) -> None:
        page.on("console", lambda msg: self._console(page, msg))
        page.on("pageerror", lambda error: self.problems.append(f"uncaught: {error}"))

    def _console(self, page: Page, msg: ConsoleMessage) -> None:
        if msg.type == "error":
            self.problems.append(f"console error on {page.url}: {msg.text} at {msg.location}")

    def _request(self, request: Request) -> None:
        host = urlsplit(request.url).hostname
        if request.url.split(":", 1)[0] in ("http", "https", "ws", "wss") and host != "127.0.0.1":
            self.problems.append(f"request to another host: {request.url}")

    def _failed(self, request: Request) -> None:
        self.problems.append(f"request failed: {request.method} {request.url}: {request.failure}")


@pytest.fixture
def browser() -> Iterator[tuple[BrowserContext, BrowserLog]]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the dashboard test drives Debian's Chromium;"
            " install it with `apt-get install -y chromium chromium-driver`"
        )
    log = BrowserLog()
    with (
        tempfile.TemporaryDirectory(prefix="fraudapp-chromium-") as profile,
        sync_playwright() as pw,
    ):
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1280, "height": 800},
        )
        log.watch(context)
        try:
            yield context, log
        finally:
            context.close()


@pytest.fixture
def worker(kafka_broker, tmp_path: Path) -> Iterator[WorkerProcess]:
    space = AppSpace(kafka_broker.bootstrap, "dashboard")
    space.create_topics()
    with running(space.worker(tmp_path / "worker")) as worker:
        yield worker


def warm_up(worker: WorkerProcess) -> None:
    """One simulated click from here first: the page's three burst clicks must fall
    within 10 s, so the first-ever trip through the stages (topics, tables and the
    worker's topic readers starting) is not taken by one of them. It must answer."""
    status, body = worker.request(
        "POST",
        "/simulate/click",
        {"session_id": "dash-warmup", "url": "https://warm.example/"},
        timeout=30,
    )
    assert status == 200, f"the simulator did not answer a click: {status} {body}"


def answer(page: Page, n: int) -> str:
    """The simulator's n-th answer (1-based), once shown; fails on an error answer."""
    result = page.locator("#sim-result")
    expect(result).to_have_attribute("data-answers", str(n), timeout=WAIT_MS)
    text = result.inner_text()
    assert result.get_attribute("data-state") == "ok", f"simulator answer #{n}: {text}"
    return text


def send_click(page: Page, session: str, url: str, at: tuple[float, float]) -> None:
    form = page.locator("#click-form")
    form.locator("[name=session_id]").fill(session)
    form.locator("[name=url]").fill(url)
    form.locator("[name=lat]").fill(str(at[0]))
    form.locator("[name=lon]").fill(str(at[1]))
    form.locator("button[type=submit]").click()


def send_transaction(page: Page, account: str, atm: str, at: tuple[float, float]) -> None:
    form = page.locator("#txn-form")
    form.locator("[name=account_id]").fill(account)
    form.locator("[name=atm]").fill(atm)
    form.locator("[name=amount]").fill("120")
    form.locator("[name=lat]").fill(str(at[0]))
    form.locator("[name=lon]").fill(str(at[1]))
    form.locator("button[type=submit]").click()


def entry_url(worker: WorkerProcess, *, api_token: bool = False) -> str:
    """The dashboard's address as a person opens it: the API token as
    ``?access_token=`` (traded for the cookie), the write tokens in the fragment."""
    fragment = f"ingest_token={quote(worker.ingest_token)}"
    if api_token:
        fragment += f"&api_token={quote(worker.api_token)}"
    return f"{worker.url}/dashboard?access_token={quote(worker.api_token)}#{fragment}"


def row(page: Page, rule: str, key: str):
    return page.locator(f'#alerts tbody tr[data-rule="{rule}"]').filter(has_text=key)


def test_dashboard_shows_live_alerts_on_the_map_and_their_state(
    worker: WorkerProcess, browser: tuple[BrowserContext, BrowserLog]
) -> None:
    context, log = browser
    warm_up(worker)
    page = context.new_page()
    entry = (
        f"{worker.url}/dashboard?access_token={quote(worker.api_token)}"
        f"#ingest_token={quote(worker.ingest_token)}"
    )
    try:
        page.goto(entry)
        # The token went into a cookie (303), the fragment into sessionStorage.
        assert page.url == f"{worker.url}/dashboard"
        expect(page.locator("#ingest-token")).to_have_value(worker.ingest_token)
        expect(page.locator("#map")).to_have_attribute("data-basemap", "ready", timeout=WAIT_MS)
        assert page.locator("#map path.country").count() > 100
        expect(page.locator("#conn")).to_have_attribute("data-state", "open", timeout=WAIT_MS)

        # Click burst through the page's simulator: the first click is clean, the
        # third of three on one URL within 10 s is fraud and is drawn at its place.
        burst_url = "https://shop.example/shoes"
        verdict = page.locator("#sim-result .verdict")
        send_click(page, "dash-s1", burst_url, PARIS)
        assert "fraud: no" in answer(page, 1)
        for n in (2, 3):
            send_click(page, "dash-s1", burst_url, PARIS)
            text = answer(page, n)
        expect(verdict).to_have_attribute("data-fraud", "true")
        assert "fraud: yes" in text and "click_burst" in text, text

        # Impossible travel through the simulator: London, then Rome seconds later.
        page.locator("#tab-txn").click()
        send_transaction(page, "dash-acct-1", "ATM London", LONDON)
        assert "no alert" in answer(page, 4)
        send_transaction(page, "dash-acct-1", "ATM Rome", ROME)
        assert "atm_impossible_travel" in answer(page, 5)

        # An alert the page did not ask for reaches it over server-sent events.
        now = int(time.time() * 1000)
        clicks = [
            {
                "click_id": f"dash-oob-{i}",
                "session_id": "dash-oob",
                "url": "https://travel.example/tokyo",
                "timestamp": now + i * 100,
                "lat": TOKYO[0],
                "lon": TOKYO[1],
            }
            for i in range(3)
        ]
        status, body = worker.request("POST", "/clicks", clicks)
        assert status == 202, body

        expect(row(page, "click_burst", "dash-s1")).to_have_count(1, timeout=WAIT_MS)
        expect(row(page, "atm_impossible_travel", "dash-acct-1")).to_have_count(1, timeout=WAIT_MS)
        expect(row(page, "click_burst", "dash-oob")).to_have_count(1, timeout=WAIT_MS)

        # On the map: the ATM pair as a line with both ends, the clicks as points.
        the_map = page.locator("#map")
        expect(the_map.locator("path.alert-line.rule-atm_impossible_travel")).to_have_count(1)
        expect(the_map.locator("path.alert-end.rule-atm_impossible_travel")).to_have_count(2)
        expect(the_map.locator("path.alert-point.rule-click_burst")).to_have_count(2)
        rates = page.locator('#rates tbody tr[data-rule="click_burst"] td.num').last
        expect(rates).to_have_text("2", timeout=WAIT_MS)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"))

        # A map feature opens the alert: its evidence and its account's state.
        detail = page.locator("#detail")
        the_map.locator("path.alert-end-second.rule-atm_impossible_travel").click()
        expect(detail).to_be_visible()
        evidence = page.locator("#detail-evidence")
        expect(evidence).to_contain_text('"rule": "atm_impossible_travel"')
        expect(evidence).to_contain_text('"t1_location"')
        account = page.locator('#detail-related section[data-view="account"]')
        expect(account).to_have_attribute("data-state", "ok", timeout=WAIT_MS)
        expect(account).to_contain_text('"account_id": "dash-acct-1"')
        expect(account).to_contain_text('"transactions"')
        page.wait_for_timeout(500)  # the map's pan to the alert is animated
        page.screenshot(path=str(ARTIFACTS / "dashboard-detail.png"))

        # So does a row (its rule cell: the panel covers the row's right half): the
        # click alert with the view of its session.
        row(page, "click_burst", "dash-s1").locator("td.r").click()
        expect(evidence).to_contain_text('"session_id": "dash-s1"')
        session = page.locator('#detail-related section[data-view="session"]')
        expect(session).to_have_attribute("data-state", "ok", timeout=WAIT_MS)
        expect(session).to_contain_text('"session_id": "dash-s1"')
        expect(session).to_contain_text(burst_url)
        page.locator("#detail-close").click()
        expect(detail).to_be_hidden()

        # A new page load is authorised by the cookie alone and replays the alerts.
        again = context.new_page()
        again.goto(f"{worker.url}/dashboard")
        expect(row(again, "atm_impossible_travel", "dash-acct-1")).to_have_count(1, timeout=WAIT_MS)
        expect(row(again, "click_burst", "dash-oob")).to_have_count(1)
        expect(again.locator("#map path.alert-line")).to_have_count(1)

        assert log.problems == [], "\n".join(log.problems)
    except Exception:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-failure.png"))
        print("browser problems:", *log.problems, sep="\n  ")
        print(f"worker log:\n{procs.tail(worker.log_path, 80)}")
        raise


def test_dashboard_shows_open_cases_their_alerts_snoozes_and_label_precision(
    worker: WorkerProcess, browser: tuple[BrowserContext, BrowserLog]
) -> None:
    """A click burst makes one case. Its record is written when it opens (one alert);
    the alerts after it come between transitions, so the row's count moves with the
    alert events the page receives. The case view lists its alerts and opens them;
    Snooze marks the row; a Fraud label moves the rule version's precision."""
    context, log = browser
    page = context.new_page()
    session = "dash-case-1"
    cid = case_id("click_burst", session)
    url = "https://shop.example/case"
    now = int(time.time() * 1000)

    def clicks(*numbers: int) -> list[dict[str, object]]:
        return [
            {
                "click_id": f"dash-case-{i}",
                "session_id": session,
                "url": url,
                "timestamp": now + i * 200,
                "lat": PARIS[0],
                "lon": PARIS[1],
            }
            for i in numbers
        ]

    try:
        page.goto(entry_url(worker, api_token=True))
        assert page.url == f"{worker.url}/dashboard"  # the tokens left the address
        expect(page.locator("#api-token")).to_have_value(worker.api_token)
        expect(page.locator("#conn")).to_have_attribute("data-state", "open", timeout=WAIT_MS)
        expect(page.locator("#cases-empty")).to_be_visible()
        expect(page.locator("#precision-empty")).to_be_visible()

        # Four clicks on one URL within 10 s: the third and the fourth raise alerts.
        status, body = worker.request("POST", "/clicks", clicks(0, 1, 2, 3))
        assert status == 202, body
        case_row = page.locator(f'#cases tbody tr[data-case-id="{cid}"]')
        expect(case_row).to_have_count(1, timeout=WAIT_MS)
        count = case_row.locator("td.count")
        expect(count).to_have_text("2", timeout=WAIT_MS)
        expect(case_row.locator(".entity")).to_have_text(session)
        expect(case_row).to_have_attribute("data-rule", "click_burst")
        expect(case_row).to_have_attribute("data-snoozed", "false")
        expect(case_row.locator("td.st")).to_contain_text("open")
        expect(case_row.locator("td.st")).to_contain_text("low")  # 4 clicks: 4/3 of the threshold
        expect(page.locator("#case-count")).to_have_text("1 open")
        # A fifth click in the window: a third alert, and the count follows.
        status, body = worker.request("POST", "/clicks", clicks(4))
        assert status == 202, body
        expect(count).to_have_text("3", timeout=WAIT_MS)
        alert_rows = page.locator('#alerts tbody tr[data-rule="click_burst"]')
        expect(alert_rows).to_have_count(3)

        # The case view: the case live from its table, with its alerts.
        case_row.locator("td.c").click()
        view = page.locator("#case-view")
        expect(view).to_be_visible()
        expect(view).to_have_attribute("data-state", "ok", timeout=WAIT_MS)
        expect(view.locator("#case-title")).to_contain_text(session)
        expect(view.locator("#case-meta")).to_contain_text(cid)
        expect(view.locator(".case-status")).to_contain_text("open, episode 1")
        expect(view.locator(".case-count")).to_have_text("3 in all, 3 this episode")
        expect(view.locator(".case-action")).to_have_text("none")
        expect(view.locator(".case-snooze")).to_have_text("not snoozed")
        listed = view.locator("#case-alerts tbody tr")
        expect(listed).to_have_count(3)
        # Each alert opens the alert detail over it; closing that shows the case again.
        newest = listed.first.get_attribute("data-alert-id")
        assert newest and newest.startswith("click_burst-"), newest
        listed.first.get_by_role("button", name=f"open alert {newest}").click()
        detail = page.locator("#detail")
        expect(detail).to_be_visible()
        evidence = page.locator("#detail-evidence")
        expect(evidence).to_contain_text(f'"alert_id": "{newest}"')
        expect(evidence).to_contain_text(f'"case_id": "{cid}"')
        expect(evidence).to_contain_text('"click_id": "dash-case-4"')
        page.locator("#detail-close").click()
        expect(detail).to_be_hidden()
        expect(view).to_be_visible()

        # Snooze from the row: the row and the case view say so.
        case_row.get_by_role("button", name="Snooze").click()
        expect(case_row).to_have_attribute("data-snoozed", "true", timeout=WAIT_MS)
        expect(case_row.locator("td.st")).to_contain_text("snoozed")
        expect(case_row.get_by_role("button", name="Unsnooze")).to_be_visible()
        expect(view.locator(".case-snooze")).to_contain_text("snoozed until")
        expect(view.locator(".case-snooze")).to_contain_text("by dashboard")
        expect(page.locator("#cases-msg")).to_contain_text("snoozed until")

        # Fraud: the label is taken, and click_burst version 1 is 100 % precise.
        case_row.get_by_role("button", name="Fraud").click()
        expect(case_row).to_have_attribute("data-label", "fraud", timeout=WAIT_MS)
        expect(case_row.get_by_role("button", name="Fraud")).to_have_attribute(
            "aria-pressed", "true"
        )
        expect(view.locator(".case-label")).to_have_text("fraud by dashboard")
        precision = page.locator('#precision tbody tr[data-rule="click_burst"][data-version="1"]')
        expect(precision.locator("td.precision")).to_have_text("100.0 %", timeout=WAIT_MS)
        expect(precision.locator("td.fraud")).to_have_text("1")
        expect(precision.locator("td.legit")).to_have_text("0")
        expect(page.locator("#precision-empty")).to_be_hidden()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-cases.png"))

        # The worker agrees: the case has the three alerts and the snooze.
        def snoozed_case() -> dict | None:
            status, body = worker.get(f"/cases/{cid}")
            return body if status == 200 and body["case"]["snoozed"] else None

        body = wait_for(snoozed_case, timeout=30)
        assert body, worker.get(f"/cases/{cid}")
        assert body["case"]["alert_count"] == 3 and len(body["alerts"]) == 3, body

        # A new page load gets the case with its snooze and label from the stream,
        # and its count from the case record and the replayed alerts.
        again = context.new_page()
        again.goto(f"{worker.url}/dashboard")
        again_row = again.locator(f'#cases tbody tr[data-case-id="{cid}"]')
        expect(again_row.locator("td.count")).to_have_text("3", timeout=WAIT_MS)
        expect(again_row).to_have_attribute("data-snoozed", "true")
        expect(again_row).to_have_attribute("data-label", "fraud")
        expect(
            again.locator('#precision tbody tr[data-rule="click_burst"] td.precision')
        ).to_have_text("100.0 %", timeout=WAIT_MS)

        assert log.problems == [], "\n".join(log.problems)
    except Exception:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-cases-failure.png"))
        print("browser problems:", *log.problems, sep="\n  ")
        print(f"worker log:\n{procs.tail(worker.log_path, 80)}")
        raise
