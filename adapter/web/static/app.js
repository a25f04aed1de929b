// The dashboard page: reads the API, keeps every view and filter in the URL, polls while the
// tab is visible. No build step, no framework; text goes in with textContent only.
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const JOB_STATES = ["PENDING", "RUNNING", "COMPLETED", "RETRYING", "FAILED", "CANCELLED"];
const SORT_FIELDS = ["createdAt", "startedAt", "settledAt", "queueName", "progress", "attempts",
  "duration", "id"];
const main = document.getElementById("main");
let meta = { actions: [], readOnly: true, pollIntervalS: 2 };
let timer = null;
let selected = new Set();

// --- small helpers ----------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "text") el.textContent = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function params() { return new URLSearchParams(location.search); }

function go(updates, replace) {
  const next = params();
  for (const [key, value] of Object.entries(updates)) {
    next.delete(key);
    for (const v of [].concat(value ?? [])) if (v !== "" && v !== null) next.append(key, v);
  }
  const url = "?" + next.toString();
  if (replace) history.replaceState(null, "", url); else history.pushState(null, "", url);
  selected = new Set();
  render();
}

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", body: JSON.stringify(body),
    headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF },
  };
  const reply = await fetch("api/" + path, { credentials: "same-origin", ...init });
  const data = await reply.json().catch(() => ({ error: reply.statusText }));
  if (!reply.ok) throw new Error(data.error + (data.field ? ` (${data.field})` : ""));
  return data;
}

function when(text) { return text ? new Date(text).toLocaleString() : "–"; }

function human(ms) {
  if (ms === null || ms === undefined) return "–";
  const s = ms / 1000;
  if (s < 1) return `${Math.round(ms)} ms`;
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.round((s % 86400) / 3600)} h`;
}

// Ids are UUIDv7: their start is the creation time, so the end tells jobs apart.
function shortId(id) { return id.length > 12 ? "…" + id.slice(-10) : id; }

function badge(state) { return h("span", { class: `badge state-${state}`, text: state }); }

function bar(progress) {
  const pct = Math.max(0, Math.min(100, Number(progress) || 0));
  const fill = h("span", {});
  fill.style.width = `${pct}%`; // CSSOM, which the page's Content-Security-Policy allows
  return h("span", { class: "bar", title: `${pct}%`, "data-progress": pct }, fill);
}

function confirmThen(text, run) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  const yes = document.getElementById("confirm-yes");
  const no = document.getElementById("confirm-no");
  const close = () => { yes.onclick = null; no.onclick = null; dialog.close(); };
  no.onclick = close;
  yes.onclick = async () => {
    close();
    try { const out = await run(); status(out); } catch (err) { status(err.message, true); }
    render();
  };
  dialog.showModal();
}

function status(message, isError) {
  const el = document.getElementById("status");
  el.textContent = typeof message === "string" ? message : describe(message);
  el.className = isError ? "error" : "muted";
}

function describe(out) {
  if (out && "matched" in out) return `${out.changed} of ${out.matched} job(s) changed`;
  if (out && "changed" in out) return out.changed ? "done" : "nothing changed";
  return "done";
}

function jobActions(scope) { return meta.actions.filter((a) => a.target === scope); }

// --- views ------------------------------------------------------------------------------

const views = { queues: queuesView, jobs: jobsView, job: jobView, workers: workersView,
  dead: deadView, schedules: schedulesView };

async function render() {
  const view = params().get("view") || "queues";
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.dataset.view === (view === "job" ? "jobs" : view));
  }
  try {
    const content = await (views[view] || queuesView)();
    main.replaceChildren(content);
    document.body.dataset.rendered = String(Date.now());
  } catch (err) {
    main.replaceChildren(h("p", { class: "error", text: err.message }));
  }
  schedule();
}

async function queuesView() {
  const queues = await api("queues");
  const queueActions = jobActions("queue");
  const rows = queues.map((q) => h("tr", { "data-queue": q.name },
    h("td", {}, h("a", { href: `?view=jobs&queue=${encodeURIComponent(q.name)}`, text: q.name }),
      q.paused ? [" ", h("span", { class: "badge state-RETRYING", text: "paused" })] : null),
    JOB_STATES.map((s) => h("td", { class: "num" }, q.counts[s] ? h("a", {
      href: `?view=jobs&queue=${encodeURIComponent(q.name)}&state=${s}`, text: q.counts[s],
    }) : "0")),
    h("td", { class: "num", text: q.oldestWaitingAgeS === null ? "–" :
      human(q.oldestWaitingAgeS * 1000) }),
    h("td", { class: "num", text: q.completedLastHour }),
    h("td", { class: "num", text: q.failedLastHour }),
    h("td", { text: q.workers.join(", ") || "none" }),
    queueActions.length ? h("td", {}, queueActions.filter((a) => q.paused === undefined ||
      (a.name === "pause" ? !q.paused : a.name === "resume" ? q.paused : true)).map((a) => h("button", { type: "button", "data-action": a.name,
      onclick: () => confirmThen(a.confirm.replace("{what}", q.name),
        () => api(`queues/${encodeURIComponent(q.name)}/${a.name}`, {})),
      text: a.label }))) : null));
  const table = h("table", {}, h("thead", {}, h("tr", {}, h("th", { text: "Queue" }),
    JOB_STATES.map((s) => h("th", { class: "num", text: s })),
    h("th", { class: "num", text: "Oldest waiting" }), h("th", { class: "num", text: "Done 1 h" }),
    h("th", { class: "num", text: "Failed 1 h" }), h("th", { text: "Workers" }),
    queueActions.length ? h("th", { text: "Actions" }) : null)), h("tbody", {}, rows));
  const parts = [h("h2", { text: "Queues" }), queues.length ? table :
    h("p", { class: "muted", text: "No jobs stored and no worker answering." })];
  if (meta.buffers) {
    const buffers = await api("buffers");
    parts.push(h("h3", { text: "Buffers" }), h("table", {}, h("tbody", {}, buffers.map((b) =>
      h("tr", {}, h("td", { text: b.bufferId }), h("td", { class: "num", text: b.size }))))));
    if (!meta.readOnly) parts.push(h("button", { type: "button", text: "Flush all buffers",
      onclick: () => confirmThen("Flush every buffer now?", () => api("buffers/flush", {})) }));
  }
  return h("section", {}, parts);
}

function listQuery() {
  const p = params();
  const q = new URLSearchParams();
  for (const key of ["queue", "state", "text", "from", "to", "sort", "take", "skip"]) {
    for (const value of p.getAll(key)) q.append(key, key === "from" || key === "to" ?
      new Date(value).toISOString() : value);
  }
  return q;
}

function listOptions() {
  // The filter of the list as JobListOptions, for "every job matching".
  const p = params();
  const filter = {};
  if (p.getAll("queue").length) filter.queueName = { in: p.getAll("queue") };
  if (p.getAll("state").length) filter.state = { in: p.getAll("state") };
  const created = {};
  if (p.get("from")) created.after = new Date(p.get("from")).toISOString();
  if (p.get("to")) created.before = new Date(p.get("to")).toISOString();
  if (Object.keys(created).length) filter.createdAt = created;
  return Object.keys(filter).length ? { filter } : {};
}

async function jobsView() {
  const p = params();
  const [page, queues] = await Promise.all([api("jobs?" + listQuery()), api("queues")]);
  const take = Number(p.get("take") || 25);
  const skip = Number(p.get("skip") || 0);
  const [sortField, sortOrder] = (p.get("sort") || "createdAt:desc").split(":");
  const select = (name, values, current, label) => h("label", {}, label,
    h("select", { name, onchange: (e) => go({ [name]: e.target.value, skip: "" }) },
      h("option", { value: "", text: "any" }),
      values.map((v) => h("option", { value: v, text: v, selected: v === current }))));
  const input = (name, type, label) => h("label", {}, label, h("input", { name, type,
    value: p.get(name) || "", onchange: (e) => go({ [name]: e.target.value, skip: "" }) }));
  const filters = h("form", { class: "filters", onsubmit: (e) => e.preventDefault() },
    select("queue", queues.map((q) => q.name), p.get("queue"), "queue"),
    select("state", JOB_STATES, p.get("state"), "state"),
    input("from", "datetime-local", "created from"), input("to", "datetime-local", "created to"),
    input("text", "search", "text in data or error"),
    h("label", {}, "sort", h("select", { name: "sort", onchange: (e) => go({ sort: e.target.value }) },
      SORT_FIELDS.flatMap((f) => ["desc", "asc"].map((o) => h("option", { value: `${f}:${o}`,
        text: `${f} ${o}`, selected: f === sortField && o === (sortOrder || "desc") }))))),
    h("label", {}, "per page", h("select", { name: "take",
      onchange: (e) => go({ take: e.target.value, skip: "" }) },
      [10, 25, 50, 100].map((n) => h("option", { value: n, text: n, selected: n === take })))));
  const rows = page.items.map((job) => h("tr", { "data-job": job.id, "data-state": job.state },
    h("td", {}, h("input", { type: "checkbox", checked: selected.has(job.id),
      onchange: (e) => { e.target.checked ? selected.add(job.id) : selected.delete(job.id); } })),
    h("td", {}, h("a", { href: `?view=job&id=${encodeURIComponent(job.id)}`,
      text: shortId(job.id), title: job.id })),
    h("td", { text: job.queueName }), h("td", {}, badge(job.state)),
    h("td", { class: "num", text: `${job.attempts}/${job.retries + 1}` }),
    h("td", {}, bar(job.progress)), h("td", { text: when(job.createdAt) }),
    h("td", { text: when(job.startedAt) }), h("td", { text: when(job.settledAt) }),
    h("td", { class: "num", text: job.startedAt ? human(job.duration) : "–" })));
  const table = h("table", {}, h("thead", {}, h("tr", {}, ["", "Id", "Queue", "State",
    "Attempts", "Progress", "Created", "Started", "Settled", "Duration"].map((t) =>
    h("th", { text: t })))), h("tbody", {}, rows));
  const bulk = jobActions("job").flatMap((a) => [
    h("button", { type: "button", "data-action": `${a.name}-selected`, text: `${a.label} selected`,
      onclick: () => selected.size && confirmThen(
        a.confirm.replace("{what}", `${selected.size} selected job(s)`),
        () => api(`jobs/${a.name}`, { ids: [...selected] })) }),
    h("button", { type: "button", "data-action": `${a.name}-matching`,
      text: `${a.label} all ${page.totalItems} matching`,
      onclick: () => confirmThen(a.confirm.replace("{what}",
        `all ${page.totalItems} job(s) matching the filter`),
        () => api(`jobs/${a.name}`, { options: listOptions() })) })]);
  const end = Math.min(skip + take, page.totalItems);
  const pager = h("div", { class: "toolbar" },
    h("button", { type: "button", disabled: skip === 0, text: "‹ prev",
      onclick: () => go({ skip: Math.max(0, skip - take) }) }),
    h("span", { text: `${page.totalItems ? skip + 1 : 0}–${end} of ${page.totalItems}` +
      (page.truncated ? ` (searched the newest ${page.scanned})` : "") }),
    h("button", { type: "button", disabled: end >= page.totalItems, text: "next ›",
      onclick: () => go({ skip: skip + take }) }));
  // "every job matching" cannot carry a text search (find_many has no such filter)
  const offered = p.get("text") ? bulk.filter((b) => b.dataset.action.endsWith("-selected")) : bulk;
  return h("section", {}, h("h2", { text: "Jobs" }), filters,
    h("div", { class: "toolbar" }, offered), table, pager);
}

async function jobView() {
  const id = params().get("id");
  const job = await api("jobs/" + encodeURIComponent(id));
  const fits = { cancel: !job.isSettled, remove: job.isSettled,
    retry: job.state === "FAILED" || job.state === "CANCELLED" };
  const actions = jobActions("job").filter((a) => fits[a.name] ?? true).map((a) => h("button", { type: "button",
    "data-action": a.name, text: a.label, onclick: () => confirmThen(
      a.confirm.replace("{what}", `job ${id}`), () => api(`jobs/${encodeURIComponent(id)}/${a.name}`, {})) }));
  const lineage = job.retriedFrom ? h("a", { href: `?view=job&id=${encodeURIComponent(job.retriedFrom)}`,
    text: job.retriedFrom }) : "–";
  const json = (value) => h("pre", { text: value === null || value === undefined ? "–" :
    JSON.stringify(value, null, 2) });
  return h("section", { "data-job": job.id, "data-state": job.state },
    h("h2", {}, `Job ${job.id} `, badge(job.state)),
    h("div", { class: "toolbar" }, actions,
      h("a", { href: `?view=jobs&queue=${encodeURIComponent(job.queueName)}`, text: "‹ its queue" })),
    h("div", { class: "grid" },
      h("dl", {}, h("dt", { text: "queue" }), h("dd", { text: job.queueName }),
        h("dt", { text: "progress" }), h("dd", { id: "progress" }, bar(job.progress),
          ` ${Math.round(job.progress)}%`),
        h("dt", { text: "attempts" }), h("dd", { text: `${job.attempts} of ${job.retries + 1}` }),
        h("dt", { text: "retried from" }), h("dd", {}, lineage),
        h("dt", { text: "retried as" }), h("dd", { id: "retries-of" }, (job.retriesOf || []).length ?
          job.retriesOf.map((rid) => [h("a", { href: `?view=job&id=${encodeURIComponent(rid)}`,
            text: rid }), " "]) : "–"),
        h("dt", { text: "priority" }), h("dd", { text: job.priority ?? "–" }),
        h("dt", { text: "created" }), h("dd", { text: when(job.createdAt) }),
        h("dt", { text: "started" }), h("dd", { text: when(job.startedAt) }),
        h("dt", { text: "settled" }), h("dd", { text: when(job.settledAt) }),
        h("dt", { text: "duration" }), h("dd", { text: job.startedAt ? human(job.duration) : "–" })),
      h("div", {}, h("h3", { text: "Data" }), json(job.data))),
    h("div", { class: "grid" }, h("div", {}, h("h3", { text: "Result" }), json(job.result)),
      h("div", {}, h("h3", { text: "Error" }), json(job.error))));
}

async function workersView() {
  const workers = await api("workers");
  return h("section", {}, h("h2", { text: "Workers" }), workers.length ? h("table", {},
    h("thead", {}, h("tr", {}, ["Worker", "Queues", "Running jobs", "Heartbeat"].map((t) =>
      h("th", { text: t })))),
    h("tbody", {}, workers.map((w) => h("tr", { "data-worker": w.hostname },
      h("td", {}, w.hostname, w.answering ? null : [" ", h("span", { class: "badge state-FAILED",
        text: "not answering" })]),
      h("td", { text: w.queues.join(", ") || "–" }),
      h("td", {}, w.runningJobs.length ? w.runningJobs.map((id) => [h("a", {
        href: `?view=job&id=${encodeURIComponent(id)}`, text: shortId(id), title: id }), " "]) : "none"),
      h("td", { class: "num", text: w.heartbeatAgeS === null ? "–" :
        `${human(w.heartbeatAgeS * 1000)} ago` })))))
    : h("p", { class: "muted", text: "No worker answered." }));
}

async function deadView() {
  const letters = await api("dead-letters");
  return h("section", {}, h("h2", { text: "Dead letters" }), letters.length ? h("table", {},
    h("thead", {}, h("tr", {}, ["Received", "Queue", "Task", "Task id", "Reason"].map((t) =>
      h("th", { text: t })))),
    h("tbody", {}, letters.map((d) => h("tr", {}, h("td", { text: when(d.receivedAt) }),
      h("td", { text: d.queue }), h("td", { text: d.taskName || "–" }),
      h("td", { text: d.taskId || "–" }), h("td", { text: d.reason }))))) :
    h("p", { class: "muted", text: "No dead letters." }));
}

async function schedulesView() {
  const tasks = await api("schedules");
  const actions = jobActions("schedule");
  const shown = ["id", "scheduleDescription", "enabled", "running", "lastRunAt", "lastError",
    "nextRunAt"];
  const cell = (key, value) => key.endsWith("At") ? when(value) :
    value === null || value === undefined ? "–" : String(value);
  return h("section", {}, h("h2", { text: "Scheduled tasks" }), tasks.length ? h("table", {},
    h("thead", {}, h("tr", {}, shown.map((k) => h("th", { text: k })),
      actions.length ? h("th", { text: "Actions" }) : null)),
    h("tbody", {}, tasks.map((t) => h("tr", { "data-schedule": t.id },
      shown.map((k) => h("td", { text: cell(k, t[k]) })),
      actions.length ? h("td", {}, actions.map((a) => h("button", { type: "button", text: a.label,
        onclick: () => confirmThen(a.confirm.replace("{what}", t.id),
          () => api(`schedules/${encodeURIComponent(t.id)}/${a.name}`, {})) }))) : null)))) :
    h("p", { class: "muted", text: "No scheduled task." }));
}

// --- polling ----------------------------------------------------------------------------

function interval() { return Number(params().get("refresh") ?? meta.pollIntervalS); }

function schedule() {
  clearTimeout(timer);
  const seconds = interval();
  if (seconds > 0 && document.visibilityState === "visible") {
    // Not while a confirmation is open or a filter is being edited: a refresh would drop it.
    const busy = () => document.querySelector("dialog[open]") ||
      (main.contains(document.activeElement) && document.activeElement.matches("input:not([type=checkbox]), select"));
    timer = setTimeout(() => (busy() ? schedule() : render()), seconds * 1000);
  }
}

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") render(); else clearTimeout(timer);
});
window.addEventListener("popstate", render);
document.getElementById("interval").addEventListener("change", (e) => go({ refresh: e.target.value }, true));

(async () => {
  meta = await api("meta");
  document.getElementById("readonly").hidden = !meta.readOnly;
  document.getElementById("nav-schedules").hidden = !meta.schedules;
  const choice = document.getElementById("interval");
  const wanted = String(interval());
  if (![...choice.options].some((o) => o.value === wanted)) choice.append(h("option", { value: wanted, text: `${wanted} s` }));
  choice.value = wanted;
  document.getElementById("urls").textContent = Object.entries(meta.urls)
    .map(([name, url]) => `${name}: ${url}`).join("  ·  ");
  for (const link of document.querySelectorAll("nav a")) {
    link.addEventListener("click", (e) => { e.preventDefault(); history.pushState(null, "",
      link.getAttribute("href")); render(); });
  }
  render();
})();
