"""omnitalker: core -- config overlays and file access that every layer uses."""
