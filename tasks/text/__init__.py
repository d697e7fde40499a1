"""text tasks."""
