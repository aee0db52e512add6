/**
 * Where backups are kept: a local directory, or S3-compatible object storage (AWS S3, MinIO,
 * Ceph, R2, …) through the AWS SDK v3. A backup is two objects: `<id>.rbk` (the sealed dump)
 * and `<id>.manifest.json`; the manifest is written last, so a listed backup is complete.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { S3Client } from '@aws-sdk/client-s3';
import type { BackupConfig } from '../core/config.js';

export interface BackupStore {
  /** Where, for logs and listings (never with credentials). */
  readonly location: string;
  /** Upload a local file under `name`. */
  put(localPath: string, name: string): Promise<void>;
  /** Download `name` into a local file. */
  get(name: string, localPath: string): Promise<void>;
  /** A stream of `name` (for a download through the admin API). */
  open(name: string): Promise<Readable>;
  /** Names of the stored objects. */
  list(): Promise<string[]>;
  /** Delete `name` (no error when it is gone already). */
  remove(name: string): Promise<void>;
}

export class LocalStore implements BackupStore {
  constructor(private readonly dir: string) {}
  get location(): string {
    return this.dir;
  }
  async put(localPath: string, name: string): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    // Copied under a temporary name, then renamed: a crash never leaves half a backup listed.
    const tmp = join(this.dir, `.${name}.partial`);
    await pipeline(createReadStream(localPath), createWriteStream(tmp));
    await rename(tmp, join(this.dir, name));
  }
  async get(name: string, localPath: string): Promise<void> {
    await stat(join(this.dir, name)).catch(() => {
      throw new BackupNotFoundError(`no ${name} in ${this.dir}`);
    });
    await pipeline(createReadStream(join(this.dir, name)), createWriteStream(localPath));
  }
  async open(name: string): Promise<Readable> {
    await stat(join(this.dir, name)).catch(() => {
      throw new BackupNotFoundError(`no ${name} in ${this.dir}`);
    });
    return createReadStream(join(this.dir, name));
  }
  async list(): Promise<string[]> {
    return (await readdir(this.dir).catch(() => [] as string[])).filter((n) => !n.startsWith('.'));
  }
  async remove(name: string): Promise<void> {
    await rm(join(this.dir, name), { force: true });
  }
}

export class S3Store implements BackupStore {
  private client?: Promise<{ s3: S3Client; mod: typeof import('@aws-sdk/client-s3') }>;
  private readonly bucket: string;
  private readonly prefix: string;
  constructor(
    url: string,
    private readonly cfg: BackupConfig['s3'],
  ) {
    const u = new URL(url);
    this.bucket = u.hostname;
    this.prefix = u.pathname.replace(/^\/+/, '').replace(/\/*$/, '/').replace(/^\/$/, '');
  }
  get location(): string {
    return `s3://${this.bucket}/${this.prefix}`;
  }
  // Loaded on first use: a node that never touches S3 does not pay for the SDK.
  private connect() {
    this.client ??= import('@aws-sdk/client-s3').then((mod) => ({
      mod,
      s3: new mod.S3Client({
        region: this.cfg.region,
        endpoint: this.cfg.endpoint,
        forcePathStyle: this.cfg.forcePathStyle,
        // Checksums only where S3 requires them: many S3-compatible stores do not speak the
        // SDK's default aws-chunked uploads with trailing checksums (the files' own SHA-256 is in
        // the manifest anyway).
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
        credentials:
          this.cfg.accessKeyId && this.cfg.secretAccessKey
            ? { accessKeyId: this.cfg.accessKeyId, secretAccessKey: this.cfg.secretAccessKey }
            : undefined,
      }),
    }));
    return this.client;
  }
  async put(localPath: string, name: string): Promise<void> {
    const { s3, mod } = await this.connect();
    const { size } = await stat(localPath);
    await s3.send(
      new mod.PutObjectCommand({ Bucket: this.bucket, Key: this.prefix + name, Body: createReadStream(localPath), ContentLength: size }),
    );
  }
  async get(name: string, localPath: string): Promise<void> {
    await pipeline(await this.open(name), createWriteStream(localPath));
  }
  async open(name: string): Promise<Readable> {
    const { s3, mod } = await this.connect();
    let res: { Body?: unknown };
    try {
      res = await s3.send(new mod.GetObjectCommand({ Bucket: this.bucket, Key: this.prefix + name }));
    } catch (err) {
      if ((err as { name?: string }).name === 'NoSuchKey') throw new BackupNotFoundError(`no ${name} in ${this.location}`);
      throw err;
    }
    return res.Body as Readable;
  }
  async list(): Promise<string[]> {
    const { s3, mod } = await this.connect();
    const names: string[] = [];
    let token: string | undefined;
    do {
      const r = await s3.send(new mod.ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix, ContinuationToken: token }));
      for (const o of r.Contents ?? []) if (o.Key) names.push(o.Key.slice(this.prefix.length));
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
    return names.filter((n) => n !== '' && !n.includes('/'));
  }
  async remove(name: string): Promise<void> {
    const { s3, mod } = await this.connect();
    await s3.send(new mod.DeleteObjectCommand({ Bucket: this.bucket, Key: this.prefix + name }));
  }
}

export function openStore(cfg: BackupConfig): BackupStore {
  return cfg.target.startsWith('s3://') ? new S3Store(cfg.target, cfg.s3) : new LocalStore(cfg.target);
}

export class BackupNotFoundError extends Error {}
