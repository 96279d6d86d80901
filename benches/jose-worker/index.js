// The comparison Worker: what a team would write instead of attestgate, with `jose` (the most
// used JOSE library for Workers). It does the same checks as the attestgate route
// "orders-read" in benches/policies: Bearer extraction, ES256/EdDSA signature against the
// issuer's JWKS (cached in isolate memory by createRemoteJWKSet), iss, aud, exp/nbf/iat with 60 s
// skew, typ at+jwt, max lifetime 3600 s, required sub and jti, scope orders:read, then forwards
// to the origin with verified-claims headers; GET /healthz is public (forwarded without a token),
// as attestgate's route "health". Used only by the benchmark (benches/workerd.py).
import { createRemoteJWKSet, jwtVerify } from "jose";

let jwks;

function deny(status, error) {
  return new Response(JSON.stringify({ error }), {
    status,
    headers: { "content-type": "application/json", "cache-control": "no-store" },
  });
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/healthz" && request.method === "GET") {
      return fetch(env.ORIGIN + url.pathname + url.search, { method: "GET", headers: request.headers });
    }
    const auth = request.headers.get("authorization");
    if (!auth) return deny(401, "missing_token");
    const match = /^Bearer +([A-Za-z0-9_.-]+)$/i.exec(auth);
    if (!match) return deny(400, "invalid_request");
    jwks ??= createRemoteJWKSet(new URL(env.JWKS_URI), { cacheMaxAge: 600_000, cooldownDuration: 30_000 });
    let payload;
    try {
      ({ payload } = await jwtVerify(match[1], jwks, {
        issuer: env.ISSUER,
        audience: "https://api.example.com",
        algorithms: ["ES256", "EdDSA"],
        typ: "at+jwt",
        clockTolerance: 60,
        maxTokenAge: 3600,
        requiredClaims: ["exp", "sub", "jti"],
      }));
    } catch {
      return deny(401, "invalid_token");
    }
    const scopes = String(payload.scope ?? "").split(" ");
    if (!scopes.includes("orders:read")) return deny(403, "insufficient_scope");
    const headers = new Headers(request.headers);
    for (const name of [...headers.keys()]) {
      if (name.startsWith("x-verified-")) headers.delete(name);
    }
    headers.delete("authorization");
    headers.set("x-verified-user", String(payload.sub));
    if (payload.act?.sub) headers.set("x-verified-agent", String(payload.act.sub));
    headers.set("x-verified-route", "orders-read");
    return fetch(env.ORIGIN + url.pathname + url.search, {
      method: request.method,
      headers,
      body: request.body,
    });
  },
};
