// The real OAuth authorization server of the injection tests (tests/e2e/test_inject.py): npm
// `oidc-provider` (features.clientCredentials), on 127.0.0.1 only. Tokens it issues are its own
// (opaque, checked by the tests through its introspection endpoint).
//
// Environment: AS_PORT, AS_CLIENT_ID, AS_CLIENT_SECRET.
//
// Besides the provider's own endpoints (`/token`, `/token/introspection`, discovery), the
// wrapper serves a few paths for the fault scenarios, which the provider does not have:
// - `/delay/token`: the provider's token endpoint, 400 ms late (the single-flight scenario);
// - `/slow/token`: answers after 3 s (longer than the upstream's timeout_secs = 1);
// - `/garbage/token`: 200 with an HTML body;
// - `/stats`: how many requests each path got, and the client authentication scheme last seen.
import http from "node:http";
import Provider from "oidc-provider";

const port = Number(process.env.AS_PORT);
const clientId = process.env.AS_CLIENT_ID;
const clientSecret = process.env.AS_CLIENT_SECRET;
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      grant_types: ["client_credentials"],
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
});
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
    res.end(JSON.stringify({ counts, last_scheme: lastScheme }));
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
