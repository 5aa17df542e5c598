"""The OpenAPI part of user access tokens and of a user's credentials (``tokens.py``,
``users.py``), built with the helpers of :mod:`roost.api.openapi`, which merges it in."""

from __future__ import annotations

from collections.abc import Mapping

from roost.api.openapi import (
    BAD_BODY,
    BAD_PAGE,
    FORM,
    JSON,
    PAGING,
    USER,
    Schema,
    _array,
    _body,
    _id,
    _obj,
    _ok,
    _op,
    _path_param,
    _record,
    _t,
)
from roost.ids import ACCESS_TOKEN, ACTION, PERMISSION_ID, PERMISSION_TYPE
from roost.ids import USER as USER_NAME

ACCESS_TOKEN_ID = _path_param("token", "Access token id", _id(ACCESS_TOKEN))


def _permission() -> Schema:
    action = _t("string", pattern=ACTION.pattern)
    item = {"anyOf": [action, _t("object", description="Kept, never matched")]}
    actions = {"anyOf": [action, _t("array", items=item)]}
    ids = _t(
        "object",
        minProperties=1,
        propertyNames={"pattern": PERMISSION_ID.pattern},
        additionalProperties=actions,
    )
    return _t(
        "object",
        True,
        description="Resource type (`Device`, `Bucket`, `Token`, `User`, ... or `*`) -> resource"
        " id (or `*`) -> actions: one string or an array; `*` is every action and `Read*` every"
        " action starting with `Read`. At most 1000 entries in allow and deny together.",
        propertyNames={"pattern": PERMISSION_TYPE.pattern},
        additionalProperties=ids,
    )


def access_schemas() -> dict[str, Schema]:
    text = _t("string", True, maxLength=255)
    expire = _t(
        "number", True, description="When it stops working, ms since the epoch; null or 0: never"
    )
    settings = {
        "name": text,
        "description": text,
        "enabled": _t("boolean", True, default=True),
        "allow": _permission(),
        "deny": _permission(),
        "expire": expire,
    }
    stored = {
        "token": _t("string"),
        "name": _t("string"),
        "description": _t("string"),
        "enabled": _t("boolean"),
        "expire": _t("integer", True, description="ms since the epoch, null: never"),
        "created": _t("integer", description="ms since the epoch"),
        "modified": _t("integer", description="ms since the epoch"),
    }
    permission = _t("object", description="As given, action lists always arrays")
    return {
        "AccessTokenCreate": _obj(
            {"token": _id(ACCESS_TOKEN, nullable=True), **settings},
            description="Every field is optional: `token` is generated, `name` defaults to it,"
            " `enabled` to true; without `allow` the token may do nothing.",
        ),
        "AccessTokenUpdate": _obj(
            {
                "token": _t("string", True, description="Ignored if it is the id, else 400"),
                **settings,
            },
            description="Absent fields are left unchanged.",
        ),
        "AccessTokenSummary": _record(stored),
        "AccessToken": _obj(
            {
                **stored,
                "allow": permission,
                "deny": permission,
                "access_token": _t("string", description="The JWT; to a login session only"),
            },
            [*stored, "allow", "deny"],
        ),
        "PasswordChange": _obj(
            {
                "password": _t("string", minLength=6, maxLength=72, format="password"),
                "current_password": _t("string", format="password"),
            },
            ["password"],
            description="`current_password` is required to change your own password.",
        ),
        "User": _record(
            {
                "user": _t("string"),
                "role": {"enum": ["user", "admin"]},
                "enabled": _t("boolean"),
                "created": _t("integer", description="ms since the epoch"),
            }
        ),
        "UserCreate": _obj(
            {
                "user": _id(USER_NAME),
                "password": _t("string", minLength=6, maxLength=72, format="password"),
                "role": {"enum": ["user", "admin"], "default": "user"},
                "enabled": _t("boolean", default=True),
                "email": _t("string", description="Accepted, not kept"),
                "verified": _t("boolean", description="Accepted, not kept"),
            },
            ["user", "password"],
        ),
        "UserUpdate": _obj(
            {"role": {"enum": ["user", "admin"]}, "enabled": _t("boolean")},
            description="Absent fields are left unchanged.",
        ),
        "RevokeRequest": _obj(
            {
                "token": _t("string", description="The refresh token"),
                "token_type_hint": _t("string", description="Ignored"),
            },
            ["token"],
            description="As a form or a JSON object",
        ),
        "Revoked": _record(
            {"revoked": _t("integer", description="Refresh tokens that were still usable")}
        ),
    }


def access_paths() -> dict[str, Schema]:
    one, user = [USER, ACCESS_TOKEN_ID], [USER]
    token, listed = _ok("The token", "AccessToken"), _ok("Tokens", _array("AccessTokenSummary"))
    missing: Mapping[int, str | None] = {404: "Token not found"}
    invalid = "Invalid body, token id, permissions or expire"
    bad = {**BAD_BODY, 400: invalid}
    revoked = _ok("How many refresh tokens were revoked", "Revoked")
    password_errors: dict[int, str | None] = {
        400: "Body not a JSON object, password not 6-72 characters, or current_password missing",
        403: "The token does not grant this action, or current_password is wrong",
        404: "User not found",
        413: None,
        429: None,
    }
    admin_only = "Not an administrator's login session"
    user_record = _ok("The user", "User")
    return {
        "/oauth/revoke": {
            "post": _op(
                "oauthRevoke",
                _ok("Revoked, or not a valid token (empty body)"),
                (),
                {400: "No token, or an access token", 413: None},
                _body("RevokeRequest", FORM, JSON),
            )
        },
        "/v1/users": {
            "get": _op(
                "listUsers", _ok("Users", _array("User")), PAGING, {**BAD_PAGE, 403: admin_only}
            ),
            "post": _op(
                "createUser",
                user_record,
                (),
                {**BAD_BODY, 400: "Invalid body, name, password or role, or the user exists"}
                | {403: admin_only},
                _body("UserCreate"),
            ),
        },
        "/v1/users/{user}": {
            "get": _op("readUser", user_record, user, {404: "User not found"}),
            "put": _op(
                "updateUser",
                user_record,
                user,
                {**BAD_BODY, 400: "Invalid body, or an admin demoting or disabling themselves"}
                | {403: admin_only, 404: "User not found"},
                _body("UserUpdate"),
            ),
        },
        "/v1/users/{user}/tokens": {
            "get": _op("listTokens", listed, [*user, *PAGING], BAD_PAGE),
            "post": _op(
                "createToken",
                token,
                user,
                {**bad, 400: invalid + ", or the id exists", 404: "User not found"},
                _body("AccessTokenCreate"),
            ),
        },
        "/v1/users/{user}/tokens/{token}": {
            "get": _op("readToken", token, one, missing),
            "put": _op("updateToken", token, one, {**bad, **missing}, _body("AccessTokenUpdate")),
            "delete": _op("deleteToken", _ok("Deleted (empty body)"), one, missing),
        },
        "/v1/users/{user}/password": {
            "put": _op(
                "updateUserPassword", revoked, user, password_errors, _body("PasswordChange")
            ),
        },
        "/v1/users/{user}/refresh_tokens": {
            "delete": _op("revokeRefreshTokens", revoked, user, {404: "User not found"}),
        },
    }
