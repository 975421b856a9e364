"""Ingest benchmark: events per CPU-second, islets-ingester vs DuckDB, same input.

Both turn the same NDJSON file of SNS envelopes into zstd Parquet with the archive's
columns. islets-ingester also validates every payload against its JSON Schema, extracts
trace ids, writes bloom filters and partitions by hour; DuckDB does the plain
JSON -> Parquet job. CPU time is user + system of the child process (getrusage), so the
figures do not depend on how many cores each tool uses.

usage: python bench/ingest.py INGESTER INPUT.ndjson EVENTS_DIR [RUNS] [live|backfill]

Shapes: `live` rewrites every envelope's SNS Timestamp into one hour (what the audit queue
delivers: a flush writes one or two files); `backfill` keeps the generated month (a flush
writes a file per hour it touches, and DuckDB partitions its output by date and hour too).

The input must hold only SNS envelopes (islets-audit generate --poison 0): DuckDB's JSON
functions abort on a non-JSON Message, where islets-ingester quarantines it.
"""
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import duckdb  # noqa: F401  (imported here so a missing install fails early)

ingester, input_path, events_dir = sys.argv[1:4]
runs = int(sys.argv[4]) if len(sys.argv) > 4 else 3
# e.g. ISLETS_BENCH_ENV=MIMALLOC_PURGE_DELAY=1000 for the ingester's allocator setting
EXTRA_ENV = dict(item.split("=", 1) for item in os.environ.get("ISLETS_BENCH_ENV", "").split() if "=" in item)
shape = sys.argv[5] if len(sys.argv) > 5 else "live"
if shape == "live":
    live_path = os.path.join(tempfile.mkdtemp(prefix="islets-bench-input-"), "live.ndjson")
    with open(input_path) as source, open(live_path, "w") as target:
        for index, line in enumerate(source):
            envelope = json.loads(line)
            millis = index * 3_600_000 // 200_000
            envelope["Timestamp"] = "2026-11-23T16:%02d:%02d.%03dZ" % (
                millis // 60_000 % 60, millis // 1000 % 60, millis % 1000)
            target.write(json.dumps(envelope, ensure_ascii=False, separators=(",", ":")) + "\n")
    input_path = live_path
messages = sum(1 for line in open(input_path, "rb") if line.strip())

DUCKDB_JOB = r"""
import duckdb, sys
duckdb.sql(f'''
COPY (
  SELECT
    coalesce(json_extract_string(Message, '$.event_id'), MessageId) AS event_id,
    MessageAttributes->'$.event_type'->>'$.Value' AS event_type,
    MessageAttributes->'$.aggregate'->>'$.Value' AS aggregate,
    MessageAttributes->'$.schema_version'->>'$.Value' AS schema_version,
    MessageAttributes->'$.producer_system'->>'$.Value' AS producer_system,
    json_extract_string(Message, '$.correlation_id') AS correlation_id,
    MessageAttributes->'$.traceparent'->>'$.Value' AS traceparent,
    try_cast(json_extract_string(Message, '$.timestamp') AS TIMESTAMPTZ) AS occurred_at,
    try_cast("Timestamp" AS TIMESTAMPTZ) AS published_at,
    now() AS ingested_at,
    TopicArn AS topic_arn,
    MessageId AS sns_message_id,
    CAST(MessageAttributes AS VARCHAR) AS attributes,
    Message AS payload,
    strftime(try_cast("Timestamp" AS TIMESTAMPTZ), '%Y-%m-%d') AS date,
    strftime(try_cast("Timestamp" AS TIMESTAMPTZ), '%H') AS hour
  FROM read_json('{sys.argv[1]}', format = 'newline_delimited', ignore_errors = true,
                 columns = {{Type: 'VARCHAR', MessageId: 'VARCHAR', TopicArn: 'VARCHAR',
                            Message: 'VARCHAR', "Timestamp": 'VARCHAR', MessageAttributes: 'JSON'}})
) TO '{sys.argv[2]}' (FORMAT parquet, COMPRESSION zstd{sys.argv[3]})
''')
"""


def run(command):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "RUST_LOG": "warn", **EXTRA_ENV})
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def best(label, make_command):
    results = []
    for _ in range(runs):
        out = tempfile.mkdtemp(prefix="islets-bench-")
        try:
            results.append(run(make_command(out)))
        finally:
            shutil.rmtree(out, ignore_errors=True)
    cpu, wall = min(results)
    return {"tool": label, "cpu_seconds": round(cpu, 3), "wall_seconds": round(wall, 3),
            "events_per_cpu_second": round(messages / cpu)}


baseline = run([sys.executable, "-c", "import duckdb"])[0]
islets = best("islets-ingester", lambda out: [
    ingester, "--source", "file", "--input", input_path, "--store", out,
    "--events-dir", events_dir, "--log-format", "text"])
partitioning = ", PARTITION_BY (date, hour)" if shape == "backfill" else ""
duck = best("duckdb", lambda out: [sys.executable, "-c", DUCKDB_JOB, input_path,
                                   os.path.join(out, "events" if partitioning else "out.parquet"), partitioning])
duck["cpu_seconds"] = round(duck["cpu_seconds"] - baseline, 3)  # without Python + import duckdb
duck["events_per_cpu_second"] = round(messages / duck["cpu_seconds"])
print(json.dumps({"shape": shape, "messages": messages, "input_bytes": os.path.getsize(input_path),
                  "runs": runs, "results": [islets, duck],
                  "ratio": round(islets["events_per_cpu_second"] / duck["events_per_cpu_second"], 2)}, indent=2))
