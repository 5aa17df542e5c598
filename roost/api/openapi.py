"""The OpenAPI 3.1 document of every route of the REST API, served at ``GET /openapi.json``.

The document is data: schemas under ``components``, one :func:`_op` per route and method, and
the summaries and descriptions in :data:`OPERATIONS`. Every error body is
``{"error": {"message": ...}}`` (see :mod:`roost.api.errors`), so every error response refers
to the one ``Error`` schema.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from roost import __version__, ids
from roost.ids import IdKind

Schema = dict[str, Any]

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
SSE = "text/event-stream"

# Default wording of each error status an operation may list.
ERRORS: Mapping[int, str] = {
    400: "Invalid request",
    401: "Missing, malformed, expired or revoked token",
    403: "The token does not grant this action on this user, device or resource",
    404: "Not found",
    413: "Request body larger than the configured limit",
    429: "Too many failed attempts: retry after the number of seconds in Retry-After",
    501: "The server keeps this but does not carry it out",
    502: "The server the call was passed on to failed or could not be reached",
    503: "No room for the work now: retry after the number of seconds in Retry-After",
    504: "The device did not answer within the deadline",
}

RESOURCE_NOTES = (
    " A path ending in `api` describes instead of calling: `api`"
    " alone lists the device's resources, `{resource}/api` gives `{in?, out?}` (a resource"
    " named `api` is described at `api/api` and called through v3). A device token may only"
    " call its own device and, if limited, its listed resources and those nested under them,"
    " by every route; its listings show only those, and a v3 call ending in `api` (which a"
    " legacy device answers with a description) is checked as the resource before it. An"
    " unknown or offline device, or a missing resource, answers 404 as Thinger does."
)

ACCESS_TOKEN_NOTES = (
    " The answer carries the token's JWT as `access_token` (claims usr, jti = the token id, svr ="
    " the server's public host, exp only when `expire` is set); it is the same JWT every time"
    " as long as the settings that make it do not change."
)

# operationId: (summary, description). Secured operations are named by their Thinger action.
OPERATIONS: Mapping[str, tuple[str, str]] = {
    "oauthToken": (
        "Issue user tokens",
        "OAuth2 token endpoint. The `password` grant checks a user's password; the"
        " `refresh_token` grant trades a refresh token for a new pair. Refresh tokens rotate on"
        " every use; re-using one revokes every token of that login.",
    ),
    "healthcheck": ("Health check", "Answers 200 while the server is up."),
    "serverVersion": ("Server version", "The version of the server."),
    "openapi": ("OpenAPI document", "This document."),
    "serverAssets": (
        "ReadServerAssets",
        "The kinds of asset this server keeps, each with the path of its list"
        " (`paths.list`, the user tree as the regex group `(?<user>...)`). Public, as"
        " Thinger's: the same for every caller.",
    ),
    "listDevices": ("ListDevices", "Every device of the user, or only the one named by `id`."),
    "createDevice": ("CreateDevice", "Registers a device; the 2017 field names still work."),
    "readDevice": ("ReadDeviceStatus", "One device, with its connection state."),
    "updateDevice": ("UpdateDevice", "Changes a device; disabling it disconnects it."),
    "deleteDevice": ("DeleteDevice", "Removes a device, which must not be connected."),
    "readDeviceStatistics": (
        "ReadDeviceStatistics",
        "Connection statistics of a device. With `Accept: text/event-stream` the answer is a"
        " Server-Sent Events stream: the stats at once, again on every change (rate-limited),"
        " and `: keep-alive` comments in between, until the client leaves.",
    ),
    "readDeviceStatisticsV3": ("ReadDeviceStatistics", "The newer path of the v1 stats route."),
    "listDeviceTokens": (
        "ListDeviceTokens",
        "Every token of the device. Only a login session gets each one's JWT (`token`); an access"
        " token gets the settings without it.",
    ),
    "createDeviceToken": (
        "CreateDeviceToken",
        "A JWT that may only call this device. Created by a login session only (403 to any"
        " token, whatever it is allowed).",
    ),
    "deleteDeviceToken": ("DeleteDeviceToken", "Revokes a device token at once."),
    "callDeviceResource": (
        "AccessDeviceResources",
        'Calls a resource of a connected device: reads an output (`{"out": value}`) or runs a'
        " callback (200, empty body)." + RESOURCE_NOTES,
    ),
    "postDeviceResource": (
        "AccessDeviceResources",
        'Calls a resource of a connected device with `{"in": value}`: writes an input (200,'
        ' empty body) or calls an input/output resource (`{"out": value}`); an empty body runs'
        " it with no input." + RESOURCE_NOTES,
    ),
    "listTokens": ("ListTokens", "The user's access tokens, by id, without their JWTs."),
    "createToken": (
        "CreateToken",
        "Creates an access token. `token` (the id) is generated when absent; `allow` and `deny`"
        " follow the Thinger permission grammar (deny beats allow; unknown names are kept and"
        " ignored in allow, refused in deny); `expire` is when it stops working (ms since the"
        " epoch)." + ACCESS_TOKEN_NOTES,
    ),
    "readToken": (
        "ReadTokenConfig",
        "One access token. Only a login session gets its JWT; an access token allowed"
        " ReadTokenConfig gets the settings without `access_token`." + ACCESS_TOKEN_NOTES,
    ),
    "updateToken": (
        "UpdateToken",
        "Changes any of name, description, enabled, allow, deny, expire (null or 0: never);"
        " disabling takes effect at once." + ACCESS_TOKEN_NOTES,
    ),
    "deleteToken": ("DeleteToken", "Deletes an access token: it stops working at once."),
    "updateUserPassword": (
        "UpdateUserPassword",
        "Sets a new password and revokes every refresh token of the user. Changing your own"
        " password needs `current_password` (a wrong one counts as a failed login); an admin"
        " changing another user's does not.",
    ),
    "oauthRevoke": (
        "Revoke a refresh token",
        "Logout (RFC 7009): revokes the login of a refresh token, the token and every token"
        " rotated from it. A token that is not valid is answered 200 too; an access token is"
        " 400 (it ends at its expiry, at most 2 h).",
    ),
    "listUsers": (
        "ListUsers",
        "Every user of the server; for an administrator's login session only (tokens are"
        " refused whatever they allow).",
    ),
    "createUser": (
        "CreateUser",
        "Adds a user; for an administrator's login session only. `email` and `verified` are"
        " accepted and not kept.",
    ),
    "readUser": ("ReadUserConfig", "A user's name, role, enabled flag and creation time."),
    "updateUser": (
        "UpdateUser",
        "Changes a user's role or enabled flag; for an administrator's login session only, who"
        " cannot demote or disable themselves. Disabling revokes the user's refresh tokens, ends"
        " their open streams and refuses their logins (403).",
    ),
    "revokeRefreshTokens": (
        "DeleteUserRefreshTokens",
        "Logs the user out everywhere: revokes every refresh token of the user (Roost's own"
        " route and action; Thinger has none). Access tokens already issued by `/oauth/token`"
        " keep working until they expire (at most 2 h).",
    ),
}
PUBLIC = frozenset(
    {"oauthToken", "oauthRevoke", "healthcheck", "serverVersion", "openapi", "serverAssets"}
)


# ---- builders -----------------------------------------------------------------------------------


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _t(kind: str, nullable: bool = False, **extra: Any) -> Schema:
    """``{"type": kind}``, or ``[kind, "null"]`` when ``nullable``, with ``extra`` keywords."""
    return {"type": [kind, "null"] if nullable else kind, **extra}


def _obj(properties: Schema, required: Sequence[str] = (), **extra: Any) -> Schema:
    schema = {"type": "object", "properties": properties, **extra}
    return {**schema, "required": list(required)} if required else schema


def _record(properties: Schema) -> Schema:
    """An object of which every property is always present (a response body)."""
    return _obj(properties, list(properties))


def _array(item: str) -> Schema:
    return {"type": "array", "items": _ref(item)}


def _content(schema: Schema | str, *media_types: str) -> Schema:
    body = _ref(schema) if isinstance(schema, str) else schema
    return {media: {"schema": body} for media in media_types or (JSON,)}


def _body(schema: str, *media_types: str, required: bool = True) -> Schema:
    return {"required": required, "content": _content(schema, *media_types)}


def _ok(description: str, schema: Schema | str | None = None) -> Schema:
    return {"description": description} | ({} if schema is None else {"content": _content(schema)})


def _error(status: int, description: str | None) -> Schema:
    response: Schema = {"description": description or ERRORS[status], "content": _content("Error")}
    if status == 401:
        header = {"description": "Always `Bearer`", "schema": _t("string")}
        response["headers"] = {"WWW-Authenticate": header}
    if status in (429, 503):
        header = {"description": "Seconds to wait", "schema": _t("integer", minimum=1)}
        response["headers"] = {"Retry-After": header}
    return response


def _param(where: str, name: str, description: str, schema: Schema) -> Schema:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": schema,
    }


def _id(kind: IdKind, nullable: bool = False) -> Schema:
    """A string schema of one kind of id (roost.ids), with its rule in words."""
    words = f"{kind.description[0].upper()}{kind.description[1:]}."
    return _t("string", nullable, pattern=kind.pattern, description=words)


def _path_param(name: str, description: str, schema: Schema) -> Schema:
    return _param("path", name, description, schema)


USER = _path_param("user", "Owner of the devices", _id(ids.USER))
DEVICE = _path_param("device", "Device id", _id(ids.DEVICE))
TOKEN_ID = _path_param("id", "Device token id", _id(ids.DEVICE_TOKEN))
RESOURCE = _path_param(
    "resource",
    "Resource path: 1 to 16 `/`-separated segments of 1-128 characters (`a/b` for a nested"
    " resource); a last segment `api` asks for a description.",
    _t("string", pattern="^[^/]{1,128}(/[^/]{1,128}){0,15}$"),
)
AUTHORIZATION = _param(
    "query",
    "authorization",
    "The JWT, for clients that cannot send `Authorization: Bearer` (EventSource, WebSocket)."
    " Used only when the header is absent.",
    _t("string"),
)
ID_FILTER = _param(
    "query",
    "id",
    "Only the device with this id (legacy; then `index` above 0 gives an empty list)",
    _id(ids.DEVICE),
)
# the list conventions (roost.api.paging), on every list
PAGING = [
    _param(
        "query",
        "count",
        "At most this many items; absent, empty or 0: all of them",
        _t("integer", minimum=0, maximum=1000),
    ),
    _param(
        "query",
        "index",
        "Position of the first item, in items: 0 is the first. Each list has a stable order",
        _t("integer", minimum=0, maximum=1_000_000_000, default=0),
    ),
    _param(
        "query",
        "name",
        "Only the items whose id or name contains this text (ASCII letters in any case);"
        " empty: every item",
        _t("string", maxLength=128),
    ),
]
BAD_PAGE: Mapping[int, str | None] = {
    400: "Malformed id in the path, or invalid count, index or name"
}
TIMEOUT = _param(
    "query",
    "timeout",
    "Deadline of the call in milliseconds; by default `call_timeout_ms` (10000), at most"
    " `max_call_timeout_ms` (120000 unless configured otherwise).",
    _t("integer", minimum=1, default=10000),
)


# ---- schemas ----------------------------------------------------------------------------------

TEXT = _t("string", True, maxLength=1024)
DEVICE_TYPES = ["Generic", "HTTP", "MQTT", "Virtual"]
DEVICE_ID = _id(ids.DEVICE)
CREDENTIALS = _t("string", minLength=6, maxLength=255)


def _legacy(schema: Schema, current: str) -> Schema:
    return {**schema, "description": f"Legacy name of `{current}`, used when it is absent"}


def _device_create() -> Schema:
    fields = {
        "device": DEVICE_ID,
        "device_id": _legacy(DEVICE_ID, "device"),
        "type": {"enum": [*DEVICE_TYPES, None], "default": "Generic"},
        "credentials": _t("string", True, maxLength=65536),
        "device_credentials": _legacy(_t("string", True, maxLength=65536), "credentials"),
        "name": TEXT,
        "description": TEXT,
        "device_description": _legacy(TEXT, "description"),
        "enabled": _t("boolean", True, default=True),
    }
    legacy_credentials = {"credentials": _t("null"), "device_credentials": CREDENTIALS}
    needs_credentials = [
        _obj({"credentials": CREDENTIALS}, ["credentials"]),
        _obj(legacy_credentials, ["device_credentials"]),
    ]
    return _obj(
        fields,
        description="`device` (or `device_id`) is required; Generic and MQTT devices also need"
        " `credentials` (or `device_credentials`) of 6-255 characters. Other fields are ignored.",
        anyOf=[{"required": ["device"]}, {"required": ["device_id"]}],
    ) | {
        "if": _obj({"type": {"enum": ["HTTP", "Virtual"]}}, ["type"]),
        "else": {"anyOf": needs_credentials},
    }


def _token_create() -> Schema:
    name, names = _t("string", minLength=1), _t("string", minLength=1, maxLength=128)
    return _obj(
        {
            "token_name": _t("string", True, maxLength=128),
            "name": _legacy(_t("string", True, maxLength=128), "token_name"),
            "token_resources": _t("array", True, maxItems=256, items=names),
            "token_expiration": _t("integer", True, description="ms since the epoch"),
        },
        description="A non-empty `token_name` (or `name`) is required. `token_resources` limits"
        " the resources the token may call (null: all; a name covers those nested under it);"
        " `token_expiration` must be in the future (0 or null: never expires; when an access"
        " token creates it, no later than that token's `expire`, which is the default).",
        anyOf=[
            _obj({"token_name": name}, ["token_name"]),
            _obj({"token_name": _t("null"), "name": name}, ["name"]),
        ],
    )


def _schemas() -> dict[str, Schema]:
    from roost.api.openapi_access import access_schemas  # it builds on this module
    from roost.api.openapi_bucket_exports import bucket_export_schemas
    from roost.api.openapi_buckets import bucket_schemas
    from roost.api.openapi_endpoints import endpoint_schemas
    from roost.api.openapi_properties import property_schemas

    ms = "ms since the epoch"
    return {
        "Error": _record({"error": _record({"message": _t("string")})})
        | {"example": {"error": {"message": "invalid username or password"}}},
        "PasswordGrant": _record(
            {
                "grant_type": {"const": "password"},
                "username": _t("string"),
                "password": _t("string", format="password"),
            }
        ),
        "RefreshGrant": _record(
            {"grant_type": {"const": "refresh_token"}, "refresh_token": _t("string")}
        ),
        "TokenRequest": {
            "oneOf": [_ref("PasswordGrant"), _ref("RefreshGrant")],
            "description": "As a form or a JSON object (whose non-string values are ignored)",
        },
        "Token": _record(
            {
                "access_token": _t("string", description="JWT with claims usr, iat, exp"),
                "expires_in": _t("integer", description="Lifetime in seconds (7200)"),
                "refresh_token": _t("string", description="Single-use JWT"),
                "scope": _t("null"),
                "token_type": {"const": "bearer"},
            }
        ),
        "DeviceCreate": _device_create(),
        "DeviceUpdate": _obj(
            {
                "name": TEXT,
                "description": TEXT,
                "enabled": _t("boolean", True),
                "credentials": _t("string", True, minLength=6, maxLength=255),
            },
            description="Absent or null fields are left unchanged. Only Generic and MQTT devices"
            " have credentials (else 400).",
        ),
        "Device": _record(
            {
                "device": DEVICE_ID,
                "name": _t("string"),
                "description": _t("string"),
                "type": {"enum": DEVICE_TYPES},
                "enabled": _t("boolean"),
                "user": _t("string", description="Owner"),
                "created": _t("integer", description=ms),
                "modified": _t("integer", description=ms),
                "connection": _record(
                    {
                        "active": _t("boolean", description="Connected now"),
                        "ts": _t("integer", True, description=f"Last connection, {ms}"),
                    }
                ),
            }
        ),
        "DeviceStats": _record(
            {
                "connected": _t("boolean"),
                "connected_ts": _t("integer", True, description=f"Connection time, {ms}"),
                "ip_address": _t("string", True),
                "rx_bytes": _t("integer", description="Bytes received from the device"),
                "tx_bytes": _t("integer", description="Bytes sent to the device"),
            }
        ),
        "DeviceTokenCreate": _token_create(),
        "DeviceToken": _obj(
            {
                "id": _t("string"),
                "name": _t("string"),
                "token": _t(
                    "string",
                    description="JWT with claims usr, dev, jti, iat, res?, exp?; shown to a"
                    " login session and in the answer that creates it only",
                ),
                "resources": _t("array", True, items=_t("string")),
                "expiration": _t("integer", True, description=ms),
            },
            ["id", "name", "resources", "expiration"],
        ),
        "ResourceInput": _obj(
            {"in": {"description": "Any JSON value"}}, additionalProperties=False
        ),
        "ResourceOutput": _record({"out": {"description": "Any JSON value"}}),
        "ResourceDescription": _t(
            "object",
            description="For `api`: an object keyed by resource name. For `{resource}/api`:"
            " `{in?, out?}`, a sample input and the current output.",
        ),
        **access_schemas(),
        **bucket_schemas(),
        **bucket_export_schemas(),
        **endpoint_schemas(),
        **property_schemas(),
        "Asset": _record(
            {
                "asset": _t("string", description="The kind, and its items' id field"),
                "category": _t("string"),
                "paths": _record({"list": _t("string", description="Path of the list")}),
                "role": {"enum": ["admin", "user"]},
            }
        ),
        "Health": _record({"status": {"const": "ok"}}),
        "Version": _record({"version": _t("string"), "server": {"const": "roost"}}),
    }


# ---- operations ---------------------------------------------------------------------------------


def _tag(path: str) -> str:
    if "/buckets" in path:
        return "Data buckets"
    if "/endpoints" in path:
        return "Endpoints"
    if path.startswith("/oauth/"):
        return "Auth"
    if path.startswith(("/v2/", "/v3/users/{user}/devices/{device}/resources")):
        return "Device resources"
    if path.startswith("/v1/users/{user}/tokens"):
        return "Access tokens"
    if path in ("/v1/users/{user}/password", "/v1/users/{user}/refresh_tokens"):
        return "Users"
    if "/devices" in path:
        return "Device tokens" if "/tokens" in path else "Devices"
    return "Server"


def _op(
    op_id: str,
    ok: Schema,
    params: Sequence[Schema] = (),
    errors: Mapping[int, str | None] | None = None,
    body: Schema | None = None,
    text: tuple[str, str] | None = None,
) -> Schema:
    """One operation. A secured one also takes ``?authorization=`` and may answer 400 (a
    malformed id in the path), 401 and 403.

    ``errors`` maps each further status to its wording (None: the default one of ``ERRORS``).
    """
    summary, description = text or OPERATIONS[op_id]
    public = op_id in PUBLIC
    secured: dict[int, str | None] = {400: "Malformed id in the path", 401: None, 403: None}
    statuses: dict[int, str | None] = {} if public else secured
    statuses.update(errors or {})
    operation: Schema = {"summary": summary, "operationId": op_id, "description": description}
    parameters = [*params] if public else [*params, AUTHORIZATION]
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = body
    responses = {str(s): _error(s, statuses[s]) for s in sorted(statuses)}
    operation["responses"] = {"200": ok, **responses}
    return (operation | {"security": []}) if public else operation


NO_DEVICE = {404: "Device not found"}
BAD_BODY: Mapping[int, str | None] = {400: "Body not a JSON object, or invalid fields", 413: None}


def _paths() -> dict[str, Schema]:
    from roost.api.openapi_access import access_paths  # they build on this module
    from roost.api.openapi_bucket_exports import bucket_export_paths
    from roost.api.openapi_buckets import bucket_paths
    from roost.api.openapi_endpoints import endpoint_paths
    from roost.api.openapi_events import event_paths
    from roost.api.openapi_metrics import metrics_paths
    from roost.api.openapi_properties import property_paths
    from roost.api.openapi_resources import resource_paths

    dev = [USER, DEVICE]
    call = [USER, DEVICE, RESOURCE, TIMEOUT]
    stats = _ok("The stats, or with `Accept: text/event-stream` a stream of them")
    sse = "Server-Sent Events; each `data:` line holds a DeviceStats JSON object"
    stats["content"] = _content("DeviceStats") | _content(_t("string", description=sse), SSE)
    device, token = _ok("The device", "Device"), _ok("The token", "DeviceToken")
    devices = _ok("Devices", _array("Device"))
    deleted = _ok("Deleted (empty body)")
    result = _ok(
        'The output (`{"out": value}`), a description (`api`), or an empty body',
        {"anyOf": [_ref("ResourceOutput"), _ref("ResourceDescription")]},
    )
    call_errors: dict[int, str | None] = {
        400: "Invalid resource path or timeout",
        404: "Device unknown or offline, or no such resource",
        504: None,
    }
    call_input = _body("ResourceInput", required=False)
    post_errors = {**call_errors, 400: "Invalid resource path, timeout or body", 413: None}
    oauth_errors = {400: "Body not a valid form or JSON, or unknown grant_type", 413: None}
    oauth_errors[401] = "Invalid username or password, or invalid refresh token"
    oauth_errors[429] = (
        "Too many wrong passwords for this user name or from this address: every password grant"
        " for them, even with the right password, is refused until Retry-After has passed"
    )
    create_errors = {**BAD_BODY, 400: "Invalid body, id, type or credentials, or device exists"}
    create_errors[404] = "No such user"
    login, new_token = _body("TokenRequest", FORM, JSON), _body("DeviceTokenCreate")
    body_errors = {**BAD_BODY, **NO_DEVICE}
    paths: dict[str, Schema] = {
        "/oauth/token": {
            "post": _op("oauthToken", _ok("A new token pair", "Token"), (), oauth_errors, login)
        },
        "/v1/server/healthcheck": {"get": _op("healthcheck", _ok("Up", "Health"))},
        "/v1/server/version": {"get": _op("serverVersion", _ok("Version", "Version"))},
        "/openapi.json": {"get": _op("openapi", _ok("OpenAPI 3.1", _t("object")))},
        "/v1/server/assets": {"get": _op("serverAssets", _ok("Assets", _array("Asset")))},
        "/v1/users/{user}/devices": {
            "get": _op("listDevices", devices, [USER, ID_FILTER, *PAGING], BAD_PAGE),
            "post": _op("createDevice", device, [USER], create_errors, _body("DeviceCreate")),
        },
        "/v1/users/{user}/devices/{device}": {
            "get": _op("readDevice", device, dev, NO_DEVICE),
            "put": _op("updateDevice", device, dev, body_errors, _body("DeviceUpdate")),
            "delete": _op(
                "deleteDevice", deleted, dev, {400: "The device is connected", **NO_DEVICE}
            ),
        },
        "/v1/users/{user}/devices/{device}/stats": {
            "get": _op("readDeviceStatistics", stats, dev, NO_DEVICE)
        },
        "/v3/users/{user}/devices/{device}/stats": {
            "get": _op("readDeviceStatisticsV3", stats, dev, NO_DEVICE)
        },
        "/v1/users/{user}/devices/{device}/tokens": {
            "get": _op(
                "listDeviceTokens",
                _ok("Tokens", _array("DeviceToken")),
                [*dev, *PAGING],
                {**BAD_PAGE, **NO_DEVICE},
            ),
            "post": _op("createDeviceToken", token, dev, body_errors, new_token),
        },
        "/v1/users/{user}/devices/{device}/tokens/{id}": {
            "delete": _op("deleteDeviceToken", deleted, [*dev, TOKEN_ID], {404: "Token not found"})
        },
        "/v2/users/{user}/devices/{device}/{resource}": {
            "get": _op("callDeviceResource", result, call, call_errors),
            "post": _op("postDeviceResource", result, call, post_errors, call_input),
        },
    }
    paths.update(access_paths())
    paths.update(bucket_paths())
    paths.update(bucket_export_paths())
    paths.update(endpoint_paths())
    paths.update(resource_paths())
    paths.update(event_paths())
    paths.update(property_paths())
    paths.update(metrics_paths())
    for path, item in paths.items():
        for operation in item.values():
            operation["tags"] = [_tag(path)]
    return paths


def openapi_document() -> dict[str, Any]:
    """The complete OpenAPI 3.1.0 document, a fresh copy the caller may change."""
    document = {
        "openapi": "3.1.0",
        "info": {
            "title": "Roost",
            "version": __version__,
            "description": "Self-hosted server compatible with the Thinger.io REST API. Every"
            ' error body is `{"error": {"message": "..."}}`.',
        },
        "security": [{"bearerAuth": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
            "schemas": _schemas(),
        },
    }
    return copy.deepcopy(document)
