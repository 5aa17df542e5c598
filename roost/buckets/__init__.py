"""Data buckets' background work: retention, exports and device feeds."""
