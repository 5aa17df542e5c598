// Buckets: the list, and the form that creates one.

import { api, enc, userPath } from "../api.js";
import { attempt, field, formValues, h, input, notify, table, when } from "../ui.js";

export function bucketsPage(main) {
  const path = userPath("v1", "/buckets");
  const list = h("div");

  async function load() {
    const buckets = await api("GET", path);
    list.replaceChildren(buckets.length ? table(["Bucket", "Name", "Source", ["Keeps", "hide-narrow"],
      "Enabled", ["Created", "hide-narrow"]],
      buckets.map((b) => h("tr", { "data-bucket": b.bucket },
        h("td", {}, h("a", { href: `#/buckets/${enc(b.bucket)}` }, b.bucket)),
        h("td", {}, b.name || ""), h("td", {}, (b.config && b.config.source) || ""),
        h("td", { class: "hide-narrow" },
          b.retention ? `${b.retention.period} ${b.retention.unit}` : "every point"),
        h("td", {}, b.enabled ? "yes" : "no"), h("td", { class: "hide-narrow" }, when(b.created)))))
      : h("p", { class: "muted" }, "No buckets yet."));
  }

  const sampled = h("div", { class: "grid wide", hidden: true },
    field("Source device", input("device", { required: true })),
    field("Source resource", input("resource", { required: true })),
    field("Sampling interval, s", input("interval", { type: "number", min: "1", value: "60" })));
  // the fields of a device source, only for it (hidden, they are not required)
  const showSampled = () => {
    sampled.hidden = source.value !== "device";
    for (const el of sampled.querySelectorAll("input")) el.disabled = sampled.hidden;
  };
  const source = h("select", { name: "source", onchange: showSampled },
    ["api", "write", "device"].map((s) => h("option", { value: s }, s)));
  const form = h("form", {
    class: "grid",
    onsubmit: (event) => {
      event.preventDefault();
      const v = formValues(form);
      const config = { source: v.source };
      if (v.source === "device") {
        Object.assign(config, {
          device: v.device, resource: v.resource, update: "interval", interval: Number(v.interval),
        });
      }
      const retention = v.period ? { period: Number(v.period), unit: v.unit } : null;
      attempt(async () => {
        await api("POST", path, {
          bucket: v.bucket, name: v.name || v.bucket, description: v.description, enabled: true,
          config, retention,
        });
        form.reset();
        showSampled();
        await load();
      }, "Bucket created");
    },
  },
  field("Bucket id", input("bucket", { required: true, pattern: "[A-Za-z0-9_]{1,32}" })),
  field("Name", input("name")),
  field("Description", input("description")),
  field("Source", source, "api: POST .../data; write: devices; device: sampled"),
  sampled,
  field("Keep points for", input("period", { type: "number", min: "1" }), "empty: keep every point"),
  field("Unit", h("select", { name: "unit" },
    ["days", "hours", "weeks", "months", "years"].map((u) => h("option", { value: u }, u)))),
  h("div", { class: "field" }, h("button", { type: "submit" }, "Create bucket")));

  showSampled();
  main.append(h("h1", {}, "Buckets"), list, h("h2", {}, "New bucket"), form);
  load().catch((error) => notify(error.message, true));
  return null;
}
