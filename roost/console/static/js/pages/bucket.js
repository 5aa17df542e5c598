// One bucket: a time-series chart (time range, zoom, aggregation and its type), the latest of
// the charted values as a table, and exports (POST .../exports, the bucket_export_completed
// event on the events socket, then GET .../exports/{file}; the earlier ones listed).

import { api, enc, session, userPath } from "../api.js";
import { drawChart } from "../chart.js";
import { LiveSocket } from "../live.js";
import { confirmButton } from "./device.js";
import {
  attempt, button, bytes, field, h, notify, table, when,
} from "../ui.js";

const RANGES = [["1h", 3600e3], ["6h", 6 * 3600e3], ["24h", 864e5], ["7 days", 7 * 864e5],
  ["30 days", 30 * 864e5], ["everything", 0]];
const AGGS = ["", "5min", "15min", "30min", "1h", "3h", "6h", "12h", "1d", "1w", "1mo", "3mo",
  "6mo", "1y"];
const AGG_TYPES = ["mean", "min", "max", "sum", "count", "spread", "stddev"];
const FORMATS = [["csv", "CSV"], ["json", "JSON"], ["arff", "ARFF (Weka)"]];
const STAMPS = [["iso", "ISO 8601"], ["milliseconds", "milliseconds"], ["seconds", "seconds"]];
const EXPORT_WAIT_MS = 120000;
const SOCKET_WAIT_MS = 3000;
const MAX_POINTS = 100000;
const PAGE = 1000;
const LATEST = 20; // rows of the table

function select(name, options, labels = options) {
  return h("select", { name }, options.map((value, i) => h("option", { value }, labels[i] || "none")));
}

function delay(ms) {
  return new Promise((resolve) => { setTimeout(resolve, ms); });
}

// every point (or aggregated row) of [min_ts, now], ascending, page by page
async function readAll(path, minTs, agg, aggType) {
  const points = [];
  let from = minTs;
  for (;;) {
    const query = new URLSearchParams({ items: String(PAGE), sort: "asc" });
    if (from) query.set("min_ts", String(from));
    if (agg) {
      query.set("agg", agg);
      query.set("agg_type", aggType);
      query.set("tz", Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC");
    }
    const page = await api("GET", `${path}?${query}`);
    points.push(...page);
    if (page.length < PAGE || points.length >= MAX_POINTS) return points;
    from = page[page.length - 1].ts + 1; // rows too: the next page starts after the last one
  }
}

function shown(value) {
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(10)));
  if (value === undefined || value === null) return "";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

// the latest points, newest first, a column per field
function latestTable(points) {
  const latest = points.slice(-LATEST).reverse();
  const names = [];
  for (const point of latest) {
    for (const name of Object.keys(point)) if (name !== "ts" && !names.includes(name)) names.push(name);
  }
  return table(["Time", ...names], latest.map((point) => h("tr", { "data-ts": String(point.ts) },
    h("td", { class: "time" }, when(point.ts)),
    names.map((name) => h("td", { "data-field": name }, shown(point[name]))))));
}

export function bucketPage(main, bucketId) {
  const data = userPath("v2", `/buckets/${enc(bucketId)}/data`);
  const exports = userPath("v1", `/buckets/${enc(bucketId)}/exports`);
  const chartBox = h("div", { class: "chart", id: "bucket-chart", role: "img",
    "aria-label": `Chart of ${bucketId}` });
  const latest = h("div", { id: "bucket-latest" });
  const latestTitle = h("h2", {}, "Latest values");
  const exportBox = h("div", { "aria-live": "polite" });
  const exportList = h("div");
  const range = select("range", RANGES.map((r) => String(r[1])), RANGES.map((r) => r[0]));
  range.value = String(864e5);
  const agg = select("agg", AGGS);
  const aggType = select("agg_type", AGG_TYPES);
  const format = select("data_type", FORMATS.map((f) => f[0]), FORMATS.map((f) => f[1]));
  const stamps = select("timestamp_format", STAMPS.map((s) => s[0]), STAMPS.map((s) => s[1]));
  let chart = null;

  async function draw() {
    const span = Number(range.value);
    const minTs = span ? Date.now() - span : 0;
    const points = await readAll(data, minTs, agg.value, aggType.value);
    if (chart) chart.destroy();
    chart = null;
    latestTitle.textContent = agg.value ? `Latest values (${agg.value} ${aggType.value})` : "Latest values";
    latest.replaceChildren(points.length ? latestTable(points)
      : h("p", { class: "muted" }, "No points in this range."));
    if (!points.length) {
      chartBox.replaceChildren(h("p", { class: "muted" }, "No points in this range."));
      chartBox.dataset.points = "0";
      return;
    }
    chart = await drawChart(chartBox, points, bucketId);
  }

  // a written export's file, saved by the browser (fetched with the session's token)
  async function save(file) {
    const response = await fetch(`${exports}/${enc(file)}`,
      { headers: { Authorization: `Bearer ${session.token}` } });
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      try { message = (await response.json()).error.message; } catch { /* keep the status */ }
      throw new Error(message);
    }
    const link = h("a", { href: URL.createObjectURL(await response.blob()), download: file, class: "wrap" },
      `Download ${file}`);
    exportBox.replaceChildren(h("p", {}, link));
    link.click();
  }

  async function record(file) {
    const listed = await api("GET", `${exports}?name=${enc(file)}`);
    return listed.find((r) => r.file === file) || null;
  }

  async function loadExports() {
    const listed = (await api("GET", exports)).reverse(); // newest first
    exportList.replaceChildren(listed.length ? table(["File", "Status",
      ["Points", "hide-narrow"], ["Size", "hide-narrow"], ["Created", "hide-narrow"], ""],
    listed.map((r) => h("tr", { "data-export": r.file },
      h("td", { class: "file" }, r.file), h("td", {}, r.status, r.error ? h("div", { class: "error" }, r.error) : null),
      h("td", { class: "hide-narrow" }, r.points ?? "—"), h("td", { class: "hide-narrow" }, bytes(r.size)),
      h("td", { class: "hide-narrow" }, when(r.created)),
      h("td", { class: "actions" },
        r.status === "completed" ? button("Download", () => attempt(() => save(r.file)),
          { class: "secondary", "aria-label": `Download ${r.file}` }) : null,
        confirmButton("Delete", `Delete ${r.file}?`, () => attempt(async () => {
          await api("DELETE", `${exports}/${enc(r.file)}`);
          await loadExports();
        }, `Export ${r.file} deleted`))))))
      : h("p", { class: "muted" }, "No exports yet."));
  }

  async function exportData() {
    const span = Number(range.value);
    const finished = new Set(); // files bucket_export_completed announced
    let wake = () => {};
    let opened;
    const ready = new Promise((resolve) => { opened = resolve; });
    const events = new LiveSocket(userPath("v1", "/events"), (event) => {
      if (event.event === "bucket_export_completed") {
        finished.add(event.file);
        wake();
      }
    }, (open) => { if (open) opened(); });
    events.send("export", { event: "bucket_export_completed", bucket: bucketId });
    let file;
    try {
      await Promise.race([ready, delay(SOCKET_WAIT_MS)]); // subscribed before the export starts
      ({ file } = await api("POST", exports, {
        data_type: format.value, timestamp_format: stamps.value,
        min_ts: span ? Date.now() - span : 0, max_ts: 0,
      }));
      exportBox.replaceChildren(h("p", { role: "status" }, `Writing ${file}…`));
      const announced = new Promise((resolve) => {
        wake = () => { if (finished.has(file)) resolve(true); };
        wake();
      });
      // the list says whether it was done before the socket could tell (or failed: no event)
      let state = await record(file);
      if (state && state.status === "running") {
        await Promise.race([announced, delay(EXPORT_WAIT_MS)]);
        state = await record(file);
      }
      if (!state || state.status !== "completed") {
        throw new Error(`export ${file}: ${state ? state.error || state.status : "gone"}`);
      }
    } finally {
      events.close();
    }
    await save(file);
    await loadExports();
  }

  const controls = h("form", {
    class: "grid",
    onsubmit: (event) => { event.preventDefault(); attempt(draw); },
  },
  field("Time range", range), field("Aggregation", agg), field("Aggregation type", aggType),
  h("div", { class: "field" }, h("button", { type: "submit" }, "Draw")));
  const zoom = h("div", { class: "actions" },
    button("Zoom in", () => chart && chart.zoom(0.5), { class: "secondary" }),
    button("Zoom out", () => chart && chart.zoom(2), { class: "secondary" }),
    button("Reset zoom", () => chart && chart.reset(), { class: "secondary" }),
    h("span", { class: "muted" }, "or drag across the chart; double-click resets"));
  const exportForm = h("form", {
    class: "grid",
    onsubmit: (event) => { event.preventDefault(); attempt(exportData); },
  },
  field("Export format", format), field("Timestamps", stamps),
  h("div", { class: "field" }, h("button", { type: "submit" }, "Export")));

  main.append(
    h("p", {}, h("a", { href: "#/buckets" }, "← Buckets")),
    h("h1", {}, `Bucket ${bucketId}`),
    controls, zoom, chartBox,
    latestTitle, latest,
    h("h2", {}, "Export"),
    h("p", { class: "muted" }, "The points of the chosen time range, as a file."),
    exportForm, exportBox, exportList);
  attempt(draw);
  loadExports().catch((error) => notify(error.message, true));
  return () => { if (chart) chart.destroy(); };
}
