"""omnitalker: training."""
