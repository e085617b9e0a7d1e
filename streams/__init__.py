"""The faust-streaming app: topics, agents, tables, the join and the windowing."""
