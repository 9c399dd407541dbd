"""Tests of the shard-inspection dashboard (dashboards/)."""
