"""Issue 15: request bodies (read under a cap, forwarded byte for byte), intent rules against the
token's RFC 9396 `authorization_details`, and session budgets. Routes `in-*` under `/in/`
(tests/e2e/policies/intent.toml). Tokens are minted by joserfc (servers.Issuer)."""

import hashlib
import http.client

import pytest

from conftest import Response
from test_foundation import assert_refusal


def bearer(servers, **claims):
    return {"authorization": "Bearer " + servers.issuer.mint("k-es256", **claims)}


def chunked(gateway, method, path, headers, chunks):
    """Send a chunked upload (no Content-Length), one chunk per item of `chunks`."""
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.putheader("transfer-encoding", "chunked")
        conn.endheaders()
        for c in chunks:
            conn.send(b"%x\r\n%s\r\n" % (len(c), c))
        conn.send(b"0\r\n\r\n")
        resp = conn.getresponse()
        data = resp.read()
        return Response(resp.status, dict(resp.getheaders()), data)
    finally:
        conn.close()


# ---- request bodies (item 2) ------------------------------------------------------------------

EVERY_BYTE = bytes(range(256)) * 3


def test_a_read_body_is_forwarded_byte_for_byte(gateway, servers, origin):
    resp = gateway.request("POST", "/in/body/x", bearer(servers), EVERY_BYTE)
    assert resp.status == 200, resp
    seen = origin.since()
    assert len(seen) == 1
    assert seen[0]["body_sha256"] == hashlib.sha256(EVERY_BYTE).hexdigest()
    assert dict(seen[0]["headers"])["content-length"] == str(len(EVERY_BYTE))


def test_a_chunked_upload_is_read_and_forwarded_byte_for_byte(gateway, servers, origin):
    parts = [EVERY_BYTE[i:i + 100] for i in range(0, len(EVERY_BYTE), 100)]
    resp = chunked(gateway, "POST", "/in/body/chunked", bearer(servers), parts)
    assert resp.status == 200, resp
    seen = origin.since()
    assert len(seen) == 1
    assert seen[0]["body_sha256"] == hashlib.sha256(EVERY_BYTE).hexdigest()
    assert resp.json()["body_bytes"] == len(EVERY_BYTE)


def test_content_length_over_the_cap_is_413_and_nothing_is_forwarded(gateway, servers, origin):
    resp = gateway.request("POST", "/in/body/big", bearer(servers), b"a" * 1025)
    assert_refusal(resp, 413, "request_too_large", origin)
    # At the cap exactly: forwarded.
    resp = gateway.request("POST", "/in/body/big", bearer(servers), b"a" * 1024)
    assert resp.status == 200, resp


def test_a_chunked_upload_crossing_the_cap_is_413(gateway, servers, origin):
    resp = chunked(gateway, "POST", "/in/body/big", bearer(servers), [b"a" * 600, b"b" * 600])
    assert_refusal(resp, 413, "request_too_large", origin)


def test_a_body_cap_refusal_comes_before_the_token(gateway, origin):
    # 413 is a property of the request: decided before any token work (nothing to verify).
    resp = gateway.request("POST", "/in/body/big", {}, b"a" * 2000)
    assert_refusal(resp, 413, "request_too_large", origin)
    assert "www-authenticate" not in resp.headers


# ---- intent rules (items 1, 3, 4) --------------------------------------------------------------

import base64
import json

from jwstools import decision_line, jws

IBAN = "DE02100100109307118603"


def payment_detail(servers, **over):
    d = {
        "type": "payment_initiation",
        "actions": ["initiate", "status"],
        "locations": [servers.base],
        "identifier": "acc-1",
        "creditorAccount": {"iban": IBAN},
        "instructedAmount": {"currency": "EUR", "amount": "100.00"},
        "remittance": "INV-*",
    }
    for k, v in over.items():
        if v is None:
            d.pop(k, None)
        else:
            d[k] = v
    return d


def payment_body(**over):
    b = {"creditor": {"iban": IBAN, "name": "ACME"}, "amount": "99.50", "currency": "EUR"}
    b.update(over)
    return json.dumps(b).encode()


def pay(gateway, servers, details, body=None, account="acc-1", ref="INV-7", headers=None, token=None):
    gateway._origin = servers.base
    token = token or servers.issuer.mint("k-es256", authorization_details=details)
    h = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    h.update(headers or {})
    return gateway.request(
        "POST", f"/in/accounts/{account}/payments?reference={ref}", h,
        payment_body() if body is None else body,
    )


def remediation(resp):
    challenge = resp.headers["www-authenticate"]
    value = challenge.split('authorization_remediation="', 1)[1].split('"', 1)[0]
    return json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))


def assert_not_covered(gateway, resp, origin, failed):
    body = assert_refusal(resp, 401, "insufficient_authorization", origin)
    challenge = resp.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="e2e.attestgate.test", error="insufficient_authorization", authorization_remediation="')
    # What the route needs, from the policy only: nothing of the token or the body echoed.
    assert remediation(resp) == {"authorization_details": [{
        "type": "payment_initiation", "actions": ["initiate"], "locations": [gateway_origin(gateway)],
    }]}
    assert IBAN not in challenge and "acc-" not in challenge
    line = json.loads(decision_line(gateway, body["request_id"]))
    assert line["intent_failed"].startswith(failed), line
    assert line["intent_hash"]
    return line


def gateway_origin(gateway):
    return gateway._origin


def test_a_covered_payment_is_forwarded_byte_for_byte(gateway, servers, origin):
    body = payment_body()
    resp = pay(gateway, servers, [payment_detail(servers)], body)
    assert resp.status == 200, resp
    seen = origin.since()
    assert len(seen) == 1
    assert seen[0]["body_sha256"] == hashlib.sha256(body).hexdigest()
    # The second detail covers when the first does not; the decision names it.
    other = payment_detail(servers, type="account_information")
    resp = pay(gateway, servers, [other, payment_detail(servers)])
    assert resp.status == 200, resp


@pytest.mark.parametrize("what,detail,failed", [
    ("type", {"type": "payment"}, "type"),
    ("unknown type", {"type": "crypto_transfer"}, "type"),
    ("action", {"actions": ["status"]}, "action"),
    ("location", {"locations": ["https://elsewhere.example"]}, "location"),
    ("identifier", {"identifier": "acc-2"}, "binding identifier"),
    ("iban", {"creditorAccount": {"iban": "DE89370400440532013000"}}, "binding creditorAccount.iban"),
    ("amount over the limit", {"instructedAmount": {"currency": "EUR", "amount": "99.49"}}, "binding instructedAmount.amount"),
    ("currency", {"instructedAmount": {"currency": "USD", "amount": "100.00"}}, "binding instructedAmount.amount"),
    ("glob", {"remittance": "PO-*"}, "binding remittance"),
])
def test_each_mismatch_is_refused_and_named(gateway, servers, origin, what, detail, failed):
    resp = pay(gateway, servers, [payment_detail(servers, **detail)])
    assert_not_covered(gateway, resp, origin, failed)


def test_another_unicode_normal_form_is_another_identifier(gateway, servers, origin):
    nfc = "caf\u00e9"
    resp = pay(gateway, servers, [payment_detail(servers, identifier=nfc)], account="caf%C3%A9")
    assert resp.status == 200, resp
    remark_origin(origin, servers)
    # The token names the NFD spelling ("e" + U+0301): not the same account.
    resp = pay(gateway, servers, [payment_detail(servers, identifier="cafe\u0301")], account="caf%C3%A9")
    assert_not_covered(gateway, resp, origin, "binding identifier")


def remark_origin(origin, servers):
    origin.mark = servers.recorder.count()


def test_the_body_changed_after_the_token_was_signed_is_refused(gateway, servers, origin):
    # The token declared at most 100.00 EUR to this IBAN; the body now asks for more.
    resp = pay(gateway, servers, [payment_detail(servers)], payment_body(amount="1000.00"))
    assert_not_covered(gateway, resp, origin, "binding instructedAmount.amount")
    resp = pay(gateway, servers, [payment_detail(servers)], payment_body(creditor={"iban": "DE89370400440532013000"}))
    assert_not_covered(gateway, resp, origin, "binding creditorAccount.iban")
    # And the token itself edited after signing (a higher limit): its signature fails.
    token = servers.issuer.mint("k-es256", authorization_details=[payment_detail(servers)])
    head, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["authorization_details"][0]["instructedAmount"]["amount"] = "100000.00"
    forged = f"{head}.{base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b'=').decode()}.{sig}"
    resp = pay(gateway, servers, None, payment_body(amount="5000.00"), token=forged)
    assert_refusal(resp, 401, "invalid_token", origin)


@pytest.mark.parametrize("what,value", [
    ("a string", "payment_initiation"),
    ("an object", {"type": "payment_initiation"}),
    ("a number", 7),
    ("an array of strings", ["payment_initiation"]),
])
def test_authorization_details_of_the_wrong_json_type_never_cover(gateway, servers, origin, what, value):
    resp = pay(gateway, servers, value)
    assert_not_covered(gateway, resp, origin, "malformed")


@pytest.mark.parametrize("what,detail", [
    ("amount as a float", {"instructedAmount": {"currency": "EUR", "amount": 100.5}}),
    ("amount as an object", {"instructedAmount": {"currency": "EUR", "amount": {"v": "100"}}}),
    ("identifier as a list", {"identifier": ["acc-1"]}),
    ("actions as a string", {"actions": "initiate"}),
    ("locations as a string", {"locations": "x"}),
    ("deeply nested iban", {"creditorAccount": {"iban": {"iban": {"iban": IBAN}}}}),
])
def test_detail_fields_of_the_wrong_type_never_cover(gateway, servers, origin, what, detail):
    resp = pay(gateway, servers, [payment_detail(servers, **detail)])
    assert_refusal(resp, 401, "insufficient_authorization", origin)


def test_token_level_bad_input_is_an_invalid_token(gateway, servers, origin):
    key = servers.issuer.keys["k-es256"]
    header = {"alg": "ES256", "kid": "k-es256", "typ": "at+jwt"}
    claims = servers.issuer.claims(authorization_details=[payment_detail(servers)])
    # A duplicated member inside authorization_details (the last one would raise the limit).
    text = json.dumps(claims).replace('"amount": "100.00"', '"amount": "100.00", "amount": "100000.00"')
    assert text.count('"amount"') == 2
    resp = pay(gateway, servers, None, token=jws(header, text.encode(), key))
    assert_refusal(resp, 401, "invalid_token", origin)
    # Nested deeper than the JSON reader's limit.
    deep = servers.issuer.claims()
    text = json.dumps(deep)[:-1] + ', "authorization_details": ' + "[" * 200 + "]" * 200 + "}"
    resp = pay(gateway, servers, None, token=jws(header, text.encode(), key))
    assert_refusal(resp, 401, "invalid_token", origin)
    # Huge: far over the token size limit.
    big = [payment_detail(servers, note="x" * 20000)]
    resp = pay(gateway, servers, big)
    assert resp.status in (401, 431), resp
    assert origin.since() == []


def test_a_token_without_any_intent_is_refused(gateway, servers, origin):
    token = servers.issuer.mint("k-es256")
    resp = pay(gateway, servers, None, token=token)
    assert_refusal(resp, 401, "insufficient_authorization", origin)


@pytest.mark.parametrize("what,body,headers,status,code", [
    ("not JSON", b"amount=99.50&currency=EUR", {}, 400, "invalid_request"),
    ("truncated JSON", payment_body()[:-5], {}, 400, "invalid_request"),
    ("a duplicated member", b'{"creditor":{"iban":"%s"},"amount":"1.00","amount":"5000.00","currency":"EUR"}' % IBAN.encode(), {}, 400, "invalid_request"),
    ("an escaped duplicate", b'{"creditor":{"iban":"%s"},"amount":"1.00","\\u0061mount":"5000.00","currency":"EUR"}' % IBAN.encode(), {}, 400, "invalid_request"),
    ("too deep", b'{"creditor":{"iban":"%s"},"amount":"1.00","currency":"EUR","x":%s1%s}' % (IBAN.encode(), b"[" * 40, b"]" * 40), {}, 400, "invalid_request"),
    ("an array, not an object", b"[1]", {}, 400, "invalid_request"),
    ("amount as a JSON float", payment_body(amount=99.5), {}, 400, "invalid_request"),
    ("amount missing", json.dumps({"creditor": {"iban": IBAN}, "currency": "EUR"}).encode(), {}, 400, "invalid_request"),
    ("iban of the wrong type", payment_body(creditor={"iban": [IBAN]}), {}, 400, "invalid_request"),
    ("a lying Content-Type", payment_body(), {"content-type": "text/plain"}, 415, "unsupported_media_type"),
    ("a form Content-Type", payment_body(), {"content-type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
    ("compressed", payment_body(), {"content-encoding": "gzip"}, 415, "unsupported_media_type"),
    ("over the cap", payment_body(pad="x" * 5000), {}, 413, "request_too_large"),
    ("invalid UTF-8", b'{"creditor":{"iban":"\xff"},"amount":"1.00","currency":"EUR"}', {}, 400, "invalid_request"),
])
def test_bad_bodies_are_refused_clearly(gateway, servers, origin, what, body, headers, status, code):
    resp = pay(gateway, servers, [payment_detail(servers)], body, headers=headers)
    assert_refusal(resp, status, code, origin)


def test_a_repeated_query_parameter_is_refused(gateway, servers, origin):
    resp = pay(gateway, servers, [payment_detail(servers)], ref="INV-7&reference=PO-1")
    assert_refusal(resp, 400, "invalid_request", origin)


def test_a_chunked_payment_is_checked_and_forwarded(gateway, servers, origin):
    body = payment_body()
    token = servers.issuer.mint("k-es256", authorization_details=[payment_detail(servers)])
    h = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    resp = chunked(gateway, "POST", "/in/accounts/acc-1/payments?reference=INV-1", h, [body[:10], body[10:]])
    assert resp.status == 200, resp
    seen = origin.since()
    assert len(seen) == 1 and seen[0]["body_sha256"] == hashlib.sha256(body).hexdigest()
    remark_origin(origin, servers)
    # The same chunked upload over the limit: refused, nothing forwarded.
    body = payment_body(amount="100.01")
    resp = chunked(gateway, "POST", "/in/accounts/acc-1/payments?reference=INV-1", h, [body[:10], body[10:]])
    assert_refusal(resp, 401, "insufficient_authorization", origin)


# ---- session budgets (item 5) -----------------------------------------------------------------

import secrets as _secrets
import time
from concurrent.futures import ThreadPoolExecutor


def budget_detail(account, limit="1000.00"):
    return {"type": "payment_initiation", "actions": ["initiate"], "identifier": account,
            "instructedAmount": {"currency": "EUR", "amount": limit}}


def budget_pay(gateway, token, account, amount="1.00"):
    return gateway.request(
        "POST", f"/in/budget/{account}/payments",
        {"authorization": f"Bearer {token}", "content-type": "application/json"},
        json.dumps({"amount": amount, "currency": "EUR"}).encode(),
    )


def session_token(servers, details, **claims):
    # A user of its own: a session of its own.
    return servers.issuer.mint("k-es256", sub=f"user:{_secrets.token_hex(6)}",
                               act={"sub": "agent:payer"}, authorization_details=details, **claims)


def test_200_concurrent_payments_against_a_budget_of_10_give_exactly_10(gateway, servers, origin):
    token = session_token(servers, [budget_detail("acc-a")])
    with ThreadPoolExecutor(max_workers=40) as pool:
        results = list(pool.map(lambda _: budget_pay(gateway, token, "acc-a"), range(200)))
    statuses = [r.status for r in results]
    assert statuses.count(200) == 10, sorted(set(statuses))
    assert statuses.count(429) == 190, sorted(set(statuses))
    assert len(origin.since()) == 10
    limited = next(r for r in results if r.status == 429)
    assert limited.json()["error"] == "rate_limited"
    retry = int(limited.headers["retry-after"])
    assert 3500 <= retry <= 3600, retry


def test_the_cumulative_amount_stays_within_the_declared_limit(gateway, servers, origin):
    token = session_token(servers, [budget_detail("acc-a", "100.00")])
    for amount in ["33.33", "33.33", "33.34"]:
        resp = budget_pay(gateway, token, "acc-a", amount)
        assert resp.status == 200, resp
    remark_origin(origin, servers)
    resp = budget_pay(gateway, token, "acc-a", "0.01")
    body = assert_refusal(resp, 403, "insufficient_authorization", origin)
    line = json.loads(decision_line(gateway, body["request_id"]))
    assert line["reason"] == "budget_spent" and line["budget_spent"] == "amount", line
    assert "divergence" in line


def test_distinct_identifiers_are_bounded_and_divergence_is_recorded(gateway, servers, origin):
    token = session_token(servers, [budget_detail(a) for a in ["acc-a", "acc-b", "acc-c"]])
    assert budget_pay(gateway, token, "acc-a").status == 200
    assert budget_pay(gateway, token, "acc-b").status == 200
    remark_origin(origin, servers)
    resp = budget_pay(gateway, token, "acc-c")
    body = assert_refusal(resp, 403, "insufficient_authorization", origin)
    line = json.loads(decision_line(gateway, body["request_id"]))
    assert line["budget_spent"] == "identifiers", line
    # An attempt outside the declared intent (an account no detail names) diverges further.
    before = line["divergence"]
    resp = budget_pay(gateway, token, "acc-z")
    body = assert_refusal(resp, 401, "insufficient_authorization", origin)
    line = json.loads(decision_line(gateway, body["request_id"]))
    assert line["divergence"] == before + 1, line


def test_the_session_deadline(gateway, servers, origin):
    token = session_token(servers, None)
    h = {"authorization": f"Bearer {token}"}
    resp = gateway.request("GET", "/in/deadline", h)
    assert resp.status == 200, resp
    line = None
    time.sleep(2.2)
    remark_origin(origin, servers)
    resp = gateway.request("GET", "/in/deadline", h)
    body = assert_refusal(resp, 403, "insufficient_authorization", origin)
    line = json.loads(decision_line(gateway, body["request_id"]))
    assert line["budget_spent"] == "deadline", line


# ---- attestgate explain with a body (item 6) ---------------------------------------------------

import subprocess

from conftest import ROOT
from servers import hmac_key, sign

CLI_POLICY = """
[gateway]
origin = "https://bank.example"
[provider.agent]
algorithms = ["HS256"]
secret = "PAY_SECRET"
[[route]]
id = "payments"
methods = ["POST"]
path = "/accounts/{account}/payments"
require = { all = ["agent"] }
[route.intent]
type = "payment_initiation"
actions = ["initiate"]
[route.intent.bind]
"identifier" = "path.account"
"instructedAmount.amount" = { max = "body.amount", currency = "body.currency" }
"""


def test_explain_shows_which_detail_covers_or_which_binding_fails(tmp_path):
    subprocess.run(["cargo", "build", "--quiet", "--bin", "attestgate"], cwd=ROOT, check=True, timeout=900)
    cli = ROOT / "target" / "debug" / "attestgate"
    (tmp_path / "p.toml").write_text(CLI_POLICY)
    secret = b"\x07" * 32
    now = 1_900_000_000
    details = [
        {"type": "payment_initiation", "actions": ["initiate"], "identifier": "acc-1",
         "instructedAmount": {"currency": "EUR", "amount": "100.00"}},
        {"type": "payment_initiation", "actions": ["initiate"], "identifier": "acc-1",
         "instructedAmount": {"currency": "EUR", "amount": "500.00"}},
    ]
    tok = sign({"alg": "HS256", "typ": "JWT"},
               {"sub": "u", "iat": now - 5, "exp": now + 300, "authorization_details": details},
               hmac_key(secret))

    def explain(amount):
        (tmp_path / "body.json").write_text(json.dumps({"amount": amount, "currency": "EUR"}))
        out = subprocess.run(
            [str(cli), "explain", "POST", "https://bank.example/accounts/acc-1/payments",
             "--dir", str(tmp_path), "--token", f"agent={tok}", "--now", str(now),
             "--secret", "PAY_SECRET=" + base64.b64encode(secret).decode(),
             "--header", "content-type=application/json", "--body", str(tmp_path / "body.json")],
            capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    out = explain("250.00")
    assert "[FAIL] detail 0: binding instructedAmount.amount max body.amount" in out, out
    assert "[ok] detail 1 covers the request" in out, out
    assert "intent  covered by detail 1" in out and "verdict   ALLOW" in out, out
    out = explain("900.00")
    assert "no detail covers the request" in out, out
    assert "verdict   401 insufficient_authorization (intent_binding)" in out, out
    assert "authorization_remediation=" in out, out
