"""The forwarding path after the hot-path changes of issue 7: the Worker hands the origin's
response back as it came and forwards method and body; the challenge endpoint still answers."""

import json
import time

from jwstools import decision_line


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


def test_unreachable_origin_is_the_gateways_502(gateway, origin):
    resp = gateway.request("GET", "/dead-origin")
    assert resp.status == 502, resp
    body = resp.json()
    assert body["error"] == "bad_gateway" and body["request_id"], body
    assert resp.headers["content-type"] == "application/json"
    assert resp.headers["cache-control"] == "no-store"
    # The decision (public, forwarded) is logged, and the failure after it on its own line.
    line = decision_line(gateway, body["request_id"])
    assert line is not None and json.loads(line)["verdict"] == "public", line
    deadline = time.time() + 3
    while '"origin_error"' not in gateway.logs() and time.time() < deadline:
        time.sleep(0.05)
    errors = [l for l in gateway.logs().splitlines() if '"origin_error"' in l and body["request_id"] in l]
    assert errors, "no origin_error line for the request"


def test_decision_line_has_the_gateways_status_only_for_its_own_answers(gateway):
    refused = gateway.request("GET", "/v1/orders/1")
    assert refused.status == 401, refused
    line = json.loads(decision_line(gateway, refused.json()["request_id"]))
    assert line["status"] == 401 and line["verdict"] == "deny" and "latency_ms" in line
    # A forwarded request: the origin answers, so the line (written at decision time) has no
    # status of its own. Its request id is not sent to the client: find the newest public line.
    assert gateway.request("GET", "/healthz").status == 200
    deadline = time.time() + 3
    while True:
        lines = [json.loads(l[l.index("{"):]) for l in gateway.logs().splitlines()
                 if '"attestgate":"decision"' in l and '"route":"health"' in l]
        if lines or time.time() > deadline:
            break
        time.sleep(0.05)
    assert lines, "no decision line for the public route"
    assert lines[-1]["verdict"] == "public" and "status" not in lines[-1], lines[-1]


def test_request_ids_are_distinct_and_random_looking(gateway):
    # More than one batch of the Worker's id pool (64 ids per CSPRNG call).
    ids = [gateway.request("GET", "/v1/orders/1").json()["request_id"] for _ in range(150)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 16 and set(i) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") for i in ids), ids[:3]


def test_methods_are_matched_and_forwarded_exactly(gateway, origin):
    # A method the path's route does not list is 405 with Allow (SPEC §2; never silently matched
    # as GET, never handed to a broader route) ...
    resp = gateway.request("PROPFIND", "/v1/orders/1")
    assert resp.status == 405 and resp.json()["error"] == "method_not_allowed", resp
    assert resp.headers["allow"] == "GET, HEAD", resp.headers
    # ... and a route that accepts any method forwards the method unchanged.
    before = len(origin.since())
    resp = gateway.request("PROPFIND", "/healthz")
    assert resp.status == 200, resp
    seen = origin.since()
    assert len(seen) == before + 1 and seen[-1]["method"] == "PROPFIND", seen[-1:]
