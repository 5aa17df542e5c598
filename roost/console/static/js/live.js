// Live data pushed by the server: WebSockets (server events, resource streams) and the stats
// Server-Sent Events. Each reconnects after a drop (the token may have been refreshed meanwhile:
// the new connection carries the current one) until closed.

import { liveUrl } from "./api.js";

const RETRY_MS = [500, 1000, 2000, 5000, 10000];

export class LiveSocket {
  // path: the API path; subscriptions: messages sent on every (re)open; onMessage(obj)
  constructor(path, onMessage, onState = () => {}) {
    this.path = path;
    this.onMessage = onMessage;
    this.onState = onState;
    this.subscriptions = new Map();
    this.closed = false;
    this.failures = 0;
    this.open();
  }

  open() {
    const ws = new WebSocket(liveUrl(this.path, "ws"));
    this.ws = ws;
    ws.onopen = () => {
      this.failures = 0;
      this.onState(true);
      for (const message of this.subscriptions.values()) ws.send(JSON.stringify(message));
    };
    ws.onmessage = (event) => {
      try {
        this.onMessage(JSON.parse(event.data));
      } catch (error) {
        console.warn("unreadable frame", error);
      }
    };
    ws.onclose = () => {
      this.onState(false);
      if (this.closed) return;
      const wait = RETRY_MS[Math.min(this.failures, RETRY_MS.length - 1)];
      this.failures += 1;
      this.timer = setTimeout(() => this.open(), wait);
    };
  }

  // key: what identifies the subscription (a later send with the same key replaces it)
  send(key, message) {
    if (message.enabled === false) this.subscriptions.delete(key);
    else this.subscriptions.set(key, message);
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    this.ws.close();
  }
}

export class LiveEvents {
  // an EventSource on an SSE route; onData(obj) for each `data:` JSON
  constructor(path, onData) {
    this.path = path;
    this.onData = onData;
    this.closed = false;
    this.failures = 0;
    this.open();
  }

  open() {
    const source = new EventSource(liveUrl(this.path, "http"));
    this.source = source;
    source.onmessage = (event) => {
      this.failures = 0;
      this.onData(JSON.parse(event.data));
    };
    // the server ends the stream with `event: error` when its access ends; reopen with the
    // current token, and after a network error too (EventSource's own retry would reuse the URL)
    const restart = () => {
      source.close();
      if (this.closed) return;
      const wait = RETRY_MS[Math.min(this.failures, RETRY_MS.length - 1)];
      this.failures += 1;
      this.timer = setTimeout(() => this.open(), wait);
    };
    source.addEventListener("error", restart);
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    this.source.close();
  }
}
