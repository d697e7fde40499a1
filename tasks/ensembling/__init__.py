"""ensembling tasks."""
