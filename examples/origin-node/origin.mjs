// An origin that accepts a request only with a valid attestgate receipt for that very request.
//
// The gateway (attestgate, a route with `receipt = true`) signs an `Attestgate-Receipt` for every
// request it forwards: a compact JWS (`typ` `attestgate-receipt+jwt`) with the gateway's key,
// published at `<gateway>/.well-known/attestgate/jwks.json`. This server checks, in order:
//
// 1. the JWS: `typ` `attestgate-receipt+jwt`, `alg` ES256 or EdDSA, a signature by a key of the
//    gateway's JWKS (`jose`'s createRemoteJWKSet: cached, refetched for an unknown `kid`);
// 2. `iss` (the gateway) and `aud` (this origin's own URL);
// 3. `exp` (not past) and `iat` (not in the future), with a small clock leeway;
// 4. the request binding: `htm` is this request's method, `htu` this request's URL (this
//    origin's URL + path + query, exactly), `content_digest` the RFC 9530 `sha-256` of the body
//    received (recomputed here, and the same as the `Content-Digest` header);
// 5. `jti` seen once (remembered until the receipt's `exp`).
//
// Anything else: 401 with {"error": "invalid_receipt", "reason": "..."} and nothing served. The
// binding is checked before `jti` is remembered, so a receipt replayed on another path, method
// or body is refused for that reason, and the genuine request is not locked out by it.
//
// Only `jose` (https://github.com/panva/jose) and node:http:
//
//   node origin.mjs --port 9002 --jwks https://gateway.example/.well-known/attestgate/jwks.json \
//       --issuer https://gateway.example --audience http://127.0.0.1:9002

import { createHash } from "node:crypto";
import http from "node:http";
import { parseArgs } from "node:util";
import { createRemoteJWKSet, errors, jwtVerify } from "jose";

export const RECEIPT_HEADER = "attestgate-receipt";
export const RECEIPT_TYP = "attestgate-receipt+jwt";
const ALGORITHMS = ["ES256", "EdDSA"];
const LEEWAY_SECS = 5;
const MAX_BODY = 1024 * 1024;

class Refused extends Error {
  constructor(reason) {
    super(reason);
    this.reason = reason;
  }
}

/** RFC 9530 Content-Digest with sha-256 (standard base64 with padding). */
export function contentDigest(body) {
  return `sha-256=:${createHash("sha256").update(body).digest("base64")}:`;
}

/** What a `jose` error means for the origin. */
function reasonOf(e) {
  if (e instanceof errors.JWTExpired) return "expired";
  if (e instanceof errors.JWTClaimValidationFailed) {
    if (e.claim === "iss") return "wrong_issuer";
    if (e.claim === "aud") return "wrong_audience";
    if (e.claim === "iat") return "issued_in_future";
    if (e.claim === "typ") return "wrong_typ";
    return "malformed";
  }
  if (e instanceof errors.JOSEAlgNotAllowed) return "alg_not_allowed";
  if (e instanceof errors.JWKSNoMatchingKey) return "unknown_kid";
  if (e instanceof errors.JWSSignatureVerificationFailed) return "bad_signature";
  if (e instanceof errors.JWKSTimeout || e instanceof errors.JWKSInvalid) return "jwks_unavailable";
  return "malformed";
}

export function makeVerifier({ jwks, issuer, audience, leeway = LEEWAY_SECS }) {
  const keys = createRemoteJWKSet(new URL(jwks));
  const aud = audience.replace(/\/+$/, "");
  const seen = new Map(); // jti -> exp

  return async function verify(method, target, headers, body) {
    const value = headers[RECEIPT_HEADER];
    if (value === undefined) throw new Refused("receipt_missing");
    // node joins repeated headers with ", "; a JWS has no comma, so a comma means two.
    if (Array.isArray(value) || value.includes(",")) throw new Refused("receipt_duplicated");
    let claims;
    try {
      ({ payload: claims } = await jwtVerify(value.trim(), keys, {
        algorithms: ALGORITHMS,
        typ: RECEIPT_TYP,
        issuer,
        audience: aud,
        clockTolerance: leeway,
        requiredClaims: ["exp", "iat", "jti", "htm", "htu", "content_digest"],
      }));
    } catch (e) {
      throw new Refused(reasonOf(e));
    }
    // `jose` accepts an `aud` array that contains ours; a receipt names exactly one upstream.
    if (claims.aud !== aud) throw new Refused("wrong_audience");
    const now = Math.floor(Date.now() / 1000);
    if (claims.iat > now + leeway) throw new Refused("issued_in_future");
    if (claims.htm !== method) throw new Refused("method_mismatch");
    if (claims.htu !== aud + target) throw new Refused("url_mismatch");
    const digest = contentDigest(body);
    if (claims.content_digest !== digest) throw new Refused("body_mismatch");
    const header = headers["content-digest"];
    if (header !== undefined && header !== digest) throw new Refused("content_digest_header_mismatch");
    if (typeof claims.jti !== "string" || claims.jti === "") throw new Refused("malformed");
    for (const [jti, exp] of seen) if (exp < now - leeway) seen.delete(jti);
    if (seen.has(claims.jti)) throw new Refused("replayed");
    seen.set(claims.jti, claims.exp);
    return claims;
  };
}

function answer(res, status, doc, head) {
  const data = JSON.stringify(doc);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(data),
    "cache-control": "no-store",
  });
  res.end(head ? undefined : data);
}

export function serve({ host = "127.0.0.1", port, jwks, issuer, audience, leeway }) {
  const verify = makeVerifier({ jwks, issuer, audience, leeway });
  const server = http.createServer((req, res) => {
    const chunks = [];
    let size = 0;
    req.on("data", (c) => {
      size += c.length;
      if (size > MAX_BODY) {
        answer(res, 413, { error: "too_large" });
        req.destroy();
      } else chunks.push(c);
    });
    req.on("end", async () => {
      const body = Buffer.concat(chunks);
      const head = req.method === "HEAD";
      try {
        const claims = await verify(req.method, req.url, req.headers, body);
        answer(res, 200, {
          ok: true,
          method: req.method,
          path: req.url,
          body_bytes: body.length,
          receipt: claims,
          verifier: "node",
        }, head);
      } catch (e) {
        if (!(e instanceof Refused)) throw e;
        answer(res, 401, { error: "invalid_receipt", reason: e.reason }, head);
      }
    });
  });
  return new Promise((resolve) => server.listen(port, host, () => resolve(server)));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: "9002" },
      jwks: { type: "string" },
      issuer: { type: "string" },
      audience: { type: "string" },
      leeway: { type: "string", default: String(LEEWAY_SECS) },
    },
  });
  for (const name of ["jwks", "issuer", "audience"]) {
    if (!values[name]) {
      console.error(`--${name} is required`);
      process.exit(2);
    }
  }
  await serve({ ...values, port: Number(values.port), leeway: Number(values.leeway) });
  console.error(`origin-node listening on ${values.host}:${values.port}`);
}
