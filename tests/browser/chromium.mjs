// What every browser script here shares: Debian's Chromium, launched headless the same way each time, and
// the one timeout every wait uses.

import { chromium } from "playwright-core";

/** The timeout of every `waitFor…` in these scripts. */
export const WAIT = { timeout: 15000 };

/** Headless Chromium (`$CHROMIUM`, else `/usr/bin/chromium`), with nothing running in the background. */
export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
}
