// End-to-end test of the pdfqa course assistant in a real headless browser: Debian's chromium
// driven by playwright-core (no browser download). Run by tests/test_app_browser.py:
//
//   BASE_URL=http://127.0.0.1:PORT PDF=examples/elte_nlp_3-tokenization.pdf NOT_PDF=/tmp/x.pdf \
//   QUESTION="What is byte pair encoding?" SCREENSHOT=docs/screenshot.png node tests/browser/e2e.js
//
// Prints one JSON object (what it saw) on stdout; exits non-zero on the first failed step.
"use strict";

const fs = require("fs");
const os = require("os");
const path = require("path");
const { chromium } = require("playwright-core");

const env = (name, fallback) => {
  const v = process.env[name] || fallback;
  if (v === undefined) throw new Error(`set ${name}`);
  return v;
};
const BASE = env("BASE_URL");
const PDF = path.resolve(env("PDF"));
const NOT_PDF = path.resolve(env("NOT_PDF"));
const QUESTION = env("QUESTION", "What is byte pair encoding?");
const FOLLOW_UP = env("FOLLOW_UP", "How does it build its vocabulary?");
const SCREENSHOT = path.resolve(env("SCREENSHOT", "docs/screenshot.png"));
const CHROMIUM = env("CHROMIUM", "/usr/bin/chromium");
const INDEX_TIMEOUT = Number(env("INDEX_TIMEOUT_MS", "300000"));
const ANSWER_TIMEOUT = Number(env("ANSWER_TIMEOUT_MS", "180000"));
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

const seen = { steps: [], console_errors: [], page_errors: [] };
function step(name, extra) {
  seen.steps.push(name);
  if (extra) Object.assign(seen, extra);
  process.stderr.write(`[e2e] ${name}\n`);
}

async function launch(locale) {
  // a fresh profile per run: launchPersistentContext passes it to chromium as --user-data-dir
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "pdfqa-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, args: ARGS, locale,
    viewport: { width: 1440, height: 900 }, deviceScaleFactor: 1, timeout: 120000,
  });
  const close = context.close.bind(context);
  context.close = async () => {
    await close();
    try {
      fs.rmSync(profile, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
    } catch (e) { /* chromium may still be writing its cache: leave the temporary profile */ }
  };
  return context;
}

function watch(page) {
  page.on("console", (msg) => { if (msg.type() === "error") seen.console_errors.push(msg.text()); });
  page.on("pageerror", (err) => seen.page_errors.push(String(err)));
}

async function main() {
  const context = await launch("en-US");
  try {
    const page = context.pages()[0] || (await context.newPage());
    watch(page);
    page.setDefaultTimeout(60000);
    await page.goto(BASE + "/");
    await page.waitForSelector('body[data-ready="1"]');
    step("loaded", { title: await page.textContent("h1"), lang: await page.getAttribute("html", "lang") });

    // a course
    await page.fill("#course-name", "Natural Language Processing");
    await page.click("#course-create");
    await page.waitForFunction(() => {
      const s = document.getElementById("course-select");
      return !s.disabled && s.selectedOptions.length && s.selectedOptions[0].textContent === "Natural Language Processing";
    });
    const courseId = await page.$eval("#course-select", (s) => s.value);
    if (await page.$(".error")) throw new Error(`error shown: ${await page.textContent(".error")}`);
    step("course created", { course_id: courseId });

    // a renamed non-PDF through the file picker: rejected, with the reason shown in the page
    await page.setInputFiles("#file-input", NOT_PDF);
    const err = await page.waitForSelector('.error[data-code="not_pdf"] .error-text');
    step("non-PDF rejected", { rejection: (await err.textContent()).trim(),
      rejected_listed: !!(await page.$(`li.doc[data-doc="${path.basename(NOT_PDF)}"]`)) });
    await page.click('.error[data-code="not_pdf"] button');

    // the PDF through the file picker, then wait until it is indexed
    const docName = path.basename(PDF);
    await page.setInputFiles("#file-input", PDF);
    const item = `li.doc[data-doc="${docName}"]`;
    await page.waitForSelector(item, { timeout: 60000 });
    let sawProgress = false;
    const t0 = Date.now();
    for (;;) {
      const status = await page.getAttribute(item, "data-status").catch(() => null);
      if (status === "ready") break;
      if (status === "failed") throw new Error(`indexing failed: ${await page.textContent(item)}`);
      if (await page.$(`${item} .progress`)) sawProgress = true;
      if (Date.now() - t0 > INDEX_TIMEOUT) throw new Error(`not ready after ${INDEX_TIMEOUT} ms (status ${status})`);
      await page.waitForTimeout(250);
    }
    step("document ready", { doc: docName, saw_progress: sawProgress, doc_meta: (await page.textContent(`${item} .doc-meta`)).trim(),
      index_seconds: (Date.now() - t0) / 1000 });

    // ask with the extractive generator
    if (await page.$('#generator-select option[value="extractive"]')) await page.selectOption("#generator-select", "extractive");
    await page.fill("#question", QUESTION);
    await page.click("#ask-button");
    const answered = '.msg.a[data-state="answered"]';
    await page.waitForSelector(answered, { timeout: ANSWER_TIMEOUT });
    const answerText = (await page.textContent(`${answered} .answer-text`)).trim();
    const citations = await page.$$eval(`${answered} .citation`, (bs) => bs.map((b) => b.textContent.trim()));
    if (!answerText) throw new Error("empty answer");
    if (!citations.length) throw new Error("no citation shown");
    step("answered", { answer: answerText, citations });

    // open the first citation: the page image loads, with its label and the highlight
    await page.click(`${answered} .citation >> nth=0`);
    await page.waitForSelector('#viewer[data-state="loaded"]', { timeout: 60000 });
    await page.waitForFunction(() => document.getElementById("viewer").dataset.boxes !== undefined, null, { timeout: 30000 });
    const img = await page.$eval("#page-image", (i) => ({ w: i.naturalWidth, h: i.naturalHeight, src: i.getAttribute("src") }));
    if (!(img.w > 0 && img.h > 0)) throw new Error("page image did not load");
    const label = (await page.textContent("#viewer-label")).trim();
    const boxes = Number(await page.getAttribute("#viewer", "data-boxes"));
    step("page shown", { page_image: img, page_label_text: label, highlight_boxes: boxes });
    fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await page.waitForTimeout(300);
    await page.screenshot({ path: SCREENSHOT, fullPage: false });
    step("screenshot", { screenshot: SCREENSHOT });

    // a follow-up question keeps the conversation
    await page.fill("#question", FOLLOW_UP);
    await page.click("#ask-button");
    await page.waitForFunction(() => document.querySelectorAll('.msg.a[data-state="answered"], .msg.a[data-state="abstained"]').length >= 2,
      null, { timeout: ANSWER_TIMEOUT });
    const second = await page.$$eval(".msg.a", (as) => as[as.length - 1].textContent);
    step("follow-up answered", { follow_up: second.trim() });
  } finally {
    await context.close();
  }

  // Japanese interface when the browser prefers Japanese
  const ja = await launch("ja-JP");
  try {
    const page = ja.pages()[0] || (await ja.newPage());
    watch(page);
    await page.goto(BASE + "/");
    await page.waitForSelector('body[data-ready="1"]');
    step("japanese", { ja_title: await page.textContent("h1"), ja_lang: await page.getAttribute("html", "lang"),
      ja_ask: await page.textContent("#ask-button"), ja_course: await page.$eval("#course-select", (s) => s.selectedOptions[0].textContent) });
  } finally {
    await ja.close();
  }
}

main().then(() => {
  process.stdout.write(JSON.stringify(seen) + "\n");
}).catch((e) => {
  seen.error = String(e && e.stack ? e.stack : e);
  process.stdout.write(JSON.stringify(seen) + "\n");
  process.exit(1);
});
