"""The console's pure parts: the catalogue covers every word in both languages, deadline colours, due filters,
the district figures, the SVG chart, the vendored htmx keeps its licence, and the pages are wired."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.dispatch.console import app as console_app
from services.dispatch.console import i18n, views
from services.dispatch.console.chart import bar_chart
from services.dispatch.domain import rules
from shared.contracts import inbound as inb

HERE = Path(console_app.__file__).parent
NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)  # a Wednesday, 18:00 in Shanghai


def test_every_word_a_page_uses_is_in_the_catalogue_in_chinese_and_english():
    catalogue = i18n.catalogue()
    assert all(set(v) == {"zh", "en"} and v["zh"] and v["en"] for v in catalogue.values())
    used = set()
    for template in (HERE / "templates").glob("*.html"):
        used |= set(re.findall(r"""t\(\s*["']([a-z_]+\.[a-z_]+)["']\s*[,)]""", template.read_text(encoding="utf-8")))
    dynamic = ([f"action.{a}" for a in (*inb.ORDER_ACTIONS, "dispatch")]
               + [f"status.{s}" for s in ("dispatched", "signed", "returned", "replied", "closed", "reopened", "cancelled")]
               + [f"state.{s}" for s in views.DEADLINE_STATES] + [f"due.{d}" for d in views.DUE_FILTERS]
               + [f"bulk.{b}" for b in console_app.BULK_ACTIONS] + [f"reason.{r}" for r in (*rules.REASONS, "unknown")]
               + ["role.lead", "role.co", "timeline.from_intake", "timeline.from_dispatch", "error.csrf",
                  "error.no_order", "error.no_action", "error.lead_only", "login.refused", "login.actor_required"]
               + [f"kpi.{r}" for r in ("closure_rate", "satisfaction_rate", "on_time_rate")])
    missing = sorted(k for k in used | set(dynamic) if k not in catalogue)
    assert not missing, missing


def test_the_language_is_chinese_unless_english_is_asked_for():
    assert i18n.translate("zh", "nav.logout") == "退出" and i18n.translate("en", "nav.logout") == "Log out"
    assert i18n.translate("en", "order.title", order_id="W1") == "Order W1"
    assert i18n.translate("fr", "nav.logout") == "退出" and i18n.translate("en", "no.such") == "no.such"


def test_a_deadline_is_on_time_warning_overdue_paused_returned_or_done():
    def state(status, due=None, sign_due=None, paused_at=None):
        return views.deadline_state({"status": status, "due_at": due, "sign_due_at": sign_due,
                                     "paused_at": paused_at}, NOW)

    assert state("signed", NOW + timedelta(days=3)) == "on_time"
    assert state("signed", NOW + timedelta(hours=5)) == "warning"
    assert state("signed", NOW - timedelta(minutes=1)) == "overdue"
    assert state("dispatched", NOW + timedelta(days=3), sign_due=NOW - timedelta(hours=1)) == "overdue"
    assert state("returned", NOW - timedelta(days=1)) == "returned", "waiting for the lead unit: not a paused clock"
    assert state("replied", NOW - timedelta(days=1)) == "done" and state("signed") == "on_time"


def test_paused_means_the_clock_is_paused_not_a_return_waiting():
    def state(due, paused_at=NOW - timedelta(hours=2), status="signed"):
        return views.deadline_state({"status": status, "due_at": due, "paused_at": paused_at}, NOW)

    assert state(NOW + timedelta(days=3)) == "paused"
    assert state(NOW + timedelta(hours=5)) == "paused", "a paused clock does not warn"
    assert state(None) == "paused"
    assert state(NOW - timedelta(minutes=1)) == "overdue", "a pause after the deadline counts nothing"
    assert state(NOW + timedelta(days=3), paused_at=None) == "on_time"
    assert state(NOW + timedelta(days=3), status="returned") == "returned"
    assert state(NOW + timedelta(days=3), status="replied") == "done"


def test_a_signed_order_offers_pause_and_a_paused_one_resume():
    signed = {"status": "signed", "paused_at": None}
    paused = {"status": "signed", "paused_at": NOW}
    assert views.unit_forms(signed) == ("progress", "extend", "reply", "escalate", "pause")
    assert "pause" not in views.unit_forms(signed, pausing_allowed=False), "pauses.max_per_order 0: pausing off"
    assert views.unit_forms(paused)[0] == "resume"
    assert "pause" not in views.unit_forms(paused) and "extend" not in views.unit_forms(paused)
    assert views.unit_forms({"status": "dispatched"}) == ("sign", "return")
    assert views.unit_forms({"status": "returned"}) == () == views.unit_forms({"status": "closed"})
    assert set(views.UNIT_FORMS["signed"]) | set(views.PAUSED_FORMS) <= set(inb.ORDER_ACTIONS)


def test_due_filters_are_shanghai_calendar_days():
    today = views.order_filter(NOW, due="today")
    assert today.due_from == datetime(2026, 12, 2, tzinfo=views.SHANGHAI)
    assert today.due_to - today.due_from == timedelta(days=1)
    week = views.order_filter(NOW, due="week")
    assert week.due_to == datetime(2026, 12, 7, tzinfo=views.SHANGHAI), "to the end of Sunday"
    assert views.order_filter(NOW, due="overdue").overdue_at == NOW
    assert views.order_filter(NOW, due="paused").paused and views.order_filter(NOW, due="extension").pending_extension
    assert not views.order_filter(NOW, due="paused").returned
    assert views.order_filter(NOW, due="returned").returned and not views.order_filter(NOW, due="returned").paused
    assert views.order_filter(NOW, search="  CT-1 ").search == "CT-1"


def test_the_district_figures_are_rates_of_the_sums():
    figures = views.district_figures([
        {"received": 4, "due": 4, "closed": 3, "closed_on_time": 2, "rated": 2, "satisfied_or_basically": 2,
         "signed_on_time": 4},
        {"received": 6, "due": 0, "closed": 0, "closed_on_time": 0, "rated": 0, "satisfied_or_basically": 0,
         "signed_on_time": 3}])
    assert figures["closure_rate"] == 0.75 and figures["on_time_rate"] == 0.5
    assert figures["satisfaction_rate"] == 1.0 and figures["sign_on_time_rate"] == 0.7
    assert views.district_figures([])["closure_rate"] is None and views.percent(None) == "—"


def test_the_chart_is_an_svg_with_a_bar_and_a_value_per_unit():
    svg = bar_chart("得分", [("区公安分局交警大队", 87.5), ("区环卫所", None), ("<b>", 150.0)])
    assert svg.startswith("<svg") and svg.endswith("</svg>") and "<title>得分</title>" in svg
    assert svg.count("<rect") == 2 and "87.5" in svg and "&lt;b&gt;" in svg and "<b>" not in svg
    widths = [float(w) for w in re.findall(r'<rect class="bar" x="\d+" y="\d+" width="([\d.]+)"', svg)]
    assert widths == [0.875 * 420, 420.0], "clamped to the maximum"


def test_the_vendored_htmx_keeps_its_licence():
    static = HERE / "static"
    first, rest = (static / "htmx.min.js").read_text(encoding="utf-8").split("\n", 1)
    assert first.startswith("/*!") and "htmx 2.0.11" in first and "0BSD" in first and "htmx.LICENSE.txt" in first
    assert hashlib.sha256(rest.encode()).hexdigest() == \
        "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717", "upstream's dist/htmx.min.js unchanged"
    assert "Zero-Clause BSD" in (static / "htmx.LICENSE.txt").read_text(encoding="utf-8")


def test_dispatch_serves_the_console_at_slash_console():
    from services.dispatch.__main__ import create_service
    from shared.settings import Settings

    service = create_service(Settings(demo_mode=True))
    mounts = {getattr(r, "path", None) for r in service.http.routes}
    assert "/console" in mounts
    assert not any(p.startswith("/console") for p in service.http.openapi()["paths"]), "not part of the API's schema"
