"""Roost: a self-hosted IoT server compatible with the Thinger.io device protocols and REST API."""

__version__ = "0.1.0"
