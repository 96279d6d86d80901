"""The forwarding path after the hot-path changes of issue 7: the Worker hands the origin's
response back as it came and forwards method and body; the challenge endpoint still answers."""

import json


def test_origin_response_is_passed_through_unchanged(gateway, origin):
    resp = gateway.request("GET", "/healthz?probe=2")
    assert resp.status == 200, resp
    assert resp.headers["content-type"] == "application/json"
    body = json.loads(resp.body)
    assert body["origin"] == "demo-origin" and body["path"] == "/healthz?probe=2"
    assert resp.headers["content-length"] == str(len(resp.body))


def test_method_and_body_are_forwarded(gateway, origin):
    resp = gateway.request("POST", "/healthz", {"content-type": "text/plain"}, body=b"hello body")
    assert resp.status == 200, resp
    seen = origin.since()
    assert seen[-1]["method"] == "POST" and seen[-1]["body"] == "hello body"


def test_challenge_endpoint_issues_and_refuses_other_methods(gateway):
    resp = gateway.request("POST", "/.well-known/attestgate/challenge")
    assert resp.status == 200, resp
    assert resp.json()["nonce"] == resp.headers["dpop-nonce"]
    resp = gateway.request("GET", "/.well-known/attestgate/challenge")
    assert resp.status == 405 and resp.headers["allow"] == "POST", resp
