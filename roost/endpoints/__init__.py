"""Endpoints (thinger-api.md 2.11): outgoing calls a user defines, triggered by the API and by
the user's devices, delivered by a bounded background worker (:mod:`roost.endpoints.delivery`)."""
