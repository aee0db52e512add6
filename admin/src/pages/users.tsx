/**
 * Users and sessions: find a user by email, see their sessions (and end one or all), their push
 * devices, change their role, disable or enable the account (which ends every session).
 */
import { useState } from 'preact/hooks';
import { client, get, seg, send } from '../api.js';
import { Badge, fmt, LoadError, loaded, Notice, Section, Table, useAction, useLoad } from '../ui.js';

interface User {
  id: string;
  email: string;
  role: string;
  disabled?: boolean;
  email_verified?: boolean;
  created_at: string;
  version: number;
}
interface SessionInfo {
  id: string;
  created_at: string;
  last_used_at: string;
  expires_at: string;
  method: string;
  user_agent: string | null;
  ip: string | null;
}

export function UsersPage({ args }: { args: string[] }) {
  const [email, setEmail] = useState('');
  const [cursor, setCursor] = useState<string>();
  const users = useLoad(
    (signal) =>
      client.collection('users').list({
        filter: email ? `email contains ${JSON.stringify(email)}` : undefined,
        sort: '-created_at',
        limit: 25,
        cursor,
        signal,
      }),
    [email, cursor],
  );
  const selected = args[0];
  return (
    <>
      <form
        class="toolbar"
        aria-label="Find users"
        onSubmit={(e) => {
          e.preventDefault();
          setCursor(undefined);
          setEmail(String(new FormData(e.target as HTMLFormElement).get('email') ?? '').trim());
        }}
      >
        <label>
          Email contains
          <input name="email" type="search" defaultValue={email} />
        </label>
        <button type="submit">Find</button>
      </form>
      <LoadError error={users.error} />
      <Table
        caption="Users"
        rows={loaded(users, (d) => d.items as unknown as User[])}
        rowKey={(u) => u.id}
        empty="No user matches."
        columns={[
          { label: 'Email', cell: (u) => <a href={`#/users/${u.id}`}>{u.email}</a> },
          { label: 'Role', cell: (u) => u.role },
          { label: 'State', cell: (u) => <Badge tone={u.disabled ? 'bad' : 'ok'}>{u.disabled ? 'disabled' : 'active'}</Badge> },
          { label: 'Joined', cell: (u) => fmt.time(u.created_at) },
        ]}
      />
      {users.data?.nextCursor ? (
        <div class="pager">
          <button type="button" onClick={() => setCursor(users.data?.nextCursor ?? undefined)}>
            Next page
          </button>
        </div>
      ) : null}
      {selected ? <UserDetail key={selected} id={selected} onChange={users.reload} /> : null}
    </>
  );
}

function UserDetail({ id, onChange }: { id: string; onChange(): void }) {
  const user = useLoad((signal) => client.collection('users').get(id, { signal }) as unknown as Promise<User>, [id]);
  const sessions = useLoad((s) => get<{ items: SessionInfo[] }>(`/admin/users/${seg(id)}/sessions`, undefined, s), [id]);
  const devices = useLoad((s) => get<{ items: Array<Record<string, string>> }>(`/admin/users/${seg(id)}/devices`, undefined, s), [id]);
  const act = useAction();
  const u = user.data;
  const reload = () => {
    user.reload();
    sessions.reload();
    onChange();
  };
  return (
    <Section title={u ? u.email : 'User'}>
      <LoadError error={user.error} />
      <Notice message={act.message} />
      {u ? (
        <div class="toolbar">
          <span>
            Role <strong>{u.role}</strong>
          </span>
          <button
            type="button"
            disabled={act.busy}
            onClick={() =>
              act.run(
                `Make ${u.email} ${u.role === 'admin' ? 'a user' : 'an admin'}`,
                () => client.collection('users').update(u.id, { role: u.role === 'admin' ? 'user' : 'admin' }, { ifMatch: u.version }),
                reload,
              )
            }
          >
            {u.role === 'admin' ? 'Make user' : 'Make admin'}
          </button>
          <button
            type="button"
            class={u.disabled ? undefined : 'danger'}
            disabled={act.busy}
            onClick={() =>
              (u.disabled || confirm(`Disable ${u.email}? Every session ends.`)) &&
              act.run(
                `${u.disabled ? 'Enable' : 'Disable'} ${u.email}`,
                () => client.collection('users').update(u.id, { disabled: !u.disabled }, { ifMatch: u.version }),
                reload,
              )
            }
          >
            {u.disabled ? 'Enable account' : 'Disable account'}
          </button>
        </div>
      ) : null}
      <h3>Sessions</h3>
      <LoadError error={sessions.error} />
      <Table
        caption="Live sessions"
        rows={loaded(sessions, (d) => d.items)}
        rowKey={(s) => s.id}
        empty="No live session."
        columns={[
          { label: 'Session', cell: (s) => <code title={s.id}>{s.id.slice(-8)}</code> },
          { label: 'Started', cell: (s) => fmt.time(s.created_at) },
          { label: 'Last used', cell: (s) => fmt.ago(s.last_used_at) },
          { label: 'Method', cell: (s) => s.method },
          { label: 'Client', cell: (s) => <span class="clip">{s.user_agent ?? '–'}</span> },
          { label: 'IP', cell: (s) => s.ip ?? '–' },
          {
            label: 'Actions',
            cell: (s) => (
              <button
                type="button"
                class="danger"
                disabled={act.busy}
                onClick={() =>
                  act.run('Revoke the session', () => send('DELETE', `/admin/users/${seg(id)}/sessions/${seg(s.id)}`), sessions.reload)
                }
              >
                Revoke
              </button>
            ),
          },
        ]}
      />
      {(sessions.data?.items.length ?? 0) > 1 ? (
        <button
          type="button"
          class="danger"
          disabled={act.busy}
          onClick={() => act.run('Revoke every session', () => send('DELETE', `/admin/users/${seg(id)}/sessions`), sessions.reload)}
        >
          Revoke all sessions
        </button>
      ) : null}
      <h3>Devices</h3>
      <LoadError error={devices.error} />
      <Table
        caption="Push devices"
        rows={loaded(devices, (d) => d.items)}
        rowKey={(d) => d.id ?? ''}
        empty="No registered device."
        columns={[
          { label: 'Provider', cell: (d) => d.provider },
          { label: 'Token', cell: (d) => <code>{d.token}</code> },
          { label: 'App', cell: (d) => `${d.app_platform ?? '–'} ${d.app_version ?? ''}` },
          { label: 'Registered', cell: (d) => fmt.time(d.created_at) },
        ]}
      />
    </Section>
  );
}
