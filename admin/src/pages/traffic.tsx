/**
 * Traffic: rate-limit decisions, API version and app version usage (every node's counters since
 * it started, added up), and the app-version policy per platform: `latest` (older versions get a
 * soft update prompt) and `minimum` (older versions are refused with 426).
 */
import { get, seg, send } from '../api.js';
import { type NodeInfo, sumBy } from '../stats.js';
import { Badge, fmt, LoadError, Notice, Section, Table, useAction, useLoad } from '../ui.js';

interface Policy {
  platform: string;
  latest: string;
  minimum: string;
  store_url: string | null;
  message: string | null;
  updated_at: string;
  updated_by: string | null;
}
const PLATFORMS = ['ios', 'android', 'web'];

function Counts({ caption, counts, keyLabel }: { caption: string; counts: Record<string, number>; keyLabel: string }) {
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  return (
    <Table
      caption={caption}
      rows={Object.entries(counts).sort((a, b) => b[1] - a[1])}
      rowKey={([k]) => k}
      empty="Nothing counted yet."
      columns={[
        { label: keyLabel, cell: ([k]) => k },
        { label: 'Requests', num: true, cell: ([, n]) => fmt.num(n) },
        { label: 'Share', num: true, cell: ([, n]) => `${((n / Math.max(total, 1)) * 100).toFixed(1)} %` },
      ]}
    />
  );
}

export function TrafficPage() {
  const nodes = useLoad((s) => get<{ items: NodeInfo[] }>('/admin/nodes', undefined, s), [], 30_000);
  const policies = useLoad((s) => get<{ items: Policy[] }>('/admin/app-versions', undefined, s), []);
  const act = useAction();
  const live = (nodes.data?.items ?? []).filter((n) => !n.stale);
  const limits = sumBy(live, (s) => s.rateLimits);
  const limited = Object.entries(limits).filter(([k]) => k.endsWith('/limited'));
  return (
    <div class="grid">
      <Section title="Rate limits">
        <LoadError error={nodes.error} />
        <p class="muted">Decisions since each node started ({live.length} nodes reporting, every 30 s).</p>
        <p>
          Refused:{' '}
          {limited.length === 0 ? (
            <Badge tone="ok">none</Badge>
          ) : (
            limited.map(([k, n]) => (
              <Badge key={k} tone="warn">
                {`${k.split('/')[0]}: ${fmt.num(n)}`}
              </Badge>
            ))
          )}
        </p>
        <Counts caption="Rate-limit decisions by class and outcome" counts={limits} keyLabel="Class / outcome" />
      </Section>
      <Section title="API versions">
        <Counts caption="Requests by API version" counts={sumBy(live, (s) => s.apiVersions)} keyLabel="Version" />
      </Section>
      <Section title="App versions">
        <Counts
          caption="Requests from apps by platform and update status"
          counts={sumBy(live, (s) => s.appVersions)}
          keyLabel="Platform / status"
        />
      </Section>
      <Section title="App-version policy">
        <Notice message={act.message} />
        <LoadError error={policies.error} />
        {PLATFORMS.map((platform) => {
          const p = policies.data?.items.find((x) => x.platform === platform);
          return (
            <form
              key={`${platform}-${p?.updated_at ?? ''}`}
              class="policy"
              aria-label={`${platform} policy`}
              onSubmit={(e) => {
                e.preventDefault();
                const f = new FormData(e.target as HTMLFormElement);
                const text = (k: string) => String(f.get(k) ?? '').trim();
                act.run(
                  `Save the ${platform} policy`,
                  () =>
                    send('PUT', `/admin/app-versions/${seg(platform)}`, {
                      latest: text('latest'),
                      minimum: text('minimum'),
                      store_url: text('store_url') || null,
                      message: text('message') || null,
                    }),
                  policies.reload,
                );
              }}
            >
              <fieldset>
                <legend>
                  {platform} {p ? <span class="muted">changed {fmt.ago(p.updated_at)}</span> : <span class="muted">no policy</span>}
                </legend>
                <label>
                  Latest (soft update below)
                  <input name="latest" defaultValue={p?.latest ?? ''} required placeholder="2.4.0" />
                </label>
                <label>
                  Minimum (426 below)
                  <input name="minimum" defaultValue={p?.minimum ?? ''} required placeholder="2.0.0" />
                </label>
                <label>
                  Store URL
                  <input name="store_url" type="url" defaultValue={p?.store_url ?? ''} />
                </label>
                <label>
                  Message
                  <input name="message" defaultValue={p?.message ?? ''} />
                </label>
                <div class="row-actions">
                  <button type="submit" disabled={act.busy}>
                    Save {platform}
                  </button>
                  {p ? (
                    <button
                      type="button"
                      class="danger"
                      disabled={act.busy}
                      onClick={() =>
                        act.run(
                          `Remove the ${platform} policy`,
                          () => send('DELETE', `/admin/app-versions/${seg(platform)}`),
                          policies.reload,
                        )
                      }
                    >
                      Remove
                    </button>
                  ) : null}
                </div>
              </fieldset>
            </form>
          );
        })}
      </Section>
    </div>
  );
}
