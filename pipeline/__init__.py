"""omnitalker: pipeline."""
