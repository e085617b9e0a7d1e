"""The chaos suite: failure scenarios against the real broker, workers, sink and ClickHouse (`make chaos`)."""
