/**
 * The Rampart admin console: a small Preact app served at /_/. Pages are addressed by the hash
 * (`#/jobs`), so the server serves one document; each page loads what it shows from the API.
 */
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import type { Session } from '../../sdk/src/index.js';
import { client, describeError } from './api.js';
import { BackupsPage } from './pages/backups.js';
import { CollectionsPage } from './pages/collections.js';
import { DependenciesPage } from './pages/dependencies.js';
import { JobsPage } from './pages/jobs.js';
import { OverviewPage } from './pages/overview.js';
import { SchedulesPage } from './pages/schedules.js';
import { TrafficPage } from './pages/traffic.js';
import { UsersPage } from './pages/users.js';
import './style.css';

const PAGES = [
  { path: '', title: 'Overview', Page: OverviewPage },
  { path: 'collections', title: 'Collections', Page: CollectionsPage },
  { path: 'users', title: 'Users & sessions', Page: UsersPage },
  { path: 'jobs', title: 'Jobs', Page: JobsPage },
  { path: 'schedules', title: 'Schedules', Page: SchedulesPage },
  { path: 'traffic', title: 'Traffic', Page: TrafficPage },
  { path: 'dependencies', title: 'Dependencies', Page: DependenciesPage },
  { path: 'backups', title: 'Backups & audit', Page: BackupsPage },
] as const;

/** `#/collections/messages` → ['collections', 'messages']. */
function route(): string[] {
  return location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
}

function useRoute(): string[] {
  const [r, setR] = useState(route());
  useEffect(() => {
    const on = () => setR(route());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return r;
}

function Login({ onIn, reason }: { onIn(s: Session): void; reason?: string }) {
  const [error, setError] = useState<string | undefined>(reason);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    const form = new FormData(e.target as HTMLFormElement);
    setBusy(true);
    setError(undefined);
    try {
      const s = await client.auth.logIn(String(form.get('email')), String(form.get('password')));
      if (s.user.role !== 'admin') {
        await client.auth.logOut();
        setError('This account is not an administrator: the console is for admins only.');
        return;
      }
      onIn(s);
    } catch (err) {
      setError(describeError(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="login" id="main">
      <form onSubmit={submit} class="card" aria-labelledby="login-title">
        <h1 id="login-title">Rampart console</h1>
        <label>
          Email
          <input name="email" type="email" autocomplete="username" required />
        </label>
        <label>
          Password
          <input name="password" type="password" autocomplete="current-password" required />
        </label>
        <button type="submit" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
        <p class={error ? 'notice error' : 'notice'} role="alert">
          {error ?? ''}
        </p>
      </form>
    </main>
  );
}

function App() {
  const [session, setSession] = useState<Session | null | undefined>(undefined);
  const [reason, setReason] = useState<string>();
  const r = useRoute();
  useEffect(() => {
    client.auth.current().then((s) => setSession(s && s.user.role === 'admin' ? s : null));
    return client.auth.onChange((e) => {
      if (e.type === 'signed-out') {
        setSession(null);
        if (e.reason !== 'logout') setReason('Your session ended: sign in again.');
      }
    });
  }, []);
  // On a phone the menu scrolls sideways: keep the current page's entry in view.
  useEffect(() => {
    document.querySelector('.top nav [aria-current="page"]')?.scrollIntoView({ block: 'nearest', inline: 'nearest' });
  });
  if (session === undefined) return null;
  if (session === null) return <Login onIn={setSession} reason={reason} />;
  const page = PAGES.find((p) => p.path === (r[0] ?? '')) ?? PAGES[0];
  const { Page } = page;
  return (
    <>
      <button type="button" class="skip" onClick={() => document.getElementById('main')?.focus()}>
        Skip to content
      </button>
      <header class="top">
        <span class="brand">Rampart</span>
        <nav aria-label="Console">
          <ul>
            {PAGES.map((p) => (
              <li key={p.path}>
                <a href={`#/${p.path}`} aria-current={p === page ? 'page' : undefined}>
                  {p.title}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <span class="who">
          <span class="muted">{session.user.email}</span>
          <button type="button" class="link" onClick={() => void client.auth.logOut()}>
            Sign out
          </button>
        </span>
      </header>
      <main id="main" tabIndex={-1}>
        <h1>{page.title}</h1>
        <Page args={r.slice(1)} key={page.path} />
      </main>
    </>
  );
}

render(<App />, document.getElementById('app') as HTMLElement);
