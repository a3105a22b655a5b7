// The Orasi console: plain JavaScript over the bridge's public APIs (POST /api/v1/query and the
// Jaeger API). No library, nothing fetched from elsewhere. Views follow the page's #hash.
"use strict";

const $ = (id) => document.getElementById(id);
const COLORS = ["#2f6fdf", "#e8590c", "#2b8a3e", "#ae3ec9", "#c92a2a", "#1098ad", "#f08c00", "#5c7cfa"];

// --- settings kept in the browser ---------------------------------------------------------------

for (const id of ["tenant", "apikey", "range", "scope"]) {
  const saved = localStorage.getItem("orasi." + id);
  if (saved !== null) $(id).value = saved;
  $(id).addEventListener("change", () => localStorage.setItem("orasi." + id, $(id).value));
}

function headers() {
  const found = { "Content-Type": "application/json" };
  const key = $("apikey").value.trim();
  const tenant = $("tenant").value.trim();
  if (key) found["Authorization"] = "Bearer " + key;
  if (tenant) found["X-Orasi-Tenant"] = tenant;
  return found;
}

function range() {
  const end = new Date();
  const start = new Date(end.getTime() - Number($("range").value) * 1000);
  return { start: start.toISOString(), end: end.toISOString(), seconds: Number($("range").value) };
}

// --- the APIs -----------------------------------------------------------------------------------

async function query(sql) {
  const { start, end } = range();
  const body = { sql, start, end, format: "json", scope: $("scope").value };
  const response = await fetch("api/v1/query", { method: "POST", headers: headers(), body: JSON.stringify(body) });
  const text = await response.text();
  let answer;
  try {
    answer = JSON.parse(text);
  } catch (_) {
    throw new Error(`HTTP ${response.status}: ${text.slice(0, 300)}`);
  }
  if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
  return answer;
}

async function jaegerTrace(id) {
  const response = await fetch("api/traces/" + encodeURIComponent(id), { headers: headers() });
  const answer = await response.json();
  if (!response.ok) {
    const message = (answer.errors || []).map((e) => e.msg).join("; ");
    throw new Error(message || `HTTP ${response.status}`);
  }
  return answer.data[0];
}

const quote = (text) => "'" + String(text).replaceAll("'", "''") + "'";

// --- small helpers ------------------------------------------------------------------------------

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

function show(target, text, error = false) {
  target.textContent = text;
  target.classList.toggle("error", error);
}

function cell(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function table(columns, rows, onRow) {
  const head = element("tr", {}, ...columns.map((c) => element("th", { title: c.type || "" }, c.name)));
  const body = rows.map((row) => {
    const tr = element(
      "tr",
      onRow ? { class: "clickable", onclick: () => onRow(row) } : {},
      ...row.map((value) => element("td", typeof value === "number" ? { class: "num" } : {}, cell(value))),
    );
    return tr;
  });
  return element("table", {}, element("thead", {}, head), element("tbody", {}, ...body));
}

function csv(columns, rows) {
  const field = (value) => {
    const text = cell(value);
    return /[",\n\r]/.test(text) ? '"' + text.replaceAll('"', '""') + '"' : text;
  };
  return [columns.map((c) => field(c.name)).join(","), ...rows.map((r) => r.map(field).join(","))].join("\n") + "\n";
}

const ms = (micros) => (micros / 1000).toFixed(micros < 10000 ? 2 : 1) + " ms";

// --- SQL ----------------------------------------------------------------------------------------

let lastResult = null;

async function runSql() {
  const status = $("sql-status");
  show(status, "running…");
  $("sql-csv").disabled = true;
  const started = performance.now();
  try {
    const answer = await query($("sql-text").value);
    const elapsed = performance.now() - started;
    lastResult = answer;
    $("sql-result").replaceChildren(table(answer.columns, answer.rows));
    const server = answer.stats && answer.stats.elapsed_ms !== undefined ? `, ${answer.stats.elapsed_ms} ms in the engine` : "";
    const regions = answer.stats && answer.stats.regions ? regionNote(answer.stats.regions) : "";
    show(status, `${answer.rows.length} rows in ${elapsed.toFixed(0)} ms${server}${regions}`);
    $("sql-csv").disabled = false;
  } catch (error) {
    $("sql-result").replaceChildren();
    show(status, error.message, true);
  }
}

function regionNote(regions) {
  const failed = Object.entries(regions).filter(([, r]) => r.error);
  const names = Object.keys(regions).length;
  return failed.length
    ? ` — ${names - failed.length}/${names} regions; ` + failed.map(([n, r]) => `${n}: ${r.error}`).join("; ")
    : ` — ${names} regions`;
}

function downloadCsv() {
  if (!lastResult) return;
  const blob = new Blob([csv(lastResult.columns, lastResult.rows)], { type: "text/csv" });
  const link = element("a", { href: URL.createObjectURL(blob), download: "orasi-query.csv" });
  document.body.append(link);
  link.click();
  link.remove();
}

$("sql-run").addEventListener("click", runSql);
$("sql-csv").addEventListener("click", downloadCsv);
$("sql-text").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    runSql();
  }
});

// --- services overview --------------------------------------------------------------------------

async function loadServices() {
  const status = $("services-status");
  show(status, "loading…");
  const seconds = range().seconds;
  const bucket = Math.max(10, Math.round(seconds / 60));
  const sql = `SELECT service_name,
       time_bucket(INTERVAL '${bucket} seconds', time) AS bucket,
       count(*) AS spans,
       count(*) FILTER (WHERE status_code = 'ERROR') AS errors,
       quantile_cont(duration_ns, 0.95) / 1e6 AS p95_ms
FROM spans GROUP BY 1, 2 ORDER BY 1, 2`;
  const summarySql = `SELECT service_name AS service, count(*) AS spans,
       round(100.0 * count(*) FILTER (WHERE status_code = 'ERROR') / count(*), 2) AS error_pct,
       round(quantile_cont(duration_ns, 0.95) / 1e6, 3) AS p95_ms
FROM spans GROUP BY 1 ORDER BY spans DESC`;
  try {
    const [series, summary] = await Promise.all([query(sql), query(summarySql)]);
    $("services-summary").replaceChildren(
      table(summary.columns, summary.rows, (row) => {
        $("logs-service").value = row[0];
      }),
    );
    const services = [...new Set(series.rows.map((r) => r[0]))];
    const lines = (pick) =>
      services.map((service, index) => ({
        name: service,
        color: COLORS[index % COLORS.length],
        points: series.rows.filter((r) => r[0] === service).map((r) => [Date.parse(r[1]), pick(r)]),
      }));
    const { start, end } = range();
    const domain = [Date.parse(start), Date.parse(end)];
    chart($("chart-rate"), lines((r) => r[2] / bucket), domain);
    chart($("chart-errors"), lines((r) => (100 * r[3]) / r[2]), domain);
    chart($("chart-p95"), lines((r) => r[4]), domain);
    $("services-legend").replaceChildren(
      ...services.map((s, i) => element("span", { style: `--c: ${COLORS[i % COLORS.length]}` }, s)),
    );
    show(status, `${services.length} services, ${bucket} s buckets`);
  } catch (error) {
    show(status, error.message, true);
  }
}

function chart(target, lines, domain) {
  const width = 600, height = 180, left = 44, bottom = 18, top = 6;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const all = lines.flatMap((l) => l.points);
  if (!all.length) {
    target.replaceChildren(element("div", { class: "status" }, "no data in this range"));
    return;
  }
  const [x0, x1] = domain; // the selected range, so that a quiet service shows as a gap
  const y1 = Math.max(...all.map((p) => p[1]), 1e-9) * 1.1;
  const x = (v) => left + ((v - x0) / (x1 - x0 || 1)) * (width - left - 4);
  const y = (v) => top + (1 - v / y1) * (height - top - bottom);
  const add = (tag, attributes, text) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
    return node;
  };
  add("line", { class: "axis", x1: left, y1: y(0), x2: width, y2: y(0) });
  add("line", { class: "axis", x1: left, y1: top, x2: left, y2: y(0) });
  for (const fraction of [0, 0.5, 1]) {
    const value = (y1 / 1.1) * fraction;
    add("text", { x: 2, y: y(value) + 3 }, value >= 100 ? value.toFixed(0) : value.toPrecision(2));
  }
  const time = (v) => new Date(v).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  add("text", { x: left, y: height - 4 }, time(x0));
  add("text", { x: width - 40, y: height - 4 }, time(x1));
  for (const line of lines) {
    if (!line.points.length) continue;
    const path = line.points.map((p, i) => `${i ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join("");
    add("path", { d: path, fill: "none", stroke: line.color, "stroke-width": 1.5, "data-service": line.name });
    if (line.points.length === 1) {
      add("circle", { cx: x(line.points[0][0]), cy: y(line.points[0][1]), r: 3, fill: line.color });
    }
  }
  target.replaceChildren(svg);
}

$("services-refresh").addEventListener("click", loadServices);

// --- traces -------------------------------------------------------------------------------------

async function loadRecentTraces() {
  const sql = `SELECT trace_id, min(time) AS started, arg_min(service_name, time) AS service,
       arg_min(name, time) AS root, count(*) AS spans,
       (max(end_time_unix_nano) - min(start_time_unix_nano)) / 1e6 AS duration_ms
FROM spans GROUP BY trace_id ORDER BY started DESC LIMIT 20`;
  try {
    const answer = await query(sql);
    $("trace-recent").replaceChildren(table(answer.columns, answer.rows, (row) => (location.hash = "#trace/" + row[0])));
  } catch (error) {
    show($("trace-status"), error.message, true);
  }
}

async function openTrace(id) {
  const status = $("trace-status");
  $("trace-id").value = id;
  show(status, "loading…");
  try {
    const trace = await jaegerTrace(id);
    renderTrace(trace);
    show(status, `${trace.spans.length} spans`);
  } catch (error) {
    $("trace-waterfall").replaceChildren();
    $("trace-details").replaceChildren();
    show(status, error.message, true);
  }
}

function renderTrace(trace) {
  const spans = trace.spans;
  const byId = new Map(spans.map((s) => [s.spanID, s]));
  const children = new Map();
  const roots = [];
  for (const span of spans) {
    const parent = (span.references || []).find((r) => r.refType === "CHILD_OF" && byId.has(r.spanID));
    if (parent) {
      if (!children.has(parent.spanID)) children.set(parent.spanID, []);
      children.get(parent.spanID).push(span);
    } else roots.push(span);
  }
  const start = Math.min(...spans.map((s) => s.startTime));
  const end = Math.max(...spans.map((s) => s.startTime + s.duration));
  const total = Math.max(end - start, 1);
  const ordered = [];
  const walk = (span, depth) => {
    ordered.push([span, depth]);
    for (const child of (children.get(span.spanID) || []).sort((a, b) => a.startTime - b.startTime)) walk(child, depth + 1);
  };
  for (const root of roots.sort((a, b) => a.startTime - b.startTime)) walk(root, 0);
  const services = [...new Set(spans.map((s) => trace.processes[s.processID]?.serviceName))];
  const color = (span) => COLORS[services.indexOf(trace.processes[span.processID]?.serviceName) % COLORS.length];
  const rows = ordered.map(([span, depth]) => {
    const service = trace.processes[span.processID]?.serviceName || "";
    const isError = (span.tags || []).some((t) => t.key === "error" && t.value === true);
    const left = ((span.startTime - start) / total) * 100;
    const width = (span.duration / total) * 100;
    const bar = element("div", {
      class: "span-bar" + (isError ? " error" : ""),
      style: `left: ${left}%; width: ${width}%; background: ${color(span)}`,
    });
    const label = element("div", { class: "span-label", style: `padding-left: ${6 + depth * 14}px` },
      element("span", { class: "svc" }, service), span.operationName);
    const timing = element("span", { class: "span-time", style: `left: calc(${Math.min(left + width, 85)}% + 4px)` }, ms(span.duration));
    const row = element("div", { class: "span-row", "data-span-id": span.spanID }, label, element("div", { class: "span-track" }, bar, timing));
    row.addEventListener("click", () => {
      for (const other of $("trace-waterfall").querySelectorAll(".selected")) other.classList.remove("selected");
      row.classList.add("selected");
      renderSpan(span, trace);
    });
    return row;
  });
  $("trace-waterfall").replaceChildren(...rows);
  if (ordered.length) {
    rows[0].classList.add("selected");
    renderSpan(ordered[0][0], trace);
  }
}

function keyValues(items) {
  return table([{ name: "key" }, { name: "value" }], items.map((t) => [t.key, cell(t.value)]));
}

function renderSpan(span, trace) {
  const process = trace.processes[span.processID] || { serviceName: "", tags: [] };
  const parts = [
    element("h3", {}, span.operationName),
    element("div", { class: "mono" }, `span ${span.spanID} · trace ${span.traceID}`),
    element("div", {}, `${process.serviceName} · ${ms(span.duration)} · started ${new Date(span.startTime / 1000).toISOString()}`),
    element("h4", {}, "Attributes"),
    keyValues(span.tags || []),
  ];
  const logs = span.logs || [];
  parts.push(element("h4", {}, `Events (${logs.length})`));
  for (const log of logs) {
    parts.push(element("div", { class: "event" }, `+${ms(log.timestamp - span.startTime)}`), keyValues(log.fields || []));
  }
  parts.push(element("h4", {}, "Resource"), keyValues(process.tags || []));
  $("trace-details").replaceChildren(...parts);
}

$("trace-open").addEventListener("click", () => (location.hash = "#trace/" + $("trace-id").value.trim()));
$("trace-id").addEventListener("keydown", (event) => {
  if (event.key === "Enter") location.hash = "#trace/" + $("trace-id").value.trim();
});

// --- logs ---------------------------------------------------------------------------------------

async function searchLogs() {
  const status = $("logs-status");
  show(status, "searching…");
  const terms = [];
  const text = $("logs-text").value.trim();
  const service = $("logs-service").value.trim();
  const severity = Number($("logs-severity").value);
  if (text) terms.push(`contains(lower(body), lower(${quote(text)}))`);
  if (service) terms.push(`service_name = ${quote(service)}`);
  if (severity) terms.push(`severity_number >= ${severity}`);
  const sql = `SELECT time, service_name, severity_text, body, trace_id
FROM logs${terms.length ? "\nWHERE " + terms.join(" AND ") : ""}
ORDER BY time DESC LIMIT 500`;
  const started = performance.now();
  try {
    const answer = await query(sql);
    $("logs-result").replaceChildren(
      table(answer.columns, answer.rows, (row) => {
        if (row[4]) location.hash = "#trace/" + row[4];
      }),
    );
    show(status, `${answer.rows.length} records in ${(performance.now() - started).toFixed(0)} ms`);
  } catch (error) {
    $("logs-result").replaceChildren();
    show(status, error.message, true);
  }
}

$("logs-search").addEventListener("click", searchLogs);
$("logs-text").addEventListener("keydown", (event) => {
  if (event.key === "Enter") searchLogs();
});

// --- views --------------------------------------------------------------------------------------

function route() {
  const [view, argument] = (location.hash.slice(1) || "sql").split("/");
  const name = ["sql", "services", "trace", "logs"].includes(view) ? view : "sql";
  for (const section of document.querySelectorAll(".view")) section.classList.toggle("active", section.id === "view-" + name);
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("active", link.dataset.view === name);
  if (name === "services") loadServices();
  if (name === "trace") {
    if (argument) openTrace(decodeURIComponent(argument));
    else loadRecentTraces();
  }
}

window.addEventListener("hashchange", route);
route();
