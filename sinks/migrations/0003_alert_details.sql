-- Alert rule context (op, for, thresholds, the windows and values it was decided on, notify,
-- group_key) as a JSON object; rows written before this migration read as '{}'.
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS details String DEFAULT '{}' COMMENT 'JSON object' AFTER message;
