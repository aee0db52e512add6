/**
 * Debian's Chromium driven by playwright-core. Without /usr/bin/chromium the browser tests skip
 * with the reason (a newcomer's `npm test` passes); CI sets RAMPART_REQUIRE_BROWSER=1, which
 * turns the skip into a failure, and `.ci/run` installs the package.
 */
import { existsSync } from 'node:fs';
import { type Browser, chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export function browserUnavailable(): string | false {
  if (existsSync(CHROMIUM)) return false;
  const why = `${CHROMIUM} is not installed (apt-get install -y chromium)`;
  if (process.env.RAMPART_REQUIRE_BROWSER === '1') throw new Error(`${why}, and RAMPART_REQUIRE_BROWSER=1`);
  return why;
}

/** Headless, as root, and quiet: no background connections to Google's services (the network is closed). */
export function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}
