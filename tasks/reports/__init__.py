"""Reports of studies and sweeps: the Parquet tables (``tables``) and the plots (``plots``)."""
