"""Alert rules and their lifecycle, retrain policy, retrain events (issue #5)."""
