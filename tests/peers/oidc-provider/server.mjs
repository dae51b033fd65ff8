// A real OpenID Connect server (panva/oidc-provider) standing in for Worldline's Keycloak
// realm in obauth's tests. Written for obauth; not Worldline's code.
//
// Usage: node server.mjs CONFIG.json
// CONFIG: { "realm": "...", "scopes": ["VOP", ...], "clients": [ oidc-provider client metadata ] }
//
// Listens on 127.0.0.1 with an ephemeral port, serves the token endpoint at Keycloak's path
// /auth/realms/<realm>/protocol/openid-connect/token, and prints one JSON line on stdout
// once it accepts requests: {"issuer": "...", "port": N, "base_url": "http://127.0.0.1:N/auth"}.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));

// oidc-provider's default in-memory store is an LRU of about 1,000 entries: under load it
// would silently forget jti replay records and tokens. Tests get an unbounded store.
const stores = new Map();
class UnboundedAdapter {
  constructor(model) {
    if (!stores.has(model)) stores.set(model, new Map());
    this.store = stores.get(model);
  }

  #live(id) {
    const entry = this.store.get(id);
    if (!entry) return undefined;
    if (entry.expiresAt && entry.expiresAt < Date.now()) {
      this.store.delete(id);
      return undefined;
    }
    return entry.payload;
  }

  async upsert(id, payload, expiresIn) {
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : undefined;
    this.store.set(id, { payload, expiresAt });
  }

  async find(id) { return this.#live(id); }

  async findByUid(uid) {
    for (const id of this.store.keys()) {
      const payload = this.#live(id);
      if (payload?.uid === uid) return payload;
    }
    return undefined;
  }

  async findByUserCode(userCode) {
    for (const id of this.store.keys()) {
      const payload = this.#live(id);
      if (payload?.userCode === userCode) return payload;
    }
    return undefined;
  }

  async consume(id) {
    const payload = this.#live(id);
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) { this.store.delete(id); }

  async revokeByGrantId(grantId) {
    for (const [id, entry] of this.store) {
      if (entry.payload?.grantId === grantId) this.store.delete(id);
    }
  }
}

const server = createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const base = `http://127.0.0.1:${port}/auth`;
  const issuer = `${base}/realms/${config.realm}`;
  const provider = new Provider(issuer, {
    adapter: UnboundedAdapter,
    clients: config.clients,
    scopes: config.scopes,
    features: {
      clientCredentials: { enabled: true },
      devInteractions: { enabled: false },
    },
    routes: {
      token: `/auth/realms/${config.realm}/protocol/openid-connect/token`,
    },
    clientAuthMethods: ['client_secret_post', 'private_key_jwt'],
    // Keep the server quiet on stdout: the harness reads only the first line.
    renderError(ctx, out) { ctx.type = 'json'; ctx.body = out; },
  });
  provider.on('server_error', (ctx, error) => console.error('server_error', error));
  server.on('request', provider.callback());
  console.log(JSON.stringify({ issuer, port, base_url: base }));
});

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
