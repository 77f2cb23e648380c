// The course assistant's page: plain JavaScript, no build step. Talks to the JSON API of
// pdfqa.app.server; interface text in Japanese or English following the browser's language
// (override with ?lang=ja or ?lang=en).
"use strict";

const STRINGS = {
  en: {
    title: "Course assistant",
    course: "Course",
    noCourse: "— no course yet —",
    newCoursePlaceholder: "New course name",
    createCourse: "Create course",
    adminToken: "Admin token",
    adminTokenPlaceholder: "needed to change courses",
    documents: "Documents",
    dropHint: "Drop PDFs here, or",
    chooseFiles: "Choose PDF files",
    limits: "PDF only · up to {mb} MB and {pages} pages per file",
    noDocs: "No documents yet.",
    askTitle: "Ask",
    generator: "Generator",
    retriever: "Retriever",
    newConversation: "New conversation",
    chatEmpty: "Ask a question about this course's documents. Answers cite the pages they come from; click a citation to see the page.",
    questionPlaceholder: "Ask about the lecture… (Enter sends, Shift+Enter starts a new line)",
    ask: "Ask",
    citedPage: "Cited page",
    close: "Close",
    status_queued: "queued",
    status_indexing: "indexing",
    status_ready: "ready",
    status_failed: "failed",
    status_removing: "removing",
    stage_read: "reading",
    stage_chunk: "splitting into passages",
    stage_embed: "embedding",
    stage_ocr: "reading scanned pages (OCR)",
    ocrMode: "Scanned pages (OCR)",
    ocr_auto: "where there is no text",
    ocr_always: "every page",
    ocr_never: "never",
    pages: "{n} pages",
    chunks: "{n} passages",
    skipped: "{n} pages skipped",
    skippedPage: "p. {page}: {reason}",
    remove: "Remove",
    confirmRemove: "Remove?",
    uploading: "uploading…",
    pageLabel: "{doc} — page {page}",
    printedLabel: " (printed page {label})",
    sources: "Sources",
    inferred: "attributed",
    ocrCited: "read by OCR",
    followUp: "searched as: {q}",
    answerFoot: "{generator} · {retriever} · {seconds} s",
    needCourse: "Create or choose a course first.",
    thinking: "Searching the documents…",
    quoteNotFound: "The quoted passage could not be located on the page image; it is shown below.",
    err_upload: "Could not add {name}",
    err_course: "Could not create the course",
    err_ask: "No answer",
    err_remove: "Could not remove {name}",
    err_page: "Could not show the page",
    err_load: "Could not load",
    err_network: "The server cannot be reached",
    dismiss: "Dismiss",
  },
  ja: {
    title: "授業アシスタント",
    course: "授業",
    noCourse: "— 授業がまだありません —",
    newCoursePlaceholder: "新しい授業の名前",
    createCourse: "授業を作成",
    adminToken: "管理トークン",
    adminTokenPlaceholder: "授業の変更に必要です",
    documents: "資料",
    dropHint: "PDFをここにドロップ、または",
    chooseFiles: "PDFファイルを選択",
    limits: "PDFのみ・1ファイル {mb} MB、{pages} ページまで",
    noDocs: "資料はまだありません。",
    askTitle: "質問",
    generator: "回答の生成",
    retriever: "検索方式",
    newConversation: "新しい会話",
    chatEmpty: "この授業の資料について質問してください。回答には出典のページが示され、クリックするとそのページを表示します。",
    questionPlaceholder: "講義について質問…（Enterで送信、Shift+Enterで改行）",
    ask: "質問する",
    citedPage: "引用元のページ",
    close: "閉じる",
    status_queued: "待機中",
    status_indexing: "索引作成中",
    status_ready: "利用可能",
    status_failed: "失敗",
    status_removing: "削除中",
    stage_read: "読み込み中",
    stage_chunk: "分割中",
    stage_embed: "ベクトル化中",
    stage_ocr: "スキャンページを文字認識中 (OCR)",
    ocrMode: "スキャンページ (OCR)",
    ocr_auto: "テキストのないページ",
    ocr_always: "すべてのページ",
    ocr_never: "しない",
    pages: "{n}ページ",
    chunks: "{n}ブロック",
    skipped: "{n}ページを除外",
    skippedPage: "{page}ページ: {reason}",
    remove: "削除",
    confirmRemove: "削除しますか？",
    uploading: "アップロード中…",
    pageLabel: "{doc} — {page}ページ",
    printedLabel: "（印刷上のページ番号: {label}）",
    sources: "出典",
    inferred: "推定",
    ocrCited: "OCR で読み取り",
    followUp: "検索した質問: {q}",
    answerFoot: "{generator} · {retriever} · {seconds} 秒",
    needCourse: "先に授業を作成するか選択してください。",
    thinking: "資料を検索しています…",
    quoteNotFound: "引用箇所をページ画像上で特定できませんでした。引用文を下に示します。",
    err_upload: "{name} を追加できません",
    err_course: "授業を作成できません",
    err_ask: "回答できません",
    err_remove: "{name} を削除できません",
    err_page: "ページを表示できません",
    err_load: "読み込めません",
    err_network: "サーバーに接続できません",
    dismiss: "閉じる",
    code_too_large: "ファイルが大きすぎます",
    code_not_pdf: "PDFファイルではありません（ファイル名ではなく内容で判定しています）",
    code_too_many_pages: "ページ数が上限を超えています",
    code_unreadable: "PDFとして読み込めません",
    code_empty: "空のファイルです",
    code_token_required: "管理トークンが必要です",
    code_token_wrong: "管理トークンが正しくありません",
    code_course_exists: "同じ名前の授業がすでにあります",
    code_bad_name: "授業名を入力してください",
    code_timeout: "制限時間内に回答が得られませんでした",
    code_generator_failed: "回答の生成に失敗しました",
    code_no_documents: "利用可能な資料がまだありません。PDFをアップロードし、索引作成が終わるまでお待ちください",
    code_cross_origin: "別のサイトからの変更は受け付けません",
    code_invalid: "入力が正しくありません",
  },
};

const params = new URLSearchParams(location.search);
const LANG = (() => {
  const forced = params.get("lang");
  if (forced && STRINGS[forced]) return forced;
  const prefs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || "en"];
  return String(prefs[0] || "en").toLowerCase().startsWith("ja") ? "ja" : "en";
})();

function t(key, vars) {
  let s = (STRINGS[LANG] && STRINGS[LANG][key]) || STRINGS.en[key] || key;
  for (const [k, v] of Object.entries(vars || {})) s = s.split(`{${k}}`).join(String(v));
  return s;
}

const $ = (id) => document.getElementById(id);
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

const state = {
  config: null,
  courses: [],
  courseId: null,
  docs: [],
  history: [],
  asking: false,
  pollTimer: null,
  uploads: 0,
};

// ------------------------------------------------------------------ API and errors

class ApiError extends Error {
  constructor(status, detail, code) {
    super(detail);
    this.status = status;
    this.code = code;
  }
}

function token() {
  return $("admin-token").value.trim();
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (options.write && token()) headers["Authorization"] = `Bearer ${token()}`;
  let res;
  try {
    res = await fetch(path, Object.assign({}, options, { headers }));
  } catch (e) {
    throw new ApiError(0, t("err_network"), "network");
  }
  if (!res.ok) {
    let detail = `${res.status} ${res.statusText}`;
    let code = `http_${res.status}`;
    try {
      const body = await res.json();
      if (body && body.detail) detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
      if (body && body.code) code = body.code;
    } catch (e) { /* not JSON */ }
    throw new ApiError(res.status, detail, code);
  }
  return res;
}

function explain(err) {
  // English: the server's message says what went wrong and what to do. Japanese: a translation of
  // the kind of error, with the server's specifics after it.
  const local = err && err.code && STRINGS[LANG][`code_${err.code}`];
  if (local && LANG !== "en") return `${local}（${err.message}）`;
  return err && err.message ? err.message : String(err);
}

function showError(prefix, err) {
  const box = el("div", { class: "error", dataset: { code: (err && err.code) || "" } },
    el("span", { class: "error-text", text: `${prefix}: ${explain(err)}` }),
    el("button", { type: "button", "aria-label": t("dismiss"), title: t("dismiss"), text: "×",
      onclick: (e) => e.currentTarget.parentElement.remove() }));
  const list = $("errors");
  list.prepend(box);
  while (list.children.length > 4) list.lastElementChild.remove();
}

// ------------------------------------------------------------------ i18n of the static page

function applyI18n() {
  document.documentElement.lang = LANG;
  document.title = t("title");
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of document.querySelectorAll("[data-i18n-placeholder]")) node.placeholder = t(node.dataset.i18nPlaceholder);
  $("course-select").setAttribute("aria-label", t("course"));
}

// ------------------------------------------------------------------ courses

async function loadConfig() {
  state.config = await (await api("/api/config")).json();
  const c = state.config;
  fillSelect($("generator-select"), c.generators, localStorage.getItem("pdfqa.generator") || c.generator);
  fillSelect($("retriever-select"), c.retrievers, localStorage.getItem("pdfqa.retriever") || c.retriever);
  $("limits").textContent = t("limits", { mb: Math.round(c.max_upload_bytes / 1048576), pages: c.max_pages });
  $("token-box").hidden = !c.auth_required;
}

function fillSelect(select, values, chosen) {
  select.replaceChildren(...values.map((v) => el("option", { value: v, text: v })));
  select.value = values.includes(chosen) ? chosen : values[0];
}

async function loadCourses(select) {
  state.courses = await (await api("/api/courses")).json();
  const sel = $("course-select");
  if (!state.courses.length) {
    sel.replaceChildren(el("option", { value: "", text: t("noCourse") }));
    sel.disabled = true;
    setCourse(null);
    return;
  }
  sel.disabled = false;
  sel.replaceChildren(...state.courses.map((c) => el("option", { value: c.id, text: c.name })));
  const wanted = select || state.courseId || localStorage.getItem("pdfqa.course");
  const id = state.courses.some((c) => c.id === wanted) ? wanted : state.courses[0].id;
  sel.value = id;
  setCourse(id);
}

function setCourse(id) {
  const changed = id !== state.courseId;
  state.courseId = id;
  if (id) localStorage.setItem("pdfqa.course", id);
  if (changed) {
    resetConversation();
    closeViewer();
  }
  document.body.dataset.course = id || "";
  refreshDocs();
}

async function createCourse(ev) {
  ev.preventDefault();
  const name = $("course-name").value.trim();
  if (!name) {
    showError(t("err_course"), new ApiError(422, "a course needs a name", "bad_name"));
    return;
  }
  $("course-create").disabled = true;
  try {
    const res = await api("/api/courses", {
      method: "POST", write: true, headers: { "Content-Type": "application/json" }, body: JSON.stringify({ name }),
    });
    const course = await res.json();
    $("course-name").value = "";
    await loadCourses(course.id);
  } catch (err) {
    showError(t("err_course"), err);
  } finally {
    $("course-create").disabled = false;
  }
}

// ------------------------------------------------------------------ documents

async function refreshDocs() {
  clearTimeout(state.pollTimer);
  if (!state.courseId) {
    state.docs = [];
    renderDocs();
    return;
  }
  const id = state.courseId;
  try {
    const docs = await (await api(`/api/courses/${encodeURIComponent(id)}/documents`)).json();
    if (id !== state.courseId) return;
    state.docs = docs;
    renderDocs();
  } catch (err) {
    showError(t("err_load"), err);
  }
  const busy = state.docs.some((d) => ["queued", "indexing", "removing"].includes(d.status)) || state.uploads > 0;
  state.pollTimer = setTimeout(refreshDocs, busy ? 800 : 15000);
}

function renderDocs() {
  const list = $("doc-list");
  list.replaceChildren(...state.docs.map(docItem));
  $("no-docs").hidden = state.docs.length > 0 || state.uploads > 0;
}

function docItem(d) {
  const meta = [];
  if (d.pages) meta.push(t("pages", { n: d.pages }));
  if (d.chunks) meta.push(t("chunks", { n: d.chunks }));
  if (d.skipped && d.skipped.length) meta.push(t("skipped", { n: d.skipped.length }));
  if (d.status === "indexing" && d.stage) meta.push(t(`stage_${d.stage}`));
  const removeBtn = el("button", { type: "button", class: "secondary remove", text: t("remove"),
    "aria-label": `${t("remove")} ${d.doc}` });
  removeBtn.addEventListener("click", () => removeDoc(d.doc, removeBtn));
  const item = el("li", { class: `doc ${d.status}`, dataset: { doc: d.doc, status: d.status } },
    el("div", { class: "doc-head" },
      el("span", { class: "doc-name", text: d.doc }),
      el("span", { class: `badge ${d.status}`, text: t(`status_${d.status}`) })),
    meta.length ? el("div", { class: "doc-meta", text: meta.join(" · ") }) : null);
  if (["queued", "indexing"].includes(d.status)) {
    const bar = el("div");
    bar.style.width = `${Math.round((d.progress || 0) * 100)}%`;
    item.append(el("div", { class: "progress", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100",
      "aria-valuenow": String(Math.round((d.progress || 0) * 100)) }, bar));
  }
  if (d.error) item.append(el("div", { class: "doc-error", text: d.error }));
  if (d.skipped && d.skipped.length) {
    item.append(el("details", {}, el("summary", { text: t("skipped", { n: d.skipped.length }) }),
      ...d.skipped.slice(0, 50).map((s) => el("div", { text: t("skippedPage", { page: s.page, reason: s.reason }) }))));
  }
  if (d.status !== "removing") item.append(el("div", { class: "doc-actions" }, removeBtn));
  return item;
}

async function removeDoc(doc, button) {
  if (!button.dataset.armed) {  // two clicks: no accidental removal, no modal dialog
    button.dataset.armed = "1";
    button.textContent = t("confirmRemove");
    setTimeout(() => { if (button.isConnected) { delete button.dataset.armed; button.textContent = t("remove"); } }, 4000);
    return;
  }
  button.disabled = true;
  try {
    await api(`/api/courses/${encodeURIComponent(state.courseId)}/documents/${encodeURIComponent(doc)}`,
      { method: "DELETE", write: true });
  } catch (err) {
    showError(t("err_remove", { name: doc }), err);
  }
  refreshDocs();
}

async function uploadFiles(files) {
  if (!state.courseId) {
    showError(t("err_upload", { name: files.length ? files[0].name : "PDF" }), new Error(t("needCourse")));
    return;
  }
  const courseId = state.courseId;
  for (const file of files) {
    state.uploads += 1;
    const pending = el("li", { class: "doc uploading", dataset: { status: "uploading" } },
      el("div", { class: "doc-head" }, el("span", { class: "doc-name", text: file.name }),
        el("span", { class: "badge queued", text: t("uploading") })));
    $("doc-list").append(pending);
    $("no-docs").hidden = true;
    try {
      const body = new FormData();
      body.append("file", file, file.name);
      body.append("ocr", $("ocr-mode").value);
      await api(`/api/courses/${encodeURIComponent(courseId)}/documents`, { method: "POST", write: true, body });
    } catch (err) {
      showError(t("err_upload", { name: file.name }), err);
    } finally {
      state.uploads -= 1;
      pending.remove();
    }
    await refreshDocs();
  }
}

function setupDrop() {
  const drop = $("drop");
  const input = $("file-input");
  input.addEventListener("change", () => {
    const files = Array.from(input.files || []);
    input.value = "";
    if (files.length) uploadFiles(files);
  });
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (e) => {
    const files = Array.from((e.dataTransfer && e.dataTransfer.files) || []);
    if (files.length) uploadFiles(files);
  });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } });
  // dropping a file anywhere else must not navigate away from the page
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
}

// ------------------------------------------------------------------ asking

function resetConversation() {
  state.history = [];
  const box = $("messages");
  box.replaceChildren(el("p", { id: "chat-empty", class: "muted", text: t("chatEmpty") }));
}

async function ask(ev) {
  ev.preventDefault();
  const question = $("question").value.trim();
  if (!question || state.asking) return;
  if (!state.courseId) {
    showError(t("err_ask"), new Error(t("needCourse")));
    return;
  }
  state.asking = true;
  $("ask-button").disabled = true;
  const chatEmpty = $("chat-empty");
  if (chatEmpty) chatEmpty.remove();
  const box = $("messages");
  box.append(el("div", { class: "msg q", text: question }));
  const text = el("div", { class: "answer-text streaming", text: "" });
  const bubble = el("div", { class: "msg a pending", dataset: { state: "pending" } }, text);
  box.append(bubble);
  text.dataset.placeholder = t("thinking");
  text.textContent = t("thinking");
  let started = false;
  bubble.scrollIntoView({ block: "end" });
  const generator = $("generator-select").value;
  const retriever = $("retriever-select").value;
  localStorage.setItem("pdfqa.generator", generator);
  localStorage.setItem("pdfqa.retriever", retriever);
  const payload = { question, generator, retriever, history: state.history.slice(-6) };
  try {
    const res = await api(`/api/courses/${encodeURIComponent(state.courseId)}/ask`, {
      method: "POST", headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify(payload),
    });
    let answer = null;
    for await (const { event, data } of readEvents(res)) {
      if (event === "token") {
        if (!started) { text.textContent = ""; started = true; }
        text.textContent += data.text;
        bubble.scrollIntoView({ block: "end" });
      } else if (event === "answer") {
        answer = data;
      } else if (event === "error") {
        throw new ApiError(data.status || 502, data.detail, data.code);
      }
    }
    if (!answer) throw new ApiError(502, "the answer stream ended early", "no_answer");
    $("question").value = "";
    renderAnswer(bubble, answer);
    state.history.push({ question: answer.question, answer: answer.answer,
      standalone_question: answer.standalone_question || null });
  } catch (err) {
    text.classList.remove("streaming");
    bubble.classList.remove("pending");
    bubble.classList.add("failed");
    bubble.dataset.state = "failed";
    text.textContent = `${t("err_ask")}: ${explain(err)}`;
    showError(t("err_ask"), err);
  } finally {
    state.asking = false;
    $("ask-button").disabled = false;
  }
}

async function* readEvents(res) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (value) buf += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buf.search(/\r?\n\r?\n/)) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut).replace(/^\r?\n\r?\n/, "");
      let event = "message";
      const lines = [];
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith(":")) continue;
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) lines.push(line.slice(5).replace(/^ /, ""));
      }
      if (lines.length) yield { event, data: JSON.parse(lines.join("\n")) };
    }
    if (done) return;
  }
}

function renderAnswer(bubble, a) {
  bubble.classList.remove("pending");
  bubble.classList.toggle("abstained", !!a.abstained);
  bubble.dataset.state = a.abstained ? "abstained" : "answered";
  const byMarker = new Map(a.citations.map((c) => [c.marker, c]));
  const text = el("div", { class: "answer-text" });
  const parts = a.answer.split(/\[(\d+)\]/);
  parts.forEach((part, i) => {
    if (i % 2 === 0) { if (part) text.append(document.createTextNode(part)); return; }
    const c = byMarker.get(Number(part));
    if (!c) { text.append(`[${part}]`); return; }
    text.append(el("button", { type: "button", class: "marker", text: part, title: citationWhere(c),
      onclick: () => openCitation(c, bubble) }));
  });
  const children = [text];
  if (a.standalone_question && a.standalone_question !== a.question) {
    children.push(el("div", { class: "answer-foot", text: t("followUp", { q: a.standalone_question }) }));
  }
  if (a.citations.length) {
    children.push(el("div", { class: "answer-foot", text: t("sources") }));
    children.push(el("ol", { class: "citations" }, ...a.citations.map((c) => el("li", {},
      el("button", { type: "button", class: "citation", dataset: { marker: String(c.marker) },
        onclick: () => openCitation(c, bubble) },
        el("span", { class: "n", text: `[${c.marker}]` }),
        el("span", { class: "where", text: citationWhere(c) }),
        c.inferred ? el("span", { class: "muted", text: ` (${t("inferred")})` }) : null,
        c.ocr ? el("span", { class: "muted", text: ` (${t("ocrCited")})` }) : null,
        el("span", { class: "quote", text: c.quote }))))));
  }
  const seconds = a.timings && a.timings.total !== undefined ? a.timings.total.toFixed(1) : "?";
  children.push(el("div", { class: "answer-foot", text: t("answerFoot", { generator: a.generator, retriever: a.retriever, seconds }) }));
  bubble.replaceChildren(...children);
}

function citationWhere(c) {
  const page = c.pages && c.pages.length > 1 ? `${c.pages[0]}–${c.pages[c.pages.length - 1]}` : c.page;
  return t("pageLabel", { doc: c.doc, page }) + (c.page_label && c.page_label !== String(c.page) ? t("printedLabel", { label: c.page_label }) : "");
}

// ------------------------------------------------------------------ the page viewer

async function openCitation(c, bubble) {
  for (const b of document.querySelectorAll(".citation.active")) b.classList.remove("active");
  const btn = bubble && bubble.querySelector(`.citation[data-marker="${c.marker}"]`);
  if (btn) btn.classList.add("active");
  const viewer = $("viewer");
  viewer.hidden = false;
  document.querySelector(".layout").classList.add("with-viewer");
  const frame = $("page-frame");
  const img = $("page-image");
  const boxes = $("page-boxes");
  boxes.replaceChildren();
  frame.classList.add("loading");
  viewer.dataset.state = "loading";
  const base = `/api/courses/${encodeURIComponent(state.courseId)}/pages/${encodeURIComponent(c.doc)}/${c.page}`;
  const query = `?scale=1.5&quote=${encodeURIComponent(c.quote.slice(0, 3000))}`;
  $("viewer-label").textContent = citationWhere(c);
  $("viewer-quote").replaceChildren(el("mark", { text: c.quote }));
  img.alt = citationWhere(c);
  img.onload = () => { frame.classList.remove("loading"); viewer.dataset.state = "loaded"; };
  img.onerror = () => {
    frame.classList.remove("loading");
    viewer.dataset.state = "failed";
    showError(t("err_page"), new ApiError(0, `${c.doc} p.${c.page}`, "render_failed"));
  };
  img.src = base + ".png" + query;
  try {
    const info = await (await api(base + ".json" + query)).json();
    const label = info.page_label && info.page_label !== String(info.page) ? t("printedLabel", { label: info.page_label }) : "";
    $("viewer-label").textContent = t("pageLabel", { doc: c.doc, page: info.page }) + label;
    viewer.dataset.boxes = String(info.boxes.length);
    if (!info.drawn) {  // the server drew nothing into the image (no Pillow there): overlay the boxes here
      for (const [x0, y0, x1, y1] of info.boxes) {
        const d = el("div");
        d.style.left = `${(100 * x0) / info.width}%`;
        d.style.top = `${(100 * y0) / info.height}%`;
        d.style.width = `${(100 * (x1 - x0)) / info.width}%`;
        d.style.height = `${(100 * (y1 - y0)) / info.height}%`;
        boxes.append(d);
      }
    }
    if (!info.boxes.length) $("viewer-quote").prepend(el("p", { class: "muted", text: t("quoteNotFound") }));
  } catch (err) {
    showError(t("err_page"), err);
  }
  viewer.scrollIntoView({ block: "nearest" });
}

function closeViewer() {
  $("viewer").hidden = true;
  document.querySelector(".layout").classList.remove("with-viewer");
  for (const b of document.querySelectorAll(".citation.active")) b.classList.remove("active");
}

// ------------------------------------------------------------------ start

async function main() {
  applyI18n();
  $("admin-token").value = sessionStorage.getItem("pdfqa.token") || "";
  $("admin-token").addEventListener("change", () => sessionStorage.setItem("pdfqa.token", token()));
  $("course-form").addEventListener("submit", createCourse);
  $("course-select").addEventListener("change", (e) => setCourse(e.target.value || null));
  $("ask-form").addEventListener("submit", ask);
  $("question").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); $("ask-form").requestSubmit(); }
  });
  $("new-conversation").addEventListener("click", resetConversation);
  $("viewer-close").addEventListener("click", closeViewer);
  setupDrop();
  try {
    await loadConfig();
    await loadCourses();
  } catch (err) {
    showError(t("err_load"), err);
  }
  document.body.dataset.ready = "1";
}

document.addEventListener("DOMContentLoaded", main);
