/* EDS live dashboard: subscribes to <prefix>/# over MQTT/WebSockets (mqtt.js, MQTT 5)
 * on the listener that served this page and shows
 *   - the gateway's status and stats (<prefix>/_gateway/status, .../stats),
 *   - each device's online state (<prefix>/<device>/status, retained) and live plots of
 *     the numeric fields of its records (<prefix>/<device>/data; uPlot),
 *   - rejected records with their errors (<prefix>/<device>/rejected),
 *   - commands sent from the form (<prefix>/<device>/cmd, each JSON object with an "id"
 *     member) with their outcome: the broker's PUBACK (MQTT 5 gives the ACL's refusal as a
 *     reason code), then the gateway's result for it on <prefix>/<device>/cmd/result
 *     (delivered, rejected, expired or dropped; matched by its "ref"), which <prefix>/#
 *     covers.
 * Credentials and the prefix come from the login form, or from the URL fragment
 * (#user=...&password=...&prefix=..., never sent to a server). Everything kept is bounded:
 * the numbers below. */
"use strict";

const MAX_POINTS = 240;   /* per plot: 2 minutes at 2 records/s */
const MAX_DEVICES = 64;   /* devices shown; more are counted, not drawn */
const MAX_FIELDS = 12;    /* numeric fields plotted per device */
const MAX_ROWS = 50;      /* rejected records and commands listed */
const REDRAW_MS = 500;    /* plots redrawn at most this often */

const $ = (id) => document.getElementById(id);
let client = null;
let prefix = "energy";
const devices = new Map(); /* id -> {card, plots: Map(field -> plot), count, ...} */
let devicesDropped = 0;
const commands = [];       /* sent and waiting for their cmd/result, oldest first */

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function prependRow(tbody, row) {
  tbody.prepend(row);
  while (tbody.rows.length > MAX_ROWS) tbody.deleteRow(-1);
}

function clock(date) {
  return (date || new Date()).toLocaleTimeString();
}

function setBadge(node, on, text) {
  node.className = "badge " + (on === true ? "on" : on === false ? "off" : "wait");
  node.textContent = text;
}

/* ---- connection ------------------------------------------------------------------- */

function connect(user, password) {
  if (client) client.end(true);
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/";
  const conn = $("conn");
  setBadge(conn, null, "connecting as " + user);
  conn.dataset.state = "connecting";
  conn.dataset.user = user;
  client = mqtt.connect(url, {
    username: user, password: password, protocolVersion: 5, reconnectPeriod: 3000,
    clientId: "eds-dashboard-" + Math.random().toString(16).slice(2, 10), clean: true,
  });
  client.on("connect", () => {
    setBadge(conn, true, "connected as " + user);
    conn.dataset.state = "connected";
    client.subscribe(prefix + "/#", { qos: 0 });
  });
  client.on("close", () => {
    if (conn.dataset.state === "connected") {
      setBadge(conn, false, "disconnected");
      conn.dataset.state = "disconnected";
    }
  });
  client.on("error", (err) => {
    setBadge(conn, false, "error: " + err.message);
    conn.dataset.state = "error";
  });
  client.on("message", onMessage);
}

function onMessage(topic, payload) {
  const rest = topic.slice(prefix.length + 1);
  const slash = rest.indexOf("/");
  if (slash < 0) return;
  const device = rest.slice(0, slash), leaf = rest.slice(slash + 1);
  let msg;
  try {
    msg = JSON.parse(new TextDecoder().decode(payload));
  } catch (e) {
    return; /* only the gateway and senders of commands write here; ignore non-JSON */
  }
  if (msg === null || typeof msg !== "object") return; /* e.g. the bridge's "1"/"0" */
  if (device === "_gateway") {
    if (leaf === "status") gatewayStatus(msg);
    else if (leaf === "stats") gatewayStats(msg);
    return;
  }
  if (leaf === "data") deviceData(device, msg);
  else if (leaf === "status") deviceStatus(device, msg);
  else if (leaf === "rejected") rejected(device, msg);
  else if (leaf === "cmd/result") commandResult(device, msg);
}

/* ---- gateway ---------------------------------------------------------------------- */

function gatewayStatus(msg) {
  const b = $("gw-status");
  setBadge(b, !!msg.online, msg.online ? "online since " + msg.since : "offline");
  b.dataset.online = String(!!msg.online);
}

function gatewayStats(stats) {
  const body = $("stats").tBodies[0];
  body.replaceChildren();
  for (const [k, v] of Object.entries(stats)) {
    body.append(el("tr", { "data-field": k }, el("td", {}, k), el("td", { class: "v" }, String(v))));
  }
}

/* ---- devices ---------------------------------------------------------------------- */

function deviceCard(id) {
  let d = devices.get(id);
  if (d) return d;
  if (devices.size >= MAX_DEVICES) {
    devicesDropped++;
    return null;
  }
  $("no-devices").hidden = true;
  const badge = el("span", { class: "badge wait" }, "no status");
  const meta = el("span", { class: "meta" }, "");
  const plots = el("div", { class: "plots" });
  const card = el("div", { class: "device", "data-device": id, "data-online": "unknown" },
                  el("h3", {}, id, badge, meta), plots);
  $("devices").append(card);
  d = { id, card, badge, meta, plotsEl: plots, plots: new Map(), count: 0, last: null };
  devices.set(id, d);
  const opt = el("option", { value: id }, id);
  $("cmd-device").append(opt);
  return d;
}

function deviceStatus(id, msg) {
  const d = deviceCard(id);
  if (!d) return;
  const on = !!msg.online;
  setBadge(d.badge, on, on ? "online" : "offline");
  d.badge.title = (on ? "online since " : "offline since ") + (msg.since || "?") +
      (msg.peer ? " from " + msg.peer : "");
  d.card.dataset.online = String(on);
}

function recordTime(rec) {
  const t = typeof rec.timestamp === "string" ? Date.parse(rec.timestamp) : NaN;
  return (isNaN(t) ? Date.now() : t) / 1000;
}

function newPlot(d, field) {
  const value = el("b", {}, "");
  const box = el("div", { class: "plot", "data-field": field, "data-points": "0" },
                 el("div", { class: "title" }, field, value));
  d.plotsEl.append(box);
  const p = { box, value, xs: [], ys: [], dirty: false };
  p.u = new uPlot({
    width: 290, height: 120, legend: { show: false }, cursor: { show: false },
    scales: { x: { time: true } },
    axes: [{ size: 24, font: "10px sans-serif" }, { size: 72, font: "10px sans-serif" }],
    series: [{}, { label: field, stroke: "#1a73e8", width: 1.5, points: { show: false } }],
  }, [p.xs, p.ys], box);
  d.plots.set(field, p);
  return p;
}

function deviceData(id, rec) {
  const d = deviceCard(id);
  if (!d) return;
  d.count++;
  d.last = new Date();
  d.meta.textContent = d.count + " records, last " + clock(d.last);
  const x = recordTime(rec);
  for (const [field, v] of Object.entries(rec)) {
    if (typeof v !== "number" || !isFinite(v)) continue;
    let p = d.plots.get(field);
    if (!p) {
      if (d.plots.size >= MAX_FIELDS) continue;
      p = newPlot(d, field);
    }
    p.xs.push(x);
    p.ys.push(v);
    if (p.xs.length > MAX_POINTS) {
      p.xs.shift();
      p.ys.shift();
    }
    p.value.textContent = String(v);
    p.dirty = true;
  }
}

function redraw() {
  for (const d of devices.values()) {
    for (const p of d.plots.values()) {
      if (!p.dirty) continue;
      p.u.setData([p.xs, p.ys]);
      p.box.dataset.points = String(p.xs.length);
      p.dirty = false;
    }
  }
}

/* ---- rejected records ------------------------------------------------------------- */

function errorText(msg) {
  if (msg.errors && typeof msg.errors === "object") {
    return Object.entries(msg.errors).map(([f, e]) =>
      f + ": " + (Array.isArray(e) ? e.map((x) => typeof x === "string" ? x : JSON.stringify(x))
                                      .join("; ") : JSON.stringify(e))).join(" | ");
  }
  if (msg.error) return msg.error + (msg.reason ? ": " + msg.reason : "");
  return JSON.stringify(msg).slice(0, 300);
}

function rejected(device, msg) {
  const seq = msg.seq === undefined ? "-" : String(msg.seq);
  prependRow($("rejected").tBodies[0],
             el("tr", { class: "rejected-row", "data-device": device, "data-seq": seq },
                el("td", {}, clock()), el("td", {}, device), el("td", {}, seq),
                el("td", { class: "errors" }, errorText(msg))));
}

/* ---- commands --------------------------------------------------------------------- */

/* Sent commands still waiting for their result on <prefix>/<device>/cmd/result, oldest
 * first. The gateway publishes exactly one result per command; it names the command by its
 * own "id" member ("ref"), which the page adds to every JSON object it sends. */
let cmdSeq = 0;

function setOutcome(cmd, state, text) {
  cmd.outcome.dataset.state = state;
  cmd.outcome.textContent = text;
}

/* The text to publish and the id the result will carry as "ref" (undefined: none). The id
 * goes in as text right after the opening brace, so the rest stays byte for byte as typed
 * (JSON.stringify would turn 77.0 into 77 and round long integers). */
function withId(text) {
  let v;
  try {
    v = JSON.parse(text);
  } catch (e) {
    return { text, id: undefined }; /* sent as typed: the gateway says why it refuses it */
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) return { text, id: undefined };
  if (Object.prototype.hasOwnProperty.call(v, "id")) return { text, id: v.id };
  const id = "dash-" + Date.now() + "-" + (++cmdSeq);
  const at = text.indexOf("{") + 1;
  const sep = Object.keys(v).length ? "," : "";
  return { text: text.slice(0, at) + JSON.stringify("id") + ":" + JSON.stringify(id) + sep +
                 text.slice(at), id };
}

function sendCommand(ev) {
  ev.preventDefault();
  const device = $("cmd-device").value;
  const sent = withId($("cmd-payload").value);
  const row = el("tr", { class: "command-row", "data-device": device,
                         "data-ref": sent.id === undefined ? "" : JSON.stringify(sent.id) });
  const outcome = el("td", { class: "outcome", "data-state": "new" });
  row.append(el("td", {}, clock()), el("td", {}, device || "-"), el("td", {}, sent.text),
             outcome);
  prependRow($("commands").tBodies[0], row);
  const cmd = { device, outcome, ref: row.dataset.ref };
  if (!device) return setOutcome(cmd, "failed", "no device to send to yet");
  if (!client || !client.connected) return setOutcome(cmd, "failed", "not connected");
  setOutcome(cmd, "sending", "sending…");
  /* Waiting from now on: the result may come before the PUBACK. */
  commands.push(cmd);
  if (commands.length > MAX_ROWS) commands.shift();
  client.publish(prefix + "/" + device + "/cmd", sent.text, { qos: 1 }, (err) => {
    if (err) {
      const i = commands.indexOf(cmd);
      if (i >= 0) commands.splice(i, 1);
      const refused = /not authori[sz]ed/i.test(err.message) || err.code === 135;
      return setOutcome(cmd, refused ? "refused" : "failed",
                        (refused ? "refused by the broker: " : "failed: ") + err.message +
                        (refused ? " (this user may not send commands)" : ""));
    }
    if (cmd.outcome.dataset.state === "sending") {
      setOutcome(cmd, "published", "published, waiting for the device…");
    }
  });
}

/* The waiting command a result is for: the one whose id is its "ref". A result without
 * "ref" is for a command whose id the gateway could not read (not a JSON object, or not
 * JSON at all): the oldest such command of that device, else (an object the gateway's
 * stricter parse refused, e.g. a duplicate key) the oldest of that device. */
function commandFor(device, msg) {
  let i;
  if (msg.ref !== undefined) {
    const ref = JSON.stringify(msg.ref);
    i = commands.findIndex((c) => c.device === device && c.ref === ref);
  } else {
    i = commands.findIndex((c) => c.device === device && c.ref === "");
    if (i < 0) i = commands.findIndex((c) => c.device === device);
  }
  return i < 0 ? null : commands.splice(i, 1)[0];
}

const RESULT_TEXT = {
  delivered: "delivered: the device took it",
  rejected: "rejected",
  expired: "expired",
  dropped: "dropped",
};

function commandResult(device, msg) {
  const cmd = commandFor(device, msg);
  if (!cmd) return; /* someone else's command, or one whose row is gone */
  const status = Object.prototype.hasOwnProperty.call(RESULT_TEXT, msg.status) ? msg.status
                                                                                : "unknown";
  let text = status === "unknown" ? "result: " + JSON.stringify(msg).slice(0, 300)
                                  : RESULT_TEXT[status];
  if (typeof msg.reason === "string") text += ": " + msg.reason;
  if (msg.errors && typeof msg.errors === "object") text += " (" + errorText(msg) + ")";
  setOutcome(cmd, status, text);
}

/* ---- start ------------------------------------------------------------------------ */

function start() {
  const params = new URLSearchParams(location.hash.slice(1));
  for (const k of ["user", "password", "prefix"]) if (params.get(k)) $(k).value = params.get(k);
  $("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    prefix = $("prefix").value || "energy";
    connect($("user").value, $("password").value);
  });
  $("cmd-form").addEventListener("submit", sendCommand);
  setInterval(redraw, REDRAW_MS);
  if ($("password").value) {
    prefix = $("prefix").value || "energy";
    connect($("user").value, $("password").value);
  }
}

start();
