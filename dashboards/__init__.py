"""omnitalker: dashboards."""
