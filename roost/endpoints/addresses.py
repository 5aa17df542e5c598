"""Where an endpoint may connect: the SSRF guard.

Endpoint URLs are written by users, so the server must not become their way into its own
network. Whether an address is public is decided here, by an explicit table of the IANA
special-purpose address registries (IPv4 and IPv6), not by ``ipaddress.is_global``, whose
answers change between Python patch releases. Refused unless ``endpoints_allow_private`` is on
(tests, home networks):

- every block of the registries that is not globally reachable (loopback, private, shared,
  link-local, unique-local, site-local, documentation, benchmarking, IETF protocol assignments,
  local-use NAT64 ``64:ff9b:1::/48``, IPv4-compatible ``::/96``, SRv6 ``5f00::/16`` ...), the
  more specific entry winning (``192.0.0.9`` is reachable inside the refused ``192.0.0.0/24``);
- multicast, the reserved ``240.0.0.0/4`` and broadcast, and any IPv6 address outside the global
  unicast space ``2000::/3``;
- an IPv6 address that carries an IPv4 one (IPv4-mapped ``::ffff:0:0/96``, IPv4-translated
  ``::ffff:0:0:0/96``, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``, Teredo ``2001::/32``) whose
  IPv4 address (both, for Teredo) is refused.

The check is made on the addresses the host name resolves to (on a small thread pool of the
caller's, never the loop's default one), and the request is then sent to the address checked
(:mod:`roost.endpoints.http_request` pins it), so a name that resolves differently the second
time (DNS rebinding) gains nothing. A name with any refused address is refused as a whole; the
refusal does not say which address it found (that goes to the log, at DEBUG).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from concurrent.futures import Executor

from roost.errors import Forbidden, InvalidInput

log = logging.getLogger("roost.endpoints")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# (block, globally reachable): IANA IPv4 Special-Purpose Address Registry, and the rest of the
# IPv4 space that is not unicast (multicast, reserved, broadcast)
_IPV4_TABLE = (
    ("0.0.0.0/8", False),  # "this network"
    ("10.0.0.0/8", False),  # private
    ("100.64.0.0/10", False),  # shared address space (carrier-grade NAT)
    ("127.0.0.0/8", False),  # loopback
    ("169.254.0.0/16", False),  # link-local
    ("172.16.0.0/12", False),  # private
    ("192.0.0.0/24", False),  # IETF protocol assignments
    ("192.0.0.9/32", True),  # port control protocol anycast
    ("192.0.0.10/32", True),  # traversal using relays around NAT anycast
    ("192.0.2.0/24", False),  # documentation (TEST-NET-1)
    ("192.88.99.0/24", False),  # deprecated 6to4 relay anycast
    ("192.168.0.0/16", False),  # private
    ("198.18.0.0/15", False),  # benchmarking
    ("198.51.100.0/24", False),  # documentation (TEST-NET-2)
    ("203.0.113.0/24", False),  # documentation (TEST-NET-3)
    ("224.0.0.0/4", False),  # multicast
    ("240.0.0.0/4", False),  # reserved
    ("255.255.255.255/32", False),  # limited broadcast
)
# IANA IPv6 Special-Purpose Address Registry, and the rest of the IPv6 space that is not global
# unicast; the blocks that carry an IPv4 address are in _EMBEDDING, checked by that address
_IPV6_TABLE = (
    ("::/0", False),  # outside 2000::/3: reserved by the IETF, unique-local, link-local, ...
    ("2000::/3", True),  # global unicast
    ("::/96", False),  # IPv4-compatible (deprecated), :: and ::1 among them
    ("64:ff9b:1::/48", False),  # IPv4-IPv6 translation for local use
    ("100::/64", False),  # discard-only
    ("100:0:0:1::/64", False),  # dummy prefix
    ("2001::/23", False),  # IETF protocol assignments
    ("2001:1::1/128", True),  # port control protocol anycast
    ("2001:1::2/128", True),  # traversal using relays around NAT anycast
    ("2001:1::3/128", True),  # DNS-SD service registration protocol anycast
    ("2001:2::/48", False),  # benchmarking
    ("2001:3::/32", True),  # automatic multicast tunneling
    ("2001:4:112::/48", True),  # AS112-v6
    ("2001:10::/28", False),  # ORCHID (deprecated)
    ("2001:20::/28", True),  # ORCHIDv2
    ("2001:30::/28", True),  # drone remote ID protocol entity tags
    ("2001:db8::/32", False),  # documentation
    ("3fff::/20", False),  # documentation
    ("5f00::/16", False),  # segment routing (SRv6) SIDs
    ("fc00::/7", False),  # unique-local
    ("fe80::/10", False),  # link-local
    ("fec0::/10", False),  # site-local (deprecated)
    ("ff00::/8", False),  # multicast
)


def _table(rows: tuple[tuple[str, bool], ...]) -> list[tuple[Network, bool]]:
    """The rows as networks, most specific first (the first that holds an address decides)."""
    parsed = [(ipaddress.ip_network(block), reachable) for block, reachable in rows]
    return sorted(parsed, key=lambda row: -row[0].prefixlen)


_IPV4 = _table(_IPV4_TABLE)
_IPV6 = _table(_IPV6_TABLE)
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
_TEREDO = ipaddress.IPv6Network("2001::/32")


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address] | None:
    """The IPv4 addresses an IPv6 address carries (mapped, translated, NAT64, 6to4: one;
    Teredo: its server and its client), or None when it is not of such a form."""
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _MAPPED or address in _TRANSLATED or address in _NAT64:
        return [low32]
    if address in _SIX_TO_FOUR:
        return [ipaddress.IPv4Address((int(address) >> 80) & 0xFFFFFFFF)]
    if address in _TEREDO:
        server = ipaddress.IPv4Address((int(address) >> 64) & 0xFFFFFFFF)
        client = ipaddress.IPv4Address(~int(address) & 0xFFFFFFFF)
        return [server, client]
    return None


def _reachable(address: IPAddress, table: list[tuple[Network, bool]]) -> bool:
    for network, reachable in table:
        if address in network:
            return reachable
    return True  # IPv4 outside every block (the IPv6 table covers all: ::/0)


def is_public(address: IPAddress) -> bool:
    """Whether an address may be called with ``endpoints_allow_private`` off."""
    if isinstance(address, ipaddress.IPv4Address):
        return _reachable(address, _IPV4)
    inner = embedded_ipv4(address)
    if inner is not None:
        return all(_reachable(ipv4, _IPV4) for ipv4 in inner)
    return _reachable(address, _IPV6)


async def checked_address(
    host: str, port: int, allow_private: bool, executor: Executor | None = None
) -> str:
    """The address to connect to for ``host``: a literal as it is, else the first the name
    resolves to (looked up on ``executor``). Raises Forbidden when an address is refused,
    InvalidInput for a name that cannot be one, OSError (``socket.gaierror``) when the name does
    not resolve."""
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        found = [literal]
    else:
        found = await _resolve(host, port, executor)
    if not allow_private:
        for address in found:
            if not is_public(address):
                log.debug("endpoint host %r: %s is not public", host, address)
                said = "is" if literal is not None else "resolves to"
                raise Forbidden(
                    f"{host!r} {said} an address that is not public;"
                    " set endpoints_allow_private to call it"
                )
    return str(found[0])


async def _resolve(host: str, port: int, executor: Executor | None) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.run_in_executor(
            executor, socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM
        )
    except UnicodeError:  # a label IDNA cannot encode: empty, or too long
        raise InvalidInput(f"{host[:300]!r} is not a valid host name") from None
    found = [ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in infos]
    if not found:
        raise socket.gaierror(f"{host!r} has no address")
    return found
