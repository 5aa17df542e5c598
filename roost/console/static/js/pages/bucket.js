// One bucket: a time-series chart (time range, zoom, aggregation and its type), the latest
// values, and a CSV export (POST .../exports, then GET .../exports/{file}).

import { api, enc, session, userPath } from "../api.js";
import { drawChart } from "../chart.js";
import { LiveSocket } from "../live.js";
import {
  attempt, button, field, h, input, json, notify, table, when,
} from "../ui.js";

const RANGES = [["1h", 3600e3], ["6h", 6 * 3600e3], ["24h", 864e5], ["7 days", 7 * 864e5],
  ["30 days", 30 * 864e5], ["everything", 0]];
const AGGS = ["", "5min", "15min", "30min", "1h", "3h", "6h", "12h", "1d", "1w", "1mo", "3mo",
  "6mo", "1y"];
const AGG_TYPES = ["mean", "min", "max", "sum", "count"];
const EXPORT_WAIT_MS = 120000;
const MAX_POINTS = 100000;
const PAGE = 1000;

function select(name, options, labels = options) {
  return h("select", { name }, options.map((value, i) => h("option", { value }, labels[i] || "none")));
}

// every point of [min_ts, now], ascending, page by page (1000 a call, as Thinger's clients page)
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
    from = page[page.length - 1].ts + 1;
  }
}

export function bucketPage(main, bucketId) {
  const data = userPath("v2", `/buckets/${enc(bucketId)}/data`);
  const v1 = userPath("v1", `/buckets/${enc(bucketId)}`);
  const chartBox = h("div", { class: "chart", id: "bucket-chart", role: "img",
    "aria-label": `Chart of ${bucketId}` });
  const latest = h("div");
  const exportBox = h("div", { "aria-live": "polite" });
  const range = select("range", RANGES.map((r) => String(r[1])), RANGES.map((r) => r[0]));
  range.value = String(864e5);
  const agg = select("agg", AGGS);
  const aggType = select("agg_type", AGG_TYPES);
  let chart = null;

  async function draw() {
    const span = Number(range.value);
    const minTs = span ? Date.now() - span : 0;
    const points = await readAll(data, minTs, agg.value, aggType.value);
    if (chart) chart.destroy();
    chart = null;
    if (!points.length) {
      chartBox.replaceChildren(h("p", { class: "muted" }, "No points in this range."));
      chartBox.dataset.points = "0";
      return;
    }
    chart = await drawChart(chartBox, points, bucketId);
  }

  async function loadLatest() {
    const points = await api("GET", `${data}?items=20&sort=desc`);
    latest.replaceChildren(points.length ? table(["Time", "Value"], points.map((p) => {
      const { ts, ...rest } = p;
      return h("tr", {}, h("td", {}, when(ts)), h("td", {}, h("code", {}, json(rest))));
    })) : h("p", { class: "muted" }, "No points yet."));
  }

  // the export's file, once written: at once, or when bucket_export_completed says so
  async function download(file, completed) {
    const url = `${v1}/exports/${enc(file)}`;
    const get = () => fetch(url, { headers: { Authorization: `Bearer ${session.token}` } });
    let response = await get();
    if (response.status === 404 || response.status === 409) {
      exportBox.replaceChildren(h("p", { role: "status" }, `Writing ${file}…`));
      await completed;
      response = await get();
    }
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      try { message = (await response.json()).error.message; } catch { /* keep the status */ }
      throw new Error(message);
    }
    return response.blob();
  }

  async function exportCsv() {
    const span = Number(range.value);
    let opened;
    let done;
    let timer;
    const ready = new Promise((resolve) => { opened = resolve; });
    const completed = new Promise((resolve, reject) => {
      done = resolve;
      timer = setTimeout(() => reject(new Error("the export did not complete in time")),
        EXPORT_WAIT_MS);
    });
    completed.catch(() => {}); // awaited only when the file is not there at once
    const events = new LiveSocket(userPath("v1", "/events"), (event) => {
      if (event.event === "bucket_export_completed") done(event);
    }, (open) => { if (open) opened(); });
    events.send("export", { event: "bucket_export_completed", bucket: bucketId });
    let blob;
    let made;
    try {
      await Promise.race([ready, new Promise((resolve) => { setTimeout(resolve, 3000); })]);
      made = await api("POST", `${v1}/exports`, {
        data_type: "csv", timestamp_format: "iso", min_ts: span ? Date.now() - span : 0, max_ts: 0,
      });
      blob = await download(made.file, completed);
    } finally {
      clearTimeout(timer);
      events.close();
    }
    const link = h("a", { href: URL.createObjectURL(blob), download: `${bucketId}.csv` },
      `Download ${made.file}`);
    exportBox.replaceChildren(link);
    link.click();
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

  main.append(
    h("p", {}, h("a", { href: "#/buckets" }, "← Buckets")),
    h("h1", {}, `Bucket ${bucketId}`),
    controls, zoom, chartBox,
    h("h2", {}, "Latest values"),
    h("p", {}, button("Refresh", () => attempt(loadLatest), { class: "secondary" })), latest,
    h("h2", {}, "Export"),
    h("p", {}, button("Export CSV", () => attempt(exportCsv), {}), " of the chosen time range"),
    exportBox);
  attempt(draw);
  loadLatest().catch((error) => notify(error.message, true));
  return () => { if (chart) chart.destroy(); };
}
