"""The one grammar of ids: users, devices, tokens, buckets, ... and the names of the permission
grammar. Each kind is defined once here; the API, the CLI, the settings, the permission grammar
and the OpenAPI document all take their rule from it (:func:`validate`, :attr:`IdKind.pattern`).

An id is ASCII letters and digits plus a few punctuation characters, 1 to N long, as Thinger.io
writes them (thinger-api.md 1, "Id syntax", and 3.1): user names and device ids
``[a-zA-Z0-9_-]{1,32}``, access token ids ``[a-zA-Z0-9_]{1,50}``, bucket, endpoint and dashboard
ids ``[a-zA-Z0-9_]{1,32}``. Device token ids are Roost's own (``secrets.token_urlsafe``: letters,
digits, ``_`` and ``-``). The permission grammar's resource ids accept every id above, plus ``:``
(plugin ids), ``@`` (``owner@project``) and ``*`` (any), up to 128 characters. Nothing here is a
regex built from user text, and no unicode character class is used: ``é``, ``..``, NUL and ``/``
are never part of an id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from roost.errors import InvalidInput

ANY = "*"
_ALNUM = "a-zA-Z0-9"
_NAMES = {"_": "'_'", "-": "'-'", ":": "':'", "@": "'@'", ".": "'.'"}


@dataclass(frozen=True, slots=True)
class IdKind:
    """One kind of id: ASCII letters, digits and ``punctuation``, ``min_length`` to ``max_length``
    characters. ``wildcard``: ``*`` alone is also accepted (the permission grammar);
    ``prefix_wildcard``: so is an id followed by ``*`` (``Read*``), still at most ``max_length``;
    ``alnum_first``: the first character is a letter or a digit (so ``.`` and ``..`` are not
    ids even where ``.`` is allowed)."""

    name: str  # as a message says it: "user name", "device id"
    punctuation: str
    max_length: int
    min_length: int = 1
    wildcard: bool = False
    prefix_wildcard: bool = False
    alnum_first: bool = False
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", re.compile(self._source()))

    def _source(self) -> str:
        # "-" last, so that it is a literal in the class
        chars = f"[{_ALNUM}{''.join(sorted(self.punctuation, key=lambda c: c == '-'))}]"
        exact = f"{chars}{{{self.min_length},{self.max_length}}}"
        if self.alnum_first:
            exact = f"[{_ALNUM}]{chars}{{{max(self.min_length - 1, 0)},{self.max_length - 1}}}"
        if not self.wildcard:
            return exact
        choices = [exact]
        if self.prefix_wildcard:
            choices.append(f"{chars}{{{self.min_length},{self.max_length - 1}}}\\*")
        return f"({'|'.join([*choices, re.escape(ANY)])})"

    @property
    def pattern(self) -> str:
        """The rule as an OpenAPI (ECMA-262) ``pattern``, anchored."""
        return f"^{self.regex.pattern}$"

    @property
    def description(self) -> str:
        """The rule in words, for messages and documentation."""
        extra = [_NAMES[c] for c in self.punctuation]
        allowed = ", ".join(["an ASCII letter", "a digit", *extra[:-1]])
        allowed = f"{allowed} or {extra[-1]}" if extra else allowed
        size = f"{self.min_length} to {self.max_length}"
        text = f"{size} characters, each {allowed}"
        if self.alnum_first:
            text += ", the first a letter or a digit"
        if self.prefix_wildcard:
            text += ", optionally ending in '*' (a prefix)"
        return text + (", or '*' alone" if self.wildcard else "")

    def matches(self, value: object) -> bool:
        return isinstance(value, str) and self.regex.fullmatch(value) is not None


def validate(kind: IdKind, value: object) -> str:
    """``value`` if it is a valid ``kind``; else InvalidInput, in the one message of every id."""
    if isinstance(value, str) and kind.regex.fullmatch(value) is not None:
        return value
    raise InvalidInput(message(kind))


def message(kind: IdKind) -> str:
    return f"invalid {kind.name}: must be {kind.description}"


# -- the ids of the REST API and of the CLI ----------------------------------------------------

USER = IdKind("user name", "_-", 32)
DEVICE = IdKind("device id", "_-", 32)
ACCESS_TOKEN = IdKind("access token id", "_", 50)
DEVICE_TOKEN = IdKind("device token id", "_-", 64)  # made by roost.auth.tokens.new_token_id
BUCKET = IdKind("bucket id", "_", 32)
ENDPOINT = IdKind("endpoint id", "_", 32)
DASHBOARD = IdKind("dashboard id", "_", 32)
PROPERTY = IdKind("property id", "_", 32)  # "most other ids" of thinger-api.md 1

# a bucket export's file (roost.buckets.exports): <time>.<user>.<bucket>.<nonce>.<type>, as
# Thinger names them (20240725T115334Z.thinger.test.ea-eDvNc.csv); never "." nor ".."
EXPORT_FILE = IdKind("export file name", "_.-", 128, alnum_first=True)

API_KINDS = (USER, DEVICE, ACCESS_TOKEN, DEVICE_TOKEN, BUCKET, ENDPOINT, DASHBOARD, PROPERTY)

# -- the names of the permission grammar (roost.auth.permissions) ------------------------------

PERMISSION_TYPE = IdKind("resource type", "_-", 128, wildcard=True)
PERMISSION_ID = IdKind("resource id", "_:@-", 128, wildcard=True)
ACTION = IdKind("action", "_", 128, wildcard=True, prefix_wildcard=True)
