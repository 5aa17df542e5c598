// One device: its live stats (the stats Server-Sent Events), its settings (edit, enable or
// disable, new credentials, delete), its device tokens and its properties.

import { api, enc, userPath } from "../api.js";
import { LiveEvents } from "../live.js";
import {
  attempt, button, bytes, field, formValues, h, input, notify, when,
} from "../ui.js";
import { randomSecret, stateCell } from "./devices.js";
import { deviceTokensSection } from "./device-tokens.js";
import { propertiesSection } from "./properties.js";

export function confirmButton(text, question, action) {
  const holder = h("span", { class: "actions" });
  // the question replaces the button; keyboard focus follows it, and comes back on Cancel
  const ask = () => {
    const yes = button(`Yes, ${text.toLowerCase()}`, action, { class: "danger" });
    holder.replaceChildren(h("span", { role: "alert" }, question), yes,
      button("Cancel", () => { holder.replaceChildren(first); first.focus(); },
        { class: "secondary" }));
    yes.focus();
  };
  const first = button(text, ask, { class: "danger" });
  holder.append(first);
  return holder;
}

function statsList(stats) {
  return h("dl", { class: "stats", id: "device-stats" },
    h("dt", {}, "State"), h("dd", {}, stateCell(stats.connected)),
    h("dt", {}, "Connected since"),
    h("dd", {}, stats.connected ? when(stats.connected_ts) : "—"),
    h("dt", {}, "IP address"), h("dd", {}, stats.ip_address || "—"),
    h("dt", {}, "Received"), h("dd", { "data-stat": "rx" }, bytes(stats.rx_bytes)),
    h("dt", {}, "Sent"), h("dd", { "data-stat": "tx" }, bytes(stats.tx_bytes)));
}

export function devicePage(main, deviceId) {
  const path = userPath("v1", `/devices/${enc(deviceId)}`);
  const statsBox = h("div", { "aria-live": "off" }, h("p", { class: "muted" }, "Waiting for stats…"));
  const settings = h("div");
  let stats = null;

  // the stats stream of an enabled device (the server refuses it for a disabled one)
  function watchStats(enabled) {
    if (enabled && !stats) {
      stats = new LiveEvents(`${path}/stats`, (data) => statsBox.replaceChildren(statsList(data)));
    } else if (!enabled) {
      if (stats) stats.close();
      stats = null;
      statsBox.replaceChildren(h("p", { id: "device-stats" },
        "Disabled: the device cannot connect. Enable it to see its statistics."));
    }
  }

  function settingsForm(device) {
    watchStats(device.enabled);
    const form = h("form", {
      class: "grid",
      onsubmit: (event) => {
        event.preventDefault();
        const values = formValues(form);
        const change = {
          name: values.name, description: values.description, enabled: form.enabled.checked,
        };
        if (values.credentials) change.credentials = values.credentials;
        attempt(async () => {
          settingsForm(await api("PUT", path, change));
        }, "Device saved");
      },
    },
    field("Name", input("name", { value: device.name || "" })),
    field("Description", input("description", { value: device.description || "" })),
    field("Enabled", input("enabled", { type: "checkbox", checked: device.enabled })),
    field("New credentials", input("credentials", {
      minlength: 6, maxlength: 255, autocomplete: "off",
    }), "leave empty to keep the current ones"),
    h("div", { class: "field" }, h("button", { type: "submit" }, "Save device")));
    const credentials = form.querySelector("input[name=credentials]");
    settings.replaceChildren(form, h("div", { class: "actions" },
      button("Generate new credentials", () => { credentials.value = randomSecret(); },
        { class: "secondary" }),
      confirmButton("Delete device", `Delete ${deviceId} and its tokens?`, () => attempt(async () => {
        await api("DELETE", path);
        location.hash = "#/devices";
      }, `Device ${deviceId} deleted`))));
  }

  main.append(
    h("p", {}, h("a", { href: "#/devices" }, "← Devices")),
    h("h1", {}, `Device ${deviceId}`),
    h("p", {}, h("a", { href: `#/devices/${enc(deviceId)}/resources` }, "Resource explorer")),
    h("h2", {}, "Statistics (live)"), statsBox,
    h("h2", {}, "Settings"), settings);
  api("GET", path).then(settingsForm).catch((error) => notify(error.message, true));
  main.append(deviceTokensSection(deviceId), propertiesSection(deviceId));
  return () => { if (stats) stats.close(); };
}
