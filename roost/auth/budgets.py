"""The node's budgets of failed authentications, shared with the other nodes.

:class:`FailureBudgets` holds the budgets of :mod:`roost.auth.ratelimit` a node keeps: wrong
passwords per user name and per source address (:attr:`~FailureBudgets.login`: ``POST
/oauth/token``, a wrong current password) and failed device authentications per source address
(:attr:`~FailureBudgets.devices`). Alone, a node keeps them to itself. With several nodes (or
``roost serve --workers``), each failure a node counts or forgives is told to the others in a
small note (:attr:`FailureBudgets.tell`: the NATS bus's ``tell_failures``), and each of them
counts or forgives it in its own window, on its own clock (:meth:`FailureBudgets.heard`): N nodes
hold one budget between them, not one each.

A note is a short JSON object: the budget, the key (a user name or an address key, at most
``MAX_KEY`` characters; never a password) and ``record`` or ``forgive``. A note heard is checked
before it is used: anything else (an unknown budget or operation, a longer key, not such an
object) is dropped and counted in :attr:`FailureBudgets.dropped`, the first one logged; hearing
never raises. What the notes add to a window is bounded as the window is (``max_keys``).

The guarantee: a failure counts on every node a bus round trip after it counted on its own (a
millisecond or so on one network). Attempts that arrive at once on several nodes, within that
time, are each counted only by their own node first: a burst spread over N nodes in the same
millisecond can pass up to the budget on each before the notes cross; past it, the budget holds
whichever node is asked. While a node cannot reach the bus it counts its own failures only, and
may never hear those the others counted meanwhile; a node starts with empty counts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from roost.auth.ratelimit import MAX_USER_KEY, Clock, FailureWindow, LoginLimiter
from roost.config import Settings

log = logging.getLogger("roost.auth")

LOGIN_USER = "login_user"  # wrong passwords per user name
LOGIN_ADDRESS = "login_address"  # wrong passwords per source address
DEVICE_ADDRESS = "device_address"  # failed device authentications per source address
RECORD = "record"
FORGIVE = "forgive"
MAX_KEY = MAX_USER_KEY  # no key is longer: user names are cut there, address keys are shorter
MAX_NOTE = 1024  # bytes: a note of the longest key, every character escaped, fits

Tell = Callable[[bytes], None]  # a note to every other node; never blocks nor raises


class SharedWindow(FailureWindow):
    """A :class:`FailureWindow` that tells the other nodes what it counts and forgives."""

    def __init__(
        self, name: str, limit: int, window: float, clock: Clock, budgets: FailureBudgets
    ) -> None:
        super().__init__(limit, window, clock)
        self.name = name
        self._budgets = budgets

    def record(self, key: str) -> None:
        super().record(key)
        if self.limit:
            self._budgets.tell(_note(self.name, key, RECORD))

    def forgive(self, key: str) -> None:
        super().forgive(key)
        if self.limit:
            self._budgets.tell(_note(self.name, key, FORGIVE))

    def heard(self, key: str, operation: str) -> None:
        """Count (``record``) or forgive a failure another node told of, as if it were here."""
        if operation == RECORD:
            super().record(key)
        else:
            super().forgive(key)


class FailureBudgets:
    """This node's budgets, built from the settings: ``login_failures_per_user`` and
    ``..._per_address``, ``device_auth_failures_per_address``, all per ``auth_failure_window``."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.tell: Tell = _nobody  # one node: nobody else to tell; a bus between nodes sets it
        self.dropped = 0  # notes heard that were not notes of a known budget
        self._windows: dict[str, SharedWindow] = {}
        window = settings.auth_failure_window
        self.login = LoginLimiter(
            self._window(LOGIN_USER, settings.login_failures_per_user, window, clock),
            self._window(LOGIN_ADDRESS, settings.login_failures_per_address, window, clock),
        )
        self.devices: FailureWindow = self._window(
            DEVICE_ADDRESS, settings.device_auth_failures_per_address, window, clock
        )

    def _window(self, name: str, limit: int, window: float, clock: Clock) -> SharedWindow:
        shared = self._windows[name] = SharedWindow(name, limit, window, clock, self)
        return shared

    def heard(self, data: bytes) -> None:
        """Apply a note another node told (anything else is dropped and counted)."""
        note = _parse(data)
        shared = self._windows.get(note[0]) if note is not None else None
        if note is None or shared is None:
            self.dropped += 1
            if self.dropped == 1:
                log.warning(
                    "dropped a note of failed authentications from another node (%d bytes) that "
                    "is not one this node knows; further ones are counted, not logged",
                    len(data),
                )
            return
        shared.heard(note[1], note[2])


def _note(budget: str, key: str, operation: str) -> bytes:
    return json.dumps({"budget": budget, "key": key, "op": operation}).encode()


def _parse(data: bytes) -> tuple[str, str, str] | None:
    """(budget, key, operation) of a well-formed note, else None."""
    if len(data) > MAX_NOTE:
        return None
    try:
        note = json.loads(data)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, nested too deep
        return None
    if not isinstance(note, dict):
        return None
    budget, key, operation = note.get("budget"), note.get("key"), note.get("op")
    if not isinstance(budget, str) or not isinstance(key, str) or len(key) > MAX_KEY:
        return None
    if operation not in (RECORD, FORGIVE):
        return None
    return budget, key, operation


def _nobody(note: bytes) -> None:
    """Where notes go on a node alone: nowhere."""
