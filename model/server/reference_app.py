"""The benchmark's reference: the usual bring-your-own-container pattern, Flask under gunicorn
calling the same inference.py handlers once per request. Not used in production.

    MLSHIP_MODEL_DIR=<extracted model dir> gunicorn -w 2 -b 127.0.0.1:8081 'model.server.reference_app:create_app()'
"""

from __future__ import annotations

import os
from pathlib import Path

import flask

from model.server.package import Handlers


def create_app() -> flask.Flask:
    handlers = Handlers.load(Path(os.environ["MLSHIP_MODEL_DIR"]))
    app = flask.Flask("mlship-reference")

    @app.get("/ping")
    def ping():
        return "", 200

    @app.post("/invocations")
    def invocations():
        content_type = flask.request.headers.get("Content-Type", "")
        accept = flask.request.headers.get("Accept") or content_type
        try:
            data = handlers.input(flask.request.get_data(), content_type)
        except handlers.unsupported as error:
            return str(error), 415
        except handlers.invalid_input as error:
            return str(error), 400
        body, output_type = handlers.output(handlers.predict(data), accept)
        return flask.Response(body, status=200, content_type=output_type)

    return app
