/**
 * Collections: browse with the API's filter, sort and search; create, edit (with the record's
 * version, so a concurrent change is refused rather than overwritten) and delete records; the
 * trash with restore and purge; each collection's schema.
 */
import { useState } from 'preact/hooks';
import type { Page } from '../../../sdk/src/index.js';
import { client, get } from '../api.js';
import { Badge, fmt, LoadError, loaded, Notice, Section, Table, useAction, useLoad } from '../ui.js';

interface Field {
  type: string;
  required?: boolean;
  readOnly?: boolean;
  values?: string[];
  search?: unknown;
  encrypted?: boolean;
  collection?: string;
  description?: string;
  unique?: boolean;
}
interface CollectionInfo {
  name: string;
  fields: Record<string, Field>;
  indexes?: unknown[];
}
type Rec = Record<string, unknown> & { id: string; version: number; updated_at: string; deleted_at: string | null };

export function CollectionsPage({ args }: { args: string[] }) {
  const list = useLoad((s) => get<{ items: CollectionInfo[] }>('/collections', undefined, s), []);
  const name = args[0] ?? list.data?.items[0]?.name;
  const current = list.data?.items.find((c) => c.name === name);
  return (
    <div class="split">
      <nav aria-label="Collections" class="side">
        <LoadError error={list.error} />
        <ul>
          {(list.data?.items ?? []).map((c) => (
            <li key={c.name}>
              <a href={`#/collections/${encodeURIComponent(c.name)}`} aria-current={c.name === name ? 'page' : undefined}>
                {c.name}
              </a>
            </li>
          ))}
        </ul>
      </nav>
      <div class="content">{current ? <CollectionView key={current.name} col={current} /> : null}</div>
    </div>
  );
}

function CollectionView({ col }: { col: CollectionInfo }) {
  const [tab, setTab] = useState<'records' | 'trash' | 'schema'>('records');
  return (
    <>
      <h2 class="title">{col.name}</h2>
      <div role="tablist" aria-label={`${col.name} views`} class="tabs">
        {(['records', 'trash', 'schema'] as const).map((t) => (
          <button key={t} type="button" role="tab" aria-selected={tab === t} onClick={() => setTab(t)}>
            {t === 'records' ? 'Records' : t === 'trash' ? 'Trash' : 'Schema'}
          </button>
        ))}
      </div>
      <div role="tabpanel">{tab === 'schema' ? <Schema col={col} /> : <Records key={tab} col={col} trash={tab === 'trash'} />}</div>
    </>
  );
}

function Schema({ col }: { col: CollectionInfo }) {
  return (
    <Section title="Fields">
      <Table
        caption={`Fields of ${col.name}`}
        rows={Object.entries(col.fields)}
        rowKey={([n]) => n}
        columns={[
          { label: 'Field', cell: ([n]) => <code>{n}</code> },
          {
            label: 'Type',
            cell: ([, f]) =>
              f.type === 'relation' ? `relation → ${f.collection}` : f.type === 'select' ? `select (${f.values?.join(', ')})` : f.type,
          },
          {
            label: 'Flags',
            cell: ([, f]) =>
              [
                f.required && 'required',
                f.unique && 'unique',
                f.readOnly && 'read-only',
                f.search && 'searchable',
                f.encrypted && 'encrypted',
              ]
                .filter(Boolean)
                .join(', '),
          },
          { label: 'Description', cell: ([, f]) => f.description ?? '' },
        ]}
      />
    </Section>
  );
}

function Records({ col, trash }: { col: CollectionInfo; trash: boolean }) {
  const [query, setQuery] = useState({ filter: '', sort: '-created_at', q: '' });
  const [cursor, setCursor] = useState<string | undefined>();
  const [editing, setEditing] = useState<Rec | 'new' | undefined>();
  const act = useAction();
  const searchable = Object.values(col.fields).some((f) => f.search);
  const page = useLoad(
    (signal) =>
      client.collection(col.name).list({
        filter: query.filter || undefined,
        sort: query.q ? undefined : query.sort || undefined,
        q: query.q || undefined,
        cursor,
        limit: 25,
        deleted: trash ? 'only' : undefined,
        signal,
      }) as Promise<Page<Rec>>,
    [col.name, trash, query, cursor],
  );
  const shown = Object.keys(col.fields).slice(0, 4);
  const submit = (e: Event) => {
    e.preventDefault();
    const f = new FormData(e.target as HTMLFormElement);
    setCursor(undefined);
    setQuery({ filter: String(f.get('filter') ?? ''), sort: String(f.get('sort') ?? ''), q: String(f.get('q') ?? '') });
  };
  const records = client.collection(col.name);
  return (
    <>
      <form class="toolbar" onSubmit={submit} aria-label="Find records">
        <label>
          Filter
          <input name="filter" defaultValue={query.filter} placeholder='name = "x" && created_at >= "2026-01-01"' />
        </label>
        {searchable ? (
          <label>
            Search
            <input name="q" type="search" defaultValue={query.q} />
          </label>
        ) : null}
        <label>
          Sort
          <input name="sort" defaultValue={query.sort} size={12} />
        </label>
        <button type="submit">Apply</button>
        {!trash ? (
          <button type="button" onClick={() => setEditing('new')}>
            New record
          </button>
        ) : null}
      </form>
      <Notice message={act.message} />
      <LoadError error={page.error} />
      {editing ? (
        <Editor
          col={col}
          record={editing === 'new' ? undefined : editing}
          onCancel={() => setEditing(undefined)}
          onSave={(data) =>
            act.run(
              editing === 'new' ? 'Create' : `Save ${editing.id}`,
              () => (editing === 'new' ? records.create(data) : records.update(editing.id, data, { ifMatch: editing.version })),
              () => {
                setEditing(undefined);
                page.reload();
              },
            )
          }
        />
      ) : null}
      <Table
        caption={trash ? `Deleted ${col.name} records` : `${col.name} records`}
        rows={loaded(page, (d) => d.items)}
        rowKey={(r) => r.id}
        empty={trash ? 'The trash is empty.' : 'No records match.'}
        columns={[
          { label: 'id', cell: (r) => <code title={r.id}>{r.id.slice(-8)}</code> },
          ...shown.map((f) => ({ label: f, cell: (r: Rec) => <span class="clip">{fmt.json(r[f] ?? '')}</span> })),
          { label: trash ? 'deleted' : 'updated', cell: (r) => fmt.ago(trash ? r.deleted_at : r.updated_at) },
          {
            label: 'Actions',
            cell: (r) =>
              trash ? (
                <span class="row-actions">
                  <button
                    type="button"
                    disabled={act.busy}
                    onClick={() => act.run(`Restore ${r.id}`, () => records.restore(r.id), page.reload)}
                  >
                    Restore
                  </button>
                  <button
                    type="button"
                    class="danger"
                    disabled={act.busy}
                    onClick={() =>
                      confirm(`Purge ${r.id} for good?`) &&
                      act.run(`Purge ${r.id}`, () => records.delete(r.id, { purge: true }), page.reload)
                    }
                  >
                    Purge
                  </button>
                </span>
              ) : (
                <span class="row-actions">
                  <button type="button" onClick={() => setEditing(r)}>
                    Edit
                  </button>
                  <button
                    type="button"
                    class="danger"
                    disabled={act.busy}
                    onClick={() => act.run(`Delete ${r.id}`, () => records.delete(r.id, { ifMatch: r.version }), page.reload)}
                  >
                    Delete
                  </button>
                </span>
              ),
          },
        ]}
      />
      <div class="pager">
        {cursor ? (
          <button type="button" onClick={() => setCursor(undefined)}>
            First page
          </button>
        ) : null}
        {page.data?.nextCursor ? (
          <button type="button" onClick={() => setCursor(page.data?.nextCursor ?? undefined)}>
            Next page
          </button>
        ) : null}
      </div>
    </>
  );
}

/** A form for a record's fields, by type; only what changed is sent on edit. */
function Editor({
  col,
  record,
  onSave,
  onCancel,
}: {
  col: CollectionInfo;
  record?: Rec;
  onSave(data: Record<string, unknown>): void;
  onCancel(): void;
}) {
  const fields = Object.entries(col.fields).filter(([, f]) => !(f.type === 'relation' && (f as { auto?: string }).auto));
  const [error, setError] = useState<string>();
  const submit = (e: Event) => {
    e.preventDefault();
    const form = new FormData(e.target as HTMLFormElement);
    const data: Record<string, unknown> = {};
    try {
      for (const [name, f] of fields) {
        const raw = form.get(name);
        let v: unknown;
        if (f.type === 'boolean') v = raw === 'on';
        else if (raw === null || raw === '') v = record ? null : undefined;
        else if (f.type === 'number' || f.type === 'integer') v = Number(raw);
        else if (f.type === 'json') v = JSON.parse(String(raw));
        else v = String(raw);
        if (v === undefined) continue;
        if (record && JSON.stringify(record[name] ?? null) === JSON.stringify(v)) continue;
        data[name] = v;
      }
    } catch (err) {
      setError(`Invalid JSON: ${(err as Error).message}`);
      return;
    }
    setError(undefined);
    onSave(data);
  };
  return (
    <Section title={record ? `Edit ${record.id}` : `New ${col.name} record`}>
      <form class="editor" onSubmit={submit}>
        {fields.map(([name, f]) => {
          const value = record?.[name];
          const label = `${name}${f.required ? ' *' : ''}`;
          if (f.type === 'boolean')
            return (
              <label key={name} class="check">
                <input type="checkbox" name={name} defaultChecked={value === true} /> {name}
              </label>
            );
          if (f.type === 'select')
            return (
              <label key={name}>
                {label}
                <select name={name} defaultValue={String(value ?? '')} required={f.required}>
                  <option value="">–</option>
                  {f.values?.map((v) => (
                    <option key={v} value={v}>
                      {v}
                    </option>
                  ))}
                </select>
              </label>
            );
          if (f.type === 'json')
            return (
              <label key={name}>
                {label}
                <textarea name={name} rows={3} defaultValue={value === undefined || value === null ? '' : JSON.stringify(value)} />
              </label>
            );
          const type = f.type === 'number' || f.type === 'integer' ? 'number' : f.type === 'email' ? 'email' : 'text';
          return (
            <label key={name}>
              {label}
              <input
                name={name}
                type={type}
                step={f.type === 'number' ? 'any' : undefined}
                defaultValue={value === undefined || value === null ? '' : String(value)}
                required={f.required && !record}
              />
            </label>
          );
        })}
        {error ? (
          <p class="notice error" role="alert">
            {error}
          </p>
        ) : null}
        <div class="row-actions">
          <button type="submit">{record ? 'Save' : 'Create'}</button>
          <button type="button" onClick={onCancel}>
            Cancel
          </button>
          {record ? <Badge tone="info">version {record.version}</Badge> : null}
        </div>
      </form>
    </Section>
  );
}
