// The IPO investor page: offerings, subscribe within the limit (showing the funds that will be
// frozen, computed exactly as the core does), my subscriptions with status, allotment numbers,
// the published winning tails or ballot basis, and how to verify the draw.

import { clear, fromUnits, group, h, requestId, scaleOf, units } from "./util.js";

const BPS = 10000n;
const STATUS_HELP = {
  FROZEN: "funds frozen, waiting for the draw",
  WIN: "won, waiting for settlement",
  LOSE: "not drawn, waiting for the refund",
  SETTLED: "shares delivered, the rest released",
  REFUNDED: "the whole hold released",
  CANCELLED: "cancelled, the hold released",
};

// units x unit_shares x price + fee, in the cash asset (openbell/core/ipo/book.py hold_of)
export function holdFor(offering, count) {
  const scale = scaleOf(offering.price);
  const notional = BigInt(count) * BigInt(offering.spec.unit_shares) * units(offering.price, scale);
  const bps = BigInt(offering.spec.fee_bps);
  const fee = (notional / BPS) * bps + ((notional % BPS) * bps) / BPS;
  return { notional: fromUnits(notional, scale), fee: fromUnits(fee, scale),
           total: fromUnits(notional + fee, scale) };
}

export class IpoScreen {
  constructor(root, api, feed, options) {
    this.root = root;
    this.api = api;
    this.feed = feed;
    this.account = options.account;
    this.readOnly = options.readOnly;
    this.offerings = [];
    this.subscriptions = new Map();
    this.build();
  }

  build() {
    this.offeringsEl = h("div", { class: "offer-list", id: "offerings" });
    this.subsEl = h("tbody");
    clear(this.root, h("div", { class: "ipo-grid" },
      h("section", { class: "panel", "aria-label": "offerings" },
        h("h2", {}, "Offerings"), this.offeringsEl),
      h("section", { class: "panel", id: "subscriptions", "aria-label": "my subscriptions" },
        h("h2", {}, `My subscriptions · account ${this.account ?? "—"}`),
        h("div", { class: "scroll" }, h("table", { class: "grid" },
          h("thead", {}, h("tr", {}, ...["Offering", "Status", "Units", "Frozen",
            "Allotment numbers", "Won", "Cost", "Fee", "Released"].map((t) => h("th", {}, t)))),
          this.subsEl))),
      h("section", { class: "panel verify", id: "verify", "aria-label": "verify the draw" },
        h("h2", {}, "Verify the draw"), ...verifyText())));
  }

  async start() {
    if (this.account !== null && this.account !== undefined) this.feed.account(this.account);
    await this.refresh();
  }

  async refresh() {
    this.offerings = await this.api.get("/v1/ipo/offerings");
    if (this.account !== null && this.account !== undefined) {
      const subs = await this.api.get(`/v1/ipo/accounts/${this.account}/subscriptions`);
      this.subscriptions = new Map(subs.map((s) => [s.symbol, s]));
    }
    this.render();
  }

  resync() {
    return this.refresh();
  }

  // the account channel: offering phase steps (the draw's WIN / LOSE), its own subscriptions,
  // and the balances settlement changes
  onMessage(m) {
    if (m.type === "ipo" || m.type === "IpoSubscribed" || m.type === "IpoSubscriptionCancelled"
        || (m.type === "BalanceChanged" && m.account === this.account)) {
      this.refresh();
    }
  }

  render() {
    clear(this.offeringsEl, this.offerings.length
      ? this.offerings.map((o) => this.offeringCard(o))
      : h("p", { class: "muted" }, "No offerings."));
    const subs = [...this.subscriptions.values()];
    clear(this.subsEl, subs.length ? subs.map((s) =>
      h("tr", { dataset: { symbol: s.symbol } },
        h("td", {}, s.symbol),
        h("td", {}, h("span", { class: `badge status-${s.status.toLowerCase()}`,
                                title: STATUS_HELP[s.status] || "" }, s.status)),
        h("td", { class: "num" }, s.units), h("td", { class: "num" }, group(s.frozen)),
        h("td", { class: "num" }, s.first_number ? `${s.first_number} – ${s.last_number}` : "—"),
        h("td", { class: "num" }, `${s.won_units} units / ${s.won_shares} sh`),
        h("td", { class: "num" }, s.cost ? group(s.cost) : "—"),
        h("td", { class: "num" }, s.fee ? group(s.fee) : "—"),
        h("td", { class: "num" }, s.released ? group(s.released) : "—")))
      : h("tr", {}, h("td", { colspan: 9, class: "muted empty" }, "No subscriptions")));
  }

  offeringCard(o) {
    const mine = this.subscriptions.get(o.symbol);
    const card = h("article", { class: "offer", dataset: { symbol: o.symbol } },
      h("header", {}, h("strong", {}, o.symbol),
        h("span", { class: `badge ipo-${o.phase.toLowerCase()}` }, o.phase)),
      h("dl", {},
        h("dt", {}, "Price"), h("dd", { class: "num" },
          `${o.final_price ?? o.price} ${o.cash_asset}${o.spec.price_is_maximum && !o.price_set ? " (maximum)" : ""}`),
        h("dt", {}, "Unit"), h("dd", { class: "num" }, `${o.spec.unit_shares} shares`),
        h("dt", {}, "Limit"), h("dd", { class: "num" }, `${o.spec.max_units} units per account`),
        h("dt", {}, "Fee"), h("dd", { class: "num" }, `${o.spec.fee_bps} bps`),
        h("dt", {}, "Method"), h("dd", {}, o.method),
        h("dt", {}, "Subscriptions"), h("dd", { class: "num" },
          `${o.active_subscriptions} (${o.active_units} units, ${group(o.frozen)} frozen)`)));
    if (o.phase === "OPEN" && !mine && !this.readOnly && this.account !== null) {
      card.append(this.subscribeForm(o));
    } else if (mine) {
      card.append(h("p", { class: "muted" }, `Subscribed: ${mine.units} units, ${mine.status}`));
    }
    if (o.draw) card.append(drawPanel(o));
    return card;
  }

  subscribeForm(o) {
    const input = h("input", { type: "number", min: 1, max: o.spec.max_units, step: 1,
                               value: 1, class: "units", "aria-label": `units of ${o.symbol}` });
    const freeze = h("div", { class: "freeze num" });
    const error = h("span", { class: "field-error", role: "alert",
                              "data-error-for": "units" });
    const update = () => {
      const n = Number.parseInt(input.value, 10);
      if (!Number.isInteger(n) || n < 1) {
        freeze.textContent = "";
        return;
      }
      const hold = holdFor(o, n);
      freeze.textContent = `Will freeze ${group(hold.total)} ${o.cash_asset}`
        + ` (${group(hold.notional)} + fee ${group(hold.fee)})`;
    };
    input.addEventListener("input", update);
    update();
    const form = h("form", { class: "subscribe", novalidate: true, onsubmit: async (e) => {
      e.preventDefault();
      error.textContent = "";
      try {
        await this.api.post(`/v1/ipo/offerings/${o.symbol}/subscriptions`, {
          account: this.account, units: Number.parseInt(input.value, 10),
          client_subscription_id: requestId("web"),
        });
        await this.refresh();
      } catch (err) {
        error.textContent = err.message;
      }
    } },
      h("label", { class: "field" }, h("span", {}, `Units (1–${o.spec.max_units})`), input, error),
      freeze, h("button", { type: "submit", class: "submit buy" }, "Subscribe"));
    return form;
  }
}

function drawPanel(o) {
  const d = o.draw;
  const parts = [h("h3", {}, "Draw result"),
    h("p", { class: "num" }, `${d.winners} winning numbers of ${d.units_subscribed} subscribed `
      + `(${d.units_offered} on offer)`)];
  if (d.tails && d.tails.length) {
    parts.push(h("p", {}, "Winning tails (a number wins if it ends with one of these):"),
      h("div", { class: "tails num" }, d.tails.map((t) => h("code", {}, String(t)))));
  }
  if (d.basis && d.basis.length) {
    parts.push(h("table", { class: "grid" },
      h("thead", {}, h("tr", {}, ...["Units applied", "Base", "Extra", "Winners"]
        .map((t) => h("th", {}, t)))),
      h("tbody", {}, d.basis.map((b) => h("tr", {},
        h("td", { class: "num" }, `${b.min_units}–${b.max_units}`),
        h("td", { class: "num" }, b.base_units), h("td", { class: "num" }, b.extra_units),
        h("td", { class: "num" }, b.winners))))));
  }
  parts.push(h("a", { href: "#verify", class: "link" }, "Verify the draw"));
  return h("div", { class: "draw" }, parts);
}

function verifyText() {
  return [
    h("p", {}, "Every unit subscribed gets one 12-digit allotment number, in subscription "
      + "order; the node records the SHA-256 of the numbering file. The lottery seed's SHA-256 "
      + "was committed when the offering was created, before anyone subscribed, and the seed "
      + "is revealed only after numbering: the draw's entropy is SHA-256 of the seed and the "
      + "numbering file's hash, so nobody could pick the result."),
    h("p", {}, "From the winning rate the draw publishes, per tail length, families of evenly "
      + "spaced winning tails; a number wins if its last digits equal a tail. Winners equal "
      + "the units on offer exactly. Recompute it from the published files:"),
    h("pre", {}, "openbell ipo verify-draw --offering offering.json \\\n"
      + "    --numbering numbering.csv --seed-file lottery_seed.hex --data DIR"),
    h("p", { class: "muted" }, "It prints VERIFIED (exit 0) or MISMATCH with the reasons. "
      + "The rule in full: docs/ipo_draw.md in the OpenBell repository."),
  ];
}
