CREATE EXTERNAL TABLE IF NOT EXISTS `islets_audit`.`events` (
  `event_id` string COMMENT 'Payload event_id; else the SNS MessageId; else (raw delivery) the SQS MessageId',
  `event_type` string COMMENT 'event_type message attribute (e.g. sold)',
  `aggregate` string COMMENT 'aggregate message attribute (e.g. listing)',
  `schema_version` string COMMENT 'schema_version message attribute (semantic version)',
  `producer_system` string COMMENT 'producer_system message attribute',
  `correlation_id` string COMMENT 'Payload correlation_id, else the correlation_id attribute',
  `trace_id` string COMMENT 'Payload trace_id, else the trace_id attribute, else the trace id of traceparent',
  `traceparent` string COMMENT 'W3C traceparent (attribute, else payload), kept verbatim',
  `occurred_at` timestamp COMMENT 'Payload timestamp: when the event happened (UTC, ms)',
  `published_at` timestamp COMMENT 'SNS Timestamp, else SQS SentTimestamp, else ingested_at (UTC, ms); partitions the table',
  `ingested_at` timestamp COMMENT 'When the ingester received the message (UTC, ms)',
  `topic_arn` string COMMENT 'SNS TopicArn (envelope delivery only)',
  `sns_message_id` string COMMENT 'SNS MessageId (envelope delivery only)',
  `sqs_message_id` string COMMENT 'SQS MessageId of the delivery',
  `delivery` string COMMENT 'sns-envelope or raw',
  `ingest_source` string COMMENT 'sqs, http or file',
  `attributes` map<string,struct<data_type:string,value:string>> COMMENT 'All message attributes: name -> {data_type, value}; binary values base64 as SNS delivers them',
  `payload` string COMMENT 'The message exactly as published',
  `schema_valid` boolean COMMENT 'Whether the payload passed its JSON Schema (and the message carried the standard attributes)',
  `schema_error` string COMMENT 'Why schema_valid is false',
  `payload_ciphertext` binary COMMENT 'Reserved for sensitive data: the original payload encrypted with its subject\'s key (payload then holds the tokenized form)',
  `encryption_key_id` string COMMENT 'Reserved for sensitive data: id of the key payload_ciphertext is encrypted with'
)
COMMENT 'One row per archived event message (duplicates from SQS redelivery share event_id). Partitioned by the UTC hour of published_at.'
PARTITIONED BY (
  `date` string COMMENT 'UTC date of published_at (yyyy-MM-dd)',
  `hour` string COMMENT 'UTC hour of published_at (00-23)'
)
ROW FORMAT SERDE 'org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe'
STORED AS INPUTFORMAT 'org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat'
OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat'
LOCATION 's3://${BucketName}/islets/events/'
TBLPROPERTIES (
  'classification'='parquet',
  'projection.date.format'='yyyy-MM-dd',
  'projection.date.interval'='1',
  'projection.date.interval.unit'='DAYS',
  'projection.date.range'='2025-01-01,NOW',
  'projection.date.type'='date',
  'projection.enabled'='true',
  'projection.hour.type'='enum',
  'projection.hour.values'='00,01,02,03,04,05,06,07,08,09,10,11,12,13,14,15,16,17,18,19,20,21,22,23',
  'storage.location.template'='s3://${BucketName}/islets/events/date=${date}/hour=${hour}/'
);
