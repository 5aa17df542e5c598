"""Data buckets beyond the store and the API: the work that runs in the background."""
