// The trading screen: instrument picker, book ladder with depth bars, depth chart, candles with
// volume, trade tape, order entry, my open orders (cancel, replace), my fills and balances.
// Initial state over REST, everything after that from the WebSocket (no polling).

import { CandleChart, DepthChart } from "./charts.js";
import {
  clear, clock, cmp, fixed, fromUnits, geometry, group, h, isZero, isoClock, requestId,
  scaleOf, throttled, units,
} from "./util.js";

const LADDER_LEVELS = 12;
const ROW_PX = 20; // a ladder row's height (app.css .level)
const TAPE_ROWS = 40;
const FILL_ROWS = 50;
const PRICE_FIELDS = new Set(["INVALID_PRICE", "PRICE_OUT_OF_BAND", "POST_ONLY_WOULD_TAKE",
                              "NO_REFERENCE_PRICE", "NO_LIQUIDITY"]);
const QUANTITY_FIELDS = new Set(["INVALID_QUANTITY", "MAX_QUANTITY_EXCEEDED",
                                 "MAX_NOTIONAL_EXCEEDED", "INSUFFICIENT_FUNDS",
                                 "INSUFFICIENT_POSITION", "FOK_NOT_FILLABLE",
                                 "MAX_OPEN_ORDERS_EXCEEDED"]);

const ORDER_FIELDS = new Set(["INSTRUMENT_HALTED", "VENUE_HALTED", "WRONG_PHASE",
                              "ACCOUNT_SUSPENDED", "REDUCE_ONLY", "UNKNOWN_INSTRUMENT"]);

// which field of the order form an API error belongs to
export function errorField(error) {
  const text = `${error.code} ${error.message}`;
  if (ORDER_FIELDS.has(error.code)) return "order";
  if (/stop_price/.test(text)) return "stop";
  if (error.code === "INVALID_FIELD") {
    const match = /\$\.(\w+)/.exec(error.message);
    const name = match ? match[1] : "";
    if (name === "price") return "price";
    if (name === "quantity") return "quantity";
    return "order";
  }
  if (PRICE_FIELDS.has(error.code)) return "price";
  if (QUANTITY_FIELDS.has(error.code)) return "quantity";
  if (/\bquantity\b/i.test(error.message)) return "quantity"; // e.g. TOO_MANY_DECIMALS
  if (/\bprice\b/i.test(error.message)) return "price";
  return "order";
}

// an open order read over REST carries no status: it follows from what is filled
function orderStatus(o) {
  if (o.order_type === "STOP" || o.order_type === "STOP_LIMIT") return "PENDING_TRIGGER";
  return o.cum_quantity && !isZero(o.cum_quantity) ? "PARTIALLY_FILLED" : "NEW";
}

// the API's code in words, then its message: "Instrument halted: WEBCO"
export function describe(error) {
  const words = error.code.replaceAll("_", " ").toLowerCase();
  return `${words.charAt(0).toUpperCase()}${words.slice(1)}: ${error.message}`;
}

export class TradeScreen {
  constructor(root, api, feed, instruments, options) {
    this.root = root;
    this.api = api;
    this.feed = feed;
    this.readOnly = options.readOnly;
    this.instruments = new Map(instruments.map((i) => [i.symbol, i]));
    this.symbol = options.symbol || instruments[0]?.symbol;
    this.account = options.account;
    this.bids = new Map();
    this.asks = new Map();
    this.phase = "";
    this.venueHalted = false;
    this.tape = [];
    this.orders = new Map();
    this.fills = [];
    this.balances = new Map();
    this.dirtyBook = throttled(() => this.renderBook());
    this.dirtyCharts = throttled(() => this.candles.draw());
    this.build();
  }

  get inst() {
    return this.instruments.get(this.symbol);
  }

  get priceScale() {
    return scaleOf(this.inst.tick_size);
  }

  get qtyScale() {
    return scaleOf(this.inst.lot_quantity);
  }

  // -- layout ----------------------------------------------------------------------------
  build() {
    const picker = h("select", { id: "instrument", "aria-label": "instrument",
                                 onchange: (e) => this.select(e.target.value) },
      [...this.instruments.keys()].map((s) => h("option", { value: s, selected: s === this.symbol }, s)));
    this.lastEl = h("span", { class: "last num", id: "last-price" }, "—");
    this.phaseEl = h("span", { class: "badge", id: "phase" }, "");
    this.statusEl = h("div", { class: "market-status", id: "market-status", hidden: true });
    const header = h("div", { class: "panel instrument-bar" },
      picker, this.lastEl, this.phaseEl,
      h("span", { class: "muted", id: "instrument-info" }), this.statusEl);
    this.infoEl = header.querySelector("#instrument-info");

    this.asksEl = h("div", { class: "ladder-side asks" });
    this.bidsEl = h("div", { class: "ladder-side bids" });
    this.spreadEl = h("div", { class: "spread num" });
    const book = h("section", { class: "panel book", id: "book", "aria-label": "order book" },
      h("h2", {}, "Order book"),
      h("div", { class: "ladder-head" }, h("span", {}, "Price"), h("span", {}, "Quantity"),
        h("span", {}, "Total")),
      this.asksEl, this.spreadEl, this.bidsEl);

    this.chartBox = h("div", { class: "chart-box" });
    const chart = h("section", { class: "panel chart", "aria-label": "price chart" },
      h("h2", {}, "Price · 1m candles"), this.chartBox);
    this.depthBox = h("div", { class: "chart-box" });
    const depth = h("section", { class: "panel depth", "aria-label": "depth chart" },
      h("h2", {}, "Depth"), this.depthBox);

    this.tapeEl = h("tbody");
    const tape = h("section", { class: "panel tape", id: "tape", "aria-label": "trade tape" },
      h("h2", {}, "Trades"),
      h("div", { class: "scroll" }, h("table", { class: "grid" },
        h("thead", {}, h("tr", {}, h("th", {}, "Price"), h("th", {}, "Qty"), h("th", {}, "Time"))),
        this.tapeEl)));

    const entry = this.buildEntry();

    this.balancesEl = h("tbody");
    const balances = h("section", { class: "panel balances", id: "balances",
                                    "aria-label": "balances" },
      h("h2", {}, `Balances · account ${this.account ?? "—"}`),
      h("table", { class: "grid" },
        h("thead", {}, h("tr", {}, h("th", {}, "Asset"), h("th", {}, "Available"),
          h("th", {}, "Frozen"))),
        this.balancesEl));

    this.ordersEl = h("tbody");
    const orders = h("section", { class: "panel orders", id: "orders", "aria-label": "my open orders" },
      h("h2", {}, "My open orders"),
      h("div", { class: "scroll" }, h("table", { class: "grid" },
        h("thead", {}, h("tr", {}, ...["Id", "Symbol", "Side", "Type", "Price", "Qty", "Filled",
          "Status", ""].map((t) => h("th", {}, t)))),
        this.ordersEl)));

    this.fillsEl = h("tbody");
    const fills = h("section", { class: "panel fills", id: "fills", "aria-label": "my fills" },
      h("h2", {}, "My fills"),
      h("div", { class: "scroll" }, h("table", { class: "grid" },
        h("thead", {}, h("tr", {}, ...["Time", "Symbol", "Side", "Price", "Qty", "Fee", "Liq."]
          .map((t) => h("th", {}, t)))),
        this.fillsEl)));

    clear(this.root, h("div", { class: "trade-grid" },
      header, book, chart, entry, tape, depth, balances, orders, fills));
    this.candles = new CandleChart(this.chartBox);
    this.depth = new DepthChart(this.depthBox);
    // the ladder shows as many levels as fit: a new size re-renders it
    new ResizeObserver(() => this.dirtyBook()).observe(this.bidsEl);
  }

  buildEntry() {
    const field = (name, label, input) =>
      h("label", { class: "field", dataset: { field: name } },
        h("span", {}, label), input,
        h("span", { class: "field-error", role: "alert", "data-error-for": name }));
    this.side = "BUY";
    this.buyBtn = h("button", { type: "button", class: "side buy active", id: "side-buy",
                                onclick: () => this.setSide("BUY") }, "Buy");
    this.sellBtn = h("button", { type: "button", class: "side sell", id: "side-sell",
                                 onclick: () => this.setSide("SELL") }, "Sell");
    this.typeEl = h("select", { id: "order-type", onchange: () => this.syncForm() },
      h("option", { value: "LIMIT" }, "Limit"),
      h("option", { value: "MARKET" }, "Market"),
      h("option", { value: "STOP" }, "Stop (market)"),
      h("option", { value: "STOP_LIMIT" }, "Stop-limit"));
    this.tifEl = h("select", { id: "tif" },
      ...["GTC", "DAY", "IOC", "FOK"].map((t) => h("option", { value: t }, t)));
    this.priceEl = h("input", { id: "price", inputmode: "decimal", autocomplete: "off",
                                placeholder: "0.00" });
    this.stopEl = h("input", { id: "stop-price", inputmode: "decimal", autocomplete: "off" });
    this.qtyEl = h("input", { id: "quantity", inputmode: "decimal", autocomplete: "off",
                              placeholder: "0" });
    this.postOnlyEl = h("input", { type: "checkbox", id: "post-only" });
    this.submitEl = h("button", { type: "submit", class: "submit buy", id: "place-order" },
      "Buy");
    this.entryNote = h("div", { class: "note", id: "entry-note" });
    const form = h("form", { class: "entry-form", id: "order-form", novalidate: true,
                             onsubmit: (e) => { e.preventDefault(); this.place(); } },
      h("div", { class: "sides" }, this.buyBtn, this.sellBtn),
      h("div", { class: "row2" }, field("type", "Type", this.typeEl), field("tif", "Time in force",
        this.tifEl)),
      this.priceField = field("price", "Price", this.priceEl),
      this.stopField = field("stop", "Stop price", this.stopEl),
      field("quantity", "Quantity", this.qtyEl),
      h("label", { class: "check" }, this.postOnlyEl, " Post-only (maker only)"),
      h("div", { class: "field", dataset: { field: "order" } }, this.submitEl,
        h("span", { class: "field-error", role: "alert", "data-error-for": "order" })),
      this.entryNote);
    this.form = form;
    const section = h("section", { class: "panel entry", id: "entry", "aria-label": "order entry" },
      h("h2", {}, "Place order"), form);
    if (this.readOnly) {
      for (const el of form.querySelectorAll("input, select, button")) el.disabled = true;
      this.entryNote.textContent = "Read-only: this key may not trade.";
    }
    this.syncForm();
    return section;
  }

  setSide(side) {
    this.side = side;
    this.buyBtn.classList.toggle("active", side === "BUY");
    this.sellBtn.classList.toggle("active", side === "SELL");
    this.submitEl.classList.toggle("buy", side === "BUY");
    this.submitEl.classList.toggle("sell", side === "SELL");
    this.syncForm();
  }

  syncForm() {
    const type = this.typeEl.value;
    this.priceField.hidden = !(type === "LIMIT" || type === "STOP_LIMIT");
    this.stopField.hidden = !(type === "STOP" || type === "STOP_LIMIT");
    this.submitEl.textContent = `${this.side === "BUY" ? "Buy" : "Sell"} ${this.symbol ?? ""}`;
  }

  // -- data --------------------------------------------------------------------------------
  async start() {
    if (this.account !== null && this.account !== undefined) {
      this.feed.account(this.account);
    }
    await this.select(this.symbol);
    if (this.account !== null && this.account !== undefined) {
      await Promise.all([this.loadOrders(), this.loadFills(), this.loadBalances()]);
    }
  }

  async select(symbol) {
    this.symbol = symbol;
    this.bids.clear();
    this.asks.clear();
    this.tape = [];
    this.syncForm();
    const inst = this.inst;
    this.infoEl.textContent = `${inst.base_asset}/${inst.quote_asset} · tick ${inst.tick_size} · lot ${inst.lot_quantity}`;
    this.priceEl.placeholder = inst.tick_size;
    this.qtyEl.placeholder = inst.lot_quantity;
    this.setPhase(inst.phase);
    this.lastEl.textContent = inst.last_price ?? "—";
    this.feed.book(symbol);
    this.renderTape();
    const [trades, candles] = await Promise.all([
      this.api.get(`/v1/history/trades/${symbol}`, { limit: TAPE_ROWS }).catch(() => null),
      this.api.get(`/v1/history/candles/${symbol}`, { interval: "1m", limit: 240 }).catch(() => null),
    ]);
    if (symbol !== this.symbol) return;
    if (trades) {
      const items = trades.items || trades.trades || [];
      const seen = new Set(this.tape.map((t) => t.trade_id));
      for (const t of items) {
        if (!seen.has(t.trade_id)) {
          this.tape.push({ trade_id: t.trade_id, price: t.price, quantity: t.quantity,
                           aggressor: t.aggressor, time: isoClock(t.at) });
        }
      }
      this.tape.sort((a, b) => b.trade_id - a.trade_id).splice(TAPE_ROWS);
      this.renderTape();
    }
    if (candles) {
      this.candles.set(candles.items.map((c) => ({
        t: Date.parse(c.open_time), open: c.open, high: c.high, low: c.low, close: c.close,
        volumeN: geometry(c.volume),
      })));
    }
  }

  // after a WebSocket reconnect (the book comes back as a new snapshot by itself)
  async resync() {
    if (this.account !== null && this.account !== undefined) {
      await Promise.all([this.loadOrders(), this.loadFills(), this.loadBalances()]);
    }
  }

  async loadOrders() {
    const orders = await this.api.get("/v1/orders", { account: this.account });
    this.orders.clear();
    for (const o of orders) this.orders.set(o.order_id, o);
    this.renderOrders();
  }

  async loadFills() {
    try {
      const answer = await this.api.get(`/v1/history/accounts/${this.account}/fills`,
                                        { limit: FILL_ROWS });
      const live = this.fills;
      this.fills = answer.items.map((f) => ({ ...f, time: isoClock(f.at) }));
      for (const f of live) if (!this.fills.some((x) => x.key === f.key)) this.fills.unshift(f);
      this.renderFills();
    } catch {
      /* the read model is optional for the screen */
    }
  }

  async loadBalances() {
    const answer = await this.api.get(`/v1/accounts/${this.account}/balances`);
    for (const b of answer.balances) this.balances.set(b.asset, b);
    this.renderBalances();
  }

  // -- the feed ----------------------------------------------------------------------------
  onMessage(m) {
    switch (m.type) {
      case "snapshot":
        if (m.symbol !== this.symbol) return;
        this.bids = new Map(m.bids);
        this.asks = new Map(m.asks);
        if (m.phase) this.setPhase(m.phase);
        this.dirtyBook();
        break;
      case "delta":
        if (m.symbol !== this.symbol) return;
        {
          const side = m.side === "BUY" ? this.bids : this.asks;
          if (isZero(m.quantity)) side.delete(m.price);
          else side.set(m.price, m.quantity);
        }
        this.dirtyBook();
        break;
      case "trade":
        if (m.symbol !== this.symbol) return;
        this.tape.unshift({ trade_id: m.trade_id, price: m.price, quantity: m.quantity,
                            aggressor: m.aggressor, time: clock(this.api.now()) });
        this.tape.splice(TAPE_ROWS);
        this.lastEl.textContent = m.price;
        this.lastEl.className = `last num ${m.aggressor === "SELL" ? "down" : "up"}`;
        this.candles.trade(this.api.now(), m.price, m.quantity);
        this.renderTape();
        this.dirtyCharts();
        break;
      case "phase":
        if (m.symbol === this.symbol) this.setPhase(m.phase);
        this.instruments.get(m.symbol).phase = m.phase;
        break;
      case "venue":
        this.venueHalted = m.halted;
        this.setPhase(this.phase);
        break;
      case "OrderAccepted":
        this.orders.set(m.order_id, {
          order_id: m.order_id, account: m.account, symbol: m.symbol, side: m.side,
          order_type: m.order_type, tif: m.tif, price: m.price, quantity: m.quantity,
          stop_price: m.stop_price, status: m.status, cum_quantity: "0",
          leaves_quantity: m.quantity,
        });
        this.renderOrders();
        break;
      case "Execution":
        this.onExecution(m);
        break;
      case "OrderCancelled":
      case "OrderExpired":
        if (m.type === "OrderCancelled" && m.leaves_quantity && !isZero(m.leaves_quantity)) {
          const o = this.orders.get(m.order_id);
          if (o) o.leaves_quantity = m.leaves_quantity;
        } else {
          this.orders.delete(m.order_id);
        }
        this.renderOrders();
        break;
      case "OrderReplaced":
        {
          const o = this.orders.get(m.order_id);
          if (o) Object.assign(o, { price: m.price, quantity: m.quantity,
                                    leaves_quantity: m.leaves_quantity });
        }
        this.renderOrders();
        break;
      case "BalanceChanged":
        if (m.account === this.account) {
          this.balances.set(m.asset, { asset: m.asset, available: m.available, frozen: m.frozen });
          this.renderBalances();
        }
        break;
      default:
        break;
    }
  }

  onExecution(m) {
    const o = this.orders.get(m.order_id);
    if (m.last_quantity && !isZero(m.last_quantity)) {
      this.fills.unshift({
        key: `${m.seq}:${m.order_id}`, symbol: o ? o.symbol : "", side: o ? o.side : "",
        price: m.last_price, quantity: m.last_quantity, fee: null, liquidity: "", time:
        clock(this.api.now()),
      });
      this.fills.splice(FILL_ROWS);
      this.renderFills();
    }
    if (o) {
      o.status = m.status;
      o.cum_quantity = m.cum_quantity;
      o.leaves_quantity = m.leaves_quantity;
      if (m.status === "FILLED" || isZero(m.leaves_quantity)) this.orders.delete(m.order_id);
      this.renderOrders();
    }
  }

  setPhase(phase) {
    this.phase = phase;
    const halted = this.venueHalted || phase === "HALTED";
    this.phaseEl.textContent = this.venueHalted ? "VENUE HALTED" : phase.replace("_", " ");
    this.phaseEl.className = `badge phase-${halted ? "halted" : phase.toLowerCase()}`;
    this.statusEl.hidden = phase === "CONTINUOUS" && !this.venueHalted;
    this.statusEl.textContent = halted
      ? "Trading halted: orders are refused, cancels accepted"
      : phase === "PRE_OPEN" ? "Call auction: orders rest until the uncross"
      : phase === "CLOSED" ? "Market closed" : "";
  }

  // -- rendering ---------------------------------------------------------------------------
  renderBook() {
    const qs = this.qtyScale;
    // as many levels as the ladder has room for (rows are ROW_PX high)
    const room = (el) => Math.max(3, Math.floor(el.clientHeight / ROW_PX)) || LADDER_LEVELS;
    const bids = [...this.bids].sort((a, b) => cmp(b[0], a[0])).slice(0, room(this.bidsEl));
    const asks = [...this.asks].sort((a, b) => cmp(a[0], b[0])).slice(0, room(this.asksEl));
    const cumulate = (levels) => {
      let total = 0n;
      return levels.map(([p, q]) => {
        total += units(q, qs);
        return [p, q, total];
      });
    };
    const bidRows = cumulate(bids);
    const askRows = cumulate(asks);
    const maxTotal = [...bidRows, ...askRows].reduce((m, r) => (r[2] > m ? r[2] : m), 1n);
    const row = (side) => ([p, q, total]) => {
      const bar = h("div", { class: "bar" });
      bar.style.width = `${(Number((total * 1000n) / maxTotal) / 10).toFixed(1)}%`;
      return h("div", { class: `level ${side}`, dataset: { price: p },
                        onclick: () => { this.priceEl.value = p; } },
        bar, h("span", { class: "px num" }, p), h("span", { class: "num" }, q),
        h("span", { class: "num muted" }, fromUnits(total, qs)));
    };
    clear(this.asksEl, askRows.slice().reverse().map(row("ask")));
    clear(this.bidsEl, bidRows.map(row("bid")));
    if (bids.length && asks.length) {
      const ps = this.priceScale;
      const spread = units(asks[0][0], ps) - units(bids[0][0], ps);
      clear(this.spreadEl, h("span", {}, "Spread "), h("span", { class: "num" }, fromUnits(spread, ps)));
    } else {
      clear(this.spreadEl, h("span", { class: "muted" }, "—"));
    }
    const depthOf = (rows) => rows.map(([p, , total]) => [p, geometry(fromUnits(total, qs))]);
    this.depth.set(depthOf(bidRows).reverse(), depthOf(askRows));
  }

  renderTape() {
    clear(this.tapeEl, this.tape.map((t) =>
      h("tr", { class: t.aggressor === "SELL" ? "down" : "up" },
        h("td", { class: "num px" }, t.price), h("td", { class: "num" }, t.quantity),
        h("td", { class: "num muted" }, t.time))));
  }

  renderOrders() {
    const rows = [...this.orders.values()].sort((a, b) => b.order_id - a.order_id);
    clear(this.ordersEl, rows.length ? rows.map((o) => this.orderRow(o))
      : h("tr", {}, h("td", { colspan: 9, class: "muted empty" }, "No open orders")));
  }

  orderRow(o) {
    const actions = h("td", { class: "actions" });
    const row = h("tr", { dataset: { orderId: o.order_id } },
      h("td", { class: "num" }, o.order_id), h("td", {}, o.symbol),
      h("td", { class: o.side === "BUY" ? "up" : "down" }, o.side),
      h("td", {}, `${o.order_type}${o.tif ? " " + o.tif : ""}`),
      h("td", { class: "num" }, o.price ?? o.stop_price ?? "MKT"),
      h("td", { class: "num" }, o.quantity), h("td", { class: "num" }, o.cum_quantity ?? "0"),
      h("td", {}, o.status ?? orderStatus(o)), actions);
    if (!this.readOnly) {
      actions.append(
        h("button", { type: "button", class: "small", title: "Replace",
                      onclick: () => this.editOrder(o, row) }, "Replace"),
        h("button", { type: "button", class: "small danger", title: "Cancel",
                      onclick: () => this.cancel(o, row) }, "Cancel"));
    }
    return row;
  }

  editOrder(o, row) {
    const price = h("input", { class: "inline", value: o.price ?? "", "aria-label": "new price" });
    const qty = h("input", { class: "inline", value: o.leaves_quantity ?? o.quantity,
                             "aria-label": "new quantity" });
    const error = h("div", { class: "field-error", role: "alert" });
    const save = h("button", { type: "button", class: "small", onclick: async () => {
      try {
        await this.api.post(`/v1/orders/${o.order_id}/replace`,
          { price: price.value.trim(), quantity: qty.value.trim(), request_id: requestId("rpl") });
      } catch (e) {
        error.textContent = e.message;
      }
    } }, "Save");
    clear(row.lastChild, price, qty, save,
      h("button", { type: "button", class: "small", onclick: () => this.renderOrders() }, "×"),
      error);
  }

  async cancel(o, row) {
    try {
      await this.api.del(`/v1/orders/${o.order_id}`, { request_id: requestId("cxl") });
    } catch (e) {
      row.lastChild.append(h("div", { class: "field-error" }, e.message));
    }
  }

  renderFills() {
    clear(this.fillsEl, this.fills.map((f) =>
      h("tr", {}, h("td", { class: "num muted" }, f.time), h("td", {}, f.symbol),
        h("td", { class: f.side === "BUY" ? "up" : "down" }, f.side),
        h("td", { class: "num" }, f.price), h("td", { class: "num" }, f.quantity),
        h("td", { class: "num" }, f.fee ?? "—"), h("td", {}, (f.liquidity || "").slice(0, 1)))));
  }

  renderBalances() {
    const rows = [...this.balances.values()]
      .filter((b) => !isZero(b.available) || !isZero(b.frozen))
      .sort((a, b) => a.asset.localeCompare(b.asset));
    clear(this.balancesEl, rows.map((b) =>
      h("tr", { dataset: { asset: b.asset } }, h("td", {}, b.asset),
        h("td", { class: "num", dataset: { col: "available" } }, group(b.available)),
        h("td", { class: "num", dataset: { col: "frozen" } }, group(b.frozen)))));
  }

  // -- actions -----------------------------------------------------------------------------
  clearErrors() {
    for (const el of this.form.querySelectorAll(".field-error")) el.textContent = "";
    for (const el of this.form.querySelectorAll(".field")) el.classList.remove("invalid");
  }

  showError(error) {
    const name = errorField(error);
    const slot = this.form.querySelector(`[data-error-for="${name}"]`);
    slot.textContent = describe(error);
    slot.closest(".field").classList.add("invalid");
  }

  async place() {
    this.clearErrors();
    const type = this.typeEl.value;
    const body = {
      account: this.account, symbol: this.symbol, side: this.side,
      quantity: this.qtyEl.value.trim(), order_type: type, tif: this.tifEl.value,
      post_only: this.postOnlyEl.checked, request_id: requestId("web"),
    };
    if (type === "LIMIT" || type === "STOP_LIMIT") body.price = this.priceEl.value.trim();
    if (type === "STOP" || type === "STOP_LIMIT") body.stop_price = this.stopEl.value.trim();
    this.submitEl.disabled = true;
    try {
      const answer = await this.api.post("/v1/orders", body);
      this.entryNote.textContent = answer.order_id
        ? `Order ${answer.order_id} accepted (seq ${answer.seq})`
        : `Done (seq ${answer.seq})`;
    } catch (error) {
      this.entryNote.textContent = "";
      this.showError(error);
    } finally {
      this.submitEl.disabled = false;
    }
  }
}

export { fixed };
