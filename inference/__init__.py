"""omnitalker: inference -- generation and rendering entry points (applications; docs/architecture.md)."""
