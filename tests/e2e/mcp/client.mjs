// The MCP client of the end-to-end test: the official TypeScript SDK's Client over
// StreamableHTTPClientTransport, with the SDK's own OAuth client (ClientCredentialsProvider:
// the client_credentials grant, client_secret_basic). Nothing here knows the gateway's metadata
// or the authorization server in advance but the issuer the client trusts its secret to
// (`expectedIssuer`): the SDK finds both from the gateway's 401 (RFC 9728 `resource_metadata`,
// then RFC 8414 / OIDC discovery), gets a token for the metadata's `resource` (RFC 8707), and
// retries; then initialize, tools/list, tools/call, and the session's DELETE.
//
//   node client.mjs <mcp endpoint url> <expected issuer> <client id> <client secret> <scope> [--step-up] [--tool NAME]
//
// --step-up: on 403 insufficient_scope, ask the authorization server for the scopes the
// challenge's `scope` names (SEP-835 step-up; the SDK retries once with the new token).
// Prints one JSON object: every HTTP exchange the SDK made (method, URL, status, the
// WWW-Authenticate it got, whether it sent a token), the tools, the call's result or the error.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';
import { extractWWWAuthenticateParams } from '@modelcontextprotocol/sdk/client/auth.js';

const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const option = (name) => (args.indexOf(name) >= 0 ? args[args.indexOf(name) + 1] : undefined);
const [endpoint, expectedIssuer, clientId, clientSecret, scope] = args;
const stepUp = flag('--step-up');
const tool = option('--tool') ?? 'echo';

/** The provider asks for the scopes the last insufficient_scope challenge named (step-up). */
class StepUpProvider extends ClientCredentialsProvider {
  constructor(options) {
    super(options);
    this.requested = options.scope;
  }
  prepareTokenRequest() {
    return super.prepareTokenRequest(this.requested);
  }
}
const provider = new StepUpProvider({ clientId, clientSecret, expectedIssuer, scope });

const exchanges = [];
const tokenScopes = [];
async function loggingFetch(input, init = {}) {
  const url = typeof input === 'string' ? input : input.href ?? input.url;
  const headers = new Headers(init.headers ?? {});
  const response = await fetch(input, init);
  const entry = {
    method: init.method ?? 'GET',
    url,
    status: response.status,
    sent_token: headers.has('authorization'),
    www_authenticate: response.headers.get('www-authenticate'),
    session: response.headers.get('mcp-session-id'),
    content_type: response.headers.get('content-type'),
  };
  exchanges.push(entry);
  if (url.endsWith('/token') && response.ok) {
    const body = await response.clone().json();
    tokenScopes.push(body.scope ?? null);
  }
  if (response.status === 403) {
    const params = extractWWWAuthenticateParams(response);
    entry.parsed = { ...params, resourceMetadataUrl: params.resourceMetadataUrl?.href };
    if (stepUp && params.error === 'insufficient_scope' && params.scope) {
      provider.requested = params.scope;
    }
  }
  return response;
}

const out = { exchanges, token_scopes: tokenScopes };
const client = new Client({ name: 'attestgate-e2e-client', version: '1.0.0' });
const transport = new StreamableHTTPClientTransport(new URL(endpoint), {
  authProvider: provider,
  fetch: loggingFetch,
});
try {
  await client.connect(transport);
  out.session = transport.sessionId ?? null;
  out.server = client.getServerVersion();
  out.tools = (await client.listTools()).tools.map((t) => t.name).sort();
  out.call = await client.callTool({ name: tool, arguments: tool === 'echo' ? { text: 'through the gateway' } : {} });
  out.whoami = await client.callTool({ name: 'whoami', arguments: {} });
  await transport.terminateSession();
  out.ok = true;
} catch (err) {
  out.ok = false;
  out.error = String(err?.message ?? err);
  out.error_code = err?.code ?? null;
} finally {
  await client.close().catch(() => {});
}
console.log(JSON.stringify(out));
