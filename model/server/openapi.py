"""The server's OpenAPI document and its interactive docs page (/openapi.json, /docs)."""

from __future__ import annotations

import orjson

_ERROR = {"description": "", "content": {"text/plain": {"schema": {"type": "string"}}}}


def _error(description: str) -> dict:
    return {**_ERROR, "description": description}


def document(model_name: str, model_version: str) -> dict:
    predictions = {
        "text/csv": {"schema": {"type": "string"}, "example": "0.73,1\n"},
        "application/json": {"schema": {"type": "object", "properties": {"predictions": {
            "type": "array", "items": {"type": "object", "properties": {
                "probability": {"type": "number"}, "label": {"type": "integer"}}}}}}},
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": f"mlship model server: {model_name} {model_version}", "version": model_version,
                 "description": "SageMaker's container contract (GET /ping, POST /invocations) plus "
                                "health, metrics and data capture."},
        "paths": {
            "/ping": {"get": {"summary": "200 once the model is loaded, 503 before (or if it failed its checks)",
                              "responses": {"200": {"description": "ready"}, "503": _error("not ready")}}},
            "/invocations": {"post": {
                "summary": "Predict for one or many rows",
                "parameters": [
                    {"name": "Accept", "in": "header", "required": False,
                     "schema": {"type": "string", "enum": ["text/csv", "application/json", "*/*"]}},
                    {"name": "X-Amzn-SageMaker-Inference-Id", "in": "header", "required": False,
                     "schema": {"type": "string"}, "description": "kept as the capture record's inferenceId"}],
                "requestBody": {"required": True, "content": {
                    "text/csv": {"schema": {"type": "string"},
                                 "description": "one row a line, no header, columns in the model's order"},
                    "application/json": {"schema": {"type": "object", "required": ["instances"], "properties": {
                        "instances": {"type": "array", "items": {"oneOf": [
                            {"type": "array", "items": {}}, {"type": "object"}]}}}}}}},
                "responses": {"200": {"description": "one prediction per row", "content": predictions},
                              "400": _error("malformed body; the message names the row and column"),
                              "406": _error("Accept names no type the server writes"),
                              "411": _error("chunked body without Content-Length"),
                              "413": _error("body over 6 MB"),
                              "415": _error("content type other than text/csv or application/json"),
                              "503": _error("model not loaded")}}},
            "/health": {"get": {"summary": "model identity, uptime and capture state",
                                "responses": {"200": {"description": "health",
                                                      "content": {"application/json": {"schema": {"type": "object"}}}}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics",
                                 "responses": {"200": {"description": "metrics",
                                                       "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/openapi.json": {"get": {"summary": "this document", "responses": {"200": {"description": "OpenAPI"}}}},
            "/docs": {"get": {"summary": "interactive docs", "responses": {"200": {"description": "HTML"}}}},
        },
    }


def render(model_name: str, model_version: str) -> bytes:
    return orjson.dumps(document(model_name, model_version))


DOCS_PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>mlship model server</title>
<link rel="stylesheet" href="https://unpkg.com/swagger-ui-dist@5.17.14/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="https://unpkg.com/swagger-ui-dist@5.17.14/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script>
<noscript>The OpenAPI document is at <a href="/openapi.json">/openapi.json</a>.</noscript>
</body></html>
"""
