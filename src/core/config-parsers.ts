/** Value parsers of the configuration: each returns the parsed value, or undefined when the text is not valid. */

export type Parser<T> = (raw: string) => T;

export interface KeySpec<T> {
  /** What a valid value looks like, for the error message. */
  expected: string;
  parse: Parser<T | undefined>;
  default: T;
  secret?: boolean;
}

export const int =
  (min: number, max: number): Parser<number | undefined> =>
  (raw) => {
    if (!/^-?\d+$/.test(raw.trim())) return undefined;
    const n = Number(raw);
    return n >= min && n <= max ? n : undefined;
  };
export const bool: Parser<boolean | undefined> = (raw) => {
  const v = raw.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  return undefined;
};
export const nonEmpty: Parser<string | undefined> = (raw) => (raw.trim() === '' ? undefined : raw.trim());
export const httpUrl: Parser<string | undefined> = (raw) => {
  try {
    const u = new URL(raw.trim());
    return u.protocol === 'http:' || u.protocol === 'https:' ? raw.trim().replace(/\/+$/, '') : undefined;
  } catch {
    return undefined;
  }
};

/** A JSON object (not an array, not null), or undefined. */
export function jsonObject(raw: string): Record<string, unknown> | undefined {
  try {
    const parsed: unknown = JSON.parse(raw);
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

export const oneOf =
  <T extends string>(...values: T[]): Parser<T | undefined> =>
  (raw) =>
    values.includes(raw.trim() as T) ? (raw.trim() as T) : undefined;

export const list =
  (item: (s: string) => boolean): Parser<string[] | undefined> =>
  (raw) => {
    const items = raw
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
    return items.every(item) ? items : undefined;
  };
