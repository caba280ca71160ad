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
// How long the console follows a queued Slack alert (polling the request) before it stops.
const ALERT_FOLLOW_MS = 60_000;
const ALERT_POLL_MS = 1_500;
const msFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });

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
    this.alertPoll = null;
    this.liveStatus = $("#live-status");
    this.history = $("#history");
    this.historyEmpty = $("#history-empty");

    const routesData = $("#routes-data");
    this.routes = new Map(
      (routesData ? JSON.parse(routesData.textContent) : []).map((r) => [r.slug, r]),
    );

    this.busy = false;
    this.current = null; // {id, text, location, answerText, route, final}
    this.timer = null;
    this.renderQueued = false;

    this.bind();
    this.updateCounter();
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
      this.updateCounter();
      this.clearFieldError("text");
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
  }

  // -- the form ----------------------------------------------------------------------------

  updateCounter() {
    const length = charCount(this.text.value);
    $("[data-count]", this.counter).textContent = msFormat.format(length);
    this.counter.classList.toggle("counter--near", length >= this.maxChars * 0.9);
    this.counter.classList.toggle("counter--full", length >= this.maxChars);
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
    this.clearErrors();
    const text = this.text.value.trim();
    if (!text) {
      this.setFieldError("text", "Type what is going on first.");
      this.text.focus();
      return;
    }
    if (charCount(text) > this.maxChars) {
      this.setFieldError("text", `Keep it under ${msFormat.format(this.maxChars)} characters.`);
      this.text.focus();
      return;
    }
    const payload = { text, route: this.route.value || "auto" };
    const location = this.location.value.trim();
    if (location) payload.location = location;

    this.startResult(text, location);
    this.setBusy(true);
    let response;
    try {
      response = await fetch(this.api, {
        method: "POST",
        credentials: "same-origin",
        headers: this.headers({ Accept: "text/event-stream" }),
        body: JSON.stringify(payload),
      });
    } catch {
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
    this.current = { id: null, text, location, answerText: "", route: null, final: null };
    this.result.hidden = false;
    if (this.idle) this.idle.hidden = true;
    this.result.classList.remove("result--emergency", "result--done");
    this.result.classList.add("result--working");
    this.banner.hidden = true;
    offerEmergencySwitch(this, null, false);
    this.showAlerts([]);
    this.badge.className = "badge badge--route badge--pending";
    this.badge.textContent = "Choosing route…";
    delete this.badge.dataset.route;
    this.how.textContent = "";
    setStatusPill(this.statusPill, "received", "Working");
    this.request.textContent = text;
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
    this.showAlerts(data.alerts || [], Date.now() + ALERT_FOLLOW_MS);
    if (status === "ok" || status === "cached") {
      this.text.value = "";
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
    }
    if (this.current) this.current.final = { interrupted: true };
    this.announce(message);
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

  // -- Slack alerts ----------------------------------------------------------------------------

  // Show the request's alerts as recorded; while one is queued, read the request again every
  // ALERT_POLL_MS until it is sent or failed (or `followUntil` passes).
  showAlerts(alerts, followUntil = 0) {
    if (this.alertPoll !== null) window.clearTimeout(this.alertPoll);
    this.alertPoll = null;
    const shown = alerts.length ? alertToShow(alerts) : null;
    if (!shown) {
      this.alertStatus.hidden = true;
      this.alertStatus.textContent = "";
      return;
    }
    const kind = shown.state === "sent" ? "ok" : shown.state === "queued" ? "" : "error";
    this.alertStatus.className = `action-status alert-status${kind ? ` action-status--${kind}` : ""}`;
    this.alertStatus.textContent = alertWording(shown);
    this.alertStatus.hidden = false;
    const id = this.current?.id;
    if (id && alerts.some((a) => a.state === "queued") && Date.now() < followUntil) {
      this.alertPoll = window.setTimeout(() => this.refreshAlerts(id, followUntil), ALERT_POLL_MS);
    }
  }

  async refreshAlerts(id, followUntil) {
    this.alertPoll = null;
    let data = null;
    try {
      const response = await fetch(`${this.api}${encodeURIComponent(id)}/`, {
        credentials: "same-origin",
        headers: { Accept: "application/json", "X-Requested-With": "XMLHttpRequest" },
      });
      if (response.ok) data = await response.json();
    } catch {
      data = null; // a network blip: try again on the next round
    }
    if (this.current?.id !== id) return; // the desk has moved on to another request
    if (data && Array.isArray(data.alerts)) this.showAlerts(data.alerts, followUntil);
    else if (Date.now() < followUntil) {
      this.alertPoll = window.setTimeout(() => this.refreshAlerts(id, followUntil), ALERT_POLL_MS);
    }
  }

  // -- feedback and escalation ---------------------------------------------------------------

  resetActions() {
    for (const button of [this.helpfulYes, this.helpfulNo, this.escalateButton]) {
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

  async postAction(path, body) {
    const id = this.current?.id;
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
    this.closeNegativeFeedback(false);
    if (Array.isArray(data?.alerts)) this.showAlerts(data.alerts, Date.now() + ALERT_FOLLOW_MS);
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
    if (Array.isArray(data?.alerts)) this.showAlerts(data.alerts, Date.now() + ALERT_FOLLOW_MS);
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
    const excerpt = this.current.text.length > 160 ? `${this.current.text.slice(0, 159)}…` : this.current.text;
    summary.appendChild(el("span", "history__text", excerpt));
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
      detail.appendChild(answer);
    } else {
      detail.appendChild(el("p", "history__noanswer", "No answer was recorded."));
    }
    details.appendChild(detail);
    item.appendChild(details);

    this.history.prepend(item);
    formatTime(time);
    item.classList.add("history__item--new");
    const size = Number(this.history.dataset.size) || 10;
    while (this.history.children.length > size) this.history.lastElementChild.remove();
    this.historyEmpty.hidden = true;
  }

  updateHistoryStatus(id, status) {
    const item = this.history?.querySelector(`li[data-id="${CSS.escape(id)}"]`);
    const pill = item?.querySelector(".status");
    if (pill) setStatusPill(pill, status);
  }
}

// --- Page setup -----------------------------------------------------------------------------

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
const dayTimeFormat = new Intl.DateTimeFormat(undefined, {
  weekday: "short",
  day: "numeric",
  month: "short",
  hour: "numeric",
  minute: "2-digit",
});
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "medium" });

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
  const today = new Date();
  const sameDay = date.toDateString() === today.toDateString();
  node.textContent = sameDay ? timeFormat.format(date) : dayTimeFormat.format(date);
  node.title = fullFormat.format(date);
}

function init() {
  document.documentElement.classList.add("js");
  const isMac = /Mac|iPhone|iPad/.test(navigator.platform || navigator.userAgent);
  for (const key of document.querySelectorAll("[data-mod-key]")) key.textContent = isMac ? "⌘" : "Ctrl";
  for (const node of document.querySelectorAll("time[datetime]")) formatTime(node);
  for (const node of document.querySelectorAll("[data-format]")) renderFormatted(node, node.textContent.trim());
  const form = document.getElementById("request-form");
  if (form) window.clubosConsole = new Console(form);
}

init();
