"""Property-based: 1,000+ generated requests, well-formed and not, never get a 5xx or stop the server."""

from __future__ import annotations

import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serve_helpers import ServerProcess, features, packaged_model


@pytest.fixture(scope="module")
def server():
    with ServerProcess(["--model", str(packaged_model()), "--host", "127.0.0.1", "--port", "0", "--workers", "1",
                        "--no-access-log"]) as running:
        yield running


# Header values a client can send: visible ASCII, no leading or trailing space (httpx refuses others).
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40).map(str.strip)
number = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from(["", "nan", "1e400", "-0", "abc", " 3 "]))
# Built from the packaged model's schema when first drawn (the model is trained on first use).
category = st.deferred(lambda: st.one_of(
    st.sampled_from([c for f in features() if f["type"] == "categorical" for c in f["categories"]] + ["", "other"]),
    st.text(max_size=10)))
cell = st.one_of(number, category, st.none(), st.booleans())
schema_row = st.deferred(lambda: st.tuples(*[number if f["type"] == "numeric" else category for f in features()]).map(list))
row = st.one_of(schema_row, st.lists(cell, max_size=20))
csv_body = st.lists(row, min_size=0, max_size=5).map(
    lambda rows: "\n".join(",".join("" if value is None else str(value) for value in r) for r in rows))
json_value = st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
                          lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                          max_leaves=12)
instances = st.one_of(
    st.lists(row, max_size=4),
    st.deferred(lambda: st.lists(st.fixed_dictionaries({}, optional={f["name"]: cell for f in features()}), max_size=4)),
    json_value)
json_body = st.one_of(st.builds(lambda value: {"instances": value}, instances), json_value).map(
    lambda document: __import__("json").dumps(document, allow_nan=True))
body = st.one_of(csv_body, json_body, st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
content_type = st.one_of(st.sampled_from(["text/csv", "application/json", "text/csv; charset=utf-8",
                                          "application/json; charset=utf-8", "text/plain", "application/x-npy", ""]),
                         header_text)
accept = st.one_of(st.none(), st.sampled_from(["text/csv", "application/json", "*/*", "text/*", "image/png",
                                               "application/json, text/csv;q=0.5", ""]), header_text)
method = st.sampled_from(["POST"] * 6 + ["GET", "PUT", "DELETE", "HEAD", "PATCH"])
path = st.one_of(st.sampled_from(["/invocations"] * 8 + ["/ping", "/health", "/metrics", "/openapi.json", "/docs"]),
                 st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/_.-~", max_size=30).map("/".__add__))


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(method=method, path=path, content_type=content_type, accept=accept, body=body)
def test_no_generated_request_gets_a_5xx(server, method, path, content_type, accept, body):
    headers = {"content-type": content_type}
    if accept is not None:
        headers["accept"] = accept
    response = server.client.request(method, path, content=body.encode("utf-8"), headers=headers)
    assert response.status_code < 500, (method, path, headers, body, response.text)
    if response.status_code >= 400 and method != "HEAD":
        assert response.text.strip(), "a refusal says why"


raw_head = st.one_of(
    st.binary(max_size=120),
    st.builds(lambda verb, target, version, extra: f"{verb} {target} {version}\r\n{extra}\r\n\r\n".encode("latin-1"),
              st.sampled_from(["GET", "POST", "", "G E T"]), st.sampled_from(["/ping", "/invocations", "", "*"]),
              st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2", "FOO"]),
              st.sampled_from(["", "Content-Length: -1", "Content-Length: abc", "Transfer-Encoding: chunked",
                               "Content-Length: 99999999999", "NoColonHeader", " Leading: space"])))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(raw=raw_head)
def test_malformed_http_is_refused_with_a_4xx_or_a_closed_connection(server, raw):
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        connection.sendall(raw)
        connection.shutdown(socket.SHUT_WR)
        try:
            answer = connection.recv(64)
        except (ConnectionResetError, TimeoutError):
            answer = b""
    if answer:
        status = int(answer.split(b" ", 2)[1])
        assert status < 500, (raw, answer)


def test_the_server_still_answers_after_the_fuzzing(server):
    assert server.client.get("/ping").status_code == 200
    assert server.process.poll() is None
