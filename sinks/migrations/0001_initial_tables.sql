-- The tables of modelmon. ${ttl_days} is the retention in days, filled in by `modelmon migrate`.
-- ReplacingMergeTree: rows with the same ORDER BY key are one logical row (the highest version,
-- or the last inserted); read with FINAL so a replayed write never counts twice.
-- TTLs are on the DateTime64 columns themselves (ClickHouse >= 25.7): toDateTime() would wrap
-- timestamps after 2106 into the past, and the rows would be dropped as expired.

CREATE TABLE IF NOT EXISTS metric_points
(
    model_id      LowCardinality(String),
    model_version LowCardinality(String),
    segment       LowCardinality(String),
    metric        LowCardinality(String),
    feature       LowCardinality(String),
    window_start  DateTime64(3, 'UTC'),
    window_end    DateTime64(3, 'UTC'),
    source        LowCardinality(String),
    value         Float64,
    details       String COMMENT 'JSON object',
    revision      UInt64,
    emitted_at    DateTime64(3, 'UTC'),
    inserted_at   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(revision)
PARTITION BY toYYYYMM(window_start)
ORDER BY (model_id, metric, feature, segment, model_version, window_start, source)
TTL window_start + INTERVAL ${ttl_days} DAY
SETTINGS ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS dead_letters
(
    ts          DateTime64(3, 'UTC'),
    topic       LowCardinality(String),
    partition   Int32 COMMENT '-1 if unknown',
    offset      Int64 COMMENT '-1 if unknown',
    key         Nullable(String),
    payload     String,
    reason      String,
    error_type  LowCardinality(String),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
-- The payload hash keeps apart letters without Kafka coordinates (partition = offset = -1).
ORDER BY (topic, partition, offset, error_type, cityHash64(payload))
TTL ts + INTERVAL ${ttl_days} DAY
SETTINGS ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS alerts
(
    alert_id      String,
    dedup_key     String,
    model_id      LowCardinality(String),
    model_version LowCardinality(String),
    rule          LowCardinality(String),
    state         LowCardinality(String),
    severity      LowCardinality(String),
    metric        LowCardinality(String),
    feature       LowCardinality(String),
    segment       LowCardinality(String),
    value         Float64,
    threshold     Float64,
    window_start  DateTime64(3, 'UTC'),
    window_end    DateTime64(3, 'UTC'),
    message       String,
    ts            DateTime64(3, 'UTC'),
    inserted_at   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (model_id, dedup_key, ts, state)
TTL ts + INTERVAL ${ttl_days} DAY
SETTINGS ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS retrain_requests
(
    request_id      String,
    idempotency_key String,
    model_id        LowCardinality(String),
    model_version   LowCardinality(String),
    reason          String,
    evidence        String COMMENT 'JSON array',
    alert_ids       Array(String),
    requested_at    DateTime64(3, 'UTC'),
    inserted_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(requested_at)
ORDER BY (model_id, idempotency_key)
TTL requested_at + INTERVAL ${ttl_days} DAY
SETTINGS ttl_only_drop_parts = 1;

-- Reference distributions of features, written when a model is registered; never expire.
CREATE TABLE IF NOT EXISTS reference_profiles
(
    model_id      LowCardinality(String),
    model_version LowCardinality(String),
    feature       LowCardinality(String),
    profile       String COMMENT 'JSON object',
    created_at    DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(created_at)
ORDER BY (model_id, model_version, feature);
