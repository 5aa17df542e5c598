"""Device sessions: authentication, requests in flight, stats, the live registry."""
