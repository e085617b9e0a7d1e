-- Per-window totals of a metric summed over its sources (e.g. input partitions), deduplicated.
-- Only meaningful for additive metrics (counts such as 'events'); for others read metric_points.
CREATE VIEW IF NOT EXISTS metric_totals AS
SELECT
    model_id,
    model_version,
    segment,
    metric,
    feature,
    window_start,
    window_end,
    sum(value) AS value,
    count() AS sources
FROM metric_points FINAL
GROUP BY model_id, model_version, segment, metric, feature, window_start, window_end;
