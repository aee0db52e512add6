/**
 * A Rampart cluster on loopback: nginx (deploy/nginx/nginx.conf, rewritten only for ports and
 * paths), N `rampart serve` nodes and M `rampart worker` processes on one PostgreSQL (and
 * Redis when given). The demo command (`npm run cluster -- up|down|status`) and the cluster
 * tests both run it, so what the tests prove is what the demo starts.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '../..');
const NGINX_TEMPLATE = join(ROOT, 'deploy/nginx/nginx.conf');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What a local cluster runs on and how many of each process it starts. */
export interface ClusterOptions {
  /** PostgreSQL URL every process shares (several hosts allowed, as in DATABASE_URL). */
  databaseUrl: string;
  /** Redis URL, or none (rate limits and cache then use PostgreSQL and memory). */
  redisUrl?: string;
  /** Where logs, nginx's config and the state file go. */
  dir: string;
  /** The app declaration every process loads. */
  app?: string;
  nodes?: number;
  workers?: number;
  /** nginx's port (0: a free one). */
  port?: number;
  /** Extra environment for every Rampart process. */
  env?: Record<string, string>;
  /** Leave the processes running after this process exits (the demo command). */
  detached?: boolean;
  /**
   * nginx's per-address request rate instead of the shipped 100r/s (a benchmark's load comes
   * from one address).
   */
  perAddressRate?: string;
}

/** One process of the cluster. */
export interface Member {
  name: string;
  port: number;
  child?: ChildProcess;
  pid: number;
  log: string;
}

export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

/**
 * The production nginx config for a loopback cluster: the node list, the listen port and the
 * file paths replaced; every other directive as shipped.
 */
export function renderNginxConf(
  template: string,
  opts: { port: number; nodes: { port: number; down?: boolean }[]; dir: string; perAddressRate?: string },
): string {
  const begin = template.indexOf('# nodes:begin');
  const end = template.indexOf('# nodes:end');
  if (begin < 0 || end < begin) throw new Error('nginx.conf: the "# nodes:begin" / "# nodes:end" markers are missing');
  const indent = '        ';
  const servers = opts.nodes
    .map((n) => `server 127.0.0.1:${n.port} max_fails=1 fail_timeout=5s${n.down ? ' down' : ''};`)
    .join(`\n${indent}`);
  let conf = `${template.slice(0, begin)}# nodes:begin\n${indent}${servers}\n${indent}${template.slice(end)}`;
  const swaps: [RegExp, string][] = [
    [/^pid [^;]+;/m, `pid ${opts.dir}/nginx.pid;`],
    [/\/var\/log\/nginx\//g, `${opts.dir}/`],
    [/\/var\/cache\/nginx\//g, `${opts.dir}/cache/`],
    [/listen 80 reuseport;/, `listen 127.0.0.1:${opts.port};`],
  ];
  for (const [re, to] of swaps) {
    if (!re.test(conf)) throw new Error(`nginx.conf: expected ${re} to rewrite for a local cluster`);
    conf = conf.replace(re, to);
  }
  if (opts.perAddressRate) conf = conf.replace(/zone=rampart_per_ip:20m rate=\S+;/, `zone=rampart_per_ip:20m rate=${opts.perAddressRate};`);
  // Temp files under the cluster's dir too, so nothing outside it is needed.
  const temps = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']
    .map((t) => `    ${t}_temp_path ${opts.dir}/tmp/${t};`)
    .join('\n');
  return conf.replace(/^http \{\n/m, `http {\n${temps}\n`);
}

export class LocalCluster {
  readonly dir: string;
  readonly app: string;
  nodes: Member[] = [];
  workers: Member[] = [];
  nginx: Member | undefined;

  constructor(private readonly opts: ClusterOptions) {
    this.dir = resolve(opts.dir);
    this.app = opts.app ?? 'examples/chat/rampart.config.ts';
  }

  /** nginx's address: the cluster's front door. */
  get url(): string {
    return `http://127.0.0.1:${this.nginx?.port}`;
  }

  /** The environment of every Rampart process. */
  env(port: number): Record<string, string> {
    return {
      PATH: process.env.PATH ?? '',
      DATABASE_URL: this.opts.databaseUrl,
      ...(this.opts.redisUrl ? { REDIS_URL: this.opts.redisUrl } : {}),
      HOST: '127.0.0.1',
      PORT: String(port),
      // nginx is the only proxy, on loopback: its X-Forwarded-For is the client's address.
      RAMPART_TRUST_PROXY: '127.0.0.1',
      // Jobs run in the workers; every process takes part in the cron leader election.
      RAMPART_JOBS_IN_PROCESS: 'false',
      RAMPART_DATA_DIR: join(this.dir, 'data'),
      LOG_LEVEL: 'info',
      ...this.opts.env,
    };
  }

  async up(progress: (line: string) => void = () => {}): Promise<void> {
    // nginx's workers run as its default unprivileged user when started as root: they write
    // temp and cache files here.
    for (const d of [this.dir, join(this.dir, 'tmp'), join(this.dir, 'cache')]) {
      mkdirSync(d, { recursive: true });
      chmodSync(d, 0o777);
    }
    if (!existsSync(join(ROOT, 'dist'))) throw new Error('dist/ is missing: run `npm run build` first');
    // The first node applies the migrations; the others then start without waiting on the lock.
    for (let i = 0; i < (this.opts.nodes ?? 3); i++) {
      const port = await freePort();
      this.nodes.push(await this.startMember(`node-${i + 1}`, port, ['serve', '--app', this.app], '/readyz'));
      progress(`node-${i + 1} ready on 127.0.0.1:${port}`);
    }
    for (let i = 0; i < (this.opts.workers ?? 1); i++) {
      const port = await freePort();
      this.workers.push(await this.startMember(`worker-${i + 1}`, port, ['worker', '--app', this.app, '--metrics-port', String(port)], '/readyz'));
      progress(`worker-${i + 1} ready (metrics on 127.0.0.1:${port})`);
    }
    await this.startNginx(this.opts.port || (await freePort()));
    progress(`nginx ready on ${this.url}`);
    this.save();
  }

  private readonly out = new Set<Member>();

  /** Write nginx's config for the current node list (those taken out marked `down`) and check it. */
  private writeNginxConf(port: number): string[] {
    const nodes = this.nodes.map((n) => ({ port: n.port, down: this.out.has(n) }));
    const file = join(this.dir, 'nginx.conf');
    writeFileSync(
      file,
      renderNginxConf(readFileSync(NGINX_TEMPLATE, 'utf8'), { port, nodes, dir: this.dir, perAddressRate: this.opts.perAddressRate }),
    );
    const args = ['-p', this.dir, '-c', file, '-e', join(this.dir, 'error.log')];
    execFileSync('nginx', ['-t', '-q', ...args], { stdio: 'pipe' });
    return args;
  }

  private async startNginx(port: number): Promise<void> {
    const args = this.writeNginxConf(port);
    this.nginx = this.spawnMember('nginx', port, 'nginx', [...args, '-g', 'daemon off;']);
    await this.waitReady(this.nginx, '/readyz');
  }

  /**
   * Take a node out of nginx's upstream (`down`) or put it back, and reload nginx: new
   * requests stop going to it at once, requests in flight finish (a graceful reload).
   */
  async setInRotation(m: Member, inRotation: boolean): Promise<void> {
    if (inRotation) this.out.delete(m);
    else this.out.add(m);
    const args = this.writeNginxConf(this.nginx?.port ?? 0);
    execFileSync('nginx', [...args, '-s', 'reload'], { stdio: 'pipe' });
    // The reload is asynchronous: new workers take over within moments.
    await sleep(500);
  }

  /** Start one Rampart process and wait until `ready` answers 200 on its own port. */
  private async startMember(name: string, port: number, args: string[], ready: string): Promise<Member> {
    const m = this.spawnMember(name, port, process.execPath, [join(ROOT, 'bin/rampart.js'), ...args], this.env(port));
    await this.waitReady(m, ready);
    return m;
  }

  private spawnMember(name: string, port: number, cmd: string, args: string[], env?: Record<string, string>): Member {
    const log = join(this.dir, `${name}.log`);
    const fd = openSync(log, 'a');
    const child = spawn(cmd, args, {
      cwd: ROOT,
      env: env ?? { PATH: process.env.PATH ?? '' },
      stdio: ['ignore', fd, fd],
      detached: this.opts.detached ?? false,
    });
    closeSync(fd);
    if (this.opts.detached) child.unref();
    if (child.pid === undefined) throw new Error(`${name} did not start (${cmd})`);
    return { name, port, child, pid: child.pid, log };
  }

  private async waitReady(m: Member, path: string): Promise<void> {
    const until = Date.now() + 60_000;
    while (Date.now() < until) {
      if (m.child && m.child.exitCode !== null) throw new Error(`${m.name} exited with ${m.child.exitCode}: ${tail(m.log)}`);
      try {
        if ((await fetch(`http://127.0.0.1:${m.port}${path}`)).status === 200) return;
      } catch {}
      await sleep(100);
    }
    throw new Error(`${m.name} did not become ready: ${tail(m.log)}`);
  }

  /** Send a signal to a node (SIGKILL, SIGSTOP, SIGCONT…). */
  signal(m: Member, sig: NodeJS.Signals): void {
    process.kill(m.pid, sig);
  }

  /** Stop a member with `sig` and wait until it has exited. */
  async stop(m: Member, sig: NodeJS.Signals = 'SIGTERM', timeoutMs = 30_000): Promise<void> {
    if (!alive(m.pid)) return;
    process.kill(m.pid, sig);
    const until = Date.now() + timeoutMs;
    while (alive(m.pid) && Date.now() < until) await sleep(20);
    if (alive(m.pid)) process.kill(m.pid, 'SIGKILL');
    while (alive(m.pid)) await sleep(20);
  }

  /** Start a stopped node again on its port. */
  async restart(m: Member): Promise<void> {
    const fresh = await this.startMember(m.name, m.port, ['serve', '--app', this.app], '/readyz');
    Object.assign(m, fresh);
    this.save();
  }

  /**
   * Restart every node in turn, the others serving meanwhile: out of nginx's rotation, SIGTERM
   * (it drains what still reaches it), start, back in rotation once ready.
   */
  async rollingRestart(progress: (line: string) => void = () => {}): Promise<void> {
    for (const n of this.nodes) {
      const t0 = Date.now();
      await this.setInRotation(n, false);
      await this.stop(n, 'SIGTERM');
      await this.restart(n);
      await this.setInRotation(n, true);
      progress(`${n.name} restarted in ${Date.now() - t0} ms`);
    }
  }

  async down(): Promise<void> {
    for (const m of [this.nginx, ...this.nodes, ...this.workers]) if (m) await this.stop(m, m.name === 'nginx' ? 'SIGQUIT' : 'SIGTERM');
    this.save();
  }

  private save(): void {
    const strip = (m: Member) => ({ name: m.name, port: m.port, pid: m.pid, log: m.log });
    const state = { url: this.url, nodes: this.nodes.map(strip), workers: this.workers.map(strip), nginx: this.nginx && strip(this.nginx) };
    writeFileSync(join(this.dir, 'state.json'), `${JSON.stringify(state, null, 2)}\n`);
  }

  /** The members of a cluster started earlier (by `up` in another process) from its state file. */
  static load(dir: string): { url: string; members: Member[] } | undefined {
    const file = join(resolve(dir), 'state.json');
    if (!existsSync(file)) return undefined;
    const s = JSON.parse(readFileSync(file, 'utf8')) as { url: string; nodes: Member[]; workers: Member[]; nginx?: Member };
    return { url: s.url, members: [...(s.nginx ? [s.nginx] : []), ...s.nodes, ...s.workers] };
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    // A zombie (exited, not yet reaped by its parent) is gone for our purposes.
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').slice(-2000);
  } catch {
    return '';
  }
}
