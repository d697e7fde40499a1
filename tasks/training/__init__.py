"""training tasks."""
