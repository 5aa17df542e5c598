// The console's entry: the router (pages addressed by the URL fragment, #/devices) and the
// frame around the pages (navigation, who is logged in, logout).

import { api, enc, session } from "./api.js";
import { button, clear, clearNotice, h, notify } from "./ui.js";
import { loginPage } from "./pages/login.js";
import { devicesPage } from "./pages/devices.js";
import { devicePage } from "./pages/device.js";
import { explorerPage } from "./pages/explorer.js";
import { tokensPage } from "./pages/tokens.js";
import { bucketsPage } from "./pages/buckets.js";
import { bucketPage } from "./pages/bucket.js";
import { endpointsPage } from "./pages/endpoints.js";
import { usersPage } from "./pages/users.js";

// pattern -> page(main, params) returning an optional cleanup function
const ROUTES = [
  [/^devices$/, devicesPage],
  [/^devices\/([^/]+)$/, devicePage],
  [/^devices\/([^/]+)\/resources$/, explorerPage],
  [/^tokens$/, tokensPage],
  [/^buckets$/, bucketsPage],
  [/^buckets\/([^/]+)$/, bucketPage],
  [/^endpoints$/, endpointsPage],
  [/^users$/, usersPage],
];
const NAV = [["devices", "Devices"], ["tokens", "Access tokens"], ["buckets", "Buckets"],
  ["endpoints", "Endpoints"]];

let cleanup = null;
let role = null;

async function whoAmI() {
  role = null;
  try {
    const me = await api("GET", `/v1/users/${enc(session.user)}`);
    role = me.role;
  } catch (error) {
    notify(`Could not read your user: ${error.message}`, true);
  }
}

function frame(current) {
  const nav = document.getElementById("nav");
  const who = document.getElementById("who");
  if (!session.loggedIn) {
    nav.hidden = true;
    clear(who);
    return;
  }
  const items = role === "admin" ? [...NAV, ["users", "Users"]] : NAV;
  clear(nav, items.map(([path, text]) => h("a", {
    href: `#/${path}`, "aria-current": current.split("/")[0] === path ? "page" : null,
  }, text)));
  nav.hidden = false;
  clear(who, h("span", {}, session.user), button("Log out", logout, { class: "secondary" }));
}

async function logout() {
  try {
    await session.logout();
  } catch (error) {
    notify(`Logged out here; the server said: ${error.message}`, true);
  }
  location.hash = "#/login";
}

async function route(moved = false) {
  if (cleanup) {
    cleanup();
    cleanup = null;
  }
  const main = document.getElementById("main");
  const path = decodeURIComponent(location.hash.replace(/^#\/?/, ""));
  if (!session.loggedIn) {
    frame("");
    if (path !== "login") {
      location.hash = "#/login";
      return;
    }
    clear(main);
    cleanup = loginPage(main, async () => {
      await whoAmI();
      location.hash = "#/devices";
    });
    return;
  }
  if (role === null) await whoAmI();
  if (path === "users" && role !== "admin") {
    location.hash = "#/devices"; // the users of the server are an administrator's business
    return;
  }
  frame(path);
  for (const [pattern, page] of ROUTES) {
    const match = pattern.exec(path);
    if (match) {
      clear(main);
      clearNotice();
      cleanup = page(main, ...match.slice(1)) || null;
      // keyboard and screen reader users start at the new page's title
      const title = main.querySelector("h1");
      if (title && moved) {
        title.tabIndex = -1;
        title.focus();
      }
      return;
    }
  }
  location.hash = "#/devices";
}

session.onChange(() => {
  if (!session.loggedIn) {
    role = null;
    if (location.hash !== "#/login") location.hash = "#/login";
  }
});
window.addEventListener("hashchange", () => { route(true); });
route();
