"""The OpenAPI part of endpoints (``endpoints.py``), built with the helpers of
:mod:`roost.api.openapi`, which merges it in."""

from __future__ import annotations

from collections.abc import Mapping

from roost.api.openapi import (
    BAD_BODY,
    BAD_PAGE,
    JSON,
    PAGING,
    USER,
    Schema,
    _array,
    _body,
    _content,
    _id,
    _obj,
    _ok,
    _op,
    _path_param,
    _record,
    _ref,
    _t,
)
from roost.api.validate import TEXT_LIMIT
from roost.endpoints import http_request as h
from roost.ids import ENDPOINT

ENDPOINT_ID = _path_param("endpoint", "Endpoint id", _id(ENDPOINT))
MS = "ms since the epoch"
TEXT_TYPE = "text/plain"


def _http_config() -> Schema:
    header = _obj(
        {
            "key": _t(
                "string",
                minLength=1,
                maxLength=h.MAX_HEADER_NAME,
                description="A header name: letters, digits and !#$%&'*+-.^_`|~",
            ),
            "value": _t("string", maxLength=h.MAX_HEADER_VALUE),
        },
        ["key"],
    )
    return _obj(
        {
            "method": {"enum": list(h.METHODS), "default": "POST"},
            "url": _t("string", maxLength=h.MAX_URL, description="An http:// or https:// URL"),
            "headers": _t("array", True, items=header, maxItems=h.MAX_HEADERS),
            "body": _t("string", True, maxLength=h.MAX_BODY),
            "body_type": {"enum": list(h.BODY_TYPES), "default": "json"},
        },
        ["url"],
        description="For type `http_request`. `body_type: json` sends the call data as JSON"
        " (or `body` filled as JSON when not empty); `custom` sends `body` filled. `{{field}}`"
        " placeholders in `url`, header values and `body` are filled from the call data"
        " (`{{a.b}}` nested, `{{}}` the whole data): percent-encoded in the URL, as JSON (or"
        " JSON-escaped inside a JSON string) in a JSON body, as text elsewhere. Host,"
        " Content-Length, Transfer-Encoding and Connection headers are set by the server.",
    )


def endpoint_schemas() -> dict[str, Schema]:
    text = _t("string", True, maxLength=TEXT_LIMIT)
    kind = _t(
        "string",
        minLength=1,
        maxLength=TEXT_LIMIT,
        description="`http_request` is"
        " called; other types (`email`, ...) are kept and answered 501 when called",
    )
    config = _t(
        "object", description="The type's settings; for `http_request` see EndpointHttpConfig"
    )
    settings = {"name": text, "description": text, "enabled": _t("boolean", True, default=True)}
    listed = {
        "endpoint": _t("string"),
        "name": _t("string"),
        "description": _t("string"),
        "enabled": _t("boolean"),
        "type": _t("string"),
    }
    times = {"created": _t("integer", description=MS), "modified": _t("integer", description=MS)}
    return {
        "EndpointHttpConfig": _http_config(),
        "EndpointCreate": _obj(
            {"endpoint": _id(ENDPOINT), "type": kind, "config": config, **settings},
            ["endpoint", "type"],
            description="`name` defaults to the id, `enabled` to true, `config` to `{}`.",
        )
        | {
            "if": _obj({"type": {"const": "http_request"}}, ["type"]),
            "then": _obj({"config": _ref("EndpointHttpConfig")}, ["config"]),
        },
        "EndpointUpdate": _obj(
            {
                "endpoint": _t("string", True, description="Ignored if it is the id, else 400"),
                "type": kind,
                "config": config,
                **settings,
            },
            description="Absent fields are left unchanged.",
        ),
        "EndpointListed": _record({**listed, **times}),
        "Endpoint": _record({**listed, "config": _t("object"), **times}),
    }


def endpoint_paths() -> dict[str, Schema]:
    one, user = [USER, ENDPOINT_ID], [USER]
    endpoint, deleted = _ok("The endpoint", "Endpoint"), _ok("Deleted (empty body)")
    missing: Mapping[int, str | None] = {404: "Endpoint not found"}
    invalid = "Invalid body, endpoint id, type or config"
    answered = _ok("The target's answer (2xx): JSON as JSON, anything else as plain text")
    answered["content"] = _content({}, JSON) | _content(_t("string"), TEXT_TYPE)
    call_errors: dict[int, str | None] = {
        **BAD_BODY,
        400: "Body not JSON, endpoint disabled, or its request cannot be made from the data",
        **missing,
        501: "An endpoint of a type this server keeps but does not call",
        502: "The target answered other than 2xx, or could not be reached, after the retries;"
        " or its address is not public (see endpoints_allow_private)",
        503: None,
    }
    return {
        "/v1/users/{user}/endpoints": {
            "get": _op(
                "listEndpoints",
                _ok("Endpoints, without their config", _array("EndpointListed")),
                [*user, *PAGING],
                BAD_PAGE,
                text=("ListEndpoints", "The user's endpoints, by id."),
            ),
            "post": _op(
                "createEndpoint",
                endpoint,
                user,
                {**BAD_BODY, 400: invalid + ", or the id exists", 404: "User not found"},
                _body("EndpointCreate"),
                ("CreateEndpoint", "Creates an endpoint."),
            ),
        },
        "/v1/users/{user}/endpoints/{endpoint}": {
            "get": _op(
                "readEndpoint",
                endpoint,
                one,
                missing,
                text=("ReadEndpointConfig", "One endpoint, with its config."),
            ),
            "put": _op(
                "updateEndpoint",
                endpoint,
                one,
                {**BAD_BODY, 400: invalid, **missing},
                _body("EndpointUpdate"),
                ("UpdateEndpoint", "Changes an endpoint's settings."),
            ),
            "delete": _op(
                "deleteEndpoint",
                deleted,
                one,
                missing,
                text=("DeleteEndpoint", "Deletes an endpoint."),
            ),
        },
        "/v1/users/{user}/endpoints/{endpoint}/call": {
            "post": _op(
                "callEndpoint",
                answered,
                one,
                call_errors,
                {"required": False, "content": _content({}, JSON)},
                (
                    "CallEndpoint",
                    "Calls the endpoint with the body (any JSON; none: no data) and answers"
                    " once the call is done, with the target's answer. Each call is also"
                    " announced as the `endpoint_call_response` event.",
                ),
            ),
        },
    }
