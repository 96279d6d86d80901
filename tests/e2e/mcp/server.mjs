// The MCP server behind the gateway in the MCP end-to-end test: the official TypeScript SDK's
// server classes (McpServer over StreamableHTTPServerTransport: sessions, SSE responses and the
// standalone SSE stream), on 127.0.0.1, as the gateway's origin for the `mcp-*` routes.
//
//   node server.mjs <port>
//
// Endpoints (what the gateway forwards, path unchanged):
//   /mcp/tools  tools: echo, whoami
//   /mcp/admin  tools: echo, whoami, admin_stats
// and, for the test only (never routed by the gateway, reached directly):
//   GET /__seen  every request that reached the MCP endpoints (method, path, the headers the
//                gateway is expected to set or strip), in order.
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import * as z from 'zod';

const port = Number(process.argv[2]);
const seen = [];
/** Transports by session id (stateful Streamable HTTP: one per session). */
const sessions = new Map();

function makeServer(path) {
  const server = new McpServer({ name: `attestgate-e2e${path}`, version: '1.0.0' });
  server.registerTool(
    'echo',
    { description: 'Echo the text back', inputSchema: { text: z.string() } },
    async ({ text }) => ({ content: [{ type: 'text', text: `echo: ${text}` }] }),
  );
  server.registerTool(
    'whoami',
    { description: 'The verified caller, as the gateway told this origin on this very request' },
    async (extra) => ({
      content: [{ type: 'text', text: JSON.stringify(verifiedHeaders({ headers: extra.requestInfo?.headers ?? {} })) }],
    }),
  );
  if (path === '/mcp/admin') {
    server.registerTool(
      'admin_stats',
      { description: 'Requests seen so far (admin only)' },
      async () => ({ content: [{ type: 'text', text: `requests: ${seen.length}` }] }),
    );
  }
  return server;
}

function verifiedHeaders(req) {
  const out = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (name.startsWith('x-verified-')) out[name] = value;
  }
  return out;
}

async function readBody(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : undefined;
}

const httpServer = http.createServer(async (req, res) => {
  const url = new URL(req.url, `http://127.0.0.1:${port}`);
  if (url.pathname === '/__seen') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(seen));
    return;
  }
  if (url.pathname !== '/mcp/tools' && url.pathname !== '/mcp/admin') {
    res.writeHead(404).end();
    return;
  }
  const body = req.method === 'POST' ? await readBody(req) : undefined;
  seen.push({
    method: req.method,
    path: url.pathname,
    authorization: req.headers.authorization ?? null,
    session: req.headers['mcp-session-id'] ?? null,
    rpc: body?.method ?? null,
    verified: verifiedHeaders(req),
  });
  try {
    const sid = req.headers['mcp-session-id'];
    let transport = sid ? sessions.get(`${url.pathname} ${sid}`) : undefined;
    if (!transport) {
      if (req.method !== 'POST' || !isInitializeRequest(body)) {
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message: 'No valid session' }, id: null }));
        return;
      }
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => sessions.set(`${url.pathname} ${id}`, transport),
      });
      transport.onclose = () => {
        if (transport.sessionId) sessions.delete(`${url.pathname} ${transport.sessionId}`);
      };
      await makeServer(url.pathname).connect(transport);
    }
    await transport.handleRequest(req, res, body);
  } catch (err) {
    console.error('mcp server error', err);
    if (!res.headersSent) res.writeHead(500).end();
  }
});
httpServer.listen(port, '127.0.0.1', () => console.log(JSON.stringify({ listening: port })));
