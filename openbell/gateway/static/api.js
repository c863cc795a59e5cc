// The gateway's API from the browser: requests signed with WebCrypto HMAC-SHA256 exactly as
// the Python SDK signs them (openbell/gateway/auth.py), and the WebSocket, which a browser
// cannot give handshake headers: its first message is a signed "auth" (openbell/gateway/ws.py).
//
// Signature: hex HMAC-SHA256 keyed with sha256(secret), over
//   METHOD \n PATH \n QUERY \n TS \n NONCE \n hex(sha256(BODY))
// The secret stays in this tab: in memory, and in sessionStorage only when asked to.

const enc = new TextEncoder();
const STORE = "openbell.session";

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
}

function nonce() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return hex(bytes);
}

export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.message ? body.message : `HTTP ${status}`);
    this.status = status;
    this.code = (body && body.code) || "HTTP_ERROR";
    this.body = body || {};
  }
}

export class Api {
  constructor() {
    this.keyId = "";
    this.hmacKey = null;
    this.clockOffsetMs = 0; // server minus browser, learned from /v1/time
    this.session = null; // {key_id, role, accounts}
  }

  get signedIn() {
    return this.hmacKey !== null;
  }

  async signIn(keyId, secret, remember) {
    if (!window.crypto || !crypto.subtle) {
      throw new ApiError(0, {
        code: "INSECURE_CONTEXT",
        message: "signing needs WebCrypto: open the venue over https or on 127.0.0.1",
      });
    }
    const digest = await crypto.subtle.digest("SHA-256", enc.encode(secret));
    this.hmacKey = await crypto.subtle.importKey(
      "raw", digest, { name: "HMAC", hash: "SHA-256" }, false, ["sign"],
    );
    this.keyId = keyId;
    await this.syncClock();
    try {
      this.session = await this.get("/v1/session");
    } catch (error) {
      this.signOut();
      throw error;
    }
    if (remember) sessionStorage.setItem(STORE, JSON.stringify({ keyId, secret }));
    return this.session;
  }

  async resume() {
    const saved = sessionStorage.getItem(STORE);
    if (!saved) return null;
    try {
      const { keyId, secret } = JSON.parse(saved);
      return await this.signIn(keyId, secret, true);
    } catch {
      sessionStorage.removeItem(STORE);
      return null;
    }
  }

  signOut() {
    this.keyId = "";
    this.hmacKey = null;
    this.session = null;
    sessionStorage.removeItem(STORE);
  }

  async syncClock() {
    try {
      const before = Date.now();
      const answer = await this.request("GET", "/v1/time", null, null, false);
      const after = Date.now();
      this.clockOffsetMs = answer.epoch_ms - Math.round((before + after) / 2);
    } catch {
      this.clockOffsetMs = 0;
    }
  }

  now() {
    return Date.now() + this.clockOffsetMs;
  }

  async sign(method, path, query, body) {
    const ts = String(this.now());
    const n = nonce();
    const bodyHash = hex(await crypto.subtle.digest("SHA-256", enc.encode(body)));
    const message = [method.toUpperCase(), path, query, ts, n, bodyHash].join("\n");
    const signature = hex(await crypto.subtle.sign("HMAC", this.hmacKey, enc.encode(message)));
    return { key: this.keyId, ts, nonce: n, signature };
  }

  async request(method, path, params = null, json = null, signed = true) {
    const query = params
      ? new URLSearchParams(
          Object.entries(params).filter(([, v]) => v !== null && v !== undefined),
        ).toString()
      : "";
    const body = json === null ? "" : JSON.stringify(json);
    const headers = { "Content-Type": "application/json" };
    if (signed && this.hmacKey) {
      const s = await this.sign(method, path, query, body);
      headers["OB-KEY"] = s.key;
      headers["OB-TS"] = s.ts;
      headers["OB-NONCE"] = s.nonce;
      headers["OB-SIGNATURE"] = s.signature;
    }
    const response = await fetch(query ? `${path}?${query}` : path, {
      method,
      headers,
      body: json === null ? undefined : body,
      credentials: "omit",
      cache: "no-store",
    });
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = { code: "BAD_ANSWER", message: text.slice(0, 200) };
    }
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  get(path, params = null) {
    return this.request("GET", path, params);
  }

  post(path, json) {
    return this.request("POST", path, null, json);
  }

  del(path, params = null) {
    return this.request("DELETE", path, params);
  }
}

// One WebSocket per screen: signs in with its first message when the Api is signed in, then
// (re)subscribes; reconnects after a drop with a back-off; gaps in a book's seq resubscribe.
export class Feed {
  constructor(api, onMessage, onState) {
    this.api = api;
    this.onMessage = onMessage;
    this.onState = onState || (() => {});
    this.books = new Set();
    this.accounts = new Set();
    this.ws = null;
    this.ready = false;
    this.closed = false;
    this.retryMs = 500;
    this.seq = new Map();
  }

  open() {
    this.closed = false;
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/ws`;
    const ws = new WebSocket(url);
    this.ws = ws;
    this.onState("connecting");
    ws.onopen = async () => {
      if (this.api.signedIn) {
        ws.send(JSON.stringify({ op: "auth", ...(await this.api.sign("GET", "/v1/ws", "", "")) }));
      } else {
        this.subscribeAll();
      }
    };
    ws.onmessage = (frame) => {
      const message = JSON.parse(frame.data);
      if (message.type === "authenticated") {
        this.subscribeAll();
        return;
      }
      if (message.type === "snapshot") this.seq.set(message.symbol, message.seq);
      if ((message.type === "delta" || message.type === "trade") && this.seq.has(message.symbol)) {
        const expected = this.seq.get(message.symbol) + 1;
        if (message.seq !== expected) {
          this.seq.delete(message.symbol); // lost a message: a new snapshot
          this.send({ op: "unsubscribe", channel: "book", symbol: message.symbol });
          this.send({ op: "subscribe", channel: "book", symbol: message.symbol });
          return;
        }
        this.seq.set(message.symbol, message.seq);
      }
      this.onMessage(message);
    };
    ws.onclose = (event) => {
      this.ready = false;
      if (this.ws !== ws) return;
      this.onState(`disconnected${event.reason ? ": " + event.reason : ""}`);
      if (!this.closed) {
        setTimeout(() => this.open(), this.retryMs);
        this.retryMs = Math.min(this.retryMs * 2, 8000);
      }
    };
  }

  subscribeAll() {
    this.ready = true;
    this.retryMs = 500;
    this.onState("live");
    this.seq.clear();
    for (const symbol of this.books) this.send({ op: "subscribe", channel: "book", symbol });
    for (const account of this.accounts) this.send({ op: "subscribe", channel: "account", account });
  }

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN && this.ready) {
      this.ws.send(JSON.stringify(message));
    }
  }

  book(symbol) {
    for (const old of this.books) {
      if (old !== symbol) {
        this.send({ op: "unsubscribe", channel: "book", symbol: old });
        this.seq.delete(old);
      }
    }
    this.books = new Set([symbol]);
    this.send({ op: "subscribe", channel: "book", symbol });
  }

  account(account) {
    this.accounts.add(account);
    this.send({ op: "subscribe", channel: "account", account });
  }

  close() {
    this.closed = true;
    if (this.ws) this.ws.close();
    this.ws = null;
  }
}
