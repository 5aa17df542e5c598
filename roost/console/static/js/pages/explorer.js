// The resource explorer of a connected device: its resources from the describe call
// (GET /v3/.../resources, then GET /v2/.../{r}/api for each), outputs live over the resource
// stream WebSocket at a chosen interval, input forms built from the description, run buttons,
// and for each action the equivalent curl command.

import { api, enc, userPath } from "../api.js";
import { LiveSocket } from "../live.js";
import {
  attempt, button, copyable, curl, field, h, input, json, nextId, notify,
} from "../ui.js";

// a form control for a value of the shape of `sample`; returns {el, read()}
function control(label, sample) {
  if (typeof sample === "boolean") {
    const box = input(label, { type: "checkbox", role: "switch", checked: sample });
    return { el: field(label, box), read: () => box.checked };
  }
  if (typeof sample === "number") {
    const box = input(label, { type: "number", step: "any", value: String(sample), required: true });
    return { el: field(label, box), read: () => Number(box.value) };
  }
  if (sample !== null && typeof sample === "object" && !Array.isArray(sample)) {
    const parts = Object.entries(sample).map(([key, value]) => [key, control(key, value)]);
    const legend = h("legend", {}, label);
    return {
      el: h("fieldset", { class: "grid" }, legend, parts.map(([, c]) => c.el)),
      read: () => Object.fromEntries(parts.map(([key, c]) => [key, c.read()])),
    };
  }
  if (typeof sample === "string") {
    const box = input(label, { value: sample });
    return { el: field(label, box), read: () => box.value };
  }
  // arrays, null, or no sample: JSON typed by hand
  const area = h("textarea", {}, sample === undefined ? "" : json(sample));
  return {
    el: field(`${label} (JSON)`, area),
    read: () => (area.value.trim() ? JSON.parse(area.value) : undefined),
  };
}

function resourceCard(deviceId, name, kind, description, stream) {
  const v2 = userPath("v2", `/devices/${enc(deviceId)}/${name.split("/").map(enc).join("/")}`);
  const out = h("output", { class: "value", "aria-live": "polite", "data-resource": name },
    "out" in description ? json(description.out) : ("in" in description ? json(description.in) : "—"));
  const curlBox = h("div");
  const showCurl = (method, body) => curlBox.replaceChildren(
    copyable(`curl command for ${name}`, curl(method, v2, body)));
  const card = h("div", { class: "resource", "data-resource": name },
    h("h3", {}, name, " ", h("span", { class: "muted" }, `(${kind})`)));
  const actions = h("div", { class: "actions" });

  if (kind === "output" || kind === "input_output" || kind === "stream") {
    const interval = input("interval", { type: "number", min: "0", max: "86400", value: "1" });
    const live = input("live", { type: "checkbox" });
    const restream = () => {
      const message = live.checked
        ? { resource: name, interval: Number(interval.value) || 0, enabled: true }
        : { resource: name, enabled: false };
      stream.send(name, message);
    };
    live.addEventListener("change", restream);
    interval.addEventListener("change", () => { if (live.checked) restream(); });
    stream.watchers.set(name, (value) => { out.value = json(value); });
    actions.append(
      field(`Live (every n s)`, interval),
      field(`Stream ${name}`, live),
      button(`Read ${name}`, () => attempt(async () => {
        const answer = await api("GET", v2);
        out.value = json(answer && "out" in answer ? answer.out : answer);
      }), {}),
    );
    showCurl("GET");
  }
  let form = null;
  if (kind === "input" || kind === "input_output") {
    const value = control(`${name} input`, description.in);
    form = h("form", {
      class: "grid",
      onsubmit: (event) => {
        event.preventDefault();
        let body;
        try {
          body = { in: value.read() };
        } catch (error) {
          notify(`Not valid JSON: ${error.message}`, true);
          return;
        }
        showCurl("POST", body);
        attempt(async () => {
          const answer = await api("POST", v2, body);
          out.value = json(answer && "out" in answer ? answer.out : body.in);
        }, `${name} written`);
      },
    }, value.el, h("div", { class: "field" }, h("button", { type: "submit" }, `Write ${name}`)));
    if (kind === "input") showCurl("POST", { in: description.in });
  }
  if (kind === "run") {
    actions.append(button(`Run ${name}`, () => attempt(() => api("GET", v2), `${name} ran`)));
    showCurl("GET");
  }
  card.append(h("p", {}, "Value: ", out), actions);
  if (form) card.append(form);
  card.append(h("details", {}, h("summary", {}, "curl"), curlBox));
  return card;
}

export function explorerPage(main, deviceId) {
  const list = h("div", { id: nextId("resources") });
  const status = h("p", { class: "muted", role: "status" }, "Asking the device…");
  const stream = new LiveSocket(userPath("v3", `/devices/${enc(deviceId)}/resources`), (frame) => {
    if (frame.error) {
      notify(frame.error.message, true);
      return;
    }
    if (frame.device && "connected" in frame) {
      status.textContent = frame.connected ? "Device connected" : "Device disconnected";
      return;
    }
    const watcher = stream.watchers.get(frame.resource);
    if (watcher) watcher("out" in frame ? frame.out : frame.in);
  });
  stream.watchers = new Map();

  async function load() {
    const listing = await api("GET", userPath("v3", `/devices/${enc(deviceId)}/resources`));
    const names = Object.keys(listing).filter((n) => !n.startsWith("$")).sort();
    // each resource's {in?, out?}, asked for all at once
    const cards = await Promise.all(names.map(async (name) => {
      const kind = listing[name].type;
      let description = {};
      if (kind !== "run" && kind !== "none") {
        const path = `/devices/${enc(deviceId)}/${name.split("/").map(enc).join("/")}/api`;
        description = (await api("GET", userPath("v2", path))) || {};
      }
      return resourceCard(deviceId, name, kind, description, stream);
    }));
    status.textContent = names.length ? `${names.length} resources` : "No resources.";
    for (const resource of [...stream.subscriptions.keys()]) {
      stream.send(resource, { resource, enabled: false }); // the new cards start unwatched
    }
    list.replaceChildren(...cards);
  }

  main.append(
    h("p", {}, h("a", { href: `#/devices/${enc(deviceId)}` }, `← Device ${deviceId}`)),
    h("h1", {}, `Resources of ${deviceId}`), status,
    h("p", {}, button("Describe again", () => attempt(load), { class: "secondary" })),
    list);
  load().catch((error) => {
    status.textContent = `Could not describe the device: ${error.message}`;
  });
  return () => stream.close();
}
