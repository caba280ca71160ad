// ClubOS request desk: submit a request to the JSON API and show the streamed answer.
//
// POST /api/v1/requests/ with Accept: text/event-stream answers with server-sent events:
//   route  {id, route: {slug, name}, routing: {source, confidence, possible_emergency}, timings_ms: {routing}}
//   delta  {text}                      (appended to the answer)
//   done   the full request object     (or `error`: the same object plus "error")
// EventSource cannot POST, so the stream is read with fetch + a reader and parsed here.
// Model text is only ever put in the page through textContent (see renderFormatted).

import { el, renderFormatted } from "./markdown.js";

// Re-exported: the formatter is the console's public helper as much as the admin's.
export { renderFormatted };

const SOURCE_LABELS = {
  manual: "You chose",
  rules: "Keyword rules",
  local: "Local classifier",
  llm: "LLM router",
  default: "Default route",
};

const STATUS_LABELS = {
  received: "Received",
  ok: "OK",
  cached: "Cached",
  timeout: "Timeout",
  error: "Error",
  escalated: "Escalated",
  abandoned: "Abandoned",
};

const TIMING_KEYS = ["routing", "ttft", "assistant", "total"];
// The answer card shows this much of the request (the history has it whole).
const REQUEST_EXCERPT_CHARS = 140;
// After Stop: how long the console waits for the server to record the request as ended.
const STOP_FOLLOW_TRIES = 20;
const STOP_FOLLOW_MS = 250;
// How long the console follows a queued Slack alert (polling the request) before it stops.
const ALERT_FOLLOW_MS = 60_000;
const ALERT_POLL_MS = 1_500;
const msFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });

// Times are the venue's (the server's DJANGO_TIME_ZONE), not the browser's: "Manager alerted
// on Slack at 14:02" is what the clock on the venue's wall says.
const VENUE_TIME_ZONE = document.querySelector("[data-time-zone]")?.dataset.timeZone || undefined;

function venueDateFormat(options) {
  try {
    return new Intl.DateTimeFormat(undefined, { ...options, timeZone: VENUE_TIME_ZONE });
  } catch {
    return new Intl.DateTimeFormat(undefined, options); // a zone this browser does not know
  }
}

const timeFormat = venueDateFormat({ hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
const dayTimeFormat = venueDateFormat({
  weekday: "short",
  day: "numeric",
  month: "short",
  hour: "2-digit",
  minute: "2-digit",
  hourCycle: "h23",
});
const dayFormat = venueDateFormat({ year: "numeric", month: "2-digit", day: "2-digit" });
const fullFormat = venueDateFormat({ dateStyle: "full", timeStyle: "medium" });
// The raw text of each answer shown formatted (Copy answer copies what the model wrote).
const rawAnswers = new WeakMap();

// --- Small helpers ----------------------------------------------------------------------

function $(selector, root = document) {
  return root.querySelector(selector);
}

function readCookie(name) {
  for (const part of document.cookie ? document.cookie.split(";") : []) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return "";
}

// What the desk is told about a Slack alert: its recorded state, never a fixed promise.
export function alertWording(alert) {
  if (alert.state === "sent") {
    const at = alert.sent_at ? new Date(alert.sent_at) : null;
    return at && !Number.isNaN(at.getTime())
      ? `Manager alerted on Slack at ${timeFormat.format(at)}`
      : "Manager alerted on Slack";
  }
  if (alert.state === "queued") return "Alert queued - sending to Slack…";
  if (alert.state === "no_channel") return "No alert channel is configured: call the manager now";
  return "Slack alert failed: call the manager now";
}

// Of a request's alerts, the one to show: one that needs a call first, then one still queued,
// then the latest sent.
function alertToShow(alerts) {
  const rank = { failed: 0, no_channel: 1, queued: 2, sent: 3 };
  return [...alerts].sort(
    (a, b) =>
      (rank[a.state] ?? 0) - (rank[b.state] ?? 0) ||
      String(b.queued_at || "").localeCompare(String(a.queued_at || "")),
  )[0];
}

// A request's one-line excerpt: whitespace folded, cut at a character (code point) boundary.
export function excerpt(text, max) {
  const chars = [...String(text).replace(/\s+/g, " ").trim()];
  return chars.length > max ? `${chars.slice(0, max - 1).join("").trimEnd()}…` : chars.join("");
}

async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // refused (permissions, focus): try the older way below
    }
  }
  const area = el("textarea", "visually-hidden");
  area.value = text;
  area.setAttribute("readonly", "");
  document.body.appendChild(area);
  area.select();
  let copied = false;
  try {
    copied = document.execCommand("copy");
  } catch {
    copied = false;
  }
  area.remove();
  return copied;
}

// The request object as the API has it now; null on any failure (the callers try again).
async function fetchRequest(api, id) {
  try {
    const response = await fetch(`${api}${encodeURIComponent(id)}/`, {
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-Requested-With": "XMLHttpRequest" },
    });
    return response.ok ? await response.json() : null;
  } catch {
    return null;
  }
}

// A line that tells the desk about a request's Slack alerts (the answer panel's, or a history
// item's): the recorded state; while one is queued, the request is read again every
// ALERT_POLL_MS until it is sent or failed (or `followUntil` passes).
class AlertLine {
  constructor(node, api) {
    this.node = node;
    this.api = api;
    this.id = null;
    this.poll = null;
  }

  show(id, alerts, followUntil = 0) {
    this.stopFollowing();
    this.id = id;
    const shown = alerts.length ? alertToShow(alerts) : null;
    if (!shown) {
      this.node.hidden = true;
      this.node.textContent = "";
      return;
    }
    const kind = shown.state === "sent" ? "ok" : shown.state === "queued" ? "" : "error";
    this.node.classList.remove("action-status--ok", "action-status--error");
    if (kind) this.node.classList.add(`action-status--${kind}`);
    this.node.textContent = alertWording(shown);
    this.node.hidden = false;
    if (id && alerts.some((a) => a.state === "queued") && Date.now() < followUntil) {
      this.poll = window.setTimeout(() => this.refresh(id, followUntil), ALERT_POLL_MS);
    }
  }

  clear() {
    this.show(null, []);
  }

  stopFollowing() {
    if (this.poll !== null) window.clearTimeout(this.poll);
    this.poll = null;
  }

  async refresh(id, followUntil) {
    this.poll = null;
    const data = await fetchRequest(this.api, id);
    if (this.id !== id) return; // moved on to another request
    if (data && Array.isArray(data.alerts)) this.show(id, data.alerts, followUntil);
    else if (Date.now() < followUntil) {
      this.poll = window.setTimeout(() => this.refresh(id, followUntil), ALERT_POLL_MS);
    }
  }
}

export function formatMs(value) {
  return typeof value === "number" && Number.isFinite(value) ? `${msFormat.format(value)} ms` : "–";
}

export function formatConfidence(value) {
  return typeof value === "number" && Number.isFinite(value) ? `${Math.round(value * 100)}%` : "";
}

function setTiming(node, value) {
  // The number large, the unit small: "1,234" + "ms".
  if (typeof value === "number" && Number.isFinite(value)) {
    node.replaceChildren(document.createTextNode(msFormat.format(value)), el("span", "unit", " ms"));
  } else {
    node.textContent = "–";
  }
}

function charCount(text) {
  // Characters as the server counts them (code points, not UTF-16 units).
  let count = 0;
  for (const _ of text) count += 1;
  return count;
}

function statusLabel(status) {
  return STATUS_LABELS[status] || String(status || "Unknown");
}

function setStatusPill(node, status, label) {
  node.className = `status status--${/^[a-z]+$/.test(status) ? status : "unknown"}`;
  node.textContent = label || statusLabel(status);
}

// --- Server-sent events over fetch ----------------------------------------------------------

export function createSSEParser(onEvent) {
  let buffer = "";
  const dispatch = (frame) => {
    let event = "message";
    const data = [];
    for (const line of frame.split("\n")) {
      if (!line || line.startsWith(":")) continue; // comment / keep-alive
      const colon = line.indexOf(":");
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") event = value || "message";
      else if (field === "data") data.push(value);
    }
    if (data.length) onEvent(event, data.join("\n"));
  };
  return {
    push(chunk) {
      // Normalise line endings; a trailing \r waits, its \n may start the next chunk.
      buffer += chunk;
      const held = buffer.endsWith("\r") ? "\r" : "";
      buffer = buffer.slice(0, buffer.length - held.length).replace(/\r\n?/g, "\n") + held;
      let end = buffer.indexOf("\n\n");
      while (end !== -1) {
        dispatch(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        end = buffer.indexOf("\n\n");
      }
    },
    flush() {
      buffer = buffer.replace(/\r$/, "\n");
      if (buffer.trim()) dispatch(buffer);
      buffer = "";
    },
  };
}

async function readEventStream(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder("utf-8");
  const parser = createSSEParser(onEvent);
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    parser.push(decoder.decode(value, { stream: true }));
  }
  parser.push(decoder.decode());
  parser.flush();
}

// --- The console ----------------------------------------------------------------------------

class Console {
  constructor(form) {
    this.form = form;
    this.api = form.dataset.api;
    this.csrfCookie = form.dataset.csrfCookie || "csrftoken";
    this.text = $("#id_text", form);
    this.route = $("#id_route", form);
    this.location = $("#id_location", form);
    this.sendButton = $("#send-button", form);
    this.stopButton = $("#stop-button", form);
    this.formError = $("#form-error", form);
    this.counter = $("#text-counter", form);
    this.maxChars = Number(this.counter.dataset.max) || 4000;

    this.result = $("#result");
    this.banner = $("#emergency-banner");
    this.badge = $("#route-badge");
    this.how = $("#route-how");
    this.statusPill = $("#status-pill");
    this.elapsed = $("#elapsed");
    this.elapsedText = $("[data-elapsed]", this.elapsed);
    this.idle = $("#result-idle");
    this.request = $("#result-request");
    this.requestLocation = $("#result-location");
    this.answer = $("#answer");
    this.resultError = $("#result-error");
    this.timings = $("#timings");
    this.actions = $("#actions");
    this.helpfulYes = $("#helpful-yes");
    this.helpfulNo = $("#helpful-no");
    this.escalateButton = $("#escalate-button");
    this.feedbackMore = $("#feedback-more");
    this.feedbackComment = $("#feedback-comment");
    this.feedbackSend = $("#feedback-send");
    this.feedbackCancel = $("#feedback-cancel");
    this.actionStatus = $("#action-status");
    this.alertStatus = $("#alert-status");
    this.alertLine = new AlertLine(this.alertStatus, this.api);
    this.copyButton = $("#copy-answer");
    this.routeHint = $("#route-hint");
    this.routeHintSwitch = $("#route-hint-switch");
    this.routeHintDismiss = $("#route-hint-dismiss");
    this.liveStatus = $("#live-status");
    this.history = $("#history");
    this.historyEmpty = $("#history-empty");
    this.historyTemplate = $("#history-actions");
    this.historyAlerts = new WeakMap(); // history item -> its AlertLine

    const routesData = $("#routes-data");
    this.routes = new Map(
      (routesData ? JSON.parse(routesData.textContent) : []).map((r) => [r.slug, r]),
    );

    this.busy = false;
    this.current = null; // {id, text, location, answerText, route, final, suggested}
    this.controller = null; // the AbortController of the request in progress (Stop)
    this.running = null; // the promise of the request in progress
    this.overLimit = false;
    this.timer = null;
    this.renderQueued = false;

    this.bind();
    this.updateCounter();
    this.initHistory();
  }

  bind() {
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.form.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !event.isComposing) {
        event.preventDefault();
        if (typeof this.form.requestSubmit === "function") this.form.requestSubmit();
        else this.submit();
      }
    });
    this.text.addEventListener("input", () => {
      this.clearFieldError("text");
      this.updateCounter();
    });
    this.route.addEventListener("change", () => this.clearFieldError("route"));
    this.location.addEventListener("input", () => this.clearFieldError("location"));

    this.helpfulYes.addEventListener("click", () => this.sendFeedback(true));
    this.helpfulNo.addEventListener("click", () => this.openNegativeFeedback());
    this.feedbackSend.addEventListener("click", () =>
      this.sendFeedback(false, this.feedbackComment.value.trim()),
    );
    this.feedbackCancel.addEventListener("click", () => this.closeNegativeFeedback(true));
    this.feedbackComment.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        this.feedbackSend.click();
      } else if (event.key === "Escape") {
        this.closeNegativeFeedback(true);
      }
    });
    this.escalateButton.addEventListener("click", () => this.escalate());
    this.copyButton.addEventListener("click", () => this.copyAnswer());
    this.stopButton.addEventListener("click", () => this.stop());
    this.routeHintSwitch.addEventListener("click", () => this.switchRoute());
    this.routeHintDismiss.addEventListener("click", () => {
      this.routeHint.hidden = true;
    });
    this.history?.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action]");
      const item = button?.closest("li[data-id]");
      if (item && this.history.contains(item)) this.historyAction(item, button);
    });
  }

  // -- the form ----------------------------------------------------------------------------

  // The text is never cut (no maxlength): over the limit, the counter and a message say by
  // how much, and Send refuses, as the API would with a 400.
  updateCounter() {
    const length = charCount(this.text.value.trim());
    $("[data-count]", this.counter).textContent = msFormat.format(length);
    const over = length - this.maxChars;
    this.counter.classList.toggle("counter--near", length >= this.maxChars * 0.9 && over <= 0);
    this.counter.classList.toggle("counter--full", length === this.maxChars);
    this.counter.classList.toggle("counter--over", over > 0);
    if (over > 0) this.setFieldError("text", this.overLimitMessage(length));
    else if (this.overLimit) this.clearFieldError("text");
    this.overLimit = over > 0;
  }

  overLimitMessage(length) {
    const over = length - this.maxChars;
    return (
      `Too long: ${msFormat.format(length)} characters, ${msFormat.format(over)} over the ` +
      `${msFormat.format(this.maxChars)} limit. Nothing was cut; shorten it before sending.`
    );
  }

  fieldError(name) {
    return $(`[data-error-for="${name}"]`, this.form);
  }

  fieldInput(name) {
    return { text: this.text, route: this.route, location: this.location }[name] || null;
  }

  setFieldError(name, messages) {
    const node = this.fieldError(name);
    const message = (Array.isArray(messages) ? messages : [messages]).join(" ");
    if (!node) {
      this.showFormError(message);
      return;
    }
    node.textContent = message;
    node.hidden = false;
    this.fieldInput(name)?.setAttribute("aria-invalid", "true");
  }

  clearFieldError(name) {
    const node = this.fieldError(name);
    if (node) {
      node.hidden = true;
      node.textContent = "";
    }
    this.fieldInput(name)?.removeAttribute("aria-invalid");
  }

  clearErrors() {
    for (const name of ["text", "route", "location"]) this.clearFieldError(name);
    this.formError.hidden = true;
    this.formError.textContent = "";
  }

  showFormError(message) {
    this.formError.textContent = message;
    this.formError.hidden = false;
  }

  setBusy(busy) {
    this.busy = busy;
    this.form.classList.toggle("is-busy", busy);
    this.sendButton.setAttribute("aria-disabled", String(busy));
    $(".button__label", this.sendButton).textContent = busy ? "Working…" : "Send request";
    this.stopButton.hidden = !busy;
  }

  csrfToken() {
    return (
      readCookie(this.csrfCookie) ||
      this.form.querySelector("input[name=csrfmiddlewaretoken]")?.value ||
      ""
    );
  }

  headers(extra = {}) {
    return {
      "Content-Type": "application/json",
      "X-CSRFToken": this.csrfToken(),
      "X-ClubOS-Channel": "web",
      "X-Requested-With": "XMLHttpRequest",
      ...extra,
    };
  }

  // -- submitting ----------------------------------------------------------------------------

  async submit() {
    if (this.busy) return;
    this.running = this.send();
    await this.running;
  }

  async send() {
    this.clearErrors();
    const text = this.text.value.trim();
    if (!text) {
      this.setFieldError("text", "Type what is going on first.");
      this.text.focus();
      return;
    }
    if (charCount(text) > this.maxChars) {
      this.setFieldError("text", this.overLimitMessage(charCount(text)));
      this.text.focus();
      return;
    }
    const payload = { text, route: this.route.value || "auto" };
    const location = this.location.value.trim();
    if (location) payload.location = location;

    this.startResult(text, location);
    this.setBusy(true);
    const controller = new AbortController();
    this.controller = controller;
    let response;
    try {
      response = await fetch(this.api, {
        method: "POST",
        credentials: "same-origin",
        headers: this.headers({ Accept: "text/event-stream" }),
        body: JSON.stringify(payload),
        signal: controller.signal,
      });
    } catch {
      if (controller.signal.aborted) {
        await this.stopped();
        return;
      }
      this.failBeforeStart(
        "Could not reach ClubOS. Check the network connection and try again; your text is still in the box.",
      );
      return;
    }

    try {
      if (response.status === 400) {
        const data = await response.json().catch(() => ({}));
        this.failValidation(data);
        return;
      }
      if (response.status === 401 || response.status === 403) {
        const data = await response.json().catch(() => ({}));
        const detail = typeof data.detail === "string" ? data.detail : "";
        if (/csrf|credentials|authenticat/i.test(detail) || response.status === 401) {
          this.failBeforeStart(
            "Your session has ended. Reload the page and sign in again; copy your text first if you need it.",
          );
        } else {
          this.failBeforeStart(detail || "You are not allowed to send requests.");
        }
        return;
      }
      if (!response.ok) {
        const data = await response.json().catch(() => ({}));
        const detail = typeof data.detail === "string" ? ` (${data.detail})` : "";
        this.failBeforeStart(
          `ClubOS could not take the request right now: error ${response.status}${detail}. Try again in a moment.`,
        );
        return;
      }
      const type = response.headers.get("Content-Type") || "";
      if (type.includes("text/event-stream") && response.body) {
        await readEventStream(response, (event, data) => this.onEvent(event, data));
        if (!this.current.final) {
          this.failMidStream(
            "The connection closed before the answer was complete. The request is saved in your history.",
          );
        }
      } else {
        // A server that answered with plain JSON: the full request object at once.
        const data = await response.json();
        this.onRoute(data);
        this.onDone(data, false);
      }
    } catch (error) {
      if (controller.signal.aborted) {
        await this.stopped();
        return;
      }
      if (this.current && !this.current.final) {
        this.failMidStream(
          this.current.id
            ? "The connection dropped before the answer was complete. Check the network; the request is saved in your history."
            : "Could not reach ClubOS. Check the network connection and try again.",
        );
      }
      if (!(error instanceof TypeError)) console.error(error);
    }
  }

  onEvent(event, raw) {
    let data;
    try {
      data = JSON.parse(raw);
    } catch {
      return; // not ours (or a keep-alive): ignore
    }
    if (event === "route") this.onRoute(data);
    else if (event === "delta") this.onDelta(data);
    else if (event === "done") this.onDone(data, false);
    else if (event === "error") this.onDone(data, true);
  }

  // -- the result panel ----------------------------------------------------------------------

  startResult(text, location) {
    this.stopTimer();
    this.current = {
      id: null,
      text,
      location,
      answerText: "",
      route: null,
      final: null,
      suggested: null,
    };
    this.result.hidden = false;
    if (this.idle) this.idle.hidden = true;
    this.result.classList.remove("result--emergency", "result--done");
    this.result.classList.add("result--working");
    this.banner.hidden = true;
    offerEmergencySwitch(this, null, false);
    this.routeHint.hidden = true;
    this.alertLine.clear();
    this.badge.className = "badge badge--route badge--pending";
    this.badge.textContent = "Choosing route…";
    delete this.badge.dataset.route;
    this.how.textContent = "";
    setStatusPill(this.statusPill, "received", "Working");
    // An excerpt: the answer is what the person came for (the whole text is in the history).
    this.request.textContent = excerpt(text, REQUEST_EXCERPT_CHARS);
    this.request.title = text;
    this.requestLocation.textContent = location ? ` · ${location}` : "";
    this.answer.replaceChildren();
    this.answer.setAttribute("aria-busy", "true");
    this.answer.classList.add("answer--waiting");
    this.resultError.hidden = true;
    this.resultError.textContent = "";
    this.timings.hidden = true;
    for (const node of this.timings.querySelectorAll("[data-timing]")) node.textContent = "–";
    this.resetActions();
    this.actions.hidden = true;
    this.startTimer();
    this.announce("Request sent. Choosing a route.");
    this.revealResult();
  }

  revealResult() {
    // Bring the answer up when it would start in the lower half of the screen.
    if (this.result.getBoundingClientRect().top > window.innerHeight * 0.5) {
      const smooth = !window.matchMedia("(prefers-reduced-motion: reduce)").matches;
      this.result.scrollIntoView({ behavior: smooth ? "smooth" : "auto", block: "start" });
    }
  }

  startTimer() {
    const started = performance.now();
    this.elapsed.hidden = false;
    this.elapsed.classList.add("elapsed--running");
    const tick = () => {
      this.elapsedText.textContent = `${((performance.now() - started) / 1000).toFixed(1)} s`;
    };
    tick();
    this.timer = window.setInterval(tick, 100);
  }

  stopTimer() {
    if (this.timer !== null) window.clearInterval(this.timer);
    this.timer = null;
    this.elapsed.classList.remove("elapsed--running");
  }

  showRoute(route, routing) {
    if (!route) return;
    const known = this.routes.get(route.slug);
    const emergency = Boolean(known ? known.emergency : route.slug === "emergency");
    this.badge.className = `badge badge--route${emergency ? " badge--emergency" : ""}`;
    this.badge.dataset.route = route.slug;
    this.badge.textContent = route.name || route.slug;
    const how = [];
    const confidence = formatConfidence(routing?.confidence);
    if (confidence && routing?.source !== "manual") how.push(`${confidence} confidence`);
    if (routing?.source) how.push(SOURCE_LABELS[routing.source] || routing.source);
    this.how.textContent = how.join(" · ");
    offerEmergencySwitch(this, routing, emergency);
    this.banner.hidden = !emergency;
    this.result.classList.toggle("result--emergency", emergency);
    if (emergency) this.revealResult();
    return emergency;
  }

  onRoute(data) {
    if (!this.current) return;
    this.current.id = data.id || this.current.id;
    this.current.route = data.route || null;
    const emergency = this.showRoute(data.route, data.routing);
    if (data.route) {
      this.announce(
        emergency
          ? `Emergency. Routed to ${data.route.name}. Follow the safety steps.`
          : `Routed to ${data.route.name}. Waiting for the answer.`,
      );
    }
    if (data.timings_ms) {
      setTiming($('[data-timing="routing"]', this.timings), data.timings_ms.routing);
    }
    this.showRouteHint(data.suggested_route);
  }

  // A hand-chosen route the classifier strongly disagrees with: offer its choice, never
  // impose it (the API's `suggested_route`).
  showRouteHint(slug) {
    const route = slug ? this.routes.get(slug) : null;
    if (!this.current || !route || route.slug === this.current.route?.slug) {
      this.routeHint.hidden = true;
      return;
    }
    this.current.suggested = route.slug;
    for (const node of this.routeHint.querySelectorAll("[data-hint-route]")) {
      node.textContent = route.name;
    }
    this.routeHint.hidden = false;
  }

  // Ask the suggested route instead: the same text and location, sent again with that route
  // (a request still streaming is stopped first).
  async switchRoute() {
    const current = this.current;
    if (!current?.suggested) return;
    this.routeHint.hidden = true;
    if (this.busy) {
      this.stop();
      await this.running;
    }
    this.route.value = current.suggested;
    this.text.value = current.text;
    this.location.value = current.location || "";
    this.clearFieldError("text");
    this.updateCounter();
    await this.submit();
  }

  onDelta(data) {
    if (!this.current || typeof data.text !== "string") return;
    const first = !this.current.answerText;
    this.current.answerText += data.text;
    this.answer.classList.remove("answer--waiting");
    if (!this.renderQueued) {
      this.renderQueued = true;
      window.requestAnimationFrame(() => {
        this.renderQueued = false;
        if (!this.current) return;
        renderFormatted(this.answer, this.current.answerText);
        if (first) this.revealResult();
      });
    }
  }

  onDone(data, failed) {
    if (!this.current || this.current.final) return;
    this.current.final = data;
    this.current.id = data.id || this.current.id;
    this.stopTimer();
    this.setBusy(false);
    this.result.classList.remove("result--working");
    this.result.classList.add("result--done");
    if (data.route) {
      this.current.route = data.route;
      this.showRoute(data.route, data.routing);
    } else if (!this.current.route) {
      this.badge.className = "badge badge--route";
      this.badge.textContent = "No route";
    }
    const text = this.current.answerText.trim() ? this.current.answerText : data.answer || "";
    this.current.answerText = text;
    this.answer.classList.remove("answer--waiting");
    renderFormatted(this.answer, text);
    this.answer.setAttribute("aria-busy", "false");

    const status = data.status || (failed ? "error" : "ok");
    setStatusPill(this.statusPill, status);
    const timings = data.timings_ms || {};
    for (const key of TIMING_KEYS) {
      setTiming($(`[data-timing="${key}"]`, this.timings), timings[key]);
    }
    this.timings.hidden = false;
    if (typeof timings.total === "number") this.elapsedText.textContent = formatMs(timings.total);

    if (failed || status === "error" || status === "timeout") {
      const message =
        typeof data.error === "string" && data.error
          ? data.error
          : status === "timeout"
            ? "The assistant did not answer in time. You can escalate this request."
            : "The assistant could not answer. You can escalate this request.";
      this.resultError.textContent = message;
      this.resultError.hidden = false;
    }
    if (this.current.id) {
      this.actions.hidden = false;
      if (data.escalated) this.markEscalated();
    }
    this.alertLine.show(this.current.id, data.alerts || [], Date.now() + ALERT_FOLLOW_MS);
    // The route event's hint, unless that was missed (a plain JSON answer); one dismissed stays so.
    if (!this.current.suggested) this.showRouteHint(data.suggested_route);
    this.copyButton.hidden = !text.trim();
    if (status === "ok" || status === "cached") {
      // Ready for the next request, which starts with nothing of this one's: the location
      // is offered again in the field's suggestions, never carried over unasked.
      this.text.value = "";
      this.location.value = "";
      this.updateCounter();
    }
    this.revealResult();
    this.rememberLocation(this.current.location);
    this.prependHistory(data);
    this.announce(`Answer ${status === "ok" || status === "cached" ? "ready" : statusLabel(status).toLowerCase()}.`);
  }

  abandonResult() {
    this.stopTimer();
    this.setBusy(false);
    this.result.hidden = true;
    this.current = null;
    this.answer.setAttribute("aria-busy", "false");
  }

  failBeforeStart(message) {
    this.abandonResult();
    this.showFormError(message);
    this.announce(message);
    this.text.focus();
  }

  failValidation(data) {
    this.abandonResult();
    let first = null;
    for (const [name, messages] of Object.entries(data || {})) {
      if (["text", "route", "location"].includes(name)) {
        this.setFieldError(name, messages);
        first = first || this.fieldInput(name);
      } else {
        const message = Array.isArray(messages) ? messages.join(" ") : String(messages);
        this.showFormError(message);
      }
    }
    if (!first && this.formError.hidden) this.showFormError("The request was not accepted. Check the fields and try again.");
    (first || this.text).focus();
  }

  failMidStream(message) {
    this.stopTimer();
    this.setBusy(false);
    this.result.classList.remove("result--working");
    this.answer.setAttribute("aria-busy", "false");
    this.answer.classList.remove("answer--waiting");
    setStatusPill(this.statusPill, "error", "Interrupted");
    this.resultError.textContent = message;
    this.resultError.hidden = false;
    if (this.current?.id) {
      this.actions.hidden = false;
      this.helpfulYes.hidden = true;
      this.helpfulNo.hidden = true;
      this.copyButton.hidden = !this.current.answerText.trim();
    }
    if (this.current) this.current.final = { interrupted: true };
    this.announce(message);
  }

  stop() {
    this.controller?.abort();
  }

  // The person pressed Stop. The server finishes the request's row when it sees the client go
  // (status `abandoned`, with the text already sent): the console shows what it recorded.
  async stopped() {
    const current = this.current;
    if (!current || current.final) return;
    current.final = { stopped: true };
    this.stopTimer();
    this.setBusy(false);
    this.result.classList.remove("result--working");
    this.answer.setAttribute("aria-busy", "false");
    this.answer.classList.remove("answer--waiting");
    setStatusPill(this.statusPill, "abandoned", "Stopped");
    this.resultError.textContent = current.id
      ? "Stopped. What was shown is kept, and the request is saved in your history."
      : "Stopped before ClubOS answered.";
    this.resultError.hidden = false;
    this.announce("Stopped.");
    if (!current.id) return;
    let data = null;
    for (let tries = 0; tries < STOP_FOLLOW_TRIES && !data; tries += 1) {
      const found = await fetchRequest(this.api, current.id);
      if (found && found.status !== "received") data = found;
      else await new Promise((resolve) => window.setTimeout(resolve, STOP_FOLLOW_MS));
    }
    if (this.current !== current || !data) return;
    setStatusPill(this.statusPill, data.status);
    this.actions.hidden = false;
    this.helpfulYes.hidden = true;
    this.helpfulNo.hidden = true;
    this.copyButton.hidden = !current.answerText.trim();
    this.prependHistory(data);
  }

  async copyAnswer() {
    const text = (this.current?.answerText || "").trim();
    const copied = text ? await copyText(text) : false;
    this.setActionStatus(
      copied ? "Answer copied." : "Could not copy: select the answer and copy it by hand.",
      copied ? "ok" : "error",
    );
  }

  announce(message) {
    this.liveStatus.textContent = "";
    window.setTimeout(() => {
      this.liveStatus.textContent = message;
    }, 30);
  }

  rememberLocation(location) {
    if (!location) return;
    const list = $("#location-options");
    const exists = [...list.options].some((o) => o.value.toLowerCase() === location.toLowerCase());
    if (!exists) {
      const option = el("option");
      option.value = location;
      list.prepend(option);
    }
  }

  // -- feedback and escalation ---------------------------------------------------------------

  resetActions() {
    for (const button of [this.helpfulYes, this.helpfulNo, this.escalateButton, this.copyButton]) {
      button.hidden = false;
      button.disabled = false;
      button.classList.remove("is-done");
    }
    this.helpfulYes.setAttribute("aria-pressed", "false");
    this.helpfulNo.setAttribute("aria-pressed", "false");
    this.helpfulNo.setAttribute("aria-expanded", "false");
    $("[data-label]", this.escalateButton).textContent = "Escalate";
    this.feedbackMore.hidden = true;
    this.feedbackComment.value = "";
    this.setActionStatus("", "");
  }

  setActionStatus(message, kind) {
    this.actionStatus.textContent = message;
    this.actionStatus.className = `action-status${kind ? ` action-status--${kind}` : ""}`;
  }

  openNegativeFeedback() {
    this.feedbackMore.hidden = false;
    this.helpfulNo.setAttribute("aria-expanded", "true");
    this.feedbackComment.focus();
  }

  closeNegativeFeedback(returnFocus) {
    this.feedbackMore.hidden = true;
    this.helpfulNo.setAttribute("aria-expanded", "false");
    if (returnFocus) this.helpfulNo.focus();
  }

  async postAction(path, body, id = this.current?.id) {
    if (!id) throw new Error("no request");
    const response = await fetch(`${this.api}${encodeURIComponent(id)}/${path}/`, {
      method: "POST",
      credentials: "same-origin",
      headers: this.headers({ Accept: "application/json" }),
      body: JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const messages = Object.values(data || {}).flat().filter((m) => typeof m === "string");
      throw new Error(messages.join(" ") || `error ${response.status}`);
    }
    return data;
  }

  async sendFeedback(helpful, comment = "") {
    const buttons = [this.helpfulYes, this.helpfulNo, this.feedbackSend];
    for (const button of buttons) button.disabled = true;
    this.setActionStatus("Saving…", "");
    const body = { helpful };
    if (comment) body.comment = comment;
    let data;
    try {
      data = await this.postAction("feedback", body);
    } catch (error) {
      for (const button of buttons) button.disabled = false;
      this.setActionStatus(`Feedback was not saved: ${error.message || "network error"}. Try again.`, "error");
      return;
    }
    for (const button of buttons) button.disabled = false;
    this.helpfulYes.setAttribute("aria-pressed", String(helpful));
    this.helpfulNo.setAttribute("aria-pressed", String(!helpful));
    const item = this.historyItem(this.current?.id);
    if (item) this.markHistoryHelpful(item, helpful);
    this.closeNegativeFeedback(false);
    if (Array.isArray(data?.alerts)) {
      this.alertLine.show(this.current?.id, data.alerts, Date.now() + ALERT_FOLLOW_MS);
    }
    this.setActionStatus(
      helpful
        ? "Thanks! Marked as helpful."
        : "Thanks, feedback recorded. The team will review this answer.",
      "ok",
    );
  }

  markEscalated() {
    this.escalateButton.disabled = true;
    this.escalateButton.classList.add("is-done");
    $("[data-label]", this.escalateButton).textContent = "Escalated";
    setStatusPill(this.statusPill, "escalated");
  }

  async escalate() {
    this.escalateButton.disabled = true;
    this.setActionStatus("Escalating…", "");
    let data;
    try {
      data = await this.postAction("escalate", {});
    } catch (error) {
      this.escalateButton.disabled = false;
      this.setActionStatus(`Could not escalate: ${error.message || "network error"}. Try again.`, "error");
      return;
    }
    this.markEscalated();
    this.updateHistoryStatus(this.current.id, "escalated");
    // Whether a manager was reached is the alert's to say (the alert status line), not ours.
    this.setActionStatus("Escalated.", "ok");
    if (Array.isArray(data?.alerts)) {
      const followUntil = Date.now() + ALERT_FOLLOW_MS;
      this.alertLine.show(this.current.id, data.alerts, followUntil);
      const item = this.historyItem(this.current.id);
      if (item) this.historyAlerts.get(item)?.show(this.current.id, data.alerts, followUntil);
    }
  }

  // -- history -------------------------------------------------------------------------------

  prependHistory(data) {
    if (!this.current?.id || !this.history) return;
    const item = el("li", "history__item");
    item.dataset.id = this.current.id;
    const route = data.route || this.current.route;
    const known = route ? this.routes.get(route.slug) : null;
    const emergency = Boolean(route && (known ? known.emergency : route.slug === "emergency"));
    if (emergency) item.classList.add("history__item--emergency");

    const details = el("details");
    const summary = el("summary");
    const top = el("span", "history__top");
    const created = data.created_at ? new Date(data.created_at) : new Date();
    const time = el("time", "history__time");
    time.dateTime = created.toISOString();
    top.appendChild(time);
    if (route) {
      const badge = el("span", `badge badge--route${emergency ? " badge--emergency" : ""}`, route.name);
      badge.dataset.route = route.slug;
      top.appendChild(badge);
    }
    const status = el("span");
    setStatusPill(status, data.status || "error");
    top.appendChild(status);
    summary.appendChild(top);
    summary.appendChild(el("span", "history__text", excerpt(this.current.text, 160)));
    const meta = el("span", "history__meta");
    const total = data.timings_ms?.total;
    if (typeof total === "number") meta.appendChild(el("span", "history__ms", formatMs(total)));
    if (this.current.location) meta.appendChild(el("span", "history__where", this.current.location));
    summary.appendChild(meta);
    details.appendChild(summary);

    const detail = el("div", "history__detail");
    if (this.current.answerText.trim()) {
      const answer = el("div", "answer answer--compact");
      renderFormatted(answer, this.current.answerText);
      rawAnswers.set(answer, this.current.answerText);
      detail.appendChild(answer);
    } else {
      detail.appendChild(el("p", "history__noanswer", "No answer was recorded."));
    }
    details.appendChild(detail);
    item.appendChild(details);

    this.history.querySelector(`li[data-id="${CSS.escape(this.current.id)}"]`)?.remove();
    this.history.prepend(item);
    this.attachHistoryActions(item, {
      id: this.current.id,
      status: data.status,
      escalated: Boolean(data.escalated),
      helpful: null,
      alerts: data.alerts || [],
    });
    formatTime(time);
    item.classList.add("history__item--new");
    const size = Number(this.history.dataset.size) || 10;
    while (this.history.children.length > size) this.history.lastElementChild.remove();
    this.historyEmpty.hidden = true;
  }

  historyItem(id) {
    return id ? this.history?.querySelector(`li[data-id="${CSS.escape(id)}"]`) : null;
  }

  updateHistoryStatus(id, status) {
    const item = this.historyItem(id);
    const pill = item?.querySelector(".status");
    if (pill) setStatusPill(pill, status);
    if (item && status === "escalated") this.markHistoryEscalated(item);
  }

  // Items loaded with the page get the same actions as a fresh answer: feedback, escalate,
  // copy, and the alert's recorded state (followed while it is queued).
  initHistory() {
    if (!this.history) return;
    const data = $("#history-data");
    const states = new Map(
      (data ? JSON.parse(data.textContent) : []).map((state) => [state.id, state]),
    );
    for (const item of this.history.querySelectorAll("li[data-id]")) {
      this.attachHistoryActions(item, states.get(item.dataset.id));
    }
  }

  attachHistoryActions(item, state) {
    const detail = $(".history__detail", item);
    if (!detail || !this.historyTemplate || $(".history__actions", detail)) return;
    detail.appendChild(this.historyTemplate.content.cloneNode(true));
    const alertLine = new AlertLine($("[data-alert]", detail), this.api);
    this.historyAlerts.set(item, alertLine);
    $('[data-action="copy"]', detail).hidden = !$(".answer", detail);
    if (!state) return;
    if (state.helpful === true || state.helpful === false) this.markHistoryHelpful(item, state.helpful);
    if (state.escalated || state.status === "escalated") this.markHistoryEscalated(item);
    // A queued alert is followed until it is sent or failed, as for a fresh answer.
    alertLine.show(state.id, state.alerts || [], Date.now() + ALERT_FOLLOW_MS);
  }

  markHistoryHelpful(item, helpful) {
    $('[data-action="helpful"]', item).setAttribute("aria-pressed", String(helpful));
    $('[data-action="not-helpful"]', item).setAttribute("aria-pressed", String(!helpful));
  }

  markHistoryEscalated(item) {
    const button = $('[data-action="escalate"]', item);
    if (!button) return;
    button.disabled = true;
    button.classList.add("is-done");
    button.textContent = "Escalated";
  }

  async historyAction(item, button) {
    const id = item.dataset.id;
    const status = $("[data-status]", item);
    const say = (message, kind) => {
      status.textContent = message;
      status.className = `action-status history__status${kind ? ` action-status--${kind}` : ""}`;
    };
    const action = button.dataset.action;
    if (action === "copy") {
      const text = rawAnswers.get($(".answer", item)) || "";
      const copied = text.trim() ? await copyText(text) : false;
      say(copied ? "Answer copied." : "Could not copy: select the answer and copy it by hand.", copied ? "ok" : "error");
      return;
    }
    const more = $("[data-feedback-more]", item);
    if (action === "not-helpful") {
      // As on the answer card: say what was wrong (optional), then send.
      more.hidden = false;
      $("[data-comment]", more).focus();
      return;
    }
    const escalating = action === "escalate";
    const helpful = action === "helpful";
    const body = { helpful };
    if (action === "send-feedback") {
      const comment = $("[data-comment]", more).value.trim();
      if (comment) body.comment = comment;
    }
    button.disabled = true;
    say(escalating ? "Escalating…" : "Saving…", "");
    let data;
    try {
      data = escalating
        ? await this.postAction("escalate", {}, id)
        : await this.postAction("feedback", body, id);
    } catch (error) {
      button.disabled = false;
      const what = escalating ? "Could not escalate" : "Feedback was not saved";
      say(`${what}: ${error.message || "network error"}. Try again.`, "error");
      return;
    }
    const followUntil = Date.now() + ALERT_FOLLOW_MS;
    if (escalating) {
      this.updateHistoryStatus(id, "escalated");
      say("Escalated.", "ok");
      if (this.current?.id === id) this.markEscalated();
    } else {
      button.disabled = false;
      more.hidden = true;
      this.markHistoryHelpful(item, helpful);
      say(helpful ? "Thanks! Marked as helpful." : "Thanks, feedback recorded. The team will review this answer.", "ok");
    }
    if (Array.isArray(data?.alerts)) {
      this.historyAlerts.get(item)?.show(id, data.alerts, followUntil);
      if (this.current?.id === id) this.alertLine.show(id, data.alerts, followUntil);
    }
  }
}

// --- Page setup -----------------------------------------------------------------------------

// The one-tap switch: routing doubted a request it did not send to Emergency
// (routing.possible_emergency), so the person can send the same text again as an
// emergency (which alerts the manager) without retyping or choosing the route.
function offerEmergencySwitch(desk, routing, emergency) {
  const box = $("#possible-emergency");
  const button = $("#emergency-switch");
  if (!box || !button) return;
  const slug = [...desk.routes.values()].find((route) => route.emergency)?.slug;
  box.hidden = !(routing?.possible_emergency && !emergency && slug);
  if (box.hidden || button.dataset.bound) return;
  button.dataset.bound = "1";
  button.addEventListener("click", () => {
    const sent = desk.current;
    if (!sent || desk.busy) return;
    const chosen = desk.route.value;
    desk.text.value = sent.text;
    desk.location.value = sent.location || "";
    desk.route.value = [...desk.routes.values()].find((route) => route.emergency)?.slug;
    // submit() reads the form before its first await: the person's own choice of route
    // is back in the box at once.
    desk.submit();
    desk.route.value = chosen;
  });
}

function formatTime(node) {
  const date = new Date(node.dateTime || node.getAttribute("datetime"));
  if (Number.isNaN(date.getTime())) return;
  const sameDay = dayFormat.format(date) === dayFormat.format(new Date());
  node.textContent = sameDay ? timeFormat.format(date) : dayTimeFormat.format(date);
  node.title = fullFormat.format(date);
}

function init() {
  document.documentElement.classList.add("js");
  const isMac = /Mac|iPhone|iPad/.test(navigator.platform || navigator.userAgent);
  for (const key of document.querySelectorAll("[data-mod-key]")) key.textContent = isMac ? "⌘" : "Ctrl";
  for (const node of document.querySelectorAll("time[datetime]")) formatTime(node);
  for (const node of document.querySelectorAll("[data-format]")) {
    const text = node.textContent.trim();
    rawAnswers.set(node, text);
    renderFormatted(node, text);
  }
  const form = document.getElementById("request-form");
  if (form) window.clubosConsole = new Console(form);
}

init();
