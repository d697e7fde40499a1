"""weather tasks."""
