// Drives Debian's Chromium (headless, through playwright-core) for the Python browser tests.
//
// Reads one JSON command per line on stdin and answers each with one JSON line on stdout:
// {"ok": true, "value": ...} or {"ok": false, "error": "..."}. Commands:
//   {"op": "open", "url": ..., "userDataDir": ..., "viewport"?: {"width": .., "height": ..}}
//                                                            launch Chromium and open the page (820x560 by default)
//   {"op": "goto", "url": ...}                               open another page (or another #route of this one)
//   {"op": "fill", "selector": ..., "value": ...}           type into an input
//   {"op": "click", "selector": ...}
//   {"op": "press", "selector": ..., "key": ...}
//   {"op": "waitText", "selector": ..., "text": ..., "timeout": ms}   until the element's text contains text
//   {"op": "waitGone", "selector": ..., "text": ..., "timeout": ms}   until the element's text no longer contains it
//   {"op": "text", "selector": ...}                          the element's innerText
//   {"op": "screenshot", "path": ...}                        the page
//   {"op": "beside", "path": ..., "image": ..., "title": ..., "terminal": ...}
//        one picture: the page screenshot `image` beside `terminal` (text) drawn as a terminal
//   {"op": "problems"}                                       console errors and HTTP answers >= 400 since open
//   {"op": "close"}
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
let context = null;
let page = null;
const problems = [];

const escape = (s) => s.replace(/[&<>]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;" })[c]);

const ops = {
  async open({ url, userDataDir, viewport }) {
    // launchPersistentContext passes --user-data-dir itself: a fresh directory per test.
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
      headless: true,
      args: ARGS,
      viewport: viewport ?? { width: 820, height: 560 },
    });
    page = context.pages()[0] || (await context.newPage());
    page.on("console", (m) => {
      process.stderr.write(`[page ${m.type()}] ${m.text()}\n`);
      if (m.type() === "error") problems.push(`console: ${m.text()}`);
    });
    context.on("response", (r) => {
      if (r.status() >= 400) problems.push(`HTTP ${r.status()} ${new URL(r.url()).pathname}`);
    });
    page.on("pageerror", (e) => process.stderr.write(`[page error] ${e.message}\n`));
    await page.goto(url);
    return page.url();
  },
  async goto({ url }) {
    await page.goto(url);
    return page.url();
  },
  fill: ({ selector, value }) => page.fill(selector, value),
  click: ({ selector }) => page.click(selector),
  press: ({ selector, key }) => page.press(selector, key),
  async waitText({ selector, text, timeout }) {
    await page.waitForFunction(
      ([sel, want]) => (document.querySelector(sel)?.innerText || "").includes(want),
      [selector, text],
      { timeout: timeout ?? 10000, polling: 50 },
    );
  },
  async waitGone({ selector, text, timeout }) {
    await page.waitForFunction(
      ([sel, gone]) => !(document.querySelector(sel)?.innerText || "").includes(gone),
      [selector, text],
      { timeout: timeout ?? 10000, polling: 50 },
    );
  },
  text: ({ selector }) => page.innerText(selector),
  problems: () => problems,
  async screenshot({ path }) {
    await page.screenshot({ path });
  },
  async beside({ path, image, title, terminal }) {
    const png = readFileSync(image).toString("base64");
    const shot = await context.newPage();
    await shot.setViewportSize({ width: 1500, height: 600 });
    await shot.setContent(`<!doctype html><html><body style="margin:0;padding:20px;background:#2b303b;display:flex;gap:20px;
      font-family:sans-serif"><img src="data:image/png;base64,${png}" style="width:820px;height:560px;border-radius:6px">
      <div style="flex:1;display:flex;flex-direction:column;border-radius:6px;overflow:hidden;background:#10131a">
      <div style="background:#3a4050;color:#d8dee9;padding:6px 10px;font-size:13px">${escape(title)}</div>
      <pre style="margin:0;padding:10px;color:#d8dee9;font:13px/1.35 'DejaVu Sans Mono',monospace;white-space:pre-wrap;
      flex:1">${escape(terminal)}</pre></div></body></html>`);
    await shot.screenshot({ path });
    await shot.close();
  },
  async close() {
    if (context) await context.close();
    context = page = null;
  },
};

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let reply;
  try {
    const command = JSON.parse(line);
    const op = ops[command.op];
    if (!op) throw new Error(`unknown op ${command.op}`);
    const value = await op(command);
    reply = { ok: true, value: value ?? null };
  } catch (e) {
    reply = { ok: false, error: String((e && e.stack) || e) };
  }
  process.stdout.write(JSON.stringify(reply) + "\n");
}
await ops.close();
