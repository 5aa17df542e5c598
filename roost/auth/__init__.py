"""Credentials and tokens: password hashing and JWT issue/verify, as pure functions."""
