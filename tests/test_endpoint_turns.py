"""The order endpoint calls start in (roost.endpoints.turns): users in turn, the one served least
lately first, a cap of calls under way per user, a retry first of its user's."""

from __future__ import annotations

from roost.endpoints.turns import Turns


def test_users_take_turns_and_each_is_capped() -> None:
    turns: Turns[str] = Turns(per_user=1)
    for call in ("a1", "a2", "a3"):
        turns.add("alice", call)
    for call in ("b1", "b2"):
        turns.add("bob", call)
    assert turns.take() == ("alice", "a1")
    assert turns.take() == ("bob", "b1")
    assert turns.take() is None  # both at their cap
    assert (turns.waiting, turns.running) == (3, 2)
    turns.done("alice")
    turns.done("bob")
    assert turns.take() == ("alice", "a2")  # served before bob's b1
    turns.done("alice")
    assert turns.take() == ("bob", "b2")
    turns.done("bob")
    turns.add("carol", "c1")  # never served: goes first
    turns.add("alice", "a2 again", first=True)  # a retry, before alice's others
    assert turns.take() == ("carol", "c1")
    assert turns.take() == ("alice", "a2 again")
    turns.done("alice")
    assert turns.take() == ("alice", "a3")
    assert turns.take() is None and turns.drain() == []


def test_a_cap_of_two_and_drain() -> None:
    turns: Turns[int] = Turns(per_user=2)
    for call in range(4):
        turns.add("alice", call)
    assert [turns.take(), turns.take(), turns.take()] == [("alice", 0), ("alice", 1), None]
    assert turns.drain() == [2, 3] and turns.waiting == 0
