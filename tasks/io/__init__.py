"""File-format helpers shared by the readers of every domain (CSV line finding, label
spellings)."""
