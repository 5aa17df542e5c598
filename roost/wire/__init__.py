"""Pure, sans-IO codecs for the device protocols: bytes in, messages out, and back.

Nothing in this package touches a socket, a clock or a logger, and the only exception its
decoders raise is :class:`roost.errors.DecodeError`.
"""
