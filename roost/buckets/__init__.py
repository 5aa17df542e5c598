"""Data buckets beyond their API: what the server does with them on its own."""
