// The real OAuth authorization server of the injection tests (tests/e2e/test_inject.py): npm
// `oidc-provider` (features.clientCredentials), on 127.0.0.1 only. Tokens it issues are its own
// (opaque, checked by the tests through its introspection endpoint).
//
// Environment: AS_PORT, AS_CLIENT_ID, AS_CLIENT_SECRET; for the token exchange grant also
// AS_SUBJECT_ISSUER, AS_SUBJECT_JWKS (the agent tokens' issuer and its JWKS URL) and
// AS_GATEWAY_JWKS (the gateway's /.well-known/attestgate/jwks.json).
//
// RFC 8693 token exchange: oidc-provider has no built-in handler for this grant, so this file
// registers one (`provider.registerGrantType`): a STAND-IN for the grant, not oidc-provider's
// own implementation. It verifies the subject_token against the agent issuer's JWKS and the
// actor_token against the gateway's JWKS (both with npm `jose`, typ, iss, aud and exp checked),
// then issues an access token through oidc-provider's own token model, with the subject and the
// `act` chain (the gateway, then the subject token's own `act`) that introspection shows.
//
// Besides the provider's own endpoints (`/token`, `/token/introspection`, discovery), the
// wrapper serves a few paths for the fault scenarios, which the provider does not have:
// - `/delay/token`: the provider's token endpoint, 400 ms late (the single-flight scenario);
// - `/slow/token`: answers after 3 s (longer than the upstream's timeout_secs = 1);
// - `/garbage/token`: 200 with an HTML body;
// - `/stats`: how many requests each path got, and the client authentication scheme last seen.
import http from "node:http";
import Provider from "oidc-provider";
import { createRemoteJWKSet, jwtVerify } from "jose";

const port = Number(process.env.AS_PORT);
const clientId = process.env.AS_CLIENT_ID;
const clientSecret = process.env.AS_CLIENT_SECRET;
const issuer = `http://127.0.0.1:${port}`;
const exchanged = new WeakMap();
const TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange";

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      grant_types: ["client_credentials", TOKEN_EXCHANGE],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: "client_secret_basic",
      scope: "ij:read ij:write",
    },
  ],
  scopes: ["ij:read", "ij:write"],
  features: {
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    devInteractions: { enabled: false },
  },
  ttl: { ClientCredentials: 600 },
  // What the stand-in exchange grant records on the tokens it issues (introspection shows it).
  extraTokenClaims: (ctx, token) => exchanged.get(token),
});
// The stand-in token exchange grant (see the top of this file).
const exchanges = [];
provider.registerGrantType(
  TOKEN_EXCHANGE,
  async (ctx) => {
    const p = ctx.oidc.params;
    const fail = (description) => {
      ctx.status = 400;
      ctx.body = { error: "invalid_grant", error_description: description };
    };
    if (p.subject_token_type !== "urn:ietf:params:oauth:token-type:access_token"
      || p.actor_token_type !== "urn:ietf:params:oauth:token-type:jwt") {
      return fail("unsupported token types");
    }
    let subject;
    let actor;
    try {
      ({ payload: subject } = await jwtVerify(p.subject_token, subjectJwks, {
        issuer: process.env.AS_SUBJECT_ISSUER,
        audience: "https://api.example.com",
        typ: "at+jwt",
      }));
      ({ payload: actor } = await jwtVerify(p.actor_token, gatewayJwks, {
        audience: `${issuer}/te/token`,
        typ: "attestgate-actor+jwt",
        maxTokenAge: 120,
      }));
    } catch (e) {
      return fail(`token refused: ${e.code || e.message}`);
    }
    if (actor.sub !== actor.iss) return fail("the actor is not the gateway");
    const act = { sub: actor.sub, ...(subject.act ? { act: subject.act } : {}) };
    const token = new provider.ClientCredentials({
      client: ctx.oidc.client,
      scope: p.scope || undefined,
    });
    if (p.audience) token.aud = p.audience;
    exchanged.set(token, { sub: subject.sub, subject_iss: subject.iss, act });
    const value = await token.save();
    exchanges.push({ sub: subject.sub, act, audience: p.audience, scope: p.scope });
    ctx.body = {
      access_token: value,
      issued_token_type: "urn:ietf:params:oauth:token-type:access_token",
      token_type: "Bearer",
      expires_in: token.expiration,
      scope: token.scope,
    };
  },
  ["subject_token", "subject_token_type", "actor_token", "actor_token_type",
    "requested_token_type", "audience", "scope"],
);
const subjectJwks = createRemoteJWKSet(new URL(process.env.AS_SUBJECT_JWKS || "http://127.0.0.1:9/none"));
const gatewayJwks = createRemoteJWKSet(new URL(process.env.AS_GATEWAY_JWKS || "http://127.0.0.1:9/none"));

const callback = provider.callback();

const counts = {};
let lastScheme = null;

const server = http.createServer((req, res) => {
  const path = req.url.split("?")[0];
  counts[path] = (counts[path] || 0) + 1;
  if (req.method === "POST" && path.endsWith("/token")) {
    lastScheme = (req.headers.authorization || "").split(" ")[0] || null;
  }
  if (path === "/stats") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ counts, last_scheme: lastScheme, exchanges }));
    return;
  }
  if (path === "/slow/token") {
    setTimeout(() => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end('{"access_token":"too-late","token_type":"Bearer","expires_in":600}');
    }, 3000);
    return;
  }
  if (path === "/garbage/token") {
    res.writeHead(200, { "content-type": "text/html" });
    res.end("<html><body>maintenance</body></html>");
    return;
  }
  if (path === "/te/token") {
    req.url = "/token";
    callback(req, res);
    return;
  }
  if (path === "/delay/token") {
    req.url = "/token";
    setTimeout(() => callback(req, res), 400);
    return;
  }
  callback(req, res);
});
server.listen(port, "127.0.0.1", () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
