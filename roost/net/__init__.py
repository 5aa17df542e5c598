"""Thin asyncio listeners: bytes from sockets into the sans-IO decoders and device sessions."""
