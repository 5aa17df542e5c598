"""PendingConnections alone: who is refused, who is evicted, and the descriptor share."""

from __future__ import annotations

import resource

from roost.net.http_admission import PendingConnections, descriptor_share, raise_descriptor_limit


class Connection:
    def __init__(self) -> None:
        self.evicted = False

    def evict(self) -> None:
        self.evicted = True


def test_the_oldest_makes_room_and_a_released_one_is_not_evicted() -> None:
    pending = PendingConnections(limit=3, per_address=0)
    first, second, third, fourth = (Connection() for _ in range(4))
    for n, connection in enumerate((first, second, third)):
        assert pending.admit(connection, f"10.0.0.{n}")
    pending.release(first)  # its request arrived
    assert pending.admit(fourth, "10.0.0.9")
    assert pending.admit(Connection(), "10.0.0.9")
    assert not first.evicted and second.evicted and not third.evicted
    assert len(pending) == 3


def test_an_address_over_its_share_is_refused_and_ipv6_counts_by_its_64() -> None:
    pending = PendingConnections(limit=100, per_address=2)
    assert pending.admit(Connection(), "2001:db8::1")
    assert pending.admit(Connection(), "2001:db8::2")
    assert not pending.admit(Connection(), "2001:db8::ffff:1")  # the same /64
    assert pending.admit(Connection(), "2001:db8:0:1::1")  # another one
    assert pending.admit(Connection(), "192.0.2.1")


def test_a_listed_proxy_has_no_share_of_its_own() -> None:
    pending = PendingConnections(limit=100, per_address=1, proxies=("10.0.0.0/8",))
    assert all(pending.admit(Connection(), "10.1.2.3") for _ in range(5))
    assert pending.admit(Connection(), "192.0.2.1")
    assert not pending.admit(Connection(), "192.0.2.1")


def test_admitting_twice_counts_once() -> None:
    pending = PendingConnections(limit=2, per_address=0)
    connection = Connection()
    assert pending.admit(connection, "192.0.2.1") and pending.admit(connection, "192.0.2.1")
    assert len(pending) == 1
    pending.release(connection)
    pending.release(connection)
    assert len(pending) == 0


def test_pending_connections_take_at_most_a_quarter_of_the_descriptors() -> None:
    assert descriptor_share(1000, 256) == 64
    assert descriptor_share(10, 256) == 10
    assert descriptor_share(0, 20_000) == 5000
    assert descriptor_share(1000, 2) == 1


def test_the_descriptor_limit_is_raised_to_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        if hard != resource.RLIM_INFINITY:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, hard // 2), hard))
        limit = raise_descriptor_limit()
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == limit
        if hard != resource.RLIM_INFINITY:
            assert limit == hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
