"""The benchmark (``make bench`` / ``python -m bench``): the real pipeline, measured.

Not a test: it asserts nothing. It runs the four services as separate processes
on the embedded servers (or ``NATS_URL`` / ``DATABASE_URL``), drives them with
hotline calls, measures throughput, latency, the escalation scanner under a
million open deadlines, the services' memory and the raw speed of NATS and
PostgreSQL on the same servers, then writes ``bench/results/<UTC time>.json``
and prints a table beside the targets.

Modules: :mod:`bench.stack` (the stack, the local SMS/robot sink and mail sink),
:mod:`bench.traffic` (calls, publisher, observers), :mod:`bench.pipeline`
(throughput and latency phases), :mod:`bench.baselines` (raw nats-py and
asyncpg), :mod:`bench.deadlines` (the escalation scanner), :mod:`bench.memory`
(resident memory), :mod:`bench.machine` and :mod:`bench.report`.
"""
