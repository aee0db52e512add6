/**
 * The pages the links in account mails open (`/auth/verify-email`, `/auth/reset-password`,
 * `/auth/confirm-email`), for apps that do not handle those links themselves
 * (RAMPART_AUTH_LINK_URL points the links elsewhere). Each page asks for a click (or the new
 * password) before it uses the token: mail scanners that open links must not consume it. The
 * token never leaves the page except to this server's API (no referrer, strict CSP).
 */
import { createHash } from 'node:crypto';
import type { FastifyInstance } from 'fastify';

interface Page {
  title: string;
  button: string;
  /** The API route the form posts to. */
  api: string;
  password: boolean;
  done: string;
}

const PAGES: Record<string, Page> = {
  'verify-email': {
    title: 'Confirm your email address',
    button: 'Confirm',
    api: '/api/v1/auth/verify-email',
    password: false,
    done: 'Your email address is confirmed. You can close this page.',
  },
  'confirm-email': {
    title: 'Confirm your new email address',
    button: 'Confirm',
    api: '/api/v1/auth/email/confirm',
    password: false,
    done: 'Your email address has been changed. You can close this page.',
  },
  'reset-password': {
    title: 'Choose a new password',
    button: 'Set password',
    api: '/api/v1/auth/password-reset',
    password: true,
    done: 'Your password has been changed; every session was signed out. Sign in with the new password.',
  },
};

const SCRIPT = `
const form = document.querySelector('form'); const out = document.querySelector('output');
const token = new URLSearchParams(location.search).get('token') || '';
history.replaceState(null, '', location.pathname);
form.addEventListener('submit', async (e) => {
  e.preventDefault(); form.querySelector('button').disabled = true;
  const body = { token }; const pw = form.querySelector('input');
  if (pw) body.password = pw.value;
  try {
    const r = await fetch(form.dataset.api, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    if (r.ok) { out.textContent = form.dataset.done; form.hidden = true; return; }
    const p = await r.json().catch(() => ({}));
    out.textContent = (p.errors && p.errors[0] ? p.errors[0].field + ' ' + p.errors[0].message : p.detail) || 'Something went wrong.';
  } catch { out.textContent = 'The server could not be reached; try again.'; }
  form.querySelector('button').disabled = false;
});`;
const SCRIPT_HASH = createHash('sha256').update(SCRIPT).digest('base64');
const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function render(p: Page): string {
  const field = p.password
    ? '<label>New password <input type="password" name="password" autocomplete="new-password" minlength="8" required autofocus></label>'
    : '';
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(p.title)}</title><style>body{font:16px/1.5 system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem}
label,input,button{display:block;width:100%;margin:.5rem 0}input,button{padding:.6rem;font:inherit}output{display:block;margin-top:1rem}</style></head>
<body><main><h1>${escapeHtml(p.title)}</h1><form data-api="${p.api}" data-done="${escapeHtml(p.done)}">${field}<button type="submit">${escapeHtml(p.button)}</button></form>
<output role="status" aria-live="polite"></output></main><script>${SCRIPT}</script></body></html>`;
}

export function registerAuthPages(app: FastifyInstance): void {
  for (const [name, page] of Object.entries(PAGES)) {
    const html = render(page);
    app.get(`/auth/${name}`, { schema: { hide: true } }, async (_req, reply) =>
      reply
        .type('text/html; charset=utf-8')
        .header('cache-control', 'no-store')
        .header('referrer-policy', 'no-referrer')
        .header('x-frame-options', 'DENY')
        .header(
          'content-security-policy',
          `default-src 'none'; script-src 'sha256-${SCRIPT_HASH}'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`,
        )
        .send(html),
    );
  }
}
