"""tabular tasks: vector data from a CSV or Parquet table (book ch. 3.5-3.6, 4.4)."""
