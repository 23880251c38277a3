// fraudapp live dashboard.
//
// Why it is built this way: the worker serves this page, its assets and its data
// itself, so the page must run with nothing but the worker behind it (no CDN, no
// map tile server, no external fonts) and with nothing to build. It is one plain
// script over two vendored libraries (Leaflet for the map, topojson-client to turn
// the Natural Earth TopoJSON into the GeoJSON base layer). Reads use relative URLs
// and the HttpOnly cookie the server set when the page was opened with its access
// token, so no token ever sits in this script. Writes need a bearer token the
// person gives (the cookie opens reads only): the ingest token for the simulator,
// the API token for snoozes and labels, each taken from the address's fragment
// (#ingest_token=…&api_token=…, which never reaches a server) or typed in, and kept
// in sessionStorage. Alerts, cases, snoozes and labels come from server-sent events
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
const API_TOKEN_KEY = "fraudapp.api_token";
const SEVERITIES = ["low", "medium", "high", "critical"];
const CASE_RECENT = 20; // alerts a case record lists, its newest (fraudapp.core.cases.RECENT)
const MAX_CASE_ROWS = 200; // open cases shown, newest activity first
const MAX_CASES_KEPT = 5000; // cases remembered (open, resolved, or known from alerts)
const MAX_LIVE_ALERTS = 2000; // alerts remembered per case between its records
const SNOOZE_FOR = "1h";
const PRECISION_EVERY_MS = 5000;
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
  caseAlert(alert);
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
  const coverLeft = caseView.hidden ? 0 : Math.max(0, caseView.getBoundingClientRect().right - mapBox.left);
  if (size.x - cover - coverLeft < 200) return; // too little map left to aim at
  const seen = L.latLngBounds(
    map.containerPointToLatLng([coverLeft + pad, size.y - pad]),
    map.containerPointToLatLng([size.x - cover - pad, pad]),
  );
  if (!seen.contains(bounds)) {
    map.fitBounds(bounds, {
      maxZoom: 4, paddingTopLeft: [coverLeft + pad, pad], paddingBottomRight: [cover + pad, pad],
    });
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
  if (entry) showAlert(entry.alert);
}

/** The alert detail of an alert the page may not hold (a case's older alerts):
 * asked of GET /alerts/{id}, which keeps the last hour of event time. */
function openAlertById(alertId) {
  if (known.has(alertId)) {
    openDetail(alertId);
    return;
  }
  const token = ++detailToken;
  fetchJson(`/alerts/${encodeURIComponent(alertId)}`).then((answer) => {
    if (token !== detailToken) return;
    if (answer.ok && answer.body && answer.body.alert) showAlert(answer.body.alert);
    else say(`alert ${alertId}: ${errorText(answer)}`, true);
  }).catch((err) => say(`alert ${alertId}: request failed: ${err.message}`, true));
}

function showAlert(alert) {
  detail.hidden = false;
  select(alert.alert_id);
  const token = ++detailToken;
  $("#detail-title").replaceChildren(rulePill(String(alert.rule)), " ", String(alert.key ?? ""));
  $("#detail-meta").textContent = `${alert.alert_id} · event ${iso(alert.event_time)} · detected ${iso(alert.detected_at)}`;
  const caseLine = $("#detail-case");
  caseLine.hidden = typeof alert.case_id !== "string";
  caseLine.replaceChildren(...(caseLine.hidden ? [] : ["case ", el("button", {
    type: "button", class: "link case-link", onclick: () => openCase(alert.case_id),
  }, alert.case_id)]));
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

function closeDetail() {
  detail.hidden = true;
  select(null);
}
$("#detail-close").addEventListener("click", closeDetail);
document.addEventListener("keydown", (ev) => {
  if (ev.key !== "Escape") return;
  // The alert detail opens over the case it came from: Escape closes the top one.
  if (!detail.hidden) closeDetail();
  else if (!caseView.hidden) closeCase();
});

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

// ---- cases --------------------------------------------------------------------------
//
// One row per open case, from the `case` events: the open cases on connect (as the
// case table holds them, for the cases of the worker the page is on), then each
// transition from the cases topic. A case record is written at its transitions only,
// so between them the count moves with the `alert` events, each of which names its
// case: an alert the record does not cover (not among the newest alerts it lists)
// adds one until a record counts it. GET /cases/{id} (the case view) answers from the
// case table, live, and its answer becomes the row's record too.

const caseView = $("#case-view");
const casesBody = $("#cases tbody");
const apiTokenInput = $("#api-token");
const cases = new Map(); // case_id -> state (see caseState), oldest first
let caseViewId = null;
let caseViewToken = 0;
let casesPending = false;
// While the pointer is over the list (or focus is in it) rows keep their places, so
// a button is not moved away as it is clicked; they are sorted again on leaving.
let casesHeld = false;
const casesScroll = $("#cases").parentElement;
function holdCases() {
  const held = casesScroll.matches(":hover") || casesScroll.contains(document.activeElement);
  if (held !== casesHeld) {
    casesHeld = held;
    scheduleCases();
  }
}
for (const name of ["mouseenter", "mouseleave", "focusin", "focusout"]) {
  casesScroll.addEventListener(name, () => setTimeout(holdCases, 0));
}

const rank = (severity) => SEVERITIES.indexOf(severity);
const snoozedNow = (snooze) => !!snooze && Number(snooze.until) > Date.now();

function caseState(caseId) {
  let state = cases.get(caseId);
  if (state) return state;
  state = {
    id: caseId, record: null, label: undefined, snooze: undefined, row: null, cells: null,
    alerts: new Map(), // alert_id -> {alert_id, event_time, severity, rule_version}, from alert events
    extra: { count: 0, last: 0, severity: null }, // of those, what the record does not cover
    dirty: true,
  };
  cases.set(caseId, state);
  if (cases.size > MAX_CASES_KEPT) {
    // Forget the oldest case that is not open and not on view.
    for (const [id, old] of cases) {
      if (id !== caseViewId && !(old.record && old.record.status === "open")) {
        forgetCase(id);
        break;
      }
    }
  }
  return state;
}

function forgetCase(caseId) {
  const state = cases.get(caseId);
  if (state && state.row) state.row.remove();
  cases.delete(caseId);
}

/** Whether the record already counts the alert. It lists its newest CASE_RECENT
 * alerts; one older than those was counted (or came late, after its newer ones). */
function covered(record, alert) {
  const recent = Array.isArray(record.recent) ? record.recent : [];
  if (alert.alert_id === record.last_alert_id || alert.alert_id === record.first_alert_id) return true;
  if (recent.some((r) => r.alert_id === alert.alert_id)) return true;
  return recent.length >= CASE_RECENT && Number(alert.event_time) < Number(recent[0].event_time);
}

function addExtra(state, alert) {
  state.extra.count += 1;
  state.extra.last = Math.max(state.extra.last, Number(alert.event_time) || 0);
  if (rank(alert.severity) > rank(state.extra.severity)) state.extra.severity = alert.severity;
}

/** Recount what the record does not cover, dropping the alerts it does. */
function recount(state) {
  state.extra = { count: 0, last: 0, severity: null };
  for (const [id, alert] of state.alerts) {
    if (state.record && covered(state.record, alert)) state.alerts.delete(id);
    else addExtra(state, alert);
  }
}

/** The case as shown: the record plus the alerts seen since. */
function live(state) {
  const r = state.record || {};
  const severity = rank(state.extra.severity) > rank(r.severity) ? state.extra.severity : r.severity;
  return {
    count: (Number(r.alert_count) || 0) + state.extra.count,
    episodeAlerts: (Number(r.episode_alerts) || 0) + state.extra.count,
    last: Math.max(Number(r.last_seen) || 0, state.extra.last),
    severity: severity || "medium",
  };
}

function setRecord(record) {
  if (!record || typeof record.case_id !== "string") return;
  if (record.transition === "expired") {
    const state = cases.get(record.case_id);
    if (state) {
      state.record = null;
      state.dirty = true;
      if (record.case_id !== caseViewId) forgetCase(record.case_id);
    }
    scheduleCases();
    return;
  }
  const state = caseState(record.case_id);
  const current = state.record;
  // A count only grows: a record older than the one held (a GET answer can be newer
  // than the last transition) changes nothing but what it says of snooze and label.
  if (!current || current.stale || (Number(record.alert_count) || 0) >= (Number(current.alert_count) || 0)) {
    state.record = record;
    recount(state);
  }
  if ("snooze" in record) state.snooze = record.snooze;
  if ("label" in record && record.label !== undefined) state.label = record.label;
  state.dirty = true;
  scheduleCases();
}

function caseAlert(alert) {
  if (typeof alert.case_id !== "string") return;
  const state = caseState(alert.case_id);
  if (state.alerts.has(alert.alert_id)) return;
  const entry = {
    alert_id: alert.alert_id, event_time: Number(alert.event_time),
    severity: alert.severity ?? null, rule_version: alert.rule_version ?? null,
  };
  if (state.record && covered(state.record, entry)) return;
  state.alerts.set(alert.alert_id, entry);
  if (state.alerts.size > MAX_LIVE_ALERTS) state.alerts.delete(state.alerts.keys().next().value);
  addExtra(state, entry);
  state.dirty = true;
  scheduleCases();
}

function setSnooze(snooze) {
  if (!snooze || typeof snooze.case_id !== "string") return;
  const state = cases.get(snooze.case_id);
  if (!state) return;
  state.snooze = snooze;
  state.dirty = true;
  scheduleCases();
}

function setLabel(id, label) {
  const state = cases.get(id);
  if (state) {
    state.label = label;
    state.dirty = true;
    scheduleCases();
  }
  refreshPrecisionSoon();
}

function scheduleCases() {
  if (casesPending) return;
  casesPending = true;
  setTimeout(renderCases, 100);
}

const sevBadge = (severity) => el("span", { class: `badge sev sev-${cssName(severity)}` }, severity);

function actionButtons(caseId) {
  const snooze = el("button", { type: "button", class: "mini snooze", onclick: (ev) => { ev.stopPropagation(); snoozeCase(caseId); } }, "Snooze");
  const fraud = el("button", { type: "button", class: "mini label-fraud", "aria-pressed": "false", onclick: (ev) => { ev.stopPropagation(); labelCase(caseId, "fraud"); } }, "Fraud");
  const legit = el("button", { type: "button", class: "mini label-legit", "aria-pressed": "false", onclick: (ev) => { ev.stopPropagation(); labelCase(caseId, "legit"); } }, "Legit");
  return { snooze, fraud, legit };
}

/** The buttons' names and states as the case stands: names say which case, so a
 * screen reader's list of buttons tells the rows apart. */
function paintButtons(buttons, state) {
  const r = state.record || {};
  const what = `${r.entity ?? state.id} (${r.rule ?? "case"})`;
  const snoozed = snoozedNow(state.snooze);
  buttons.snooze.textContent = snoozed ? "Unsnooze" : "Snooze";
  buttons.snooze.setAttribute("aria-label", snoozed ? `Unsnooze ${what}` : `Snooze ${what} for 1 hour`);
  buttons.snooze.title = snoozed ? "lift the snooze now" : "silence its notifications for 1 hour";
  const label = state.label && state.label.label;
  for (const word of ["fraud", "legit"]) {
    const button = buttons[word];
    const text = word === "fraud" ? "Fraud" : "Legit";
    button.setAttribute("aria-label", `${text}: label ${what} as ${word}`);
    button.setAttribute("aria-pressed", String(label === word));
  }
}

function caseRow(state) {
  const buttons = actionButtons(state.id);
  const cells = {
    entity: el("span", { class: "entity" }), rule: el("span", { class: "rule" }),
    count: el("td", { class: "num n count" }), first: el("span", { class: "first" }), last: el("span", { class: "last" }),
    severity: el("span", { class: "sev-cell" }), status: el("span", { class: "status-cell" }), buttons,
  };
  const row = el(
    "tr",
    {
      tabindex: "0",
      dataset: { caseId: state.id },
      onclick: () => openCase(state.id),
      onkeydown: (ev) => {
        if (ev.target === row && (ev.key === "Enter" || ev.key === " ")) { ev.preventDefault(); openCase(state.id); }
      },
    },
    el("td", { class: "c" }, cells.entity, cells.rule),
    cells.count,
    el("td", { class: "w" }, cells.first, cells.last),
    el("td", { class: "st" }, cells.severity, cells.status),
    el("td", { class: "a" }, el("div", { class: "acts" }, buttons.snooze, buttons.fraud, buttons.legit)),
  );
  state.row = row;
  state.cells = cells;
  return row;
}

function paintRow(state) {
  const r = state.record;
  const c = state.cells;
  const now = live(state);
  const snoozed = snoozedNow(state.snooze);
  const label = state.label && state.label.label;
  state.row.dataset.rule = String(r.rule);
  state.row.dataset.severity = String(now.severity);
  state.row.dataset.snoozed = String(snoozed);
  if (label) state.row.dataset.label = label;
  else delete state.row.dataset.label;
  state.row.title = `${state.id}, episode ${r.episode ?? "?"}: ${now.episodeAlerts} alerts since it opened at ${iso(r.opened_at)}`;
  c.entity.textContent = String(r.entity ?? r.key ?? "");
  c.entity.title = String(r.entity ?? "");
  c.rule.replaceChildren(rulePill(String(r.rule)));
  c.count.textContent = num(now.count);
  c.first.textContent = clock(Number(r.first_seen));
  c.first.title = `first seen ${iso(Number(r.first_seen))}`;
  c.last.textContent = clock(now.last);
  c.last.title = `last seen ${iso(now.last)}`;
  c.severity.replaceChildren(sevBadge(now.severity));
  c.status.replaceChildren(...[
    el("span", { class: `badge status-${cssName(r.status)}` }, String(r.status)),
    snoozed ? el("span", { class: "badge snoozed", title: snoozeText(state.snooze) }, "snoozed") : null,
    label ? el("span", { class: `badge labelled label-${cssName(label)}`, title: `labelled ${label} by ${state.label.by ?? "?"}` }, label) : null,
  ].filter(Boolean));
  paintButtons(c.buttons, state);
}

function renderCases() {
  casesPending = false;
  const open = [];
  for (const state of cases.values()) {
    if (state.record && !state.record.stale && state.record.status === "open") open.push(state);
  }
  open.sort((a, b) => live(b).last - live(a).last || (a.id < b.id ? 1 : -1));
  const shown = open.slice(0, MAX_CASE_ROWS);
  if (casesHeld && casesBody.rows.length) {
    // Held: repaint the rows in place (a case that resolved says so), add none.
    for (const state of cases.values()) if (state.dirty && state.row && state.row.isConnected && state.record) paintRow(state);
  } else {
    const keep = new Set();
    for (const state of shown) {
      if (!state.row) caseRow(state);
      if (state.dirty || !state.row.isConnected) paintRow(state);
      keep.add(state.row);
    }
    for (const row of [...casesBody.rows]) if (!keep.has(row)) row.remove();
    shown.forEach((state, i) => {
      const at = casesBody.rows[i];
      if (at !== state.row) casesBody.insertBefore(state.row, at || null);
    });
  }
  const selected = caseViewId && cases.get(caseViewId);
  for (const row of casesBody.rows) row.classList.toggle("selected", !!selected && row === selected.row);
  $("#case-count").textContent = (open.length > shown.length
    ? `${num(open.length)} open, newest ${shown.length} shown` : `${num(open.length)} open`)
    + (casesHeld && casesBody.rows.length ? " · order held while the pointer is on the list" : "");
  $("#cases-empty").hidden = open.length > 0;
  if (selected && selected.dirty) paintCaseView();
  for (const state of cases.values()) state.dirty = false;
}

// A snooze ends in wall-clock time: repaint now and then so it shows.
setInterval(() => {
  for (const state of cases.values()) if (state.snooze) state.dirty = true;
  scheduleCases();
}, 10_000);

function snoozeText(snooze) {
  if (!snooze) return "not snoozed";
  const by = snooze.by ? ` by ${snooze.by}` : "";
  const why = snooze.reason ? ` (${snooze.reason})` : "";
  return snoozedNow(snooze)
    ? `snoozed until ${iso(Number(snooze.until))}${by}${why}`
    : `not snoozed (the last snooze${by} ended ${iso(Number(snooze.until))})`;
}

function actionText(action) {
  if (!action) return "none";
  if (action.type !== "block_ip") return JSON.stringify(action);
  const ip = action.ip ? ` ${action.ip}` : "";
  if (action.status === "skipped") return `block IP${ip}: skipped, ${action.reason ?? "no reason given"}`;
  const until = Number.isFinite(Number(action.until)) ? ` until ${iso(Number(action.until))} (event time)` : "";
  return `block IP${ip}${until}: ${action.status ?? "?"}`;
}

// ---- writes: snooze and label (the API token) -----------------------------------------

function say(text, error = false) {
  const msg = $("#cases-msg");
  msg.textContent = text;
  msg.title = text;
  msg.classList.toggle("error", error);
  msg.dataset.state = error ? "error" : "ok";
}

async function postApi(path, body) {
  const token = apiTokenInput.value.trim();
  if (!token) {
    return { status: 0, ok: false, body: { error: "enter the API token first (or open the page with #api_token=… in its address)", reason: "no_token" } };
  }
  const res = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  try {
    return { status: res.status, ok: res.ok, body: JSON.parse(text) };
  } catch (_) {
    return { status: res.status, ok: res.ok, body: null, text };
  }
}

function busy(caseId, on) {
  const state = cases.get(caseId);
  const groups = [state && state.cells && state.cells.buttons, caseId === caseViewId && caseViewButtons];
  for (const group of groups) {
    if (!group) continue;
    for (const button of Object.values(group)) button.disabled = on;
  }
}

function nameOf(caseId) {
  const state = cases.get(caseId);
  const r = state && state.record;
  return r ? `${r.entity} (${r.rule})` : caseId;
}

async function snoozeCase(caseId) {
  const state = cases.get(caseId);
  const lift = !!state && snoozedNow(state.snooze);
  busy(caseId, true);
  try {
    const answer = await postApi(`/cases/${encodeURIComponent(caseId)}/snooze`, { for: lift ? "0s" : SNOOZE_FOR, by: "dashboard" });
    if (answer.ok && answer.body && answer.body.snooze) {
      setSnooze(answer.body.snooze);
      say(lift ? `${nameOf(caseId)}: snooze lifted` : `${nameOf(caseId)}: ${snoozeText(answer.body.snooze)}`);
    } else {
      say(`snooze ${nameOf(caseId)}: ${answer.status ? errorText(answer) : answer.body.error}`, true);
    }
  } catch (err) {
    say(`snooze ${nameOf(caseId)}: request failed: ${err.message}`, true);
  } finally {
    busy(caseId, false);
  }
}

async function labelCase(caseId, label) {
  busy(caseId, true);
  try {
    const answer = await postApi("/labels", { id: caseId, label, by: "dashboard" });
    if (answer.ok && answer.body && answer.body.label) {
      setLabel(caseId, answer.body.label);
      const v = answer.body.label.rule_version;
      say(`${nameOf(caseId)}: labelled ${label}${v ? ` (version ${v})` : ""}`);
    } else {
      say(`label ${nameOf(caseId)}: ${answer.status ? errorText(answer) : answer.body.error}`, true);
    }
  } catch (err) {
    say(`label ${nameOf(caseId)}: request failed: ${err.message}`, true);
  } finally {
    busy(caseId, false);
  }
}

// ---- the case view --------------------------------------------------------------------

let caseViewAnswer = null; // GET /cases/{id}'s answer for the case on view
let caseViewButtons = null;

function openCase(caseId) {
  caseViewId = caseId;
  caseViewAnswer = null;
  caseView.hidden = false;
  caseView.dataset.caseId = caseId;
  caseView.dataset.state = "loading";
  paintCaseView();
  scheduleCases(); // the row's selection
  const token = ++caseViewToken;
  fetchJson(`/cases/${encodeURIComponent(caseId)}`).then((answer) => {
    if (token !== caseViewToken) return;
    caseViewAnswer = answer;
    caseView.dataset.state = answer.ok ? "ok" : "error";
    if (answer.ok && answer.body && answer.body.case) setRecord(answer.body.case);
    paintCaseView();
  }).catch((err) => {
    if (token !== caseViewToken) return;
    caseViewAnswer = { status: 0, ok: false, body: null, text: `request failed: ${err.message}` };
    caseView.dataset.state = "error";
    paintCaseView();
  });
}

function closeCase() {
  caseView.hidden = true;
  caseViewId = null;
  caseViewButtons = null;
  ++caseViewToken;
  scheduleCases();
}
$("#case-close").addEventListener("click", closeCase);

/** The case's alerts: the newest the record lists and those seen since, newest first. */
function alertsOf(state) {
  const all = new Map();
  const recent = state.record && Array.isArray(state.record.recent) ? state.record.recent : [];
  for (const a of recent) all.set(a.alert_id, a);
  for (const a of state.alerts.values()) all.set(a.alert_id, a);
  return [...all.values()].sort((a, b) => Number(b.event_time) - Number(a.event_time));
}

function paintCaseView() {
  const caseId = caseViewId;
  if (!caseId) return;
  const state = cases.get(caseId) || caseState(caseId);
  const r = state.record;
  const body = $("#case-body");
  $("#case-title").replaceChildren(
    r ? rulePill(String(r.rule)) : "Case", " ", r ? String(r.entity ?? "") : "",
  );
  const answer = caseViewAnswer;
  const where = answer && answer.ok && answer.body
    ? ` · partition ${answer.body.partition} on ${answer.body.served_by}` : "";
  $("#case-meta").textContent = `${caseId}${where}`;
  if (!r) {
    body.replaceChildren(answer && !answer.ok
      ? el("p", { class: "msg error" }, errorText(answer))
      : el("p", { class: "muted" }, "loading…"));
    return;
  }
  const now = live(state);
  const fact = (name, value, cls) => [el("dt", {}, name), el("dd", { class: cls }, value)];
  caseViewButtons = actionButtons(caseId);
  paintButtons(caseViewButtons, state);
  const alerts = alertsOf(state);
  const label = state.label && state.label.label;
  body.replaceChildren(...[
    answer && !answer.ok ? el("p", { class: "msg error" }, `GET /cases/${caseId}: ${errorText(answer)}`) : null,
    el("dl", { class: "facts" },
      fact("status", `${r.status}${r.stale ? " (before the stream reconnected)" : ""}, episode ${r.episode ?? "?"}`, "case-status"),
      fact("severity", sevBadge(now.severity)),
      fact("alerts", `${num(now.count)} in all, ${num(now.episodeAlerts)} this episode`, "case-count"),
      fact("rule version", String(r.rule_version ?? "?")),
      fact("first seen", iso(Number(r.first_seen))),
      fact("opened", iso(Number(r.opened_at))),
      fact("last seen", iso(now.last)),
      r.resolved_at ? fact("resolved", iso(Number(r.resolved_at))) : null,
      fact("label", label ? `${label} by ${state.label.by ?? "?"}` : "none", "case-label"),
    ),
    el("h3", {}, "Action"),
    el("p", { class: "case-action", dataset: { action: r.action ? `${r.action.type}:${r.action.status}` : "none" } }, actionText(r.action)),
    el("h3", {}, "Snooze"),
    el("p", { class: "case-snooze", dataset: { snoozed: String(snoozedNow(state.snooze)) } }, snoozeText(state.snooze)),
    el("div", { class: "case-actions" }, caseViewButtons.snooze, caseViewButtons.fraud, caseViewButtons.legit),
    el("h3", {}, `Alerts (${alerts.length} listed of ${num(now.count)}, newest first)`),
    el("table", { id: "case-alerts", class: "case-alerts" },
      el("thead", {}, el("tr", {}, el("th", { class: "t" }, "time"), el("th", {}, "alert"), el("th", { class: "sv" }, "severity"), el("th", { class: "num" }, "version"))),
      el("tbody", {}, alerts.map((a) => el("tr", { dataset: { alertId: a.alert_id } },
        el("td", { class: "t", title: iso(Number(a.event_time)) }, clock(Number(a.event_time))),
        el("td", { title: a.alert_id }, el("button", {
          type: "button", class: "link alert-link", "aria-label": `open alert ${a.alert_id}`,
          onclick: () => openAlertById(a.alert_id),
        }, a.alert_id)),
        el("td", {}, a.severity ? sevBadge(a.severity) : "—"),
        el("td", { class: "num" }, String(a.rule_version ?? "?")))))),
    el("h3", {}, "Latest alert's evidence"),
    el("pre", { class: "json" }, JSON.stringify(r.summary ?? {}, null, 2)),
  ].filter(Boolean));
}

// ---- precision per rule version ------------------------------------------------------

let precisionTimer = null;

function showPrecision(rows) {
  const tbodyP = $("#precision tbody");
  rows = Array.isArray(rows) ? [...rows] : [];
  rows.sort((a, b) => String(a.rule).localeCompare(String(b.rule)) || Number(a.rule_version) - Number(b.rule_version));
  tbodyP.replaceChildren(...rows.map((row) => el("tr", { dataset: { rule: String(row.rule), version: String(row.rule_version) } },
    el("td", {}, rulePill(String(row.rule))),
    el("td", { class: "num" }, `v${row.rule_version}`),
    el("td", { class: "num fraud" }, num(row.fraud)),
    el("td", { class: "num legit" }, num(row.legit)),
    el("td", { class: "num precision" }, row.precision === null || row.precision === undefined ? "—" : pct(row.precision)))));
  $("#precision-empty").hidden = rows.length > 0;
  $("#precision").hidden = rows.length === 0;
  $("#precision-at").textContent = `at ${clock(Date.now())}`;
}

async function refreshPrecision() {
  clearTimeout(precisionTimer);
  try {
    const answer = await fetchJson("/labels/precision");
    if (answer.ok && answer.body) showPrecision(answer.body.precision);
  } catch (err) {
    console.warn("precision not loaded:", err.message);
  } finally {
    precisionTimer = setTimeout(refreshPrecision, PRECISION_EVERY_MS);
  }
}

/** A label reaches the tally through the labels topic: look again shortly. */
function refreshPrecisionSoon() {
  for (const ms of [400, 1500]) setTimeout(refreshPrecision, ms);
}
showPrecision([]);
refreshPrecision();

// ---- live events --------------------------------------------------------------------

const conn = $("#conn");
let source = null;

function setConn(state, text) {
  conn.dataset.state = state;
  $("#conn-text").textContent = text;
}

function connect() {
  source = new EventSource("/dashboard/events");
  source.addEventListener("open", () => {
    setConn("open", "live");
    // The open cases come again: until they do, those held may have resolved meanwhile.
    for (const state of cases.values()) {
      if (state.record) state.record = { ...state.record, stale: true };
      state.dirty = true;
    }
    scheduleCases();
  });
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
  source.addEventListener("case", (ev) => {
    try { setRecord(JSON.parse(ev.data)); } catch (err) { console.warn("bad case event:", err.message); }
  });
  source.addEventListener("snooze", (ev) => {
    try { setSnooze(JSON.parse(ev.data)); } catch (err) { console.warn("bad snooze event:", err.message); }
  });
  source.addEventListener("label", (ev) => {
    try {
      const data = JSON.parse(ev.data);
      setLabel(data.id, data.label);
    } catch (err) { console.warn("bad label event:", err.message); }
  });
  source.addEventListener("rates", (ev) => {
    try { showRates(JSON.parse(ev.data)); } catch (err) { console.warn("bad rates event:", err.message); }
  });
}
connect();

// ---- simulator ----------------------------------------------------------------------

const tokenInput = $("#ingest-token");
const fragment = new URLSearchParams(location.hash.slice(1));
for (const [name, key] of [["ingest_token", TOKEN_KEY], ["api_token", API_TOKEN_KEY]]) {
  if (fragment.get(name)) sessionStorage.setItem(key, fragment.get(name));
}
if (fragment.get("ingest_token") || fragment.get("api_token")) {
  // Keep the tokens out of the address bar, the history and any copied link.
  history.replaceState(null, "", location.pathname + location.search);
}
for (const [input, key] of [[tokenInput, TOKEN_KEY], [apiTokenInput, API_TOKEN_KEY]]) {
  input.value = sessionStorage.getItem(key) || "";
  input.addEventListener("input", () => sessionStorage.setItem(key, input.value.trim()));
}

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
