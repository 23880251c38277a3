// fraudapp live dashboard.
//
// Why it is built this way: the worker serves this page, its assets and its data
// itself, so the page must run with nothing but the worker behind it (no CDN, no
// map tile server, no external fonts) and with nothing to build. It is one plain
// script over two vendored libraries (Leaflet for the map, topojson-client to turn
// the Natural Earth TopoJSON into the GeoJSON base layer). Reads use relative URLs
// and the HttpOnly cookie the server set when the page was opened with its access
// token, so no token ever sits in this script. Alerts come from server-sent events
// (EventSource reconnects by itself) and every string from the server goes into the
// page as text (textContent, Leaflet tooltips given DOM nodes), never as HTML.
"use strict";

const RULES = {
  click_burst: "#fbbf24",
  stacked_ads: "#a78bfa",
  rate_limit: "#38bdf8",
  ip_blocklist: "#a3e635",
  heavy_hitter: "#2dd4bf",
  suspicious_location: "#f472b6",
  atm_impossible_travel: "#f87171",
};
const MAX_ROWS = 200; // alert rows kept in the table
const MAX_FEATURES = 500; // alerts kept on the map
const MAX_SEEN = 5000; // alert ids remembered to drop replays
const TOKEN_KEY = "fraudapp.ingest_token";
const PLACES = [
  ["London", 51.5074, -0.1278], ["Paris", 48.8566, 2.3522], ["Madrid", 40.4168, -3.7038],
  ["Berlin", 52.52, 13.405], ["Rome", 41.9028, 12.4964], ["New York", 40.7128, -74.006],
  ["São Paulo", -23.5505, -46.6333], ["Lagos", 6.5244, 3.3792], ["Mumbai", 19.076, 72.8777],
  ["Tokyo", 35.6762, 139.6503], ["Sydney", -33.8688, 151.2093],
];

const $ = (selector, root = document) => root.querySelector(selector);

/** Build an element; string children become text nodes, so nothing is parsed as HTML. */
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const colorOf = (rule) => RULES[rule] || "#cbd5e1";
const cssName = (text) => String(text).replace(/[^A-Za-z0-9_-]/g, "");
const pad = (n) => String(n).padStart(2, "0");
function clock(ms) {
  const d = new Date(ms);
  return Number.isFinite(d.getTime())
    ? `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}` : "—";
}
const iso = (ms) => (Number.isFinite(ms) ? new Date(ms).toISOString() : "");
const num = (x, digits = 0) => (Number.isFinite(Number(x))
  ? Number(x).toLocaleString(undefined, { maximumFractionDigits: digits }) : "?");
const duration = (ms) => (!Number.isFinite(Number(ms)) ? "?"
  : ms < 60_000 ? `${num(ms / 1000, 1)} s` : `${num(ms / 60_000, 1)} min`);
const pct = (x) => (Number.isFinite(Number(x)) ? `${(100 * Number(x)).toFixed(1)} %` : "?");

function rulePill(rule) {
  const pill = el("span", { class: "pill" }, rule);
  pill.style.setProperty("--c", colorOf(rule));
  return pill;
}

// ---- alert summaries, one line per rule --------------------------------------------

const SUMMARIES = {
  click_burst: (a) => `${a.count} clicks on ${a.url} within ${num((a.window_end - a.window_start) / 1000, 1)} s`,
  stacked_ads: (a) => `${Array.isArray(a.clicks) ? a.clicks.length : "?"} clicks on ${Array.isArray(a.ads) ? a.ads.length : "?"} ads within ${a.interval_ms} ms from ${a.source}`,
  rate_limit: (a) => `${a.source} over ${a.limit_per_minute}/min (burst ${a.burst}), ${num(a.excess_ms)} ms ahead`,
  ip_blocklist: (a) => `${a.ip} listed as ${a.blocklist_entry}${a.probabilistic ? " (Bloom filter match)" : ""}`,
  heavy_hitter: (a) => `${a.kind} ${a.source}: ${pct(a.share)} of campaign ${a.campaign_id || a.key} (≥ ${a.clicks_lower_bound} clicks)`,
  suspicious_location: (a) => `${pct(a.fraud_share)} of ${a.clicks_nearby} clicks within ${a.radius_km} km were fraud`,
  atm_impossible_travel: (a) => `${num(a.distance_between_txn_km)} km in ${duration(a.milliseconds_difference)} = ${num(a.kmh_required)} km/h (${a.t1_atm} → ${a.t2_atm})`,
};

function summary(alert) {
  // A field the alert lacks reads as "?" rather than "undefined".
  const fields = new Proxy(alert, { get: (target, name) => target[name] ?? "?" });
  try {
    if (SUMMARIES[alert.rule]) return SUMMARIES[alert.rule](fields);
  } catch (_) { /* fall through to the generic line */ }
  return alert.click_id ? `click ${alert.click_id}` : "";
}

// ---- where an alert is on the map ---------------------------------------------------

function latLon(lat, lon) {
  lat = Number(lat);
  lon = Number(lon);
  const ok = [lat, lon].every((x) => x !== null && Number.isFinite(x))
    && Math.abs(lat) <= 90 && Math.abs(lon) <= 180;
  return ok ? [lat, lon] : null;
}

function parsePair(text) {
  if (typeof text !== "string") return null;
  const parts = text.split(",");
  return parts.length === 2 && parts.every((p) => p.trim() !== "") ? latLon(parts[0], parts[1]) : null;
}

/** {kind: "line", from, to} for ATM pairs, {kind: "point", at} for located clicks, or null. */
function geometryOf(alert) {
  const from = parsePair(alert.t1_location);
  const to = parsePair(alert.t2_location);
  if (from && to) return { kind: "line", from, to };
  const loc = alert.location;
  const at = (loc && typeof loc === "object" && latLon(loc.lat, loc.lon))
    || (alert.lat !== undefined && alert.lon !== undefined && latLon(alert.lat, alert.lon));
  return at ? { kind: "point", at } : null;
}

// ---- the map ------------------------------------------------------------------------

const map = L.map("map", {
  worldCopyJump: true, minZoom: 1, maxZoom: 9, zoomSnap: 0.5,
  maxBounds: [[-85, -400], [85, 400]],
});
map.fitBounds([[-50, -165], [72, 175]]);
map.attributionControl.addAttribution("countries: Natural Earth");
const alertLayer = L.layerGroup().addTo(map);
const featureOrder = []; // alert ids with a map feature, oldest first

/** world-atlas keeps rings whole across the antimeridian and round the South Pole
 * (drawn on a sphere, that is right); on Leaflet's flat map such a ring would cut
 * across the whole world, so unwrap its longitudes and close polar rings at the pole. */
function planar(geometry) {
  if (!geometry) return;
  const polygons = geometry.type === "Polygon" ? [geometry.coordinates]
    : geometry.type === "MultiPolygon" ? geometry.coordinates : [];
  for (const polygon of polygons) {
    polygon.forEach((ring, i) => {
      const out = [ring[0].slice()];
      for (const [lon0, lat] of ring.slice(1)) {
        let lon = lon0;
        const prev = out[out.length - 1][0];
        while (lon - prev > 180) lon -= 360;
        while (prev - lon > 180) lon += 360;
        out.push([lon, lat]);
      }
      const first = out[0];
      const last = out[out.length - 1];
      if (Math.abs(last[0] - first[0]) > 180) {
        const pole = ring.reduce((sum, p) => sum + p[1], 0) < 0 ? -90 : 90;
        out.push([last[0], pole], [first[0], pole], first.slice());
      }
      polygon[i] = out;
    });
  }
}

fetch("/static/vendor/world-atlas/countries-110m.json")
  .then((res) => {
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    return res.json();
  })
  .then((topology) => {
    const countries = topojson.feature(topology, topology.objects.countries);
    for (const country of countries.features) planar(country.geometry);
    const base = L.geoJSON(countries, {
      interactive: false,
      style: {
        className: "country", color: "#3b4a60", weight: 0.6, fillColor: "#1c2535", fillOpacity: 1,
      },
    }).addTo(map);
    base.bringToBack();
    $("#map").dataset.basemap = "ready";
  })
  .catch((err) => {
    $("#map").dataset.basemap = "failed";
    console.warn("base map not loaded:", err.message);
  });

function tooltipFor(alert) {
  return el("div", { class: "tip" }, el("strong", {}, alert.rule), el("br"), String(alert.key ?? ""));
}

function drawAlert(alert) {
  const geo = geometryOf(alert);
  if (!geo) return null;
  const color = colorOf(alert.rule);
  const rule = cssName(alert.rule);
  const group = L.featureGroup();
  if (geo.kind === "line") {
    let to = geo.to;
    // Draw the shorter way round when the pair spans the antimeridian.
    if (to[1] - geo.from[1] > 180) to = [to[0], to[1] - 360];
    else if (geo.from[1] - to[1] > 180) to = [to[0], to[1] + 360];
    L.polyline([geo.from, to], {
      className: `alert-line rule-${rule}`, color, weight: 2.5, baseWeight: 2.5, opacity: 0.9,
    }).addTo(group);
    L.circleMarker(geo.from, {
      className: `alert-end alert-end-first rule-${rule}`, radius: 4, color, weight: 2, baseWeight: 2, fillColor: "#0b1220", fillOpacity: 1,
    }).addTo(group);
    L.circleMarker(to, {
      className: `alert-end alert-end-second rule-${rule}`, radius: 4, color, weight: 2, baseWeight: 2, fillColor: color, fillOpacity: 1,
    }).addTo(group);
  } else {
    L.circleMarker(geo.at, {
      className: `alert-point rule-${rule}`, radius: 6, color: "#0b1220", weight: 1, baseWeight: 1, fillColor: color, fillOpacity: 0.9,
    }).addTo(group);
  }
  group.bindTooltip(tooltipFor(alert), { sticky: true, direction: "top" });
  group.on("click", () => openDetail(alert.alert_id));
  group.addTo(alertLayer);
  featureOrder.push(alert.alert_id);
  while (featureOrder.length > MAX_FEATURES) {
    const old = known.get(featureOrder.shift());
    if (old && old.layer) {
      alertLayer.removeLayer(old.layer);
      old.layer = null;
    }
  }
  return group;
}

// ---- alerts: table, dedupe, selection ------------------------------------------------

const known = new Map(); // alert_id -> {alert, row, layer}, oldest first
const tbody = $("#alerts tbody");
let selectedId = null;

function addAlert(alert) {
  if (!alert || typeof alert !== "object" || typeof alert.alert_id !== "string") return;
  if (known.has(alert.alert_id)) return;
  const entry = { alert, row: null, layer: null };
  known.set(alert.alert_id, entry);
  const time = alert.detected_at ?? alert.event_time;
  const row = el(
    "tr",
    {
      tabindex: "0",
      dataset: { alertId: alert.alert_id, rule: String(alert.rule) },
      title: `event time ${iso(alert.event_time)}, detected ${iso(alert.detected_at)}`,
      onclick: () => openDetail(alert.alert_id),
      onkeydown: (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); openDetail(alert.alert_id); } },
    },
    el("td", { class: "t" }, clock(time)),
    el("td", { class: "r" }, rulePill(String(alert.rule))),
    el("td", { class: "k", title: String(alert.key ?? "") }, String(alert.key ?? "")),
    el("td", { class: "s", title: summary(alert) }, summary(alert)),
  );
  entry.row = row;
  tbody.prepend(row);
  while (tbody.rows.length > MAX_ROWS) {
    const gone = tbody.lastElementChild;
    const goneEntry = known.get(gone.dataset.alertId);
    if (goneEntry) goneEntry.row = null;
    gone.remove();
  }
  entry.layer = drawAlert(alert);
  while (known.size > MAX_SEEN) {
    const [oldId, old] = known.entries().next().value;
    if (old.layer) alertLayer.removeLayer(old.layer);
    known.delete(oldId);
  }
  $("#alert-count").textContent = `${tbody.rows.length} shown`;
}

function select(alertId) {
  const previous = selectedId && known.get(selectedId);
  if (previous) {
    if (previous.row) previous.row.classList.remove("selected");
    if (previous.layer) previous.layer.eachLayer((l) => l.setStyle({ weight: l.options.baseWeight }));
  }
  selectedId = alertId;
  const entry = known.get(alertId);
  if (!entry) return;
  if (entry.row) entry.row.classList.add("selected");
  if (entry.layer) {
    entry.layer.eachLayer((l) => l.setStyle({ weight: l.options.baseWeight + 2 }));
    entry.layer.bringToFront();
    showOnMap(entry.layer.getBounds());
  }
}

/** Pan (and zoom if need be) so the bounds are in the part of the map the open
 * detail panel leaves uncovered. */
function showOnMap(bounds) {
  const pad = 30;
  const size = map.getSize();
  const mapBox = map.getContainer().getBoundingClientRect();
  const cover = detail.hidden ? 0 : Math.max(0, mapBox.right - detail.getBoundingClientRect().left);
  if (size.x - cover < 200) return; // too little map left to aim at
  const seen = L.latLngBounds(
    map.containerPointToLatLng([pad, size.y - pad]),
    map.containerPointToLatLng([size.x - cover - pad, pad]),
  );
  if (!seen.contains(bounds)) {
    map.fitBounds(bounds, { maxZoom: 4, paddingTopLeft: [pad, pad], paddingBottomRight: [cover + pad, pad] });
  }
}

// ---- detail panel -------------------------------------------------------------------

const detail = $("#detail");
let detailToken = 0; // answers for a panel that was since reused are dropped

function relatedViews(alert) {
  const views = [];
  const id = (x) => typeof x === "string" && x !== "";
  if (id(alert.account_id)) views.push(["account", `/accounts/${encodeURIComponent(alert.account_id)}`]);
  else if (id(alert.session_id)) views.push(["session", `/sessions/${encodeURIComponent(alert.session_id)}`]);
  if (id(alert.campaign_id)) views.push(["campaign", `/campaigns/${encodeURIComponent(alert.campaign_id)}/top`]);
  return views;
}

async function fetchJson(url) {
  const res = await fetch(url, { headers: { Accept: "application/json" } });
  const text = await res.text();
  try {
    return { status: res.status, ok: res.ok, body: JSON.parse(text) };
  } catch (_) {
    return { status: res.status, ok: res.ok, body: null, text };
  }
}

function errorText(answer) {
  const body = answer.body;
  if (body && typeof body === "object" && "error" in body) {
    return `HTTP ${answer.status}: ${body.error}${body.reason ? ` (${body.reason})` : ""}`;
  }
  return `HTTP ${answer.status}${answer.text ? `: ${answer.text.slice(0, 200)}` : ""}`;
}

function openDetail(alertId) {
  const entry = known.get(alertId);
  if (!entry) return;
  const alert = entry.alert;
  detail.hidden = false;
  select(alertId);
  const token = ++detailToken;
  $("#detail-title").replaceChildren(rulePill(String(alert.rule)), " ", String(alert.key ?? ""));
  $("#detail-meta").textContent = `${alert.alert_id} · event ${iso(alert.event_time)} · detected ${iso(alert.detected_at)}`;
  $("#detail-evidence").textContent = JSON.stringify(alert, null, 2);
  const related = $("#detail-related");
  related.replaceChildren();
  for (const [kind, url] of relatedViews(alert)) {
    const body = el("div", { class: "view-body" }, el("p", { class: "muted" }, "loading…"));
    const status = el("span", { class: "status" });
    related.append(el("section", { class: "view", dataset: { view: kind, state: "loading" } },
      el("h3", {}, `GET ${url} `, status), body));
    fetchJson(url).then((answer) => {
      if (token !== detailToken) return;
      status.textContent = String(answer.status);
      body.parentElement.dataset.state = answer.ok ? "ok" : "error";
      body.replaceChildren(answer.ok && answer.body !== null
        ? el("pre", { class: "json" }, JSON.stringify(answer.body, null, 2))
        : el("p", { class: "msg error" }, errorText(answer)));
    }).catch((err) => {
      if (token !== detailToken) return;
      body.parentElement.dataset.state = "error";
      body.replaceChildren(el("p", { class: "msg error" }, `request failed: ${err.message}`));
    });
  }
  if (!related.children.length) related.append(el("p", { class: "muted" }, "No account, session or campaign on this alert."));
}

$("#detail-close").addEventListener("click", () => { detail.hidden = true; select(null); });
document.addEventListener("keydown", (ev) => { if (ev.key === "Escape" && !detail.hidden) { detail.hidden = true; select(null); } });

// ---- rates --------------------------------------------------------------------------

const rateRows = new Map(); // rule -> {bar, win, total}

function rateRow(rule) {
  let row = rateRows.get(rule);
  if (row) return row;
  const bar = el("span", { class: "bar" });
  bar.style.setProperty("--c", colorOf(rule));
  row = { bar, win: el("td", { class: "num" }, "0"), total: el("td", { class: "num" }, "0") };
  $("#rates tbody").append(el("tr", { dataset: { rule } },
    el("td", {}, rulePill(rule)), el("td", { class: "bar-col" }, el("span", { class: "track" }, bar)), row.win, row.total));
  rateRows.set(rule, row);
  return row;
}
Object.keys(RULES).forEach(rateRow);

function showRates(rates) {
  const win = rates.last_window || {};
  const totals = rates.totals || {};
  const rules = new Set([...Object.keys(RULES), ...Object.keys(win), ...Object.keys(totals)]);
  const counts = [...rules].map((r) => Number(win[r]) || 0);
  const top = Math.max(1, ...counts);
  let sumWin = 0;
  let sumTotal = 0;
  for (const rule of rules) {
    const row = rateRow(rule);
    const w = Number(win[rule]) || 0;
    const t = Number(totals[rule]) || 0;
    sumWin += w;
    sumTotal += t;
    row.win.textContent = num(w);
    row.total.textContent = num(t);
    row.bar.style.width = `${(100 * w) / top}%`;
  }
  $("#rates-sum-window").textContent = num(sumWin);
  $("#rates-sum-total").textContent = num(sumTotal);
  const windowS = Number(rates.window_s) || 60;
  $("#rates thead .bar-col").textContent = `last ${windowS} s`;
  $("#rates-at").textContent = Number.isFinite(rates.at) ? `at ${clock(rates.at)}` : "";
}

// ---- live events --------------------------------------------------------------------

const conn = $("#conn");
let source = null;

function setConn(state, text) {
  conn.dataset.state = state;
  $("#conn-text").textContent = text;
}

function connect() {
  source = new EventSource("/dashboard/events");
  source.addEventListener("open", () => setConn("open", "live"));
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) {
      // The browser gave up (e.g. the answer was not an event stream): retry ourselves.
      setConn("closed", "disconnected — retrying");
      setTimeout(connect, 5000);
    } else {
      setConn("connecting", "reconnecting…");
    }
  });
  source.addEventListener("alert", (ev) => {
    try { addAlert(JSON.parse(ev.data)); } catch (err) { console.warn("bad alert event:", err.message); }
  });
  source.addEventListener("rates", (ev) => {
    try { showRates(JSON.parse(ev.data)); } catch (err) { console.warn("bad rates event:", err.message); }
  });
}
connect();

// ---- simulator ----------------------------------------------------------------------

const tokenInput = $("#ingest-token");
const fromFragment = new URLSearchParams(location.hash.slice(1)).get("ingest_token");
if (fromFragment) {
  sessionStorage.setItem(TOKEN_KEY, fromFragment);
  // Keep the token out of the address bar, the history and any copied link.
  history.replaceState(null, "", location.pathname + location.search);
}
tokenInput.value = sessionStorage.getItem(TOKEN_KEY) || "";
tokenInput.addEventListener("input", () => sessionStorage.setItem(TOKEN_KEY, tokenInput.value.trim()));

const clickForm = $("#click-form");
const txnForm = $("#txn-form");
const result = $("#sim-result");
clickForm.elements.session_id.value = `sim-${Math.random().toString(16).slice(2, 8)}`;

for (const tab of document.querySelectorAll(".tabs [data-tab]")) {
  tab.addEventListener("click", () => {
    for (const other of document.querySelectorAll(".tabs [data-tab]")) {
      const on = other === tab;
      other.setAttribute("aria-selected", String(on));
      $(`#${other.dataset.tab}`).hidden = !on;
    }
  });
}

for (const form of [clickForm, txnForm]) {
  const select = $("select.place", form);
  select.append(el("option", { value: "" }, "place: fill lat/lon…"));
  PLACES.forEach(([name], i) => select.append(el("option", { value: String(i) }, name)));
  select.addEventListener("change", () => {
    const place = PLACES[Number(select.value)];
    if (!select.value || !place) return;
    form.elements.lat.value = place[1];
    form.elements.lon.value = place[2];
    if (form.elements.atm) form.elements.atm.value = `ATM ${place[0]}`;
  });
}

/** The form's fields as JSON: empty optional fields left out, numbers as numbers. */
function fieldsOf(form, numeric) {
  const out = {};
  for (const [name, value] of new FormData(form)) {
    const text = String(value).trim();
    if (text === "" || !form.elements[name] || form.elements[name].tagName === "SELECT") continue;
    out[name] = numeric.includes(name) ? Number(text) : text;
  }
  return out;
}

let answers = 0; // answers shown so far (data-answers), so a reader can wait for the next

function showResult(state, ...nodes) {
  if (state === "ok" || state === "error") result.dataset.answers = String(++answers);
  result.dataset.state = state;
  result.replaceChildren(...nodes);
  result.scrollIntoView({ block: "nearest" });
}

function alertList(alerts) {
  if (!Array.isArray(alerts) || alerts.length === 0) return el("p", { class: "muted no-alert" }, "no alert");
  return el("ul", { class: "sim-alerts" }, alerts.map((a) => {
    addAlert(a); // it also comes by SSE; the id dedupes
    return el("li", {}, el("button", { type: "button", class: "link", onclick: () => openDetail(a.alert_id) },
      rulePill(String(a.rule)), " ", summary(a) || String(a.alert_id)));
  }));
}

function verdictView(answer) {
  const v = answer.verdict || {};
  const fraud = v.fraud === true;
  const reasons = Array.isArray(v.reasons) && v.reasons.length ? v.reasons.join(", ") : "none";
  const click = answer.click || {};
  return [
    el("p", { class: `verdict ${fraud ? "fraud" : "clean"}`, dataset: { fraud: String(fraud) } },
      `fraud: ${fraud ? "yes" : "no"}`),
    el("dl", {},
      el("dt", {}, "reasons"), el("dd", {}, reasons),
      el("dt", {}, "risk_score"), el("dd", {}, v.risk_score ?? "?"),
      el("dt", {}, "click_id"), el("dd", {}, click.click_id ?? v.click_id ?? "?"),
      v.location ? [el("dt", {}, "location"), el("dd", {}, `${v.location.lat}, ${v.location.lon} (${v.location.by})`)] : null,
      v.duplicate ? [el("dt", {}, "duplicate"), el("dd", {}, "yes")] : null,
      v.skipped && Object.keys(v.skipped).length ? [el("dt", {}, "skipped"), el("dd", {}, Object.keys(v.skipped).join(", "))] : null),
    el("h4", {}, "alerts"),
    alertList(answer.alerts),
  ];
}

function transactionView(answer) {
  const t = answer.transaction || {};
  return [
    el("p", { class: "verdict neutral" }, `transaction ${t.transaction_id ?? ""} at ${clock(t.timestamp)}`),
    el("h4", {}, "alerts"),
    alertList(answer.alerts),
  ];
}

async function submit(form, path, body, render) {
  const token = tokenInput.value.trim();
  if (!token) {
    showResult("error", el("p", { class: "msg error" }, "Enter the ingest token first (or open the page with #ingest_token=… in its address)."));
    return;
  }
  const button = $("button[type=submit]", form);
  button.disabled = true;
  showResult("pending", el("p", { class: "muted" }, `POST ${path} …`));
  try {
    const res = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    let data = null;
    try { data = JSON.parse(text); } catch (_) { /* shown as text below */ }
    if (res.ok && data) showResult("ok", ...render(data));
    else showResult("error", el("p", { class: "msg error" }, errorText({ status: res.status, body: data, text })));
  } catch (err) {
    showResult("error", el("p", { class: "msg error" }, `request failed: ${err.message}`));
  } finally {
    button.disabled = false;
  }
}

clickForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const body = fieldsOf(clickForm, ["lat", "lon"]);
  submit(clickForm, "/simulate/click", body, verdictView);
});

txnForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const f = fieldsOf(txnForm, ["lat", "lon", "amount"]);
  const body = { account_id: f.account_id, amount: f.amount, location: { lat: f.lat, lon: f.lon } };
  if (f.atm) body.atm = f.atm;
  submit(txnForm, "/simulate/transaction", body, transactionView);
});
