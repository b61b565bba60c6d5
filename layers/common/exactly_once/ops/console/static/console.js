// The operator console: plain DOM, no framework. Every string from the API goes in with textContent
// (no HTML parsing of API data anywhere), so a hostile provider body is shown, not run. The token lives in sessionStorage
// for this tab only, and travels in the Authorization header, never in a URL or a cookie.
"use strict";

const API = "/console/api/";
const store = window.sessionStorage;
const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";

// -- building the page --------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "on") {
      for (const [event, fn] of Object.entries(value)) node.addEventListener(event, fn);
    } else if (name === "class") {
      node.className = value;
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function replace(container, ...children) {
  container.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
}

function fmt(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function age(iso) {
  if (!iso) return "";
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} d`;
}

function table(rows, columns, onPick) {
  if (!rows.length) return el("p", { class: "empty" }, "nothing here");
  const head = el("tr", {}, columns.map(([label]) => el("th", { scope: "col" }, label)));
  const body = rows.map((row) =>
    el(
      "tr",
      onPick ? { class: "pick", tabindex: "0", on: { click: () => onPick(row), keydown: (e) => e.key === "Enter" && onPick(row) } } : {},
      columns.map(([, cell]) => el("td", {}, typeof cell === "function" ? cell(row) : fmt(row[cell]))),
    ),
  );
  return el("table", {}, el("thead", {}, head), el("tbody", {}, body));
}

function fields(row, names) {
  return el("dl", { class: "fields" }, names.flatMap((n) => [el("dt", {}, n), el("dd", {}, fmt(row[n]))]));
}

// A provider body, pretty-printed when it is JSON; always as text.
function rawBody(text) {
  let shown = text || "";
  try {
    shown = JSON.stringify(JSON.parse(shown), null, 2);
  } catch (_) {
    // not JSON: shown as received
  }
  return el("pre", { class: "raw", "data-testid": "raw-body" }, shown);
}

function say(message, kind) {
  const status = $("status");
  status.textContent = message || "";
  status.className = kind || "";
}

// -- talking to the API ---------------------------------------------------------------------------

async function call(path, options) {
  const headers = { Authorization: `Bearer ${store.getItem("token") || ""}`, Accept: "application/json" };
  const init = { method: "GET", headers, cache: "no-store", credentials: "omit" };
  if (options && options.body) {
    init.method = "POST";
    headers["Content-Type"] = "application/json";
    headers["Idempotency-Key"] = options.key;
    init.body = JSON.stringify({ ...options.body, operator: store.getItem("operator") || "" });
  }
  const response = await fetch(API + path, init);
  let data = {};
  try {
    data = await response.json();
  } catch (_) {
    data = { message: response.statusText };
  }
  if (response.status === 401 || response.status === 403) {
    signOut("The API token was refused: sign in again.");
    throw new Error("token refused");
  }
  if (!response.ok) {
    const error = new Error(data.message || `HTTP ${response.status}`);
    error.status = response.status;
    error.data = data;
    throw error;
  }
  return data;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) q.set(k, v);
  const text = q.toString();
  return text ? `?${text}` : "";
}

function formParams(form) {
  const params = {};
  for (const [k, v] of new FormData(form).entries()) params[k] = String(v).trim();
  for (const name of ["since", "until"]) {
    if (params[name]) params[name] = new Date(params[name]).toISOString();
  }
  return params;
}

// An action button: one Idempotency-Key per intended action, kept across retries of it, so a double
// click or a retry after a network error is the same action; a new key only after it succeeded.
function actionButton(label, run, testid) {
  let key = crypto.randomUUID();
  const button = el("button", { type: "button", "data-testid": testid });
  button.textContent = label;
  button.addEventListener("click", async () => {
    if (button.disabled) return;
    button.disabled = true;
    try {
      const answer = await run(key);
      key = crypto.randomUUID();
      say(`${label}: done${answer.repeated ? " (already done by an earlier click)" : ""}`, "ok");
    } catch (error) {
      if (error.message !== "token refused") say(`${label}: ${error.message}`, "error");
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

// -- session ----------------------------------------------------------------------------------------

function signedIn() {
  return Boolean(store.getItem("token") && store.getItem("operator"));
}

function signOut(message) {
  store.removeItem("token");
  showSession();
  say(message || "Signed out.", message ? "error" : "");
}

function showSession() {
  const inside = signedIn();
  $("login").hidden = inside;
  $("session").hidden = !inside;
  $("tabs").hidden = !inside;
  $("who").textContent = store.getItem("operator") || "";
  if (!inside) for (const section of document.querySelectorAll("main > section")) section.hidden = true;
  else route();
}

// -- views --------------------------------------------------------------------------------------------

const views = {
  async overview() {
    const data = await call(`overview${query(formParams($("overview-form")))}`);
    const providers = Object.entries(data.providers);
    const cards = providers.map(([name, p]) =>
      el(
        "article",
        { class: "card", "data-provider": name },
        el("h3", {}, name),
        el(
          "ul",
          { class: "numbers" },
          el("li", {}, el("b", {}, fmt(p.events)), " events"),
          el("li", {}, el("b", {}, fmt(p.effects || 0)), " effects made"),
          el("li", {}, el("b", {}, fmt(p.worker_duplicates || 0)), " stopped at the queue/worker"),
          el("li", {}, el("b", {}, fmt(p.database_duplicates || 0)), " stopped by the database"),
          el("li", { class: p.open_quarantine ? "warn" : "" }, el("b", {}, fmt(p.open_quarantine)), " open in quarantine"),
        ),
        chart(p.hours || [], data.window_hours),
      ),
    );
    const stuck = Object.entries(data.stuck_rows).map(([flow, n]) => ({ flow, rows: n }));
    const sends = Object.entries(data.sends).map(([status, n]) => ({ status, rows: n }));
    const dlq = Object.entries(data.dead_letters).map(([queue, n]) => ({ queue, messages: n === null ? "unreadable" : n }));
    replace(
      $("overview-body"),
      el("div", { class: "cards" }, cards.length ? cards : el("p", { class: "empty" }, "no events in this window")),
      el("p", { class: "legend" }, el("span", { class: "key events" }, ""), " events  ",
        el("span", { class: "key dups" }, ""), " duplicates stopped (queue/worker + database)  ",
        el("span", { class: "key quarantined" }, ""), " quarantined; ", data.layers.ingest),
      el("div", { class: "cards" },
        el("article", { class: "card" }, el("h3", {}, "Stuck rows"), table(stuck, [["flow", "flow"], ["rows", "rows"]])),
        el("article", { class: "card" }, el("h3", {}, "Sends by status"), table(sends, [["status", "status"], ["rows", "rows"]])),
        el("article", { class: "card" }, el("h3", {}, "Dead-letter queues"), table(dlq, [["queue", "queue"], ["messages", "messages"]])),
      ),
    );
    await layerCharts(formParams($("overview-form")));
  },

  async events(more) {
    const form = $("events-form");
    const params = { ...formParams(form), ...(more || {}) };
    const page = await call(`events${query(params)}`);
    const rows = table(page.items, [
      ["key", (r) => el("a", { href: `#trace`, class: "trace-link", on: { click: (e) => { e.preventDefault(); showTrace(r.event_key, r.provider); } } }, r.event_key)],
      ["provider", "provider"],
      ["outcome", "outcome"],
      ["deliveries", "deliveries"],
      ["effect", "effect_id"],
      ["replay of", "replay_of"],
      ["first seen", (r) => `${age(r.first_seen_at)} ago`],
    ]);
    const next = page.next ? el("button", { type: "button", on: { click: () => views.events(page.next) } }, "Older") : null;
    replace($("events-body"), rows, next);
  },

  async quarantine(more) {
    const params = { ...formParams($("quarantine-form")), ...(more || {}) };
    const page = await call(`quarantine${query(params)}`);
    const rows = table(
      page.items,
      [
        ["id", "id"],
        ["provider", "provider"],
        ["key", "event_key"],
        ["reason", "reason"],
        ["age", (r) => age(r.created_at)],
        ["attempts", "attempts"],
        ["status", "status"],
      ],
      (row) => showQuarantine(row.id),
    );
    const next = page.next ? el("button", { type: "button", on: { click: () => views.quarantine(page.next) } }, "Older") : null;
    replace($("quarantine-body"), rows, next);
  },

  async dlq() {
    const params = formParams($("dlq-form"));
    const page = await call(`dlq${query(params)}`);
    const rows = table(page.items, [
      ["message", "message_id"],
      ["receives", "receives"],
      ["provider", "provider"],
      ["key", "key"],
      ["kind", "kind"],
      ["replay of", "replay_of"],
      ["payload", (r) => (r.key ? rawBody(JSON.stringify(r.payload)) : r.body === null ? `not an event (${r.body_length} bytes)` : rawBody(r.body))],
    ]);
    const note = el("textarea", { id: "dlq-note", rows: "2", cols: "60", maxlength: "2000", placeholder: "why (kept in replay_log)" });
    const limit = Math.min(50, Math.max(1, Number(params.limit) || 10));
    const replay = (key) =>
      call("dlq/replay", { key, body: { note: note.value, limit } }).then((answer) => {
        views.dlq();
        return answer;
      });
    const actions = page.items.length
      ? el("div", { class: "actions" }, el("label", {}, "Note ", note), actionButton(`Replay up to ${limit}`, replay, "dlq-replay"))
      : null;
    replace($("dlq-body"), rows, actions);
  },

  async sends(more) {
    const params = { ...formParams($("sends-form")), ...(more || {}) };
    const page = await call(`sends${query(params)}`);
    const rows = table(
      page.items,
      [
        ["id", "id"],
        ["channel", "channel"],
        ["recipient", "recipient"],
        ["status", "status"],
        ["attempts", "attempts"],
        ["reconciled", "reconcile_attempts"],
        ["last error", "last_error"],
        ["since", (r) => age(r.status_changed_at)],
      ],
      (row) => showSend(row.id),
    );
    const next = page.next ? el("button", { type: "button", on: { click: () => views.sends(page.next) } }, "Older") : null;
    replace($("sends-body"), rows, next);
  },

  async jobs(more) {
    const page = await call(`jobs${query(more || {})}`);
    const rows = table(page.items, [
      ["user", "user_id"],
      ["enabled", "enabled"],
      ["every (min)", "interval_minutes"],
      ["last check", (r) => (r.last_check_time ? `${age(r.last_check_time)} ago` : "never")],
      ["latest job", "job_id"],
      ["status", "status"],
      ["mails", (r) => (r.job_id ? `${r.mails_processed}/${r.mails_seen}` : "")],
      ["error", "error"],
      ["", (r) => actionButton("Trigger", (key) => call(`jobs/${encodeURIComponent(r.user_id)}/trigger`, { key, body: {} }).then((a) => { views.jobs(); return a; }), "trigger")],
    ]);
    const next = page.next ? el("button", { type: "button", on: { click: () => views.jobs(page.next) } }, "More") : null;
    replace($("jobs-body"), rows, next);
  },

  async graph() {
    const page = await call("graph");
    const expiry = (r) => {
      if (!r.expires_at) return "no live subscription";
      const hours = (Date.parse(r.expires_at) - Date.now()) / 3600000;
      return hours < 0 ? "expired" : `in ${Math.round(hours)} h`;
    };
    const rows = table(page.items, [
      ["mailbox", "mailbox"],
      ["watched", "watched"],
      ["subscription", "subscription_id"],
      ["expires", (r) => el("span", { class: r.expires_at && Date.parse(r.expires_at) - Date.now() > 86400000 ? "" : "warn" }, expiry(r))],
      ["renewed", (r) => (r.renewed_at ? `${age(r.renewed_at)} ago` : "")],
      ["failures", "failures"],
      ["last error", "last_error"],
      ["resynced", (r) => (r.resynced_at ? `${age(r.resynced_at)} ago (${r.resynced_mails} mails)` : "never")],
      ["resync error", "resync_error"],
      ["", (r) => actionButton("Resync", (key) => call(`graph/${encodeURIComponent(r.mailbox)}/resync`, { key, body: {} }).then((a) => { views.graph(); return a; }), "resync")],
    ]);
    replace($("graph-body"), rows);
  },
};

// Bars per hour: events, with the duplicates and the quarantined drawn over them. Attributes, not
// style: the Content-Security-Policy allows no inline style.
function chart(hours, windowHours) {
  const width = 240, height = 60, slots = Math.max(1, Math.min(windowHours, 48));
  const now = Date.now(), barWidth = width / slots;
  const peak = Math.max(1, ...hours.map((h) => h.events + h.worker_duplicates));
  const picture = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": "events per hour" });
  for (const h of hours) {
    const slot = slots - 1 - Math.floor((now - Date.parse(h.hour)) / 3600000);
    if (slot < 0 || slot >= slots) continue;
    const x = slot * barWidth + 1, w = Math.max(1, barWidth - 2);
    const bar = (value, cls) => {
      const tall = (value / peak) * (height - 2);
      return svg("rect", { x, y: height - tall, width: w, height: tall, class: cls });
    };
    picture.append(bar(h.events + h.worker_duplicates, "events"));
    picture.append(bar(h.worker_duplicates + h.database_duplicates, "dups"));
    picture.append(bar(h.quarantined, "quarantined"));
    picture.append(svg("title", {}, `${h.hour}: ${h.events} events, ${h.worker_duplicates + h.database_duplicates} duplicates stopped`));
  }
  return picture;
}

// -- duplicates stopped at each layer (the CloudWatch metrics, GET metrics) ------------------------------

const LAYERS = [
  ["ingest", "stopped at ingest (DynamoDB)"],
  ["queue", "stopped at the queue/worker"],
  ["database", "stopped by the database"],
];

// Its own failure is said in its own place: CloudWatch out of reach leaves the rest of the overview standing.
async function layerCharts(params) {
  const target = $("layers-body");
  let data;
  try {
    data = await call(`metrics${query({ hours: params.hours })}`);
  } catch (error) {
    if (error.message === "token refused") throw error;
    replace(target, el("p", { class: "empty", "data-testid": "layers-unavailable" }, `metrics unavailable: ${error.message}`));
    return;
  }
  const providers = Object.entries(data.providers);
  if (!providers.length) {
    replace(
      target,
      el("p", { class: "empty", "data-testid": "layers-empty" },
        `no data yet: no metrics in the last ${data.window_hours} h (they appear a minute or so after a webhook arrives)`),
    );
    return;
  }
  const minutes = data.period_seconds / 60;
  const cards = providers.map(([name, p]) =>
    el(
      "article",
      { class: "card", "data-testid": "layer-card", "data-layers-provider": name },
      el("h3", {}, name),
      el(
        "ul",
        { class: "numbers" },
        el("li", { "data-series": "accepted" }, el("b", {}, fmt(p.totals.accepted)), " accepted"),
        LAYERS.map(([series, label]) => el("li", { "data-series": series }, el("span", { class: `key ${series}` }, ""), " ", el("b", {}, fmt(p.totals[series])), ` ${label}`)),
        el("li", { "data-series": "effects" }, el("b", {}, fmt(p.totals.effects)), " effects made"),
        el("li", { "data-series": "quarantined", class: p.totals.quarantined ? "warn" : "" }, el("b", {}, fmt(p.totals.quarantined)), " quarantined"),
      ),
      layerChart(name, p.buckets, minutes),
      el("p", { class: "axis" }, el("span", {}, `${new Date(data.since).toLocaleString()}`), el("span", {}, `${minutes} min a bar, the tallest ${peakOf(p.buckets)}`), el("span", {}, "now")),
    ),
  );
  replace(
    target,
    el("div", { class: "cards" }, cards),
    el("p", { class: "legend" }, el("span", { class: "key accepted" }, ""), " accepted  ",
      LAYERS.flatMap(([series, label]) => [el("span", { class: `key ${series}` }, ""), ` ${label}  `]),
      el("span", { class: "key effects" }, ""), ` effects made; CloudWatch ${data.namespace} metrics, Sum per ${minutes} min`,
      data.truncated ? " (some providers left out: too many)" : ""),
  );
}

function peakOf(buckets) {
  return Math.max(1, ...buckets.map((b) => Math.max(b.accepted, b.effects, b.ingest + b.queue + b.database)));
}

// Per period: accepted (left half of the slot), the duplicates stacked by layer (right half), effects as a line.
function layerChart(name, buckets, minutes) {
  const width = 300, height = 80, slot = width / Math.max(1, buckets.length);
  const peak = peakOf(buckets);
  const tall = (value) => (value / peak) * (height - 4);
  const picture = svg("svg", { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", class: "chart layers", role: "img", "aria-label": `${name}: accepted and duplicates stopped per ${minutes} min`, "data-testid": "layer-chart" });
  const line = [];
  buckets.forEach((b, i) => {
    const x = i * slot, half = Math.max(0.5, slot / 2 - 0.5);
    if (b.accepted) picture.append(svg("rect", { x, y: height - tall(b.accepted), width: half, height: tall(b.accepted), class: "accepted", "data-count": b.accepted }));
    let base = height;
    for (const [series] of LAYERS) {
      if (!b[series]) continue;
      base -= tall(b[series]);
      picture.append(svg("rect", { x: x + half, y: base, width: half, height: tall(b[series]), class: series, "data-series": series, "data-count": b[series] }));
    }
    line.push(`${(x + slot / 2).toFixed(1)},${(height - tall(b.effects)).toFixed(1)}`);
    const stopped = LAYERS.map(([series]) => `${b[series]} at ${series}`).join(", ");
    const hover = svg("rect", { x, y: 0, width: slot, height, class: "hover" });
    hover.append(svg("title", {}, `${new Date(b.start).toLocaleString()}: ${b.accepted} accepted; stopped ${stopped}; ${b.effects} effects`));
    picture.append(hover);
  });
  if (buckets.some((b) => b.effects)) picture.append(svg("polyline", { points: line.join(" "), class: "effects" }));
  return picture;
}

// Opened from a click: a failure is said on the page, never left as an unhandled rejection.
const guarded = (fn) => (...args) => fn(...args).catch((error) => error.message !== "token refused" && say(error.message, "error"));

const showTrace = guarded(async (key, provider) => {
  const data = await call(`trace${query({ key, provider })}`);
  const section = (title, rows) => [el("h4", {}, title), rows.length ? table(rows, Object.keys(rows[0]).map((k) => [k, k])) : el("p", { class: "empty" }, "none")];
  replace(
    $("trace-body"),
    el(
      "article",
      { class: "detail", "data-testid": "trace" },
      el("h3", {}, "Trace of ", el("code", {}, data.key)),
      data.ingest ? el("p", {}, `ingest record: ${data.ingest.status}${data.ingest.expires_at ? ` until ${data.ingest.expires_at}` : ""}`) : null,
      el("h4", {}, "Duplicates stopped"),
      data.stopped.length ? el("ul", {}, data.stopped.map((s) => el("li", {}, el("b", {}, s.layer), ": ", s.what))) : el("p", { class: "empty" }, "none seen"),
      section("Deliveries (event log)", data.events),
      section("Effects", data.effects),
      section("Quarantine", data.quarantine),
      section("Replays", data.replays),
    ),
  );
});

const showQuarantine = guarded(async (id) => {
  const row = await call(`quarantine/${id}`);
  const note = el("textarea", { id: "q-note", rows: "2", cols: "60", maxlength: "2000", placeholder: "why (kept on the row and in replay_log)" });
  const force = el("input", { type: "checkbox", id: "q-force" });
  // A corrected copy of what the provider sent (the CLI's --payload): sent as text, checked by the server.
  const payload = el("textarea", { id: "q-payload", "data-testid": "q-payload", rows: "6", cols: "60", maxlength: "100000", spellcheck: "false", placeholder: "optional: a corrected JSON object to replay instead" });
  const replayBody = () => ({ note: note.value, force: force.checked, ...(payload.value.trim() ? { payload: payload.value } : {}) });
  const act = (verb) => (key) =>
    call(`quarantine/${id}/${verb}`, { key, body: verb === "replay" ? replayBody() : { note: note.value } }).then(
      async (answer) => {
        await Promise.all([showQuarantine(id), views.quarantine()]);
        return answer;
      },
    );
  replace(
    $("quarantine-detail"),
    el(
      "article",
      { class: "detail", "data-testid": "quarantine-detail", "data-id": row.id },
      el("h3", {}, `Quarantine row ${row.id}: ${row.status}`),
      fields(row, ["provider", "event_key", "external_id", "reason", "attempts", "created_at", "handled_by", "handled_at", "note"]),
      el("h4", {}, "Raw input, as received"),
      rawBody(row.raw),
      el("h4", {}, "Replays"),
      row.replays.length ? table(row.replays, [["id", "id"], ["by", "requested_by"], ["at", "requested_at"], ["note", "note"], ["before", "previous_outcome"], ["outcome", "outcome"]]) : el("p", { class: "empty" }, "none"),
      row.status === "resolved"
        ? null
        : el(
            "div",
            { class: "actions" },
            el("label", {}, "Note ", note),
            row.status === "replayed" ? el("label", {}, force, " replay again (an interrupted replay)") : null,
            el("label", {}, "Corrected payload ", payload),
            actionButton("Replay", act("replay"), "replay"),
            row.status === "open" ? actionButton("Resolve", act("resolve"), "resolve") : null,
          ),
      el("p", {}, el("a", { href: "#events", on: { click: (e) => { e.preventDefault(); location.hash = "#events"; showTrace(row.event_key, row.provider); } } }, "Trace this event")),
    ),
  );
});

const showSend = guarded(async (id) => {
  const row = await call(`sends/${id}`);
  const decision = el("select", { id: "s-decision" }, ["sent", "resend", "drop"].map((d) => el("option", { value: d }, d)));
  const messageId = el("input", { id: "s-message-id", type: "text", size: "40", placeholder: "the provider's message id (for sent)" });
  const note = el("textarea", { id: "s-note", rows: "2", cols: "60", maxlength: "2000", placeholder: "what you checked at the provider" });
  const settle = (key) =>
    call(`sends/${id}/resolve`, { key, body: { decision: decision.value, note: note.value, provider_message_id: messageId.value || null } }).then(
      async (answer) => {
        await Promise.all([showSend(id), views.sends()]);
        return answer;
      },
    );
  replace(
    $("send-detail"),
    el(
      "article",
      { class: "detail", "data-testid": "send-detail" },
      el("h3", {}, `Send ${row.id}: ${row.status}`),
      fields(row, ["idempotency_key", "channel", "sender_account", "recipient", "policy", "attempts", "reconcile_attempts", "call_started_at", "provider_message_id", "sent_at", "last_error"]),
      el("h4", {}, "Payload"),
      rawBody(JSON.stringify(row.payload)),
      el("h4", {}, "Ledger, relays, quarantine"),
      table([...row.ledger, ...row.outbox, ...row.quarantine].map((r) => ({ what: r.effect || `quarantine ${r.id}`, detail: fmt(r) })), [["what", "what"], ["detail", "detail"]]),
      row.status === "review"
        ? el("div", { class: "actions" }, el("label", {}, "Decision ", decision), el("label", {}, "Message id ", messageId), el("label", {}, "Note ", note), actionButton("Settle", settle, "settle"))
        : el("p", { class: "empty" }, row.status === "unknown" ? "being reconciled: a decision is possible once it is in review" : "settled"),
    ),
  );
});

// -- navigation -----------------------------------------------------------------------------------------

function route() {
  const tab = (location.hash.slice(1) || "overview").split("/")[0];
  const name = views[tab] ? tab : "overview";
  for (const section of document.querySelectorAll("main > section")) section.hidden = section.id !== `view-${name}`;
  for (const link of document.querySelectorAll("#tabs a")) link.classList.toggle("active", link.dataset.tab === name);
  load(name);
}

async function load(name, more) {
  say("loading…");
  try {
    await views[name](more);
    say("");
  } catch (error) {
    if (error.message !== "token refused") say(error.message, "error");
  }
}

function start() {
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    store.setItem("token", $("token").value.trim());
    store.setItem("operator", $("operator").value.trim());
    $("token").value = "";
    showSession();
  });
  $("logout").addEventListener("click", () => signOut());
  for (const name of Object.keys(views)) {
    $(`${name}-form`).addEventListener("submit", (event) => {
      event.preventDefault();
      load(name);
    });
  }
  window.addEventListener("hashchange", () => signedIn() && route());
  showSession();
}

document.addEventListener("DOMContentLoaded", start);
