// The operator console (operator key) and the auditor view (the same, read-only): node
// positions, venue and instrument phases with their controls, account states and the kill
// switch, IPO phases with control totals, rejects by reason, and circuit breakers when the
// gateway has them (GET /v1/admin/breakers; the panel stays hidden while that answers 404).
//
// Phase and halt changes arrive over the WebSocket and refresh the view at once; the counters
// (node positions, rejects) are re-read every COUNTERS_MS.

import { clear, group, h, requestId } from "./util.js";

const COUNTERS_MS = 3000;

export class ConsoleScreen {
  constructor(root, api, feed, options) {
    this.root = root;
    this.api = api;
    this.feed = feed;
    this.readOnly = options.readOnly;
    this.timer = null;
    this.data = null;
    this.refreshing = false;
    this.build();
  }

  build() {
    const panel = (id, title, ...rest) =>
      h("section", { class: "panel", id, "aria-label": title }, h("h2", {}, title), ...rest);
    this.nodeEl = h("div", { class: "kv" });
    this.venueEl = h("div", {});
    this.instrumentsEl = h("tbody");
    this.accountsEl = h("div", {});
    this.ipoEl = h("div", {});
    this.rejectsEl = h("div", {});
    this.breakersEl = h("div", {});
    this.noteEl = h("div", { class: "note", id: "console-note", role: "status" });
    this.breakersPanel = panel("breakers", "Circuit breakers", this.breakersEl);
    this.breakersPanel.hidden = true;
    clear(this.root, h("div", { class: "console-grid" },
      h("div", { class: "console-banner" },
        h("strong", {}, this.readOnly ? "Auditor view (read-only)" : "Operator console"),
        this.noteEl),
      panel("node", "Node", this.nodeEl),
      panel("venue", "Venue", this.venueEl),
      panel("accounts", "Accounts", this.accountsEl),
      panel("instruments", "Instruments",
        h("div", { class: "scroll" }, h("table", { class: "grid" },
          h("thead", {}, h("tr", {}, ...["Symbol", "Phase", "Reference", "Last", ""]
            .map((t) => h("th", {}, t)))),
          this.instrumentsEl))),
      panel("rejects", "Rejects by reason", this.rejectsEl),
      panel("ipo", "IPO offerings", this.ipoEl),
      this.breakersPanel));
  }

  async start() {
    await this.refresh();
    for (const i of this.data?.instruments || []) this.feed.books.add(i.symbol);
    this.feed.subscribeAll();
    this.timer = setInterval(() => this.refresh(), COUNTERS_MS);
  }

  stop() {
    clearInterval(this.timer);
  }

  onMessage(m) {
    if (m.type === "phase" || m.type === "venue") this.refresh();
  }

  async refresh() {
    if (this.refreshing) return;
    this.refreshing = true;
    try {
      this.data = await this.api.get("/v1/admin/overview");
      this.render();
      await this.loadBreakers();
    } catch (error) {
      this.noteEl.textContent = error.message;
    } finally {
      this.refreshing = false;
    }
  }

  async loadBreakers() {
    try {
      const breakers = await this.api.get("/v1/admin/breakers");
      this.breakersPanel.hidden = false;
      const rows = breakerRows(breakers);
      clear(this.breakersEl, rows.length
        ? h("table", { class: "grid" }, h("tbody", {}, rows.map((b) =>
            h("tr", {}, Object.entries(b).map(([k, v]) =>
              h("td", {}, h("span", { class: "muted" }, `${k} `), String(v)))))))
        : h("p", { class: "muted" }, "No breakers set."));
    } catch (error) {
      this.breakersPanel.hidden = true; // 404: this gateway has no breakers endpoint yet
    }
  }

  // settle-all takes no request id (settling a chunk is idempotent)
  async act(label, method, path, body, withRequestId = true) {
    this.noteEl.textContent = `${label}…`;
    try {
      const json = withRequestId ? { ...body, request_id: requestId("op") } : body;
      const answer = await this.api.request(method, path, null, json);
      this.noteEl.textContent = `${label}: done (seq ${answer.seq ?? "—"})`;
    } catch (error) {
      this.noteEl.textContent = `${label}: ${error.message}`;
    }
    await this.refresh();
  }

  button(label, onclick, cls = "small") {
    return h("button", { type: "button", class: cls, disabled: this.readOnly, onclick }, label);
  }

  render() {
    const d = this.data;
    const n = d.node;
    const kv = (k, v) => [h("dt", {}, k), h("dd", { class: "num" }, v ?? "—")];
    clear(this.nodeEl, h("dl", {},
      kv("Applied seq", group(String(n.seq))),
      kv("Journal end", group(String(n.journal_last_seq))),
      kv("Newest snapshot", n.snapshot_seq === null ? "—" : group(String(n.snapshot_seq))),
      kv("Queue depth", String(n.queue_depth)),
      kv("State hash", n.state_hash.slice(0, 16) + "…"),
      kv("Recovered", n.recovered ? `snapshot ${n.recovered.snapshot_seq} + ${n.recovered.replayed} replayed` : "—"),
      kv("Cluster", d.cluster ? JSON.stringify(d.cluster) : "single node"),
      kv("Accounts", group(String(d.accounts))),
      kv("Open orders", group(String(d.open_orders)))));

    clear(this.venueEl,
      h("p", {}, "Venue: ", h("span", { class: `badge ${d.venue_halted ? "phase-halted" : "phase-continuous"}`,
                                        id: "venue-state" },
        d.venue_halted ? "HALTED" : "TRADING")),
      this.readOnly ? null : h("div", { class: "buttons" },
        this.button("Halt venue", () => this.act("Halt venue", "POST", "/v1/halt",
          { halted: true, reason: "operator console" }), "small danger"),
        this.button("Resume venue", () => this.act("Resume venue", "POST", "/v1/halt",
          { halted: false }))));

    clear(this.instrumentsEl, d.instruments.map((i) => {
      const phase = (p) => () => this.act(`${i.symbol} → ${p}`, "POST",
                                          `/v1/instruments/${i.symbol}/phase`, { phase: p });
      return h("tr", { dataset: { symbol: i.symbol } },
        h("td", {}, i.symbol),
        h("td", {}, h("span", { class: `badge phase-${i.phase.toLowerCase()}` }, i.phase)),
        h("td", { class: "num" }, i.reference_price ?? "—"),
        h("td", { class: "num" }, i.last_price ?? "—"),
        h("td", { class: "actions" }, this.readOnly ? null : [
          this.button("Start auction", phase("PRE_OPEN")),
          this.button("Open", phase("CONTINUOUS")),
          this.button("Halt", phase("HALTED"), "small danger"),
          this.button("Resume", phase("CONTINUOUS")),
        ]));
    }));

    const killAccount = h("input", { inputmode: "numeric", placeholder: "account",
                                     id: "kill-account", "aria-label": "account" });
    const killReason = h("input", { placeholder: "reason", "aria-label": "reason" });
    clear(this.accountsEl,
      d.account_states.length
        ? h("table", { class: "grid" },
            h("thead", {}, h("tr", {}, h("th", {}, "Account"), h("th", {}, "State"))),
            h("tbody", {}, d.account_states.map((a) =>
              h("tr", {}, h("td", { class: "num" }, a.account),
                h("td", {}, h("span", { class: "badge phase-halted" }, a.state))))))
        : h("p", { class: "muted" }, "Every account is ACTIVE."),
      this.readOnly ? null : h("form", { class: "inline-form", onsubmit: (e) => {
        e.preventDefault();
        const account = killAccount.value.trim();
        if (!/^\d+$/.test(account)) {
          this.noteEl.textContent = "Kill switch: the account is a number";
          return;
        }
        if (!confirm(`Kill switch: cancel every order of account ${account} and suspend it?`)) return;
        this.act(`Kill switch ${account}`, "POST", `/v1/accounts/${account}/kill-switch`,
                 { reason: killReason.value.trim() || "operator console" });
      } }, killAccount, killReason,
      h("button", { type: "submit", class: "small danger" }, "Kill switch")));

    clear(this.ipoEl, d.offerings.length ? d.offerings.map((o) => this.offering(o))
      : h("p", { class: "muted" }, "No offerings."));

    const byReason = Object.entries(d.rejects_by_reason);
    clear(this.rejectsEl,
      byReason.length
        ? h("table", { class: "grid" }, h("tbody", {}, byReason.map(([reason, count]) =>
            h("tr", {}, h("td", {}, reason), h("td", { class: "num" }, group(String(count)))))))
        : h("p", { class: "muted" }, "No engine rejects since the gateway started."),
      h("h3", {}, "Recent"),
      h("div", { class: "scroll short" }, h("table", { class: "grid" }, h("tbody", {},
        d.recent_rejects.slice(0, 30).map((r) => h("tr", {},
          h("td", { class: "num muted" }, new Date(r.time_ms).toTimeString().slice(0, 8)),
          h("td", { class: "wrap" }, h("div", {}, r.reason,
            r.key_id ? h("span", { class: "muted" }, ` · key ${r.key_id}`) : null),
            h("div", { class: "muted" }, r.detail))))))),
      h("h3", {}, "Gateway refusals"),
      h("table", { class: "grid" }, h("tbody", {}, Object.entries(d.refusals_by_code).map(
        ([code, count]) => h("tr", {}, h("td", {}, code),
          h("td", { class: "num" }, group(String(count))))))));
  }

  offering(o) {
    const base = `/v1/ipo/offerings/${o.symbol}`;
    const seed = h("input", { placeholder: "seed (hex)", "aria-label": "seed", class: "seed" });
    const steps = {
      OPEN: [this.button("Close", () => this.act(`${o.symbol} close`, "POST", `${base}/close`, {}))],
      CLOSED: [this.button("Number", () => this.act(`${o.symbol} number`, "POST", `${base}/number`, {}))],
      NUMBERED: [seed, this.button("Draw", () => this.act(`${o.symbol} draw`, "POST", `${base}/draw`,
                                                          { seed_hex: seed.value.trim() }))],
      DRAWN: [this.button("Settle all", () => this.act(`${o.symbol} settle`, "POST",
                                                       `${base}/settle-all`, {}, false))],
      SETTLED: [this.button("List", () => this.act(`${o.symbol} list`, "POST", `${base}/list`, {}))],
    };
    const s = o.settlement;
    return h("div", { class: "ipo-row", dataset: { symbol: o.symbol } },
      h("div", {}, h("strong", {}, o.symbol), " ",
        h("span", { class: `badge ipo-${o.phase.toLowerCase()}` }, o.phase)),
      h("div", { class: "num muted" },
        `subs ${o.active_subscriptions}/${o.subscriptions} · units ${o.active_units} · frozen `
        + `${group(o.frozen)} ${o.cash_asset} · chunks ${o.chunks_done}/${o.chunks}`),
      h("div", { class: "num muted" },
        `settled rows ${s.rows} · winners ${s.winners} · shares ${s.won_shares} · paid `
        + `${group(s.paid)} · fee ${group(s.fee)} · released ${group(s.released)}`),
      this.readOnly ? null : h("div", { class: "buttons" }, (steps[o.phase] || []).flat()));
  }
}

// GET /v1/admin/breakers as rows: each brake, its state and the figures that drive it.
function breakerRows(b) {
  const rows = [];
  const venue = b.surge.venue;
  if (venue.enabled) {
    rows.push({ brake: "surge (venue)", state: venue.protected ? "PROTECTION" : "ok",
      rate_per_s: venue.rate_per_s, threshold_per_s: venue.threshold_per_s,
      baseline_per_s: (venue.baseline_milli_per_s / 1000).toFixed(1) });
  }
  if (b.surge.accounts.enabled) {
    rows.push({ brake: "surge (accounts)", state: `${b.surge.protected_accounts.length} protected`,
      floor_per_s: b.surge.accounts.floor_per_s, ratio_pct: b.surge.accounts.ratio_pct });
  }
  for (const p of b.surge.protected_accounts) {
    rows.push({ brake: `surge account ${p.account}`, state: "PROTECTION",
      rate_per_s: p.rate_per_s, threshold_per_s: p.threshold_per_s });
  }
  for (const l of b.loss_limits) {
    rows.push({ brake: `red line ${l.scope === "HOUSE" ? "house" : l.account} ${l.asset}`,
      state: l.tripped ? "TRIPPED" : "ok", loss: l.loss, limit: l.limit, value: l.value });
  }
  for (const v of b.volatility) {
    rows.push({ brake: `volatility ${v.symbol}`, state: v.in_auction ? "AUCTION" : "ok",
      reference: v.reference, band: `${v.low} – ${v.high}` });
  }
  return rows;
}
