"""Data buckets beyond the store and the API: the work the server does with them in the
background (device-source feeds, exports, retention)."""
