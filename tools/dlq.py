"""``coffeetime dlq list|replay``: the dead letters of stream CT_DLQ, and their replay to the original subject, once.

A dead letter (shared/bus.py ``ConsumerGroup.dead_letter``) is the failed message's
body on ``ct.dlq.<service>.<original subject>``, with the headers
``Ct-Original-Subject``, ``Ct-Original-Msg-Id``, ``Ct-Deliveries`` and ``Ct-Error``.
Republishing it with its original ``Nats-Msg-Id`` does nothing within the stream's
duplicate window (JetStream drops it as a duplicate), so a replay carries a fresh id:

- ``dlq-replay-<dlq seq>-<n>`` for the n-th replay of that dead letter, with
  ``Ct-Replay-Of: <dlq seq>`` and the original id in ``Ct-Original-Msg-Id``;
- each replay is recorded in CT_DLQ itself, on ``ct.dlq.replayed.<dlq seq>`` (the
  audit trail stays beside the dead letter and expires with it); a dead letter with a
  record is not replayed again unless ``--force`` (then under the next n).

The record is written after the replay is stored. A replay interrupted between the
two is repeated under the same id, which JetStream drops as a duplicate within its
window (10 minutes); after that the handlers' own idempotency (unique source ids)
keeps a second copy from doing anything twice.

Runs as the NATS ``admin`` user of deploy/nats/nats.conf (NATS_URL, NATS_USER,
NATS_PASSWORD or NATS_CREDS): it reads CT_DLQ and publishes to the original subjects.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from nats.js.errors import NotFoundError

from shared.contracts.subjects import DLQ_PREFIX, STREAM_DLQ, subject_matches
from tools import term

REPLAYED = f"{DLQ_PREFIX}.replayed"  # ct.dlq.replayed.<dlq seq>: the record of a replay


@dataclass
class Replay:
    """One replay of a dead letter: the id it was published under, where it was stored, when."""

    msg_id: str
    stream: str
    seq: int
    at: str


@dataclass
class DeadLetter:
    seq: int
    subject: str
    time: str
    service: str
    original_subject: str
    original_msg_id: str
    deliveries: int
    error: str
    size: int
    replays: list[Replay] = field(default_factory=list)
    data: bytes = field(default=b"", repr=False)

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        del out["data"]
        return out


@dataclass
class ReplayOutcome:
    seq: int
    replayed: bool
    detail: str
    replay: Replay | None = None


def replay_msg_id(dead_letter_seq: int, n: int) -> str:
    """The fresh, deterministic ``Nats-Msg-Id`` of the n-th replay: a repeated attempt is a duplicate."""
    return f"dlq-replay-{dead_letter_seq}-{n}"


def _dead_letter(msg) -> DeadLetter:
    headers = msg.headers or {}
    service = msg.subject.split(".")[2] if msg.subject.count(".") >= 2 else ""
    original = headers.get("Ct-Original-Subject") or msg.subject.removeprefix(f"{DLQ_PREFIX}.{service}.")
    return DeadLetter(
        seq=msg.seq, subject=msg.subject, time=msg.time.isoformat() if msg.time else "", service=service,
        original_subject=original, original_msg_id=headers.get("Ct-Original-Msg-Id", ""),
        deliveries=int(headers.get("Ct-Deliveries") or 0), error=headers.get("Ct-Error", ""),
        size=len(msg.data or b""), data=msg.data or b"",
    )


async def dead_letters(js, subject: str | None = None) -> list[DeadLetter]:
    """Every dead letter in CT_DLQ (oldest first) with its replays; ``subject`` filters on the original subject."""
    letters: dict[int, DeadLetter] = {}
    replays: list[tuple[int, Replay]] = []
    seq = 1
    while True:
        try:
            msg = await js.get_msg(STREAM_DLQ.name, seq=seq, subject=f"{DLQ_PREFIX}.>", next=True)
        except NotFoundError:
            break
        if msg.subject.startswith(f"{REPLAYED}."):
            record = json.loads(msg.data)
            replays.append((int(record["dead_letter_seq"]), Replay(record["msg_id"], record["stream"],
                                                                    int(record["seq"]), record["at"])))
        else:
            letters[msg.seq] = _dead_letter(msg)
        seq = msg.seq + 1
    for of, replay in replays:
        if of in letters:
            letters[of].replays.append(replay)
    return [d for d in letters.values() if subject is None or subject_matches(subject, d.original_subject)]


async def replay(js, letter: DeadLetter, force: bool = False) -> ReplayOutcome:
    """Republish ``letter`` to its original subject under a fresh id, and record it; once, unless ``force``."""
    if letter.replays and not force:
        return ReplayOutcome(letter.seq, False, f"already replayed as {letter.replays[-1].msg_id} (--force replays again)")
    n = len(letter.replays) + 1
    msg_id = replay_msg_id(letter.seq, n)
    headers = {"Nats-Msg-Id": msg_id, "Ct-Replay-Of": str(letter.seq), "Ct-Original-Msg-Id": letter.original_msg_id}
    ack = await js.publish(letter.original_subject, letter.data, headers=headers)
    done = Replay(msg_id, ack.stream, ack.seq, datetime.now(UTC).isoformat())
    record = {"dead_letter_seq": letter.seq, **asdict(done)}
    await js.publish(f"{REPLAYED}.{letter.seq}", json.dumps(record).encode(),
                     headers={"Nats-Msg-Id": f"dlq-replayed-{letter.seq}-{n}"}, stream=STREAM_DLQ.name)
    letter.replays.append(done)
    return ReplayOutcome(letter.seq, True, f"replayed to {letter.original_subject} as {msg_id} ({ack.stream} #{ack.seq})",
                         done)


# --- the command ---------------------------------------------------------------------------


HEADERS = ("seq", "time", "service", "original subject", "original msg id", "deliveries", "replays", "error")


def _rows(letters: list[DeadLetter], error_width: int | None = 60) -> list[tuple[str, ...]]:
    return [(str(d.seq), d.time[:19], d.service, d.original_subject, d.original_msg_id or "-", str(d.deliveries),
             str(len(d.replays)), d.error[:error_width]) for d in letters]


def table(letters: list[DeadLetter]) -> str:
    rows = [HEADERS, *_rows(letters)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines + [f"{len(letters)} dead letter(s)"])


async def run(args: argparse.Namespace) -> int:
    from shared.bus import connect
    from shared.settings import Settings

    settings = Settings()
    if not settings.nats_url:
        print("set NATS_URL (and NATS_USER=admin, NATS_PASSWORD) to the NATS holding CT_DLQ", file=sys.stderr)
        return 2
    nc = await connect(settings.nats_url, "coffeetime-dlq", **settings.nats_connect_options())
    try:
        js = nc.jetstream()
        if args.dlq_command == "list":
            letters = await dead_letters(js, args.subject)
            if args.format == "json":
                print(json.dumps([d.as_json() for d in letters], ensure_ascii=False, indent=2))
            elif sys.stdout.isatty():  # at a terminal: the whole error, wrapped to its width
                term.print_table(HEADERS, _rows(letters, None), caption=f"{len(letters)} dead letter(s)", right=(0, 5, 6))
            else:
                print(table(letters))
            return 0
        if args.seq is None and not args.all:
            print("name a dead letter's seq, or --all", file=sys.stderr)
            return 2
        letters = await dead_letters(js, args.subject if args.all else None)
        chosen = letters if args.all else [d for d in letters if d.seq == args.seq]
        if not chosen and not args.all:
            print(f"no dead letter #{args.seq} in {STREAM_DLQ.name}", file=sys.stderr)
            return 1
        outcomes = [await replay(js, d, force=args.force) for d in chosen]
        if args.format == "json":
            print(json.dumps([asdict(o) for o in outcomes], ensure_ascii=False, indent=2))
        else:
            for o in outcomes:
                print(f"#{o.seq}: {o.detail}")
            print(f"{sum(o.replayed for o in outcomes)} replayed, {sum(not o.replayed for o in outcomes)} skipped")
        return 0
    finally:
        await nc.close()


def main(args: argparse.Namespace) -> int:
    return asyncio.run(run(args))
