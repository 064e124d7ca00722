"""The web console in headless Chromium, through the real stack (intake, dispatch, escalation as processes,
embedded NATS and PostgreSQL): a unit logs in, signs and replies to its order; the lead unit watches the manual
queue fill without a reload and dispatches the appeal in one click. Screenshots go to the test's tmp folder.

The browser comes from :mod:`tools.browser` (Playwright from PyPI, Debian's chromium); where none can be
installed the test is skipped with the reason.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
import nats
import pytest

from shared.contracts import subjects
from tools.browser import CHROMIUM_ARGS, ensure_browser
from tools.embedded import free_port
from tools.seed import seed

pytestmark = pytest.mark.integration

TRAFFIC = "东航中心附近路口的左转车道通行不便，高峰时段通行缓慢；门口路段有车辆乱停乱放，容易造成拥堵。"
SERVICES = ("intake", "dispatch", "escalation")


@pytest.fixture(scope="session")
def browser_executable():
    browser = ensure_browser()
    if not browser.ready:
        pytest.skip(f"no browser for the console's browser tests: {browser.why}")
    return browser.executable


@pytest.fixture
def stack(monkeypatch):
    from tools.stack import Stack

    for name in SERVICES:
        monkeypatch.setenv(f"{name.upper()}_PORT", str(free_port()))
    running = Stack(services=SERVICES, quiet=True, extra_env={"LOG_LEVEL": "WARNING", "CONSOLE_POLL_S": "1"})
    try:
        running.start()
        running.wait_healthy(90)
        yield running
    finally:
        running.stop()


def publish(nats_url: str, subject: str, body: dict, msg_id: str) -> None:
    async def send() -> None:
        nc = await nats.connect(nats_url)
        try:
            await nc.jetstream().publish(subject, json.dumps(body, ensure_ascii=False).encode(),
                                         headers={"Nats-Msg-Id": msg_id})
        finally:
            await nc.close()

    # in a thread of its own: Playwright's sync API keeps an event loop running in this one
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, send()).result(timeout=30)


def hotline_call(content: str) -> dict:
    call_id = f"CALL-UI-{uuid.uuid4().hex[:8]}"
    return {"call_id": call_id, "received_at": datetime.now(UTC).isoformat(), "caller_phone": "13800007777",
            "enterprise_name": "四川东航投资有限公司", "content": content}


def wait(what: str, condition, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def api_orders(dispatch_url: str, token: str) -> list[dict]:
    answer = httpx.get(f"{dispatch_url}/orders", headers={"Authorization": f"Bearer {token}"}, timeout=5)
    return answer.json()["items"] if answer.status_code == 200 else []


def test_a_unit_signs_and_replies_and_the_lead_unit_dispatches_a_queued_appeal(stack, browser_executable, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    started = time.monotonic()
    dispatch_url = stack.urls()["dispatch"]
    nats_url = stack.servers.nats_url
    call = hotline_call(TRAFFIC)
    publish(nats_url, subjects.IN_HOTLINE, call, call["call_id"])
    order = wait("the call's order at the traffic police", lambda: next(
        (o for o in api_orders(dispatch_url, "token-traffic_police") if "左转车道" in o["summary"]), None))

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_executable, headless=True, args=CHROMIUM_ARGS)
        try:
            unit = browser.new_page(viewport={"width": 1280, "height": 900})
            unit.set_default_timeout(20_000)
            unit.goto(f"{dispatch_url}/console/login")
            unit.fill("#token", "token-traffic_police")
            unit.fill("#actor", "交警大队张警官")
            unit.click("#login")
            expect(unit.locator(f'tr[data-order="{order["order_id"]}"]')).to_be_visible()
            unit.screenshot(path=str(tmp_path / "1-unit-orders.png"), full_page=True)

            unit.click(f'a[href$="/orders/{order["order_id"]}"]')
            unit.click("#do-sign")
            expect(unit.locator("#order-status")).to_have_attribute("data-status", "signed")
            expect(unit.locator("#result")).to_have_class("flash ok")
            unit.fill("#form-reply textarea[name=reply]", "已在路口增设左转待行区，高峰时段安排警力疏导。")
            unit.click("#do-reply")
            expect(unit.locator("#order-status")).to_have_attribute("data-status", "replied")
            expect(unit.locator("#order-reply")).to_contain_text("左转待行区")
            expect(unit.locator("#timeline")).to_contain_text("交警大队张警官")
            unit.screenshot(path=str(tmp_path / "2-unit-replied.png"), full_page=True)

            lead = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
            lead.set_default_timeout(20_000)
            lead.goto(f"{dispatch_url}/console/login?lang=en")
            lead.fill("#token", "token-approval_bureau")
            lead.fill("#actor", "Li, approval bureau")
            lead.click("#login")
            expect(lead.locator("h1")).to_have_text("Manual queue")
            # published now: the queue's row comes without a reload (the page polls /console/changes)
            unclear = hotline_call(seed()["other_demands_heard"][0]["content"])
            publish(nats_url, subjects.IN_HOTLINE, unclear, unclear["call_id"])
            row = lead.locator("#queue-table tbody tr").first
            expect(row).to_be_visible(timeout=60_000)
            appeal_id = row.get_attribute("data-appeal")
            lead.screenshot(path=str(tmp_path / "3-lead-queue.png"), full_page=True)
            button = row.locator("button.dispatch").first
            chosen = button.get_attribute("data-unit")
            button.click()
            expect(lead.locator("#result")).to_have_class("flash ok")
            expect(lead.locator(f'tr[data-appeal="{appeal_id}"]')).to_have_count(0)
            lead.screenshot(path=str(tmp_path / "4-lead-dispatched.png"), full_page=True)
            lead.click('a[href$="/ranking"]')
            expect(lead.locator("#ranking-table")).to_contain_text("交警")  # escalation's GET /report
            expect(lead.locator("#charts svg").first).to_be_visible()
            lead.screenshot(path=str(tmp_path / "5-lead-ranking.png"), full_page=True)
        finally:
            browser.close()

    dispatched = wait("the appeal's order", lambda: [o for o in api_orders(dispatch_url, "token-approval_bureau")
                                                      if o["appeal_id"] == appeal_id])
    assert dispatched[0]["unit_code"] == chosen and any("by hand" in r for r in dispatched[0]["reasons"])
    replied = [o for o in api_orders(dispatch_url, "token-traffic_police") if o["order_id"] == order["order_id"]]
    assert replied[0]["status"] == "replied"
    assert all((tmp_path / f).stat().st_size > 10_000 for f in
               ("1-unit-orders.png", "2-unit-replied.png", "3-lead-queue.png", "4-lead-dispatched.png",
                "5-lead-ranking.png"))
    print(f"browser test: {time.monotonic() - started:.1f} s after the stack was up; screenshots in {tmp_path}")
