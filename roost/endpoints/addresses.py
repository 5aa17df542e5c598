"""Where an endpoint may connect: the SSRF guard.

Endpoint URLs are written by users, so the server must not become their way into its own
network: an address that is not global (loopback, private, link-local, unique-local, shared,
multicast, unspecified, reserved, documentation ...: anything ``ipaddress`` does not call
global), or an IPv6 address that embeds such an IPv4 one (``::ffff:127.0.0.1``, ``2002::/16``,
``64:ff9b::/96``), is refused unless ``endpoints_allow_private`` is on (tests, home networks).

The check is made on the addresses the host name resolves to, and the request is then sent to
the address checked (:mod:`roost.endpoints.http_request` pins it), so a name that resolves
differently the second time (DNS rebinding) gains nothing. A name with any refused address is
refused as a whole.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from roost.errors import Forbidden, InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: IPAddress) -> bool:
    """Whether an address is global, and so is any IPv4 address it embeds."""
    inner = embedded_ipv4(address)
    if inner is not None and not is_public(inner):
        return False
    return address.is_global and not address.is_multicast


async def checked_address(host: str, port: int, allow_private: bool) -> str:
    """The address to connect to for ``host``: a literal as it is, else the first the name
    resolves to. Raises Forbidden when an address is refused, InvalidInput for a name that
    cannot be one, OSError (``socket.gaierror``) when the name does not resolve."""
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        found = [literal]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except UnicodeError:  # a label IDNA cannot encode: empty, or too long
            raise InvalidInput(f"{host[:300]!r} is not a valid host name") from None
        found = [ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in infos]
        if not found:
            raise socket.gaierror(f"{host!r} has no address")
    if not allow_private:
        for address in found:
            if not is_public(address):
                raise Forbidden(
                    f"{host!r} is (or resolves to) {address}, an address that is not public;"
                    " set endpoints_allow_private to call it"
                )
    return str(found[0])
