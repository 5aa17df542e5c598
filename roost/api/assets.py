"""``GET /v1/server/assets``: the kinds of asset this server keeps, and where each is listed.

The shape is Thinger's (thinger-api.md 2.2; Node-RED's ``assets.json``): an array of ``{asset,
category, role, paths: {list}}``, ``list`` being the list route without its leading ``/``, the
user tree written as the regex group ``(?<user>...)`` that clients replace with the user name
(Node-RED's asset iterator does; n8n builds ``/v1/users/{user}/<asset>s`` itself). Only the
assets Roost serves are listed, so that every ``paths.list`` works. Every such list takes the
list conventions of :mod:`roost.api.paging`.

The catalogue is public, as Thinger's: it is the same for every caller and tells nothing that
``/openapi.json`` does not (no user, id or count). A new kind of asset is one line of
:data:`ASSETS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from roost import ids
from roost.api.json import json_response

USER_TREE = f"v1/users/(?<user>{ids.USER.regex.pattern})"


@dataclass(frozen=True, slots=True)
class Asset:
    asset: str  # the kind, also the name of its id field in each listed item
    list_path: str  # below the user tree
    category: str = ""  # default: the asset's own name
    role: str = "user"  # "admin": an admin's asset (Node-RED hides it from others)

    def json(self) -> dict[str, Any]:
        return {
            "asset": self.asset,
            "category": self.category or self.asset,
            "paths": {"list": f"{USER_TREE}/{self.list_path}"},
            "role": self.role,
        }


# in Thinger's order: the admin assets first, then the user assets, each by name
ASSETS = (
    Asset("bucket", "buckets"),
    Asset("device", "devices"),
    Asset("endpoint", "endpoints"),
    Asset("token", "tokens"),
)


async def server_assets(request: Request) -> Response:
    return json_response([asset.json() for asset in ASSETS])


routes = [Route("/v1/server/assets", server_assets, methods=["GET"])]
