// The single page: sign in with an API key, then the screens the key's role may use
// (#trade, #ipo, #console). One WebSocket feeds whichever screen is shown.

import { Api, Feed } from "./api.js";
import { ConsoleScreen } from "./console.js";
import { IpoScreen } from "./ipo.js";
import { TradeScreen } from "./trade.js";
import { clear, h } from "./util.js";

const api = new Api();
const app = document.getElementById("app");
let feed = null;
let screen = null;
let viewAccount = null; // operator / auditor: the account they look at

function signInForm(message = "") {
  const keyId = h("input", { id: "key-id", autocomplete: "username", placeholder: "k0123…",
                             required: true, spellcheck: "false" });
  const secret = h("input", { id: "secret", type: "password", autocomplete: "current-password",
                              required: true });
  const remember = h("input", { type: "checkbox", id: "remember" });
  const error = h("div", { class: "field-error", role: "alert", id: "sign-in-error" }, message);
  const button = h("button", { type: "submit", class: "submit buy", id: "sign-in" }, "Sign in");
  const form = h("form", { class: "sign-in panel", onsubmit: async (e) => {
    e.preventDefault();
    error.textContent = "";
    button.disabled = true;
    try {
      await api.signIn(keyId.value.trim(), secret.value, remember.checked);
      secret.value = "";
      start();
    } catch (err) {
      error.textContent = err.status === 401 ? `Sign-in refused: ${err.message}` : err.message;
    } finally {
      button.disabled = false;
    }
  } },
    h("h1", {}, h("span", { class: "logo" }, "◆"), " OpenBell"),
    h("p", { class: "muted" }, "Sign in with an API key. Requests are signed in this browser "
      + "(HMAC-SHA256); the secret never leaves it and is not stored in a cookie."),
    h("label", { class: "field" }, h("span", {}, "Key id"), keyId),
    h("label", { class: "field" }, h("span", {}, "Secret"), secret),
    h("label", { class: "check" }, remember, " Keep me signed in in this tab (sessionStorage)"),
    button, error,
    h("p", { class: "muted small" }, h("a", { href: "/docs", class: "link" }, "API reference")));
  clear(app, h("main", { class: "center" }, form));
  keyId.focus();
}

function screensFor(role) {
  if (role === "trader") return ["trade", "ipo"];
  return ["console", "trade", "ipo"];
}

const LABELS = { trade: "Trade", ipo: "IPO", console: "Console" };

function topBar(session, current, state) {
  const tabs = screensFor(session.role).map((name) =>
    h("a", { href: `#${name}`, class: `tab${name === current ? " active" : ""}`,
             id: `tab-${name}` }, name === "console" && session.role === "auditor" ? "Audit" : LABELS[name]));
  const who = session.role === "trader"
    ? `account ${session.accounts.join(", ")}`
    : session.role;
  let picker = null;
  if (session.role !== "trader" && current !== "console") {
    const input = h("input", { class: "inline", id: "view-account", inputmode: "numeric",
                               placeholder: "account", value: viewAccount ?? "",
                               "aria-label": "account to view" });
    picker = h("form", { class: "inline-form", onsubmit: (e) => {
      e.preventDefault();
      const text = input.value.trim();
      viewAccount = /^\d+$/.test(text) ? Number(text) : null;
      route();
    } }, input, h("button", { type: "submit", class: "small" }, "View"));
  }
  return h("header", { class: "topbar" },
    h("a", { class: "brand", href: "#" }, h("span", { class: "logo" }, "◆"), " OpenBell"),
    h("nav", {}, tabs), picker,
    h("span", { class: "spacer" }),
    h("span", { class: `feed ${state === "live" ? "live" : ""}`, id: "feed-state" }, state),
    h("span", { class: "who", id: "who" }, `${session.key_id} · ${who}`),
    h("a", { href: "/docs", class: "link" }, "API"),
    h("button", { type: "button", class: "small", id: "sign-out", onclick: () => {
      api.signOut();
      if (feed) feed.close();
      feed = null;
      signInForm();
    } }, "Sign out"));
}

let feedState = "connecting";
let bar = null;
let body = null;

async function route() {
  const session = api.session;
  const allowed = screensFor(session.role);
  const wanted = location.hash.slice(1);
  const name = allowed.includes(wanted) ? wanted : allowed[0];
  if (screen && screen.stop) screen.stop();
  screen = null;
  bar = topBar(session, name, feedState);
  body = h("main", { class: "screen", id: `screen-${name}` });
  clear(app, bar, body);
  const account = session.role === "trader" ? session.accounts[0] : viewAccount;
  const readOnly = session.role === "auditor";
  feed.books = new Set();
  try {
    if (name === "trade") {
      const instruments = await api.get("/v1/instruments");
      screen = new TradeScreen(body, api, feed, instruments, { account, readOnly:
        readOnly || account === null });
      await screen.start();
    } else if (name === "ipo") {
      screen = new IpoScreen(body, api, feed, { account, readOnly: readOnly || account === null });
      await screen.start();
    } else {
      screen = new ConsoleScreen(body, api, feed, { readOnly });
      await screen.start();
    }
  } catch (error) {
    body.append(h("div", { class: "field-error" }, error.message));
  }
}

function start() {
  let wasLive = false;
  feed = new Feed(api, (m) => screen && screen.onMessage(m), (state) => {
    // back after a drop: what the account channel missed meanwhile is read again
    if (state === "live" && wasLive && screen && screen.resync) screen.resync();
    if (state === "live") wasLive = true;
    feedState = state;
    const el = document.getElementById("feed-state");
    if (el) {
      el.textContent = state;
      el.classList.toggle("live", state === "live");
    }
  });
  feed.open();
  route();
}

window.addEventListener("hashchange", () => {
  if (api.signedIn) route();
});

api.resume().then((session) => (session ? start() : signInForm()));
