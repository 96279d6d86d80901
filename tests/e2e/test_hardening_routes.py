"""Issue 12, routing and HMAC secrets, in the real Worker (policy: policies/hardening_routes.toml).

Every routing bypass the review found is tried next to a public catch-all (`/hr/**`): before the
fix each of these requests was forwarded to the origin without the checks of the route it
belongs to; now none reaches the origin (`origin.since() == []`). Tokens are minted by joserfc
(servers.Issuer.mint, servers.sign).
"""

import time

import pytest

from jwstools import assert_refused, bearer, last_reason, remark
from servers import hmac_key, sign


def agent_token(servers, **claims):
    return servers.issuer.mint("k-es256", **claims)


def forwarded_to(resp, origin, route):
    """The request reached the origin once, as `route`."""
    assert resp.status == 200, resp
    seen = origin.since()
    assert len(seen) == 1, seen
    headers = dict(seen[0]["headers"])
    assert headers["x-verified-route"] == route, headers
    return seen[0]


def test_the_catch_all_is_live(gateway, origin):
    # Without this the refusals below could pass for the wrong reason.
    forwarded_to(gateway.request("GET", "/hr/anything/else"), origin, "hr-public")


# ---- item 1: paths the origin normalises ---------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/hr/admin;jsessionid=x/users",
        "/hr/admin/users;jsessionid=x",
        "/hr/orders;x/7",
        "/hr/admin%3Bx/users",
    ],
)
def test_path_parameters_are_400_before_matching(gateway, origin, path):
    body = assert_refused(gateway.request("GET", path), 400, "invalid_request", origin)
    assert last_reason(gateway, body["request_id"]) == "unnormalised_path"


@pytest.mark.parametrize(
    "path", ["/hr/ADMIN/users", "/hr/Admin", "/hr/admin/USERS", "/hr/ORDERS/7", "/hr/Orders/7"]
)
def test_case_variants_of_protected_routes_do_not_reach_the_catch_all(gateway, origin, path):
    body = assert_refused(gateway.request("GET", path), 400, "invalid_request", origin)
    assert last_reason(gateway, body["request_id"]) == "path_variant"


def test_case_variants_are_refused_even_with_a_token(gateway, servers, origin):
    token = agent_token(servers, scope="hr:users")
    resp = gateway.request("GET", "/hr/ADMIN/users", bearer(token))
    assert_refused(resp, 400, "invalid_request", origin)


def test_trailing_slash_variant_never_reaches_a_less_protected_route(gateway, servers, origin):
    # /hr/admin/users asks for hr:users; /hr/admin/users/ matches /hr/admin/** (no scope) by its
    # pattern, which an origin that ignores the trailing slash would serve as /hr/admin/users.
    token = agent_token(servers)
    body = assert_refused(
        gateway.request("GET", "/hr/admin/users/", bearer(token)), 400, "invalid_request", origin
    )
    assert last_reason(gateway, body["request_id"]) == "path_variant"
    # the route itself asks for its scope
    assert_refused(
        gateway.request("GET", "/hr/admin/users", bearer(token)), 403, "insufficient_scope", origin
    )
    ok = agent_token(servers, scope="hr:users")
    forwarded_to(gateway.request("GET", "/hr/admin/users", bearer(ok)), origin, "hr-admin-users")


def test_trailing_slash_variant_of_an_exact_route_is_refused(gateway, origin):
    body = assert_refused(gateway.request("GET", "/hr/orders/7/"), 400, "invalid_request", origin)
    assert last_reason(gateway, body["request_id"]) == "path_variant"


def test_rest_covers_its_prefix(gateway, servers, origin):
    # Only /hr/admin/** is protected: /hr/admin is part of it, not of the public /hr/**.
    for path in ["/hr/admin", "/hr/admin/"]:
        assert_refused(gateway.request("GET", path), 401, "missing_token", origin)
    token = agent_token(servers)
    seen = forwarded_to(gateway.request("GET", "/hr/admin", bearer(token)), origin, "hr-admin")
    assert dict(seen["headers"])["x-verified-user"] == "user:alice"


# ---- item 2: methods ------------------------------------------------------------------------


def test_head_is_get_and_never_falls_through_to_the_catch_all(gateway, origin):
    resp = gateway.request("HEAD", "/hr/orders/7")
    assert resp.status == 401, resp
    assert resp.headers["www-authenticate"].startswith("Bearer "), resp.headers
    assert resp.headers.get("cache-control") == "no-store"
    assert origin.since() == []


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "PROPFIND"])
def test_a_method_the_route_does_not_list_is_405_with_allow(gateway, servers, origin, method):
    token = agent_token(servers)
    for headers in [None, bearer(token)]:
        resp = gateway.request(method, "/hr/orders/7", headers, body=b"{}")
        body = assert_refused(resp, 405, "method_not_allowed", origin)
        assert resp.headers["allow"] == "GET, HEAD", resp.headers
        assert "www-authenticate" not in resp.headers
        assert last_reason(gateway, body["request_id"]) == "method_not_allowed"


def test_the_listed_method_still_works(gateway, servers, origin):
    token = agent_token(servers)
    seen = forwarded_to(gateway.request("GET", "/hr/orders/7", bearer(token)), origin, "hr-orders")
    assert seen["method"] == "GET" and seen["path"] == "/hr/orders/7"


# ---- item 9: HMAC secrets with a kid, several per provider ----------------------------------


def hs_token(secret: bytes, kid: str | None, **claims) -> str:
    header = {"alg": "HS256", "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    body = {"did": "device-77", "iat": int(time.time()), "exp": int(time.time()) + 300, **claims}
    return sign(header, body, hmac_key(secret))


def test_a_token_is_checked_with_the_secret_its_kid_names(gateway, servers, origin, hr_secrets):
    for kid in ["k2", "k1"]:
        remark(origin, servers)
        resp = gateway.request("GET", "/hr/rotating", {"hr-token": hs_token(hr_secrets[kid], kid)})
        seen = forwarded_to(resp, origin, "hr-rotating")
        headers = dict(seen["headers"])
        assert headers["x-verified-device"] == "device-77"
        assert "hr-token" not in headers


@pytest.mark.parametrize(
    "kid, signed_with, reason",
    [
        ("k3", "k2", "unknown_key"),
        ("k1", "k2", "bad_signature"),
        (None, "k2", "kid_missing"),
    ],
)
def test_a_token_whose_kid_does_not_name_its_key_is_401(
    gateway, origin, hr_secrets, kid, signed_with, reason
):
    token = hs_token(hr_secrets[signed_with], kid)
    body = assert_refused(
        gateway.request("GET", "/hr/rotating", {"hr-token": token}), 401, "invalid_token", origin
    )
    assert last_reason(gateway, body["request_id"]) == reason


def test_one_missing_secret_of_several_is_503(gateway, origin, hr_secrets):
    token = hs_token(hr_secrets["k1"], "k1")
    body = assert_refused(
        gateway.request("GET", "/hr/half", {"hr-token": token}), 503, "temporarily_unavailable", origin
    )
    assert last_reason(gateway, body["request_id"]) == "secret_unavailable"
    assert "HR_SECRET_NEVER_SET" in gateway.logs()
