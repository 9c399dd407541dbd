"""``omnitalker eval``: the evaluation harness (held-out clips, metrics, table)."""
