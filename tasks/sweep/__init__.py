"""sweep tasks."""
