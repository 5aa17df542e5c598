"""The OpenAPI part of ``GET /metrics`` (``metrics.py``), built with the helpers of
:mod:`roost.api.openapi`, which merges it in."""

from __future__ import annotations

from roost.api.openapi import Schema, _op, _t

TEXT = "text/plain"


def metrics_paths() -> dict[str, Schema]:
    exposition = _t("string", description="Prometheus text exposition format, version 0.0.4")
    ok = {"description": "Every metric of this node", "content": {TEXT: {"schema": exposition}}}
    text = (
        "ReadServerMetrics",
        "This node's metrics in the Prometheus text format: devices connected by protocol and"
        " TLS, resource calls by outcome and their latency histogram, stream watchers, bucket"
        " points written, bus requests, store errors, and the process's CPU, memory and open"
        " files (Roost's own route and action). For an administrator's login session or an"
        " administrator's access token allowing `ReadServerMetrics`; open to anyone (no token)"
        " when the setting `metrics_public` is on.",
    )
    not_admin = "Not an administrator, a token without ReadServerMetrics, or a device token"
    return {"/metrics": {"get": _op("readServerMetrics", ok, (), {403: not_admin}, text=text)}}
