"""Storage: the typed ``Store`` interface and its records (``base``), and the implementations.

``sqlite.SQLiteStore`` is the embedded default; import it from ``roost.store.sqlite``.
"""

from roost.store.base import AccessToken, Device, DeviceToken, RefreshToken, Store, User

__all__ = ["AccessToken", "Device", "DeviceToken", "RefreshToken", "Store", "User"]
