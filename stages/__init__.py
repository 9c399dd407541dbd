"""omnitalker: stages."""
