"""Storage: the typed ``Store`` interface and its records (``base``), and the implementations.

``sqlite.SQLiteStore`` is the embedded default; import it from ``roost.store.sqlite``.
"""

from roost.store.base import Device, DeviceToken, RefreshToken, Store, User

__all__ = ["Device", "DeviceToken", "RefreshToken", "Store", "User"]
