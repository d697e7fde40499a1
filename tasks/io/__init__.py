"""io tasks."""
