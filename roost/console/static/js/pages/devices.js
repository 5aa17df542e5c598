// Devices: the list with each device's state, pushed by the events WebSocket
// (device_state_change, no polling), and the form that registers a device.

import { api, enc, userPath } from "../api.js";
import { LiveSocket } from "../live.js";
import {
  attempt, button, copyable, field, formValues, h, input, notify, table, when,
} from "../ui.js";

export function randomSecret() {
  const bytes = crypto.getRandomValues(new Uint8Array(18));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_");
}

export function stateCell(online) {
  return h("span", { class: online ? "state online" : "state offline" },
    online ? "online" : "offline");
}

export function devicesPage(main) {
  const rows = new Map(); // device id -> its state cell's parent
  const body = h("div", { class: "table-wrap" });
  const shown = h("div", { "aria-live": "polite" });
  const credentials = input("credentials", {
    required: true, minlength: 6, maxlength: 255, autocomplete: "off",
  });
  const form = h("form", {
    class: "grid",
    onsubmit: (event) => {
      event.preventDefault();
      const values = formValues(form);
      attempt(async () => {
        const made = await api("POST", userPath("v1", "/devices"), {
          device: values.device, credentials: values.credentials,
          name: values.name || values.device, description: values.description,
        });
        form.reset();
        shown.replaceChildren(h("div", { class: "panel" },
          h("p", {}, `Device ${made.device} registered. Its credentials are shown this once:`),
          copyable(`credentials of ${made.device}`, values.credentials),
          button("Done", () => shown.replaceChildren(), { class: "secondary" })));
        await load();
      });
    },
  },
  field("Device id", input("device", { required: true, pattern: "[A-Za-z0-9_\\-]{1,32}" }),
    "letters, digits, _ and -"),
  field("Credentials", credentials, "6 to 255 characters"),
  h("div", { class: "field" }, button("Generate credentials", () => {
    credentials.value = randomSecret();
  }, { class: "secondary" })),
  field("Name", input("name")),
  field("Description", input("description")),
  h("div", { class: "field" }, h("button", { type: "submit" }, "Create device")));

  async function load() {
    const devices = await api("GET", userPath("v1", "/devices"));
    rows.clear();
    const trs = devices.map((d) => {
      const state = h("td", {}, stateCell(d.connection && d.connection.active));
      rows.set(d.device, state);
      return h("tr", { "data-device": d.device },
        h("td", {}, h("a", { href: `#/devices/${enc(d.device)}` }, d.device)),
        h("td", {}, d.name || ""),
        state,
        h("td", { class: "hide-narrow" }, when(d.connection && d.connection.ts)),
        h("td", {}, d.enabled ? "yes" : "no"));
    });
    body.replaceChildren(trs.length
      ? table(["Device", "Name", "State", ["Last connection", "hide-narrow"], "Enabled"], trs)
      : h("p", { class: "muted" }, "No devices yet."));
  }

  // the list is read again whenever the socket (re)opens: no change is missed in between
  const events = new LiveSocket(userPath("v1", "/events"), (message) => {
    if (message.event !== "device_state_change") return;
    const cell = rows.get(message.device);
    if (cell) cell.replaceChildren(stateCell(message.state === "connected"));
  }, (open) => { if (open) load().catch((error) => notify(error.message, true)); });
  events.send("state", { event: "device_state_change" });

  main.append(
    h("h1", {}, "Devices"),
    body,
    shown,
    h("h2", {}, "New device"),
    form,
  );
  load().catch((error) => notify(error.message, true));
  return () => events.close();
}
