"""The ``coffeetime`` command (typer): run the services, migrate, the demo, reports, operations and docs.

Every command's help is in Chinese first, then English ("中文 / English");
``COFFEETIME_LANG=zh`` or ``=en`` shows one language only. Progress bars
(rich) go to standard error at a terminal only, so what scripts read from
standard output (``--format json``) stays plain. The exit codes are the tools'
own (0 done, 1 a failure the command found, 2 a bad argument or file, 130
interrupted); a usage error is 2, as argparse's was.

The commands call the tools' ``main(args)`` with the same attribute names the
argparse parsers gave them, so the tools and their tests are unchanged.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import signal
import sys
import time
from datetime import date, datetime
from pathlib import Path
from typing import Literal

import typer

from shared.settings import SERVICES

_LANG = os.environ.get("COFFEETIME_LANG", "").lower()[:2]


def _h(zh: str, en: str) -> str:
    """A help text in both languages, Chinese first (one of them with ``COFFEETIME_LANG=zh|en``)."""
    return zh if _LANG == "zh" else en if _LANG == "en" else f"{zh} / {en}"


HELP = _h(
    "企业咖啡时：企业诉求在 NATS JetStream 和 PostgreSQL 上的服务。未设置 NATS_URL / DATABASE_URL 时，"
    "up、migrate、demo、report、topics 在临时目录启动内置的 nats-server 和 PostgreSQL。",
    "coffeetime: enterprise appeals (企业咖啡时) as services on NATS JetStream and PostgreSQL. Without NATS_URL / "
    "DATABASE_URL, up, migrate, demo, report and topics start an embedded nats-server and PostgreSQL in a "
    "temporary folder.",
)
CONTEXT = {"help_option_names": ["-h", "--help"]}

app = typer.Typer(name="coffeetime", help=HELP, no_args_is_help=True, add_completion=False,
                  context_settings=CONTEXT, rich_markup_mode="rich", pretty_exceptions_enable=False)

Service = Literal["intake", "dispatch", "escalation", "notify"]
assert set(Service.__args__) == set(SERVICES), "the CLI's service names are shared.settings.SERVICES"  # noqa: S101


def _done(code: int | None) -> None:
    """End the command with the tool's exit status."""
    if code:
        raise typer.Exit(code)


def _tool(module: str, function: str = "main", **attributes) -> None:
    """Run ``tools.<module>.<function>(Namespace(**attributes))`` and exit with its status."""
    _done(getattr(importlib.import_module(f"tools.{module}"), function)(argparse.Namespace(**attributes)))


def _choose(given: list[str] | None, choices, param: str) -> None:
    """A usage error (exit 2) for any of ``given`` not among ``choices`` (typer has no list of choices)."""
    unknown = [g for g in given or () if g not in choices]
    if unknown:
        raise typer.BadParameter(f"{', '.join(unknown)}: choose from {', '.join(choices)}", param_hint=param)


def _sub(name: str, zh: str, en: str) -> typer.Typer:
    """A command group (``coffeetime dlq list``), added to the app."""
    group = typer.Typer(help=_h(zh, en), no_args_is_help=True, context_settings=CONTEXT, rich_markup_mode="rich")
    app.add_typer(group, name=name)
    return group


MONTH_HELP = _h("月份 YYYY-MM（默认本月）", "YYYY-MM (default: this month)")
JSON_HELP = _h("输出 JSON", "print JSON")


# --- the services --------------------------------------------------------------------


@app.command(help=_h("启动全部服务（各自一个进程）及内置服务器", "start every service as its own process (and the "
                                                               "embedded servers)"))
def up() -> None:
    from tools import term
    from tools.stack import Stack

    stack = Stack()
    stopping = {"flag": False}

    def on_signal(signum, frame):  # noqa: ARG001
        stopping["flag"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        with term.progress() as bar:
            task = bar.add_task(_h("启动 NATS、PostgreSQL 和服务", "starting NATS, PostgreSQL and the services"),
                                total=1 + len(stack.services))
            stack.start()
            bar.advance(task)
            print(f"NATS        {stack.servers.nats_url}")
            print(f"PostgreSQL  {stack.servers.database_url}")
            stack.wait_healthy(on_ready=lambda name: bar.advance(task))
        for name, url in stack.urls().items():
            print(f"{name:<11} {url}/healthz  {url}/metrics  {url}/docs")
        print("all services up; Ctrl-C stops everything", flush=True)
        while not stopping["flag"]:
            for name, proc in stack.procs.items():
                if proc.poll() is not None:
                    print(f"{name} exited with code {proc.returncode}; stopping", file=sys.stderr)
                    stopping["flag"] = True
            time.sleep(0.2)
    finally:
        print("stopping ...", flush=True)
        stack.stop()
        print("stopped")


@app.command(help=_h("在前台运行一个服务（容器里就是这样运行的）", "run one service in the foreground, as a container "
                                                                 "would"))
def run(service: Service = typer.Argument(..., help=_h("服务", "the service"))) -> None:
    from shared.service import run as run_service

    run_service(importlib.import_module(f"services.{service}.__main__").create_service, service)


@app.command(help=_h("执行各服务的数据库迁移，并创建或更新 NATS 流", "apply each service's database migrations and "
                                                                   "create or update the NATS streams"))
def migrate(services: list[str] | None = typer.Argument(None, metavar=f"[{'|'.join(SERVICES)}]...",
                                                        help=_h("默认：全部", "default: all"))) -> None:
    from shared.db import migrate as migrate_schema
    from tools import term
    from tools.embedded import EmbeddedServers

    _choose(services, SERVICES, "SERVICES")
    names = list(services or SERVICES)
    with term.steps("migrate", ["servers", *names, "NATS"]) as step:
        step("servers")
        with EmbeddedServers.from_env() as servers:
            for name in names:
                step(name)
                folder = Path(__file__).parents[1] / "services" / name / "migrations"
                applied = asyncio.run(migrate_schema(servers.database_url, name, folder))
                print(f"{name}: {len(applied)} migration(s) applied" + (f" ({', '.join(applied)})" if applied else ""))
            step("NATS")
            asyncio.run(_migrate_streams(servers.nats_url))


async def _migrate_streams(nats_url: str) -> None:
    """The streams created or updated (replicas raised to STREAM_REPLICAS): the admin's part (deploy/nats/nats.conf)."""
    from shared.bus import connect, ensure_streams
    from shared.settings import Settings

    settings = Settings()
    nc = await connect(nats_url, "coffeetime-migrate", **settings.nats_connect_options())
    try:
        await ensure_streams(nc.jetstream(), replicas=settings.stream_replicas)
    finally:
        await nc.close()
    print(f"NATS: streams up to date (replicas at least {settings.stream_replicas})")


@app.command(help=_h("用已公布的案例跑通整个系统", "run the published cases through the whole stack"))
def demo(keep: bool = typer.Option(False, "--keep", help=_h(
        "演示结束后保留系统和网页控制台，直到 Ctrl-C", "leave the stack and the web console running after the demo, "
                                                     "until Ctrl-C"))) -> None:
    _tool("demo", keep=keep)


# --- reports -------------------------------------------------------------------------


@app.command(help=_h("本月单位考评排名（表格、JSON、CSV、Excel、PDF 或 PNG 图表）",
                     "the month's evaluation and ranking of the units (table, JSON, CSV, Excel, PDF or PNG chart)"))
def report(
    month: str | None = typer.Option(None, "--month", help=MONTH_HELP),
    format: Literal["table", "json", "csv", "xlsx", "pdf", "png"] = typer.Option(  # noqa: A002 - the option's name
        "table", "--format", help=_h("格式；xlsx/pdf/png 需要 --out 或重定向", "format; xlsx/pdf/png need --out or a "
                                                                             "redirect")),
    lang: Literal["zh", "en"] = typer.Option("zh", "--lang", help=_h("CSV、Excel、图表的表头语言",
                                                                     "the headers' language in CSV, Excel, charts")),
    out: Path | None = typer.Option(None, "--out", help=_h("写入此文件", "write to this file")),
    min_orders: int | None = typer.Option(None, "--min-orders", help=_h(
        "受理数少于此数的单位列出但不排名（默认：配置）", "units with fewer orders are listed but not ranked "
                                                       "(default: the configuration's)")),
) -> None:
    _tool("report", month=month, format=format, lang=lang, out=out, min_orders=min_orders)


@app.command(help=_h("本月热点研判：主题、增长、重复诉求、每月一题", "the month's hot topics (热点研判): themes, growth, "
                                                                   "repeated appeals, 每月一题"))
def topics(
    month: str | None = typer.Option(None, "--month", help=MONTH_HELP),
    format: Literal["table", "json", "csv"] = typer.Option("table", "--format"),  # noqa: A002
    months_back: int = typer.Option(3, "--months-back", help=_h("对比的前几个月（默认 3）",
                                                                "previous months to compare with (default 3)")),
    out: str | None = typer.Option(None, "--out", help=_h("写入此文件而非终端（如 topics.csv 供 Excel 打开）",
                                                          "write to this file instead of the terminal (e.g. topics.csv "
                                                          "for Excel)")),
) -> None:
    _tool("topics", month=month, format=format, months_back=months_back, out=out)


@app.command("routing-eval", help=_h("在未见过的诉求上评估派单：k 折、留出集、学习曲线",
                                     "measure routing on appeals it never saw: k-fold, held-out, the curve"))
def routing_eval(
    format: Literal["table", "json"] = typer.Option("table", "--format"),  # noqa: A002
    config: str | None = typer.Option(None, "--config", help=_h(
        "区县配置（默认 DISTRICT_CONFIG 或 shared/district.yaml）",
        "the district configuration (default: DISTRICT_CONFIG or shared/district.yaml)")),
    unseen: str | None = typer.Option(None, "--unseen", help=_h(
        "只评估这一个留出文件（默认：每个 tests/data/unseen_appeals*.yaml）",
        "one held-out file to measure (default: every tests/data/unseen_appeals*.yaml)")),
    tune: bool = typer.Option(False, "--tune", help=_h(
        "在各折上选择 model_weight 和 model_min_probability（从不在留出集上）",
        "choose model_weight and model_min_probability on the folds (never on the held-out set)")),
) -> None:
    from tools import term

    with term.steps("routing-eval", ["folds and held-out sets"]) as step:
        step("folds and held-out sets")
        code = importlib.import_module("tools.routing_eval").main(
            argparse.Namespace(format=format, config=config, unseen=unseen, tune=tune))
    _done(code)


# --- operations ----------------------------------------------------------------------

dlq = _sub("dlq", "死信：列出，并以新 id 重放到原主题（一次）",
           "dead letters: list them, replay them to their subject under a fresh id, once")


@dlq.command("list", help=_h("死信，最早的在前，附重放记录", "the dead letters, oldest first, with their replays"))
def dlq_list(
    subject: str | None = typer.Option(None, "--subject", help=_h("只看此原主题（NATS 通配：ct.in.>）",
                                                                  "only those of this original subject (a NATS "
                                                                  "pattern: ct.in.>)")),
    format: Literal["table", "json"] = typer.Option("table", "--format"),  # noqa: A002
) -> None:
    _tool("dlq", dlq_command="list", subject=subject, format=format)


@dlq.command("replay", help=_h("以新 id 把死信重新发布到原主题", "republish dead letters to their original subject "
                                                               "under a fresh id"))
def dlq_replay(
    seq: int | None = typer.Argument(None, help=_h("死信在 CT_DLQ 中的序号（见 list）",
                                                   "the dead letter's sequence in CT_DLQ (see list)")),
    all: bool = typer.Option(False, "--all", help=_h("所有未重放的死信（配合 --subject：该主题的）",  # noqa: A002
                                                     "every dead letter not replayed yet (with --subject: of it)")),
    subject: str | None = typer.Option(None, "--subject", help=_h("配合 --all：只看此原主题",
                                                                  "with --all: only those of this original subject")),
    force: bool = typer.Option(False, "--force", help=_h("已重放过的也再重放", "replay even a dead letter replayed "
                                                                             "before")),
    format: Literal["table", "json"] = typer.Option("table", "--format"),  # noqa: A002
) -> None:
    _tool("dlq", dlq_command="replay", seq=seq, all=all, subject=subject, force=force, format=format)


notify = _sub("notify", "最终发送失败的消息：列出，以新的重试额度再发", "messages that failed for good: list them, send "
                                                                      "them again with a new budget")


def _notify(command: str, channel, since, ids, limit, json, yes=False) -> None:  # noqa: A002
    _tool("notify_ops", notify_command=command, channel=channel, since=since, ids=ids or [], limit=limit, json=json,
          yes=yes)


_CHANNEL = typer.Option(None, "--channel", help=_h("只看此渠道", "only this channel"))
_SINCE = typer.Option(None, "--since", parser=datetime.fromisoformat, metavar="ISO",
                      help=_h("只看此时间之后失败的（ISO 时间，带时区）", "only those failed since (ISO time, with zone)"))
_IDS = typer.Option(None, "--id", help=_h("只看此通知 id（可重复）", "only this notification id (repeatable)"))
_LIMIT = typer.Option(1000, "--limit")
_JSON = typer.Option(False, "--json", help=JSON_HELP)


@notify.command("failed", help=_h("列出最终发送失败的消息", "list the messages that failed for good"))
def notify_failed(channel: Literal["sms", "email", "wecom"] | None = _CHANNEL, since: datetime | None = _SINCE,
                  ids: list[str] | None = _IDS, limit: int = _LIMIT, json: bool = _JSON) -> None:
    _notify("failed", channel, since, ids, limit, json)


@notify.command("retry-failed", help=_h("以新的重试额度再发最终失败的消息", "send the messages that failed for good "
                                                                         "again, with a new retry budget"))
def notify_retry_failed(channel: Literal["sms", "email", "wecom"] | None = _CHANNEL, since: datetime | None = _SINCE,
                        ids: list[str] | None = _IDS, limit: int = _LIMIT, json: bool = _JSON,
                        yes: bool = typer.Option(False, "--yes", help=_h("确实重发（不加：只列出）",
                                                                        "retry them (without it: only list them)"))
                        ) -> None:
    _notify("retry-failed", channel, since, ids, limit, json, yes)


calendar = _sub("calendar", "国务院某年的放假安排：加载、查看；重排未到期的期限",
                "the State Council's schedule for a year: load, show; re-plan open deadlines")
_DRY_RUN = _h("只检查并显示变动，不保存", "check it and show the moves; store nothing")


@calendar.command("load", help=_h("检查某年的国务院安排，保存，并重排它移动的期限",
                                  "check a year's State Council schedule, store it, re-plan the deadlines it moves"))
def calendar_load(
    file: str = typer.Argument(..., help=_h("年度文件，YAML 或 JSON（见 services/escalation/calendars/"
                                            "2027.example.yaml）", "the year file, YAML or JSON (see "
                                            "services/escalation/calendars/2027.example.yaml)")),
    dry_run: bool = typer.Option(False, "--dry-run", help=_DRY_RUN),
    over_package: bool = typer.Option(False, "--over-package", help=_h(
        "chinese-calendar 已知的年份也加载（以文件为准）",
        "load a year chinese-calendar knows too (the file then wins for that year)")),
    json: bool = _JSON,
) -> None:
    _tool("calendar", calendar_command="load", file=file, dry_run=dry_run, over_package=over_package, json=json)


@calendar.command("show", help=_h("某一年：已加载、来自软件包或未知；放假日和调休上班日",
                                  "a year: loaded, package or unknown; its days off and make-up working days"))
def calendar_show(year: int = typer.Argument(...), json: bool = _JSON) -> None:
    _tool("calendar", calendar_command="show", year=year, json=json)


@calendar.command("replan", help=_h("按当前日历重排所有未到期的期限并显示差异",
                                    "re-plan every open deadline on the current calendar and print the diff"))
def calendar_replan(dry_run: bool = typer.Option(False, "--dry-run", help=_h("只显示差异，不做改动",
                                                                             "print the diff only; change nothing")),
                    json: bool = _JSON) -> None:
    _tool("calendar", calendar_command="replan", dry_run=dry_run, json=json)


@app.command(help=_h("故障场景（make chaos）：kill -9、中断和毒消息会丢失或重复什么",
                     "the fault scenarios (make chaos): what kill -9, outages and poison lose or double"))
def chaos(
    scenario: list[str] | None = typer.Option(None, "--scenario", help=_h("只运行这些（可重复）",
                                                                          "run only these (repeatable)")),
    calls: int | None = typer.Option(None, "--calls", help=_h("每个场景的呼叫数（默认：kill 2000，poison 300，其他 1000）",
                                                              "calls per scenario (default: kill 2000, poison 300, "
                                                              "others 1000)")),
    rate: float = typer.Option(25.0, "--rate", help=_h("每秒发布的呼叫数", "calls published per second")),
    out: Path | None = typer.Option(None, "--out", help=_h("JSON 文件（默认 docs/chaos/latest.json）",
                                                           "JSON file (default docs/chaos/latest.json)")),
    kill_every: float = typer.Option(3.0, "--kill-every", help=_h("两次 kill 之间的秒数（kill）",
                                                                  "seconds between kills (kill)")),
    pg_outage: float = typer.Option(10.0, "--pg-outage", help=_h("PostgreSQL 停止的秒数（postgres）",
                                                                 "seconds PostgreSQL stays stopped (postgres)")),
    nats_outage: float = typer.Option(5.0, "--nats-outage", help=_h("nats-server 停止的秒数（nats）",
                                                                    "seconds nats-server stays dead (nats)")),
    sms_outage: float = typer.Option(60.0, "--sms-outage", help=_h("短信网关返回 503 的秒数（sms）",
                                                                   "seconds the gateway answers 503 (sms)")),
    seed: int = typer.Option(11, "--seed"),
    keep: bool = typer.Option(False, "--keep", help=_h("保留每个场景的目录（日志、数据）",
                                                       "keep every scenario's folder (logs, data)")),
) -> None:
    from tools.chaos import DEFAULT_OUT, SCENARIOS

    _choose(scenario, sorted(SCENARIOS), "--scenario")
    _tool("chaos", "run_from_args", scenario=scenario, calls=calls, rate=rate, out=out or DEFAULT_OUT, kill_every=kill_every,
          pg_outage=pg_outage, nats_outage=nats_outage, sms_outage=sms_outage, seed=seed, keep=keep)


# --- the programme: follow-ups, survey, figures --------------------------------------------

followups = _sub("followups", "抽查回访：抽取某月，列出回访和与自评不符的", "follow-up visits (抽查回访): draw a month, "
                                                                          "list the calls and contradictions")


@followups.command("draw", help=_h("抽取某月的诉求做回访（同一月再抽：返回原抽样）",
                                   "draw a month's appeals for follow-up calls (the same month again: its draw)"))
def followups_draw(
    month: str = typer.Option(..., "--month", help="YYYY-MM"),
    share: float | None = typer.Option(None, "--share", help=_h("本月已办结诉求的抽取比例（默认：escalation.yaml）",
                                                                "share of the month's closed appeals (default: "
                                                                "escalation.yaml)")),
    seed: int | None = typer.Option(None, "--seed", help=_h("随机种子（默认随机，随抽样记录）",
                                                            "the seed (default: a random one, recorded with the draw)")),
    json: bool = _JSON,
) -> None:
    _tool("programme", command="followups", followups_command="draw", month=month, share=share, seed=seed, json=json)


@followups.command("list", help=_h("已抽取的诉求及其最近一次回访", "drawn appeals and their latest follow-up call"))
def followups_list(
    month: str | None = typer.Option(None, "--month", help=_h("YYYY-MM（默认：所有月份）", "YYYY-MM (default: every "
                                                                                         "month)")),
    contradicted: bool = typer.Option(False, "--contradicted", help=_h("只看与企业自评不符的", "only those "
                                                                       "contradicting the enterprise's own rating")),
    json: bool = _JSON,
) -> None:
    _tool("programme", command="followups", followups_command="list", month=month, contradicted=contradicted,
          json=json)


survey = _sub("survey", "第三方测评：导入某月的 CSV，要么全部要么全不", "third-party survey (第三方测评): import a CSV "
                                                                    "for a month, all rows or none")


@survey.command("import", help=_h("导入第三方测评 CSV（appeal_id,rating,comment,surveyor）：全部或全不",
                                  "import a third-party survey CSV (appeal_id,rating,comment,surveyor): all or none"))
def survey_import(file: str = typer.Argument(...),
                  month: str = typer.Option(..., "--month", help=_h("测评所评的月份 YYYY-MM",
                                                                   "YYYY-MM the survey evaluates"))) -> None:
    _tool("programme", command="survey", survey_command="import", file=file, month=month)


@survey.command("list", help=_h("已导入的测评文件", "the survey files imported"))
def survey_list(month: str | None = typer.Option(None, "--month")) -> None:
    _tool("programme", command="survey", survey_command="list", month=month)


@app.command(help=_h("一段时间内的项目主要数据（活动、出席、办结率、满意率）",
                     "the programme's headline figures over a period (events, attendances, 办结率, 满意率)"))
def figures(
    period_from: date = typer.Option(..., "--from", parser=date.fromisoformat, metavar="YYYY-MM-DD"),
    period_to: date = typer.Option(..., "--to", parser=date.fromisoformat, metavar="YYYY-MM-DD",
                                   help=_h("含当天", "included")),
    format: Literal["table", "json"] = typer.Option("table", "--format"),  # noqa: A002
) -> None:
    _tool("programme", command="figures", period_from=period_from, period_to=period_to, format=format)


@app.command(help=_h("写出契约的 AsyncAPI 文档", "write the AsyncAPI document of the contract"))
def docs(out: str = typer.Option("docs/asyncapi.json", "--out")) -> None:
    from tools.asyncapi import write_document

    print(f"wrote {write_document(Path(out))}")


# the help's groups, in both languages
PANELS = {
    _h("服务", "Services"): ("up", "run", "migrate", "demo", "docs"),
    _h("报表", "Reports"): ("report", "topics", "figures", "routing-eval"),
    _h("项目", "Programme"): ("followups", "survey", "calendar"),
    _h("运维", "Operations"): ("dlq", "notify", "chaos"),
}
_PANEL_OF = {name: panel for panel, names in PANELS.items() for name in names}
for _info in app.registered_commands:
    _info.rich_help_panel = _PANEL_OF.get(_info.name or _info.callback.__name__)  # a new one: "Commands"
for _info in app.registered_groups:
    _info.rich_help_panel = _PANEL_OF.get(_info.name)


def main(argv: list[str] | None = None) -> int:
    """Run the command line on ``argv`` (default: the process's); the exit status."""
    try:
        app(args=sys.argv[1:] if argv is None else argv, prog_name="coffeetime")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
