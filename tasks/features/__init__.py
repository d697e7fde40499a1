"""features tasks."""
