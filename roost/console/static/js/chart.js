// The time-series chart: uPlot (from npm, copied into /console/vendor/ at build time), loaded
// when a chart is first drawn. Without it the console works on, with a notice instead of the chart.

let loading = null;

function loadChartLibrary() {
  if (window.uPlot) return Promise.resolve(window.uPlot);
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      const css = document.createElement("link");
      css.rel = "stylesheet";
      css.href = "/console/vendor/uPlot.min.css";
      document.head.append(css);
      const script = document.createElement("script");
      script.src = "/console/vendor/uPlot.iife.min.js";
      script.onload = () => (window.uPlot ? resolve(window.uPlot) : reject(new Error("no uPlot")));
      script.onerror = () => reject(new Error("the chart library is missing"));
      document.head.append(script);
    });
  }
  return loading;
}

const COLOURS = ["#0b63c5", "#d4570f", "#137a3a", "#8e44ad", "#b3261e", "#00838f"];

// every numeric field of a point, nested objects as a.b
function numericFields(value, prefix, out) {
  if (typeof value === "number") out.set(prefix || "value", value);
  else if (value && typeof value === "object" && !Array.isArray(value)) {
    for (const [key, inner] of Object.entries(value)) {
      if (key !== "ts") numericFields(inner, prefix ? `${prefix}.${key}` : key, out);
    }
  }
  return out;
}

// points: [{ts, ...fields}] ascending -> uPlot's columns [[x...], [y...]...] and series names
export function columns(points) {
  const names = [];
  const rows = points.map((point) => numericFields(point, "", new Map()));
  for (const row of rows) for (const name of row.keys()) if (!names.includes(name)) names.push(name);
  const data = [points.map((p) => p.ts / 1000)];
  for (const name of names) data.push(rows.map((row) => (row.has(name) ? row.get(name) : null)));
  return { names, data };
}

// draws into `box`; returns {zoom(factor), reset(), destroy()} or null when the library is missing
export async function drawChart(box, points, title) {
  let uPlot;
  try {
    uPlot = await loadChartLibrary();
  } catch {
    box.replaceChildren(Object.assign(document.createElement("p"), {
      className: "notice error", role: "status",
      textContent: "The chart library is not installed (run `make console`): the values are "
        + "in the table below.",
    }));
    return null;
  }
  const { names, data } = columns(points);
  box.replaceChildren();
  const width = Math.max(280, box.clientWidth || 600);
  const options = {
    title, width, height: 300,
    cursor: { drag: { x: true, y: false } },
    series: [{}, ...names.map((name, i) => ({
      label: name, stroke: COLOURS[i % COLOURS.length], width: 1.5, spanGaps: true,
    }))],
    // the time axis keeps its labels apart on a phone (uPlot's default spacing lets them touch)
    axes: [{ stroke: getComputedStyle(document.body).color, space: 80 },
      { stroke: getComputedStyle(document.body).color }],
  };
  const plot = new uPlot(options, data, box);
  box.dataset.points = String(points.length);
  box.dataset.series = String(names.length);
  const full = [data[0][0], data[0][data[0].length - 1]];
  const resized = new ResizeObserver(() => {
    const now = Math.max(280, box.clientWidth);
    if (now !== plot.width) plot.setSize({ width: now, height: 300 });
  });
  resized.observe(box);
  return {
    zoom(factor) {
      const min = plot.scales.x.min;
      const max = plot.scales.x.max;
      const mid = (min + max) / 2;
      const half = ((max - min) / 2) * factor;
      plot.setScale("x", { min: mid - half, max: mid + half });
    },
    reset() { if (full[0] !== undefined) plot.setScale("x", { min: full[0], max: full[1] }); },
    destroy() {
      resized.disconnect();
      plot.destroy();
    },
  };
}
