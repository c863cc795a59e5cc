// DOM building without innerHTML (text is always text), and exact decimals.
//
// Money, prices and quantities arrive as decimal strings and are compared and summed exactly
// here (BigInt at a fixed scale), never as floats; only pixel geometry (bar widths, chart
// coordinates) turns them into numbers.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

export function scaleOf(text) {
  const dot = String(text).indexOf(".");
  return dot < 0 ? 0 : String(text).length - dot - 1;
}

// "101.25" at scale 3 -> 101250n
export function units(text, scale) {
  let s = String(text).trim();
  const negative = s.startsWith("-");
  if (negative) s = s.slice(1);
  const [whole, frac = ""] = s.split(".");
  const padded = (frac + "0".repeat(scale)).slice(0, scale);
  const value = BigInt(whole || "0") * 10n ** BigInt(scale) + BigInt(padded || "0");
  return negative ? -value : value;
}

export function fromUnits(value, scale) {
  const negative = value < 0n;
  let s = (negative ? -value : value).toString().padStart(scale + 1, "0");
  if (scale > 0) s = `${s.slice(0, -scale)}.${s.slice(-scale)}`;
  return negative ? `-${s}` : s;
}

export function cmp(a, b) {
  const scale = Math.max(scaleOf(a), scaleOf(b));
  const x = units(a, scale);
  const y = units(b, scale);
  return x < y ? -1 : x > y ? 1 : 0;
}

export function isZero(text) {
  return units(text, scaleOf(text)) === 0n;
}

// a decimal string shown with exactly `scale` digits after the point
export function fixed(text, scale) {
  if (text === null || text === undefined || text === "") return "—";
  return fromUnits(units(text, scale), scale);
}

// thousands separators on the whole part (display only)
export function group(text) {
  if (text === null || text === undefined) return "—";
  const [whole, frac] = String(text).split(".");
  const sign = whole.startsWith("-") ? "-" : "";
  const digits = sign ? whole.slice(1) : whole;
  const grouped = digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return sign + grouped + (frac !== undefined ? `.${frac}` : "");
}

// a number for geometry only (chart coordinates, bar widths)
export function geometry(text) {
  return Number(text);
}

export function clock(ms) {
  const d = new Date(ms);
  return d.toTimeString().slice(0, 8);
}

export function isoClock(iso) {
  return iso ? iso.slice(11, 19) : "—";
}

export function requestId(prefix) {
  const bytes = new Uint8Array(6);
  crypto.getRandomValues(bytes);
  return `${prefix}-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

// call fn at most once per animation frame
export function throttled(fn) {
  let pending = false;
  return () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      fn();
    });
  };
}
