/**
 * Backups (list, take one, verify one, download), the routine checks with their recent alerts,
 * and the audit log with filters and pages.
 */
import { useState } from 'preact/hooks';
import { client, get, seg, send } from '../api.js';
import { Badge, fmt, LoadError, loaded, Notice, Section, Table, toneOf, useAction, useLoad } from '../ui.js';

interface Backup {
  id: string;
  createdAt: string;
  bytes: number;
  tables: number;
  rows: number;
  verified?: { at: string; ok: boolean; error?: string | null };
  error?: string;
}
interface Check {
  name: string;
  status: string;
  message: string;
  since: string | null;
  checked_at: string | null;
  node: string | null;
}
interface Alert {
  id: string;
  check: string;
  kind: string;
  status: string;
  message: string;
  at: string;
}
interface AuditEntry {
  id: string;
  at: string;
  action: string;
  outcome: string;
  actor: { type: string; id?: string };
  target: { type: string; id: string | null } | null;
  ip: string | null;
  details: Record<string, unknown> | null;
}

/** A backup file through the API (with the admin's token), saved by the browser. */
async function download(id: string, part: 'data' | 'manifest'): Promise<void> {
  const token = await client.auth.token();
  const res = await fetch(`/api/v1/admin/backups/${seg(id)}/download${part === 'manifest' ? '?part=manifest' : ''}`, {
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  if (!res.ok) throw new Error(`download failed: HTTP ${res.status}`);
  const url = URL.createObjectURL(await res.blob());
  const a = document.createElement('a');
  a.href = url;
  a.download = part === 'manifest' ? `${id}.manifest.json` : `${id}.rbk`;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export function BackupsPage() {
  const backups = useLoad((s) => get<{ location: string; items: Backup[] }>('/admin/backups', undefined, s), []);
  const checks = useLoad((s) => get<{ checks: Check[]; alerts: Alert[] }>('/admin/checks', undefined, s), [], 30_000);
  const act = useAction();
  return (
    <>
      <Section
        title="Backups"
        actions={
          <button
            type="button"
            disabled={act.busy}
            onClick={() =>
              act.run(
                'Take a backup (a job on a worker)',
                () => send('POST', '/admin/backups'),
                () => setTimeout(backups.reload, 3000),
              )
            }
          >
            Back up now
          </button>
        }
      >
        <Notice message={act.message} />
        <LoadError error={backups.error} />
        {backups.data ? <p class="muted">At {backups.data.location}</p> : null}
        <Table
          caption="Backups, newest first"
          rows={loaded(backups, (d) => d.items)}
          rowKey={(b) => b.id}
          empty="No backup yet."
          columns={[
            { label: 'Backup', cell: (b) => <code>{b.id}</code> },
            { label: 'Taken', cell: (b) => fmt.time(b.createdAt) },
            { label: 'Size', num: true, cell: (b) => fmt.bytes(b.bytes) },
            { label: 'Rows', num: true, cell: (b) => fmt.num(b.rows) },
            {
              label: 'Verified',
              cell: (b) =>
                b.error ? (
                  <Badge tone="bad">unreadable: {b.error}</Badge>
                ) : b.verified ? (
                  <Badge tone={b.verified.ok ? 'ok' : 'bad'}>{`${b.verified.ok ? 'ok' : 'failed'} ${fmt.ago(b.verified.at)}`}</Badge>
                ) : (
                  <span class="muted">not yet</span>
                ),
            },
            {
              label: 'Actions',
              cell: (b) => (
                <span class="row-actions">
                  <button
                    type="button"
                    disabled={act.busy || !!b.error}
                    onClick={() =>
                      act.run(
                        `Verify ${b.id} (a job on a worker)`,
                        () => send('POST', `/admin/backups/${seg(b.id)}/verify`),
                        () => setTimeout(backups.reload, 5000),
                      )
                    }
                  >
                    Verify
                  </button>
                  <button type="button" disabled={act.busy} onClick={() => act.run(`Download ${b.id}`, () => download(b.id, 'data'))}>
                    Download
                  </button>
                  <button
                    type="button"
                    disabled={act.busy}
                    onClick={() => act.run(`Download the manifest of ${b.id}`, () => download(b.id, 'manifest'))}
                  >
                    Manifest
                  </button>
                </span>
              ),
            },
          ]}
        />
      </Section>
      <Section title="Routine checks">
        <LoadError error={checks.error} />
        <Table
          caption="Routine checks as last run"
          rows={loaded(checks, (d) => d.checks)}
          rowKey={(c) => c.name}
          empty="The checks have not run yet."
          columns={[
            { label: 'Check', cell: (c) => c.name },
            { label: 'Status', cell: (c) => <Badge tone={toneOf(c.status)}>{c.status}</Badge> },
            { label: 'Since', cell: (c) => fmt.ago(c.since) },
            { label: 'Detail', cell: (c) => c.message },
            { label: 'Checked', cell: (c) => `${fmt.ago(c.checked_at)}${c.node ? ` on ${c.node}` : ''}` },
          ]}
        />
        <h3>Recent alerts</h3>
        <Table
          caption="Alerts sent, newest first"
          rows={loaded(checks, (d) => d.alerts)}
          rowKey={(a) => String(a.id)}
          empty="No alert was raised."
          columns={[
            { label: 'At', cell: (a) => fmt.time(a.at) },
            { label: 'Check', cell: (a) => a.check },
            { label: 'Kind', cell: (a) => <Badge tone={a.kind === 'recovery' ? 'ok' : 'bad'}>{a.kind}</Badge> },
            { label: 'Message', cell: (a) => a.message },
          ]}
        />
      </Section>
      <Audit />
    </>
  );
}

function Audit() {
  const [filters, setFilters] = useState<Record<string, string>>({});
  const [cursor, setCursor] = useState<string>();
  const log = useLoad(
    (s) => get<{ items: AuditEntry[]; next_cursor: string | null }>('/admin/audit', { ...filters, cursor, limit: 50 }, s),
    [filters, cursor],
  );
  return (
    <Section title="Audit log">
      <form
        class="toolbar"
        aria-label="Filter the audit log"
        onSubmit={(e) => {
          e.preventDefault();
          const f = new FormData(e.target as HTMLFormElement);
          const next: Record<string, string> = {};
          for (const k of ['action', 'actor', 'outcome', 'since']) {
            const v = String(f.get(k) ?? '').trim();
            if (v) next[k] = v;
          }
          setCursor(undefined);
          setFilters(next);
        }}
      >
        <label>
          Action (or prefix “auth.”)
          <input name="action" defaultValue={filters.action} />
        </label>
        <label>
          Actor id
          <input name="actor" defaultValue={filters.actor} />
        </label>
        <label>
          Outcome
          <select name="outcome" defaultValue={filters.outcome ?? ''}>
            <option value="">any</option>
            <option value="success">success</option>
            <option value="failure">failure</option>
            <option value="denied">denied</option>
          </select>
        </label>
        <label>
          Since
          <input name="since" type="date" defaultValue={filters.since} />
        </label>
        <button type="submit">Filter</button>
      </form>
      <LoadError error={log.error} />
      <Table
        caption="Audit entries, newest first"
        rows={loaded(log, (d) => d.items)}
        rowKey={(a) => a.id}
        empty="No entry matches."
        columns={[
          { label: 'At', cell: (a) => fmt.time(a.at) },
          { label: 'Action', cell: (a) => <code>{a.action}</code> },
          { label: 'Outcome', cell: (a) => <Badge tone={a.outcome === 'success' ? 'ok' : 'bad'}>{a.outcome}</Badge> },
          { label: 'Actor', cell: (a) => `${a.actor.type}${a.actor.id ? ` ${a.actor.id.slice(-8)}` : ''}` },
          { label: 'Target', cell: (a) => (a.target ? `${a.target.type} ${a.target.id ?? ''}` : '–') },
          { label: 'Details', cell: (a) => <span class="clip">{a.details ? JSON.stringify(a.details) : ''}</span> },
        ]}
      />
      <div class="pager">
        {cursor ? (
          <button type="button" onClick={() => setCursor(undefined)}>
            Newest
          </button>
        ) : null}
        {log.data?.next_cursor ? (
          <button type="button" onClick={() => setCursor(log.data?.next_cursor ?? undefined)}>
            Older
          </button>
        ) : null}
      </div>
    </Section>
  );
}
