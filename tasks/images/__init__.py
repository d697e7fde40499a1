"""images tasks."""
