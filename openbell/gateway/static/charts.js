// Small canvas charts: OHLCV candles with volume, and the book's depth. Values arrive as
// decimal strings; they become numbers here for pixel geometry only.

import { geometry } from "./util.js";

const COLORS = {
  up: "#26a69a",
  down: "#ef5350",
  grid: "#1e2633",
  text: "#7d8799",
  upFill: "rgba(38,166,154,0.22)",
  downFill: "rgba(239,83,80,0.22)",
  last: "#f0b90b",
};

class Canvas {
  constructor(parent) {
    this.canvas = document.createElement("canvas");
    parent.append(this.canvas);
    this.ctx = this.canvas.getContext("2d");
    this.width = 0;
    this.height = 0;
    new ResizeObserver(() => this.resize()).observe(parent);
    this.resize();
  }

  resize() {
    const box = this.canvas.parentElement.getBoundingClientRect();
    const ratio = window.devicePixelRatio || 1;
    this.width = Math.max(100, Math.floor(box.width));
    this.height = Math.max(80, Math.floor(box.height));
    this.canvas.width = this.width * ratio;
    this.canvas.height = this.height * ratio;
    this.canvas.style.width = `${this.width}px`;
    this.canvas.style.height = `${this.height}px`;
    this.ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    this.draw();
  }

  draw() {}

  clear() {
    this.ctx.clearRect(0, 0, this.width, this.height);
    this.ctx.font = "11px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace";
  }

  message(text) {
    this.ctx.fillStyle = COLORS.text;
    this.ctx.textAlign = "center";
    this.ctx.fillText(text, this.width / 2, this.height / 2);
    this.ctx.textAlign = "left";
  }
}

// candles: [{t (ms), open, high, low, close, volume}] with decimal strings
export class CandleChart extends Canvas {
  constructor(parent) {
    super(parent);
    this.candles = [];
    this.intervalMs = 60_000;
  }

  set(candles) {
    this.candles = candles.slice(-240);
    this.draw();
  }

  // a live trade: update the last candle or start one
  trade(timeMs, price, quantity) {
    const bucket = Math.floor(timeMs / this.intervalMs) * this.intervalMs;
    const last = this.candles[this.candles.length - 1];
    if (last && last.t === bucket) {
      if (geometry(price) > geometry(last.high)) last.high = price;
      if (geometry(price) < geometry(last.low)) last.low = price;
      last.close = price;
      last.volumeN += geometry(quantity);
    } else if (!last || bucket > last.t) {
      this.candles.push({ t: bucket, open: price, high: price, low: price, close: price,
                          volumeN: geometry(quantity) });
      if (this.candles.length > 240) this.candles.shift();
    }
  }

  draw() {
    if (!this.ctx || !this.candles) return; // (the base constructor draws before the fields)
    this.clear();
    const ctx = this.ctx;
    const candles = this.candles;
    if (!candles.length) {
      this.message("no trades yet");
      return;
    }
    const axis = 64;
    const plotW = this.width - axis;
    const volH = Math.floor(this.height * 0.2);
    const priceH = this.height - volH - 18;
    const step = Math.max(3, Math.min(14, plotW / Math.max(candles.length, 40)));
    const shown = candles.slice(-Math.floor(plotW / step));
    let hi = -Infinity;
    let lo = Infinity;
    let vmax = 0;
    for (const c of shown) {
      hi = Math.max(hi, geometry(c.high));
      lo = Math.min(lo, geometry(c.low));
      vmax = Math.max(vmax, c.volumeN);
    }
    if (hi === lo) {
      hi += 1;
      lo -= 1;
    }
    const pad = (hi - lo) * 0.08;
    hi += pad;
    lo -= pad;
    const y = (p) => 6 + ((hi - geometry(p)) / (hi - lo)) * (priceH - 6);
    // grid and price axis
    ctx.strokeStyle = COLORS.grid;
    ctx.fillStyle = COLORS.text;
    ctx.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const py = 6 + (i / 4) * (priceH - 6);
      ctx.beginPath();
      ctx.moveTo(0, Math.round(py) + 0.5);
      ctx.lineTo(plotW, Math.round(py) + 0.5);
      ctx.stroke();
      const value = hi - (i / 4) * (hi - lo);
      ctx.fillText(value.toFixed(2), plotW + 6, py + 4);
    }
    const x0 = plotW - shown.length * step;
    shown.forEach((c, i) => {
      const up = geometry(c.close) >= geometry(c.open);
      const cx = x0 + i * step + step / 2;
      ctx.strokeStyle = up ? COLORS.up : COLORS.down;
      ctx.fillStyle = up ? COLORS.up : COLORS.down;
      ctx.beginPath();
      ctx.moveTo(Math.round(cx) + 0.5, y(c.high));
      ctx.lineTo(Math.round(cx) + 0.5, y(c.low));
      ctx.stroke();
      const top = y(up ? c.close : c.open);
      const bottom = y(up ? c.open : c.close);
      ctx.fillRect(cx - step * 0.35, top, Math.max(1, step * 0.7), Math.max(1, bottom - top));
      const vh = vmax > 0 ? (c.volumeN / vmax) * (volH - 4) : 0;
      ctx.fillStyle = up ? COLORS.upFill : COLORS.downFill;
      ctx.fillRect(cx - step * 0.35, this.height - 18 - vh, Math.max(1, step * 0.7), vh);
    });
    // last price line
    const last = shown[shown.length - 1];
    const ly = y(last.close);
    ctx.strokeStyle = COLORS.last;
    ctx.setLineDash([3, 3]);
    ctx.beginPath();
    ctx.moveTo(0, ly);
    ctx.lineTo(plotW, ly);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = COLORS.last;
    ctx.fillRect(plotW + 2, ly - 8, axis - 4, 16);
    ctx.fillStyle = "#0b0e13";
    ctx.fillText(last.close, plotW + 6, ly + 4);
    // time axis
    ctx.fillStyle = COLORS.text;
    const every = Math.max(1, Math.ceil(70 / step));
    shown.forEach((c, i) => {
      if (i % every === 0) {
        ctx.fillText(new Date(c.t).toTimeString().slice(0, 5), x0 + i * step, this.height - 4);
      }
    });
  }
}

// bids / asks: [[price, cumulative quantity as a number]] best first
export class DepthChart extends Canvas {
  constructor(parent) {
    super(parent);
    this.bids = [];
    this.asks = [];
  }

  set(bids, asks) {
    this.bids = bids;
    this.asks = asks;
    this.draw();
  }

  draw() {
    if (!this.ctx || !this.bids) return;
    this.clear();
    const ctx = this.ctx;
    const { bids, asks } = this;
    if (!bids.length && !asks.length) {
      this.message("empty book");
      return;
    }
    const prices = [...bids, ...asks].map(([p]) => geometry(p));
    let lo = Math.min(...prices);
    let hi = Math.max(...prices);
    if (bids.length && asks.length) {
      // symmetric around the mid, so one far order on one side does not squash the other
      const mid = (geometry(bids[bids.length - 1][0]) + geometry(asks[0][0])) / 2;
      const half = Math.min(mid - lo, hi - mid) || Math.max(mid - lo, hi - mid);
      lo = mid - half;
      hi = mid + half;
    }
    if (hi === lo) {
      hi += 1;
      lo -= 1;
    }
    const qmax = Math.max(1e-9, ...bids.map(([, q]) => q), ...asks.map(([, q]) => q));
    const h = this.height - 18;
    const x = (p) => ((geometry(p) - lo) / (hi - lo)) * (this.width - 8) + 4;
    const y = (q) => h - (q / qmax) * (h - 8);
    const side = (levels, line, fill) => {
      if (!levels.length) return;
      ctx.beginPath();
      ctx.moveTo(x(levels[0][0]), h);
      for (const [p, q] of levels) ctx.lineTo(x(p), y(q));
      ctx.lineTo(x(levels[levels.length - 1][0]), h);
      ctx.closePath();
      ctx.fillStyle = fill;
      ctx.fill();
      ctx.beginPath();
      levels.forEach(([p, q], i) => (i ? ctx.lineTo(x(p), y(q)) : ctx.moveTo(x(p), y(q))));
      ctx.strokeStyle = line;
      ctx.lineWidth = 1.5;
      ctx.stroke();
    };
    ctx.save();
    ctx.beginPath();
    ctx.rect(0, 0, this.width, h);
    ctx.clip();
    side(bids, COLORS.up, COLORS.upFill);
    side(asks, COLORS.down, COLORS.downFill);
    ctx.restore();
    ctx.fillStyle = COLORS.text;
    ctx.fillText(lo.toFixed(2), 4, this.height - 4);
    ctx.textAlign = "right";
    ctx.fillText(hi.toFixed(2), this.width - 4, this.height - 4);
    ctx.textAlign = "left";
  }
}
