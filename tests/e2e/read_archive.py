"""Independent reader: downloads an archive from S3 (boto3) and reads it with DuckDB and
pyarrow, Hive partitioning on. Prints one JSON line per event row.

usage: read_archive.py ENDPOINT BUCKET PREFIX
"""
import json
import os
import sys
import tempfile

import boto3
import duckdb
import pyarrow.dataset as ds

endpoint, bucket, prefix = sys.argv[1:4]
s3 = boto3.client(
    "s3",
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="testing",
    aws_secret_access_key="testing",
)
root = tempfile.mkdtemp()
paginator = s3.get_paginator("list_objects_v2")
for page in paginator.paginate(Bucket=bucket, Prefix=prefix + "/events/"):
    for obj in page.get("Contents", []):
        relative = obj["Key"][len(prefix) + 1 :]
        target = os.path.join(root, relative)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        s3.download_file(bucket, obj["Key"], target)

pattern = os.path.join(root, "events", "*", "*", "*.parquet")
rows = duckdb.sql(
    f"""SELECT event_id, payload, CAST(date AS VARCHAR) AS date, hour,
               strftime(published_at AT TIME ZONE 'UTC', '%Y-%m-%d') AS published_date,
               strftime(published_at AT TIME ZONE 'UTC', '%H') AS published_hour,
               map_keys(attributes) AS attribute_names
        FROM read_parquet('{pattern}', hive_partitioning = true)"""
).fetchall()
table = ds.dataset(os.path.join(root, "events"), format="parquet", partitioning="hive").to_table(
    columns=["event_id"]
)
if table.num_rows != len(rows):
    sys.exit(f"pyarrow read {table.num_rows} rows, duckdb {len(rows)}")
for event_id, payload, date, hour, published_date, published_hour, names in rows:
    print(
        json.dumps(
            {
                "event_id": event_id,
                "payload": payload,
                "partition_matches_published_at": date == published_date
                and int(hour) == int(published_hour),
                "attribute_names": sorted(names),
            }
        )
    )
