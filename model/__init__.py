"""omnitalker: model."""
