// A real OAuth 2.0 authorization server for the MCP end-to-end test: npm `oidc-provider`
// (not a stand-in), configured for machine clients. It issues RFC 9068 JWT access tokens
// (`typ` at+jwt, ES256, key made at start) by the client_credentials grant for exactly one
// resource indicator (RFC 8707): the gateway's MCP resource, as its RFC 9728 metadata names it.
// Like most authorization servers (an "API identifier"), it registers that resource server
// under an audience of its own, which the gateway's policy lists (the gateway's port is only
// known after the Worker was built).
//
//   node auth_server.mjs <port> <resource> <audience>
//
// Prints one JSON line {"issuer": ...} once it listens; logs nothing secret.
import http from 'node:http';
import * as jose from 'jose';
import Provider, { errors } from 'oidc-provider';

const [port, resource, audience] = process.argv.slice(2);
if (!port || !resource || !audience) {
  console.error('usage: node auth_server.mjs <port> <resource> <audience>');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;
const SCOPES = ['mcp:tools', 'mcp:admin'];

const { privateKey } = await jose.generateKeyPair('ES256', { extractable: true });
const key = { ...(await jose.exportJWK(privateKey)), kid: 'mcp-as-es256', alg: 'ES256', use: 'sig' };

const provider = new Provider(issuer, {
  jwks: { keys: [key] },
  // Pre-registered machine clients (the test knows their secrets; nothing is registered at
  // run time).
  clients: [
    {
      client_id: 'mcp-agent',
      client_secret: 'mcp-agent-secret-for-the-e2e-test-only',
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      scope: SCOPES.join(' '),
      token_endpoint_auth_method: 'client_secret_basic',
      // (the only key is ES256; a client's ID-token default would be RS256)
      id_token_signed_response_alg: 'ES256',
    },
  ],
  scopes: SCOPES,
  ttl: { ClientCredentials: 300 },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // A token request must name the resource (the MCP client sends the metadata's).
      defaultResource: () => undefined,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, indicator) => {
        if (indicator !== resource) {
          throw new errors.InvalidTarget(`unknown resource ${indicator}`);
        }
        return {
          scope: SCOPES.join(' '),
          audience,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
});
provider.on('server_error', (_ctx, err) => console.error('server_error', err.message));
provider.on('grant.error', (_ctx, err) => console.error('grant.error', err.message, err.error_description ?? ''));

http.createServer(provider.callback()).listen(Number(port), '127.0.0.1', () => {
  console.log(JSON.stringify({ issuer }));
});
