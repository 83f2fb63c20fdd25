// A real OpenID Connect provider (the `oidc-provider` package) on loopback, for ipydoc's
// login tests.  Everything comes from the environment so a test fixture can start,
// restart (key rotation) and reconfigure it:
//   OIDC_PORT          port on 127.0.0.1
//   OIDC_KEYS          path of a JSON file {"keys": [private JWKs used to sign],
//                      "published": [public JWKs] (optional: served at /jwks instead of
//                      the signing keys' public halves: a key set that does not match)}
//   OIDC_REDIRECT_URI  the one redirect URI of the client "ipydoc" (secret "ipydoc-secret")
// Accounts: alice (groups ["lab", "staff"], e-mail verified), carol (["lab"]) and bob
// (groups ["other"], e-mail not verified).  The development interactions log in whoever is named
// in the form (no password) and consent is granted up front, so a test drives a login with
// plain HTTP: GET /auth?... → POST /interaction/<uid> prompt=login&login=alice → callback.
// Test-only switch: POST /__test/expired?on=1 issues ID tokens as if two hours ago.
import { readFileSync } from 'node:fs';

import Provider from 'oidc-provider';

const port = Number(process.env.OIDC_PORT);
const keys = JSON.parse(readFileSync(process.env.OIDC_KEYS, 'utf8'));
const issuer = `http://127.0.0.1:${port}`;

const ACCOUNTS = {
  alice: {
    email: 'alice@example.org', email_verified: true, groups: ['lab', 'staff'],
    preferred_username: 'alice', name: 'Alice Example',
  },
  carol: {
    email: 'carol@example.org', email_verified: true, groups: ['lab'],
    preferred_username: 'carol', name: 'Carol Example',
  },
  bob: {
    email: 'bob@example.org', email_verified: false, groups: ['other'],
    preferred_username: 'bob', name: 'Bob Example',
  },
};

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'ipydoc',
    client_secret: 'ipydoc-secret',
    redirect_uris: [process.env.OIDC_REDIRECT_URI],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: keys.keys },
  pkce: { required: () => true, methods: ['S256'] },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['preferred_username', 'name'],
    groups: ['groups'],
  },
  conformIdTokenClaims: false, // scope claims go into the ID token too (as Keycloak can)
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    if (!ACCOUNTS[id]) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...ACCOUNTS[id] }; } };
  },
  async loadExistingGrant(ctx) {
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid email profile groups');
    await grant.save();
    return grant;
  },
  cookies: { keys: ['test-only-cookie-key'] },
});

let expired = false;
const realNow = Date.now;

provider.use(async (ctx, next) => {
  if (ctx.path === '/__test/expired' && ctx.method === 'POST') {
    expired = ctx.query.on === '1';
    ctx.body = { expired };
    return;
  }
  if (ctx.path === '/jwks' && keys.published) {
    ctx.type = 'application/jwk-set+json';
    ctx.body = { keys: keys.published };
    return;
  }
  if (ctx.path === '/token' && expired) {
    Date.now = () => realNow() - 2 * 3600 * 1000;
    try {
      await next();
    } finally {
      Date.now = realNow;
    }
    return;
  }
  await next();
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
