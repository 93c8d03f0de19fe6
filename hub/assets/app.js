// Anxin web pages: the live alarm board, the home view, the supervisor view and the
// family view. One module, no build step; it reads the hub's REST API and websocket
// with the session cookie. Every text goes through t() (i18n.js); every value from the
// server is put in the page as text (never as HTML).

import { t, has, LANGS, currentLang, setLang } from "./i18n.js";

// ---------- small helpers ----------

const $ = (sel, root = document) => root.querySelector(sel);

/** Build an element: h("div", {class: "x", onclick: f, "data-id": 1}, "text", child). */
function h(tag, attrs = {}, ...children) {
  const svg = ["svg", "rect", "line", "text", "g", "circle", "title"].includes(tag);
  const el = svg
    ? document.createElementNS("http://www.w3.org/2000/svg", tag)
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Replace an element's children, skipping null/false (conditional parts). */
function put(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}

const UI = { offset: 480, contact: null, dispositions: [], skew: 0, people: new Map() };

/** Who did a step, as a person reads it: the hub itself is "system", a device is
 *  "device <id>", a person is their name and role ("王芳（家属）"). */
function actorText(id) {
  if (!id) return "";
  if (id === "hub") return t("actor.system");
  if (id.startsWith("device:")) return t("actor.device", { id: id.slice(7) });
  return personWithRole(id);
}

/** "王芳（家属）" / "Wang Fang (family)"; just the name when the role is not known. */
function personWithRole(id, known) {
  const p = known || UI.people.get(id);
  const role = p?.role || (id.startsWith("elder:") ? "elder" : null);
  const name = p?.name || id;
  return role ? t("person.role", { name, role: t("role." + role) }) : name;
}

/** Several people in one line: "王芳（家属）、李娜（村）". */
function peopleText(people) {
  return people.map((p) => personWithRole(p.contact_id, p.name ? p : null)).join(t("list.sep"));
}

/** Remember the names of the people in a directory answer. */
function learnPeople(dir) {
  for (const p of dir.people || []) UI.people.set(p.id, p);
}

function serverNow() {
  return Date.now() + UI.skew;
}

class HttpError extends Error {
  constructor(status, msg) {
    super(msg);
    this.status = status;
  }
}

async function api(path, opts = {}) {
  const init = { credentials: "same-origin", headers: {}, ...opts };
  if (opts.json !== undefined) {
    init.method = init.method || "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(opts.json);
    delete init.json;
  }
  const r = await fetch(path, init);
  if (r.status === 401 && !path.startsWith("/api/login")) {
    location.href = "/login?next=" + encodeURIComponent(location.pathname);
    throw new HttpError(401, t("conn.ended"));
  }
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new HttpError(r.status, body.error || r.statusText);
  return body;
}

function pad(n) {
  return String(n).padStart(2, "0");
}

/** A time in the district's time zone: "HH:mm" today, "MM-DD HH:mm" otherwise. */
function fmtTime(ms, withDate = false) {
  if (ms === null || ms === undefined) return "—";
  const d = new Date(ms + UI.offset * 60000);
  const today = new Date(serverNow() + UI.offset * 60000);
  const hm = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
  const sameDay =
    d.getUTCFullYear() === today.getUTCFullYear() &&
    d.getUTCMonth() === today.getUTCMonth() &&
    d.getUTCDate() === today.getUTCDate();
  if (sameDay && !withDate) return hm;
  return `${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${hm}`;
}

/** Every duration on every page: "40 秒", "1 分 40 秒", "2 小时 5 分", "1 天 3 小时". */
function fmtDuration(ms) {
  if (ms === null || ms === undefined) return "—";
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return t("dur.s", { s });
  const m = Math.floor(s / 60);
  if (m < 60) return s % 60 ? t("dur.ms", { m, s: s % 60 }) : t("dur.m", { m });
  const hr = Math.floor(m / 60);
  if (hr < 24) return m % 60 ? t("dur.hm", { h: hr, m: m % 60 }) : t("dur.h", { h: hr });
  const d = Math.floor(hr / 24);
  return hr % 24 ? t("dur.dh", { d, h: hr % 24 }) : t("dur.d", { d });
}

function agoText(ms) {
  const d = serverNow() - ms;
  return d < 60000 ? t("ago.now") : t("alarm.raised_ago", { ago: fmtDuration(d) });
}

/** An alarm's title in the page's language, from its rule (a rule the catalogue does
 *  not know, e.g. one a district added, shows the title its rule file gives). */
function alarmTitle(a) {
  const key = `rule.${a.rule_id}`;
  return has(key) ? t(key) : a.title;
}

/** What the alarm is about, from its rule and device (not the English text stored when
 *  it was raised, except for a rule the catalogue does not know, in English). */
function alarmDetail(a) {
  const key = `rdetail.${a.rule_id}`;
  if (has(key)) return t(key, { device: a.device_id || "—" });
  if (currentLang() === "en" && a.detail) return a.detail;
  return a.device_id ? t("actor.device", { id: a.device_id }) : "";
}

/** The one status of an alarm: new / notified / acknowledged, on the way (with the
 *  expected arrival) or on site. */
function statusText(a) {
  if (a.state === "acknowledged" && a.response === "en_route")
    return a.eta_at ? t("resp.en_route_eta", { t: fmtTime(a.eta_at) }) : t("resp.en_route");
  if (a.state === "acknowledged" && a.response === "on_site")
    return a.on_site_at ? t("resp.on_site_at", { t: fmtTime(a.on_site_at) }) : t("resp.on_site");
  return t("state." + a.state);
}

/** An escalation level by name: "村/家属", "镇/街道", "区". */
function levelName(n) {
  return t("level." + Math.min(Math.max(Number(n) || 0, 0), 2));
}

/** Who each notification told, by level: "已通知：王芳（家属）、李娜（村）",
 *  "已上报至镇/街道：张伟（镇）". Repeats at a level name each person once. */
function toldLines(notified) {
  const byLevel = new Map();
  for (const n of notified || []) {
    const seen = byLevel.get(n.level) || new Map();
    for (const r of n.recipients) seen.set(r.contact_id, r);
    byLevel.set(n.level, seen);
  }
  return [...byLevel].map(([level, people]) =>
    level > 0
      ? t("told.up", { level: levelName(level), who: peopleText([...people.values()]) })
      : t("told.first", { who: peopleText([...people.values()]) }),
  );
}

function severityRank(s) {
  return { critical: 0, warning: 1, info: 2 }[s] ?? 3;
}

function isUnacked(a) {
  return a.state === "raised" || a.state === "notified";
}

function status(msg, kind = "info") {
  const el = $("#status");
  if (!el) return;
  el.textContent = msg;
  el.dataset.kind = kind;
  el.hidden = !msg;
  clearTimeout(status.timer);
  if (msg && kind !== "error") status.timer = setTimeout(() => (el.hidden = true), 4000);
}

function applyStaticTexts() {
  document.documentElement.lang = currentLang();
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll("[data-i18n-placeholder]"))
    el.placeholder = t(el.dataset.i18nPlaceholder);
}

function langPicker() {
  const sel = h(
    "select",
    {
      id: "lang",
      "aria-label": t("nav.lang"),
      onchange: (e) => {
        setLang(e.target.value);
        location.reload();
      },
    },
    Object.entries(LANGS).map(([code, name]) =>
      h("option", { value: code, selected: code === currentLang() }, name),
    ),
  );
  return sel;
}

/** The page header: brand, links for the user's role, language, log out. */
function header(active) {
  const c = UI.contact;
  const family = c && ["household", "households"].includes(c.scope.kind);
  const links = family
    ? [["/family", "nav.family", "family"]]
    : [
        ["/board", "nav.board", "board"],
        ["/supervisor", "nav.supervisor", "supervisor"],
      ];
  const top = $("#top");
  put(top, 
    h("a", { class: "brand", href: "/" }, h("span", { class: "logo" }, "安"), t("app.name")),
    h(
      "nav",
      {},
      links.map(([href, key, id]) =>
        h("a", { href, class: id === active ? "active" : null }, t(key)),
      ),
    ),
    h("span", { class: "spacer" }),
    c ? h("span", { class: "who", title: c.id }, c.id) : null,
    langPicker(),
    c
      ? h(
          "button",
          {
            class: "ghost",
            id: "logout",
            onclick: async () => {
              await api("/api/logout", { method: "POST" }).catch(() => {});
              location.href = "/login";
            },
          },
          t("nav.logout"),
        )
      : null,
  );
}

async function loadUi() {
  const before = Date.now();
  const ui = await api("/api/ui");
  UI.offset = ui.utc_offset_minutes;
  UI.contact = ui.contact;
  UI.dispositions = ui.dispositions;
  UI.skew = ui.now - Math.round((before + Date.now()) / 2);
}

// ---------- the live connection ----------

/**
 * The websocket with reconnection. Reconnects with backoff (1, 2, 4, 5 s, with jitter,
 * never more than 5 s apart) and asks for every step after the last one it saw
 * (`since_seq`), so nothing raised while the page was offline is missed. While the hub
 * does not answer, `/healthz` is probed every second and the page reconnects as soon as
 * it answers again, instead of waiting out the backoff. A banner shows while
 * disconnected, and `body[data-conn=lost]` marks what the page shows as possibly stale.
 */
class Live {
  constructor({ onUpdate, onResync, onOpen, onDelivery, onConn }) {
    this.onUpdate = onUpdate;
    this.onDelivery = onDelivery;
    this.onResync = onResync;
    this.onOpen = onOpen;
    this.onConn = onConn;
    this.lastSeq = null;
    this.attempt = 0;
    this.everOpen = false;
    this.reconnects = 0;
  }

  start() {
    this.connect();
  }

  setConn(state, text) {
    const changed = document.body.dataset.conn !== state;
    document.body.dataset.conn = state;
    const banner = $("#conn-banner");
    if (banner) {
      banner.hidden = state === "open";
      banner.textContent = text || "";
    }
    if (state !== "lost") this.stopProbe();
    if (changed && this.onConn) this.onConn(state);
  }

  connect() {
    const url = new URL("/api/ws", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    if (this.lastSeq !== null) url.searchParams.set("since_seq", this.lastSeq);
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (_) {
      this.retry();
      return;
    }
    this.ws = ws;
    ws.onmessage = (e) => {
      let msg;
      try {
        msg = JSON.parse(e.data);
      } catch (_) {
        return;
      }
      if (msg.type === "hello") {
        const resync = this.lastSeq === null && this.everOpen;
        if (this.lastSeq === null) this.lastSeq = msg.seq;
        const reconnected = this.everOpen;
        this.everOpen = true;
        this.attempt = 0;
        this.setConn("open");
        if (reconnected) {
          this.reconnects += 1;
          document.body.dataset.reconnects = String(this.reconnects);
          status(t("conn.restored"));
        }
        if (resync && this.onResync) this.onResync();
        if (this.onOpen) this.onOpen(!reconnected);
      } else if (msg.type === "alarm") {
        if (this.lastSeq === null || msg.seq > this.lastSeq) this.lastSeq = msg.seq;
        this.onUpdate(msg);
      } else if (msg.type === "delivery" && this.onDelivery) {
        this.onDelivery(msg.alarm_id);
      }
    };
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      if (e.code === 4401) {
        this.setConn("ended", t("conn.ended"));
        setTimeout(() => (location.href = "/login?next=" + encodeURIComponent(location.pathname)), 1500);
        return;
      }
      if (e.code === 4429 || e.code === 4503) {
        // Too many open boards (this account's, or the hub's): say so, and retry slowly
        // (the hub is up, so no probing).
        this.retry(e.code === 4429 ? "conn.too_many_mine" : "conn.too_many", 15);
        return;
      }
      this.retry();
    };
  }

  retry(why = "conn.lost", slow = 0) {
    const base = slow || [1, 2, 4, 5][Math.min(this.attempt, 3)];
    this.attempt += 1;
    const delay = Math.min(slow || 5, base * (0.75 + Math.random() * 0.5));
    this.setConn("lost", t(why, { s: Math.round(delay) }));
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay * 1000);
    if (!slow) this.startProbe();
  }

  /** While the hub is down, ask `/healthz` every second; once it answers again after
   *  not answering, connect at once. Any answer of the hub counts (200, or its 503 JSON
   *  while the pipeline is stalled); a proxy's 502/504 or HTML 503 does not. A hub that
   *  answers but refuses the websocket keeps the backoff (no fast loop). */
  startProbe() {
    if (this.prober) return;
    this.hubWasDown = false;
    const gen = (this.probeGen = (this.probeGen || 0) + 1);
    const probe = async () => {
      let up = false;
      try {
        const timeout = window.AbortSignal && AbortSignal.timeout ? AbortSignal.timeout(2000) : undefined;
        const r = await fetch("/healthz", { cache: "no-store", credentials: "omit", signal: timeout });
        up = r.ok || (r.status === 503 && (r.headers.get("content-type") || "").includes("json"));
      } catch (_) {
        up = false;
      }
      if (this.probeGen !== gen) return; // stopped (and maybe started again) meanwhile
      const connecting = this.ws && this.ws.readyState === WebSocket.CONNECTING;
      if (!up) {
        this.hubWasDown = true;
      } else if (this.hubWasDown && !connecting) {
        this.hubWasDown = false;
        clearTimeout(this.timer);
        this.connect();
      }
      // Every 0.8–1.2 s: boards cut off together do not all come back in the same instant.
      this.prober = setTimeout(probe, 800 + Math.random() * 400);
    };
    this.prober = setTimeout(probe, Math.random() * 400);
  }

  stopProbe() {
    clearTimeout(this.prober);
    this.prober = null;
    this.probeGen = (this.probeGen || 0) + 1;
  }
}

// ---------- sound (Web Audio) and desktop notifications ----------

/**
 * Browsers play sound only after a gesture on the page (a gesture on the login page does
 * not carry over to the board in every browser, and a reload or a re-opened kiosk starts
 * without one). So the first click, tap or key anywhere on the page arms the sound, and
 * while the browser blocks it the board shows a full-width banner whenever a critical
 * alarm is unacknowledged. A kiosk can allow autoplay for the hub instead (README).
 */
const Sound = {
  ctx: null,
  silenced: false,
  /** `onChange` runs when the browser starts (or stops) letting the page play sound. */
  init(onChange) {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    this.ctx = new Ctx();
    this.ctx.onstatechange = () => onChange && onChange();
    const unlock = () => {
      if (this.ctx && this.ctx.state === "suspended") this.ctx.resume().catch(() => {});
    };
    // Capture phase on the window: a handler that stops the event cannot keep it away.
    for (const ev of ["pointerdown", "mousedown", "touchend", "click", "keydown"])
      window.addEventListener(ev, unlock, { capture: true, passive: true });
  },
  /** "on" (can play), "blocked" (the browser waits for a click) or "off". */
  state() {
    if (!this.ctx) return "off";
    return this.ctx.state === "running" ? "on" : "blocked";
  },
  beep() {
    if (!this.ctx || this.ctx.state !== "running" || this.silenced) return;
    const now = this.ctx.currentTime;
    for (const [i, f] of [880, 660, 880].entries()) {
      const osc = this.ctx.createOscillator();
      const gain = this.ctx.createGain();
      osc.type = "square";
      osc.frequency.value = f;
      gain.gain.setValueAtTime(0.0001, now + i * 0.22);
      gain.gain.exponentialRampToValueAtTime(0.25, now + i * 0.22 + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + i * 0.22 + 0.2);
      osc.connect(gain).connect(this.ctx.destination);
      osc.start(now + i * 0.22);
      osc.stop(now + i * 0.22 + 0.21);
    }
    document.body.dataset.beeps = String(Number(document.body.dataset.beeps || 0) + 1);
  },
};

function desktopNotify(a, where) {
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  try {
    const n = new Notification(`${t("sev." + a.severity)} · ${alarmTitle(a)}`, {
      body: where,
      tag: a.id,
      requireInteraction: true,
    });
    n.onclick = () => {
      window.focus();
      location.href = `/board/alarms/${encodeURIComponent(a.id)}`;
    };
  } catch (_) {
    // notifications are optional
  }
}

// ---------- the alarm board ----------

const Board = {
  alarms: new Map(),
  deliveries: new Map(),
  told: new Map(),
  households: new Map(),
  villages: [],
  selected: null,
  known: new Set(),
  filters: { town: "", village: "", severity: "", state: "", q: "" },

  async start() {
    Sound.init(() => {
      if (this.loaded) this.render();
      // Sound just became possible: the first beep at once, not at the next loop turn.
      if (Sound.state() === "on" && document.body.dataset.alerting === "on") Sound.beep();
    });
    this.setDirectory(await api("/api/directory"));
    this.buildFilters();
    // Subscribe first, then read the list: nothing committed in between is lost (steps
    // up to the list's `seq` are in it; later ones are applied over it).
    this.live = new Live({
      onConn: () => this.loaded && this.render(),
      onUpdate: (u) => this.update(u),
      onResync: () => this.reload(),
      onOpen: (first) => first && !this.loaded && this.reload(),
      onDelivery: (id) => this.alarms.has(id) && this.queueDeliveries(id),
    });
    this.live.start();
    // Without a websocket (a proxy that refuses upgrades), still show the list.
    await new Promise((resolve) => {
      const done = () => (this.loaded ? resolve() : setTimeout(done, 50));
      setTimeout(() => {
        if (!this.loaded && !this.loading) this.reload();
      }, 5000);
      done();
    });
    const m = location.pathname.match(/^\/board\/alarms\/([^/]+)$/);
    if (m) this.select(decodeURIComponent(m[1]), false);
    window.addEventListener("popstate", () => {
      const m2 = location.pathname.match(/^\/board\/alarms\/([^/]+)$/);
      this.select(m2 ? decodeURIComponent(m2[1]) : null, false);
    });
    this.render();
    setInterval(() => this.tick(), 1000);
    // Delivery outcomes (delivered, answered, no answer) arrive as "delivery" messages;
    // this catches any the connection missed.
    setInterval(() => this.alarms.forEach((a, id) => this.matches(a) && this.fetchDeliveries(id)), 30000);
    setInterval(() => this.alertLoop(), 1500);
    document.body.dataset.ready = "1";
  },

  setDirectory(dir) {
    learnPeople(dir);
    this.households = new Map(dir.households.map((x) => [x.id, x]));
    this.villages = dir.villages;
  },

  async reload() {
    this.loading = true;
    this.buffered = [];
    let list;
    try {
      list = await api("/api/alarms?state=open&limit=1000");
    } catch (e) {
      this.loading = false;
      status(t("err.load", { msg: e.message }), "error");
      setTimeout(() => this.reload(), 5000);
      return;
    }
    this.alarms = new Map(list.alarms.map((a) => [a.id, a]));
    for (const a of list.alarms) this.known.add(a.id);
    this.loading = false;
    this.loaded = true;
    const later = this.buffered.filter((u) => u.seq > list.seq);
    this.buffered = [];
    for (const u of later) this.update(u);
    this.render();
    for (const id of this.alarms.keys()) this.fetchDeliveries(id);
  },

  update(u) {
    if (this.loading) this.buffered.push(u);
    const a = u.alarm;
    const isNew = !this.known.has(a.id);
    this.known.add(a.id);
    if (a.state === "resolved") this.alarms.delete(a.id);
    else this.alarms.set(a.id, a);
    if (a.household_id && !this.households.has(a.household_id)) {
      api("/api/directory")
        .then((d) => {
          this.setDirectory(d);
          this.render();
        })
        .catch(() => {});
    }
    if (isNew && a.severity === "critical" && isUnacked(a)) {
      Sound.silenced = false;
      desktopNotify(a, this.where(a));
    }
    if (a.state !== "resolved") this.queueDeliveries(a.id);
    this.scheduleRender();
    if (this.selected === a.id) this.renderDetail();
  },

  /** One render for a burst of updates (a catch-up backlog, an outage storm). A timer,
   *  not requestAnimationFrame: a board behind other windows must still start alerting. */
  scheduleRender() {
    if (this.renderTimer) return;
    this.renderTimer = setTimeout(() => {
      this.renderTimer = null;
      this.render();
    }, 30);
  },

  /** Fetch an alarm's deliveries soon, once for several steps in a row. */
  queueDeliveries(id) {
    this.deliveryTimers = this.deliveryTimers || new Map();
    if (this.deliveryTimers.has(id)) return;
    this.deliveryTimers.set(
      id,
      setTimeout(() => {
        this.deliveryTimers.delete(id);
        if (this.alarms.has(id)) this.fetchDeliveries(id);
      }, 300),
    );
  },

  async fetchDeliveries(id) {
    try {
      const d = await api(`/api/alarms/${encodeURIComponent(id)}/deliveries`);
      this.deliveries.set(id, d.deliveries);
      this.told.set(id, d.notified || []);
      for (const n of d.notified || []) for (const r of n.recipients) if (r.name && !UI.people.has(r.contact_id)) UI.people.set(r.contact_id, r);
      const row = document.querySelector(`.alarm[data-alarm-id="${CSS.escape(id)}"] .deliveries`);
      if (row) put(row, ...this.deliveryChips(id));
      const told = document.querySelector(`.alarm[data-alarm-id="${CSS.escape(id)}"] .told`);
      if (told) put(told, ...this.toldItems(id));
      if (this.selected === id) this.renderDeliveries();
    } catch (_) {
      // shown as "no SMS or call yet"; the next update fetches again
    }
  },

  where(a) {
    const hh = a.household_id ? this.households.get(a.household_id) : null;
    if (!hh) return a.household_id ? a.household_id : t("alarm.village_incident");
    const names = hh.elders.join("、");
    return [names, hh.address, `${hh.town_name} · ${hh.village_name}`].filter(Boolean).join(" · ");
  },

  buildFilters() {
    const f = $("#filters");
    const scopeKind = UI.contact.scope.kind;
    const towns = new Map(this.villages.map((v) => [v.town_id, v.town_name]));
    const opt = (v, label, sel) => h("option", { value: v, selected: v === sel }, label);
    const select = (id, key, options) =>
      h(
        "label",
        { class: "field" },
        h("span", {}, t(key)),
        h(
          "select",
          {
            id,
            onchange: (e) => {
              this.filters[id.replace("f-", "")] = e.target.value;
              if (id === "f-town") this.filters.village = "";
              this.buildFilters();
              this.render();
            },
          },
          opt("", t("filter.all"), ""),
          options,
        ),
      );
    const villages = this.villages.filter((v) => !this.filters.town || v.town_id === this.filters.town);
    put(f, 
      scopeKind === "district"
        ? select("f-town", "filter.town", [...towns].map(([id, n]) => opt(id, n, this.filters.town)))
        : null,
      scopeKind !== "village"
        ? select("f-village", "filter.village", villages.map((v) => opt(v.id, v.name, this.filters.village)))
        : null,
      select(
        "f-severity",
        "filter.severity",
        ["critical", "warning", "info"].map((s) => opt(s, t("sev." + s), this.filters.severity)),
      ),
      select(
        "f-state",
        "filter.state",
        ["raised", "notified", "acknowledged"].map((s) => opt(s, t("state." + s), this.filters.state)),
      ),
      h(
        "label",
        { class: "field grow" },
        h("span", {}, t("filter.search")),
        h("input", {
          id: "f-q",
          type: "search",
          value: this.filters.q,
          placeholder: t("filter.search"),
          oninput: (e) => {
            this.filters.q = e.target.value;
            this.render();
          },
        }),
      ),
    );
  },

  matches(a) {
    const f = this.filters;
    if (f.town && a.town_id !== f.town) return false;
    if (f.village && a.village_id !== f.village) return false;
    if (f.severity && a.severity !== f.severity) return false;
    if (f.state && a.state !== f.state) return false;
    if (f.q) {
      const q = f.q.trim().toLowerCase();
      const hh = a.household_id ? this.households.get(a.household_id) : null;
      const hay = [a.household_id, alarmTitle(a), a.title, hh?.address, ...(hh?.elders || []), hh?.village_name]
        .filter(Boolean)
        .join(" ")
        .toLowerCase();
      if (q && !hay.includes(q)) return false;
    }
    return true;
  },

  sorted() {
    return [...this.alarms.values()].sort(
      (x, y) => severityRank(x.severity) - severityRank(y.severity) || x.raised_at - y.raised_at,
    );
  },

  deliveryChips(id) {
    const list = this.deliveries.get(id) || [];
    return list.map((d) => {
      const outcome = d.status ? t("dstatus." + d.status) : t("dstate." + d.state);
      const good = ["delivered", "completed", "answered"].includes(d.status);
      const bad = d.state === "failed" || ["no-answer", "busy", "failed", "undelivered"].includes(d.status);
      return h(
        "span",
        { class: `chip ${good ? "ok" : bad ? "bad" : ""}`, title: d.error || "" },
        `${d.name || d.contact_id} · ${t("chan." + d.channel)} · ${outcome}`,
      );
    });
  },

  toldItems(id) {
    return toldLines(this.told.get(id)).map((line) => h("div", { class: "told-line" }, line));
  },

  row(a) {
    const alerting = a.severity === "critical" && isUnacked(a);
    const levelText = a.level > 0 ? t("alarm.level", { level: levelName(a.level) }) : "";
    return h(
      "article",
      {
        class: `alarm sev-${a.severity} state-${a.state}${alerting ? " flash" : ""}${this.selected === a.id ? " selected" : ""}`,
        "data-alarm-id": a.id,
        "data-state": a.state,
        "data-severity": a.severity,
        tabindex: 0,
        onclick: (e) => {
          if (e.target.closest("button")) return;
          this.select(a.id);
        },
        onkeydown: (e) => e.key === "Enter" && this.select(a.id),
      },
      h("div", { class: "sev" }, t("sev." + a.severity)),
      h(
        "div",
        { class: "main" },
        h(
          "div",
          { class: "title" },
          h("span", { class: "t" }, alarmTitle(a)),
          h("span", { class: `badge state-${a.state}${a.response ? " resp-" + a.response : ""}` }, statusText(a)),
        ),
        h("div", { class: "where" }, this.where(a)),
        h(
          "div",
          { class: "meta" },
          h("span", { class: "ago", "data-at": a.raised_at }, agoText(a.raised_at)),
          h("span", {}, fmtTime(a.raised_at)),
          levelText ? h("span", { class: "level" }, levelText) : null,
          a.acked_by ? h("span", { class: "acked" }, t("alarm.acked_by", { who: personWithRole(a.acked_by), at: fmtTime(a.acked_at) })) : null,
        ),
        h("div", { class: "told" }, this.toldItems(a.id)),
        h("div", { class: "deliveries" }, this.deliveryChips(a.id)),
      ),
      h(
        "div",
        { class: "actions" },
        isUnacked(a)
          ? h("button", { class: "ack primary", onclick: () => this.acknowledge(a.id) }, t("alarm.ack"))
          : null,
      ),
    );
  },

  render() {
    const list = $("#alarms");
    const all = this.sorted();
    const shown = all.filter((a) => this.matches(a));
    $("#count").textContent = String(all.length);
    // Disconnected: what is shown may be out of date, so grey it and never claim "no alarms".
    const stale = ["lost", "ended"].includes(document.body.dataset.conn);
    list.classList.toggle("stale", stale);
    put(list, 
      stale ? h("p", { class: shown.length ? "stale-note" : "stale-note empty" }, t("conn.stale")) : null,
      ...(shown.length
        ? shown.map((a) => this.row(a))
        : stale ? [] : [h("p", { class: "empty" }, all.length ? t("board.none_match") : t("board.empty"))]),
    );
    const alerting = all.some((a) => a.severity === "critical" && isUnacked(a));
    document.body.dataset.alerting = alerting ? "on" : "off";
    this.renderSoundControls(alerting);
  },

  renderSoundControls(alerting) {
    const box = $("#sound");
    const s = Sound.state();
    document.body.dataset.sound = s;
    // A critical alarm waits and the browser keeps the board silent: impossible to miss.
    const silent = $("#sound-banner");
    if (silent) {
      silent.hidden = !(alerting && s === "blocked");
      silent.textContent = t("sound.blocked_banner");
    }
    const parts = [];
    if (s === "blocked")
      parts.push(h("button", { id: "sound-btn", class: "warn", onclick: () => Sound.ctx.resume().then(() => this.render()) }, t("sound.enable")));
    if (alerting && s === "on" && !Sound.silenced)
      parts.push(h("button", { id: "silence", class: "ghost", onclick: () => { Sound.silenced = true; this.render(); } }, t("sound.silence")));
    if ("Notification" in window && Notification.permission === "default")
      parts.push(h("button", { class: "ghost", onclick: () => Notification.requestPermission().then(() => this.render()) }, t("notify.enable")));
    put(box, ...parts);
  },

  alertLoop() {
    if (document.body.dataset.alerting === "on") Sound.beep();
    const s = Sound.state();
    if (document.body.dataset.sound !== s) this.render();
  },

  tick() {
    for (const el of document.querySelectorAll(".ago[data-at]")) el.textContent = agoText(Number(el.dataset.at));
  },

  async acknowledge(id, note) {
    try {
      const u = await api(`/api/alarms/${encodeURIComponent(id)}/acknowledge`, { json: note ? { note } : {} });
      this.update(u);
      status(t("alarm.done"));
    } catch (e) {
      status(t("alarm.failed", { msg: e.message }), "error");
    }
  },

  async respond(id, what, body) {
    try {
      const u = await api(`/api/alarms/${encodeURIComponent(id)}/${what}`, { json: body });
      this.update(u);
      status(t("alarm.done"));
    } catch (e) {
      status(t("alarm.failed", { msg: e.message }), "error");
    }
  },

  async resolve(id, disposition, note) {
    if (!disposition) {
      status(t("alarm.need_disposition"), "error");
      return;
    }
    try {
      const u = await api(`/api/alarms/${encodeURIComponent(id)}/resolve`, {
        json: note ? { disposition, note } : { disposition },
      });
      this.update(u);
      status(t("alarm.done"));
    } catch (e) {
      status(t("alarm.failed", { msg: e.message }), "error");
    }
  },

  select(id, push = true) {
    this.selected = id;
    const path = id ? `/board/alarms/${encodeURIComponent(id)}` : "/board";
    if (push && location.pathname !== path) history.pushState(null, "", path);
    document.body.classList.toggle("detail-open", Boolean(id));
    for (const el of document.querySelectorAll(".alarm.selected")) el.classList.remove("selected");
    if (!id) {
      $("#detail").hidden = true;
      return;
    }
    $(`.alarm[data-alarm-id="${CSS.escape(id)}"]`)?.classList.add("selected");
    this.renderDetail();
  },

  async renderDetail() {
    const id = this.selected;
    const panel = $("#detail");
    panel.hidden = false;
    let data;
    try {
      data = await api(`/api/alarms/${encodeURIComponent(id)}`);
    } catch (e) {
      put(panel, h("p", { class: "error" }, t("err.load", { msg: e.message })));
      return;
    }
    if (this.selected !== id) return;
    const a = data.alarm;
    const keep = panel.dataset.alarmId === id ? this.formValues(panel) : null;
    panel.dataset.alarmId = id;
    const disp = h(
      "select",
      { id: "disposition", "aria-label": t("alarm.disposition") },
      h("option", { value: "" }, t("alarm.choose")),
      UI.dispositions.map((d) => h("option", { value: d }, t("disp." + d))),
    );
    const ackNote = h("textarea", { id: "ack-note", rows: 2, maxlength: 2000, placeholder: t("alarm.note") });
    const resNote = h("textarea", { id: "resolve-note", rows: 2, maxlength: 2000, placeholder: t("alarm.note") });
    if (keep) {
      disp.value = keep.disp;
      ackNote.value = keep.ack;
      resNote.value = keep.res;
    }
    put(panel, 
      h(
        "div",
        { class: "detail-head" },
        h("h2", {}, alarmTitle(a)),
        h("button", { class: "ghost", id: "close-detail", onclick: () => this.select(null) }, "✕ " + t("alarm.close")),
      ),
      h(
        "p",
        {},
        h("span", { class: `badge sev-${a.severity}` }, t("sev." + a.severity)),
        " ",
        h("span", { class: `badge state-${a.state}${a.response ? " resp-" + a.response : ""}` }, statusText(a)),
      ),
      h("p", { class: "where" }, this.where(a)),
      alarmDetail(a) ? h("p", { class: "muted", id: "detail-text" }, alarmDetail(a)) : null,
      h(
        "p",
        { class: "meta" },
        `${fmtTime(a.raised_at, true)} · `,
        h("span", { class: "ago", "data-at": a.raised_at }, agoText(a.raised_at)),
        a.level > 0 ? ` · ${t("alarm.level", { level: levelName(a.level) })}` : "",
      ),
      a.household_id ? h("p", {}, h("a", { href: `/home/${encodeURIComponent(a.household_id)}` }, t("alarm.home") + " →")) : null,
      isUnacked(a)
        ? h(
            "div",
            { class: "form" },
            ackNote,
            h("button", { class: "primary", id: "detail-ack", onclick: () => this.acknowledge(id, ackNote.value.trim()) }, t("alarm.ack")),
          )
        : null,
      a.state !== "resolved" && a.response !== "on_site"
        ? h(
            "div",
            { class: "form row" },
            h(
              "select",
              { id: "eta", "aria-label": t("alarm.eta") },
              [10, 20, 30, 60].map((m) => h("option", { value: m }, t("alarm.eta_min", { n: m }))),
            ),
            h("button", { id: "detail-en-route", onclick: () => this.respond(id, "en-route", { eta_minutes: Number($("#eta").value) }) }, t("alarm.en_route")),
            h("button", { id: "detail-on-site", onclick: () => this.respond(id, "on-site", {}) }, t("alarm.on_site")),
          )
        : null,
      a.state !== "resolved"
        ? h(
            "div",
            { class: "form" },
            h("label", { class: "field" }, h("span", {}, t("alarm.disposition")), disp),
            resNote,
            h("button", { id: "detail-resolve", onclick: () => this.resolve(id, disp.value, resNote.value.trim()) }, t("alarm.resolve")),
          )
        : h("p", {}, t("alarm.resolved_by", { who: personWithRole(a.resolved_by), at: fmtTime(a.resolved_at, true) }), a.disposition ? ` · ${t("disp." + a.disposition)}` : ""),
      h("h3", {}, t("alarm.notified")),
      h("div", { id: "detail-told" }),
      h("div", { id: "detail-deliveries" }),
      h("h3", {}, t("alarm.timeline")),
      h(
        "ol",
        { class: "timeline" },
        data.timeline.map((s) =>
          h(
            "li",
            { "data-step": s.step },
            h("time", {}, fmtTime(s.at, true)),
            h("strong", {}, this.stepTitle(s)),
            this.stepText(s) ? h("span", { class: "what" }, this.stepText(s)) : null,
            s.actor && s.step !== "notified" ? h("span", { class: "muted", title: s.actor }, actorText(s.actor)) : null,
            s.detail && s.detail.note ? h("q", {}, s.detail.note) : null,
          ),
        ),
      ),
    );
    this.renderDeliveries();
  },

  /** A timeline step's name; a notification says to which level it went. */
  stepTitle(s) {
    const d = s.detail || {};
    if (s.step === "notified" && d.level > 0) return t("step.notified_up", { level: levelName(d.level) });
    if (s.step === "escalated" && d.to_level !== undefined) return t("step.escalated_to", { level: levelName(d.to_level) });
    return has("step." + s.step) ? t("step." + s.step) : s.step;
  },

  /** What a step adds: the people a notification told, an expected arrival. */
  stepText(s) {
    const d = s.detail || {};
    if (s.step === "notified" && Array.isArray(d.recipients))
      return peopleText(d.recipients.map((id) => ({ contact_id: id })));
    if (s.step === "en_route" && d.eta_at) return t("tl.eta", { t: fmtTime(d.eta_at) });
    return "";
  },

  formValues(panel) {
    return {
      disp: $("#disposition", panel)?.value || "",
      ack: $("#ack-note", panel)?.value || "",
      res: $("#resolve-note", panel)?.value || "",
    };
  },

  renderDeliveries() {
    const box = $("#detail-deliveries");
    if (!box) return;
    const chips = this.deliveryChips(this.selected);
    put(box, ...(chips.length ? chips : [h("p", { class: "muted" }, t("alarm.no_deliveries"))]));
    const told = $("#detail-told");
    if (told) put(told, ...this.toldItems(this.selected));
  },
};

// ---------- home view ----------

function valueText(v) {
  if (v === true) return t("val.on");
  if (v === false) return t("val.off");
  return String(v);
}

const Home = {
  async start() {
    this.id = decodeURIComponent(location.pathname.split("/")[2] || "");
    await this.load();
    new Live({
      onUpdate: (u) => u.alarm.household_id === this.id && this.load(),
      onOpen: () => this.load(),
    }).start();
    setInterval(() => this.load(), 30000);
    document.body.dataset.ready = "1";
  },

  async load() {
    let d;
    try {
      d = await api(`/api/households/${encodeURIComponent(this.id)}`);
    } catch (e) {
      put($("#home"), h("p", { class: "error" }, t("err.load", { msg: e.message })));
      return;
    }
    const hh = d.household;
    const section = (key, ...body) => h("section", { class: key === "home.devices" ? "card wide" : "card" }, h("h2", {}, t(key)), ...body);
    const contact = (c) =>
      h("li", {}, h("strong", {}, c.name), " ", c.phone ? h("a", { href: `tel:${c.phone}` }, c.phone) : null, h("span", { class: "muted" }, ` ${t("role." + c.role)}`));
    const root = $("#home");
    root.dataset.household = hh.id;
    put(root, 
      h(
        "section",
        { class: "card wide" },
        h("h1", {}, d.elders.map((e) => e.name).join("、") || hh.id),
        h("p", {}, h("span", { class: "muted" }, t("home.address") + "："), hh.address),
        h("p", {}, h("span", { class: "muted" }, t("home.area") + "："), `${hh.town_name} · ${hh.village_name}`),
        d.elders.some((e) => e.phone)
          ? h(
              "p",
              {},
              h("span", { class: "muted" }, t("home.phone") + "："),
              d.elders.filter((e) => e.phone).map((e) => [e.name, " ", h("a", { href: `tel:${e.phone}` }, e.phone), " "]),
            )
          : null,
        h(
          "p",
          { class: "big", id: "last-activity" },
          h("span", { class: "muted" }, t("home.last_activity") + "："),
          d.last_activity ? `${fmtTime(d.last_activity, true)}（${fmtDuration(serverNow() - d.last_activity)}）` : t("home.no_activity"),
        ),
        d.mode ? h("p", { class: "badge resp" }, `${t("home.mode." + d.mode.kind)} ${t("home.until", { t: fmtTime(d.mode.until, true) })}`) : null,
        d.visit_since ? h("p", { class: "badge ok" }, t("home.visit", { t: fmtTime(d.visit_since) })) : null,
        d.unreachable_since ? h("p", { class: "badge bad" }, t("home.unreachable", { t: fmtTime(d.unreachable_since, true) })) : null,
      ),
      section(
        "home.devices",
        h(
          "table",
          { id: "devices" },
          h("thead", {}, h("tr", {}, ["home.device", "home.kind", "home.online", "home.battery", "home.last_message"].map((k) => h("th", {}, t(k))))),
          h(
            "tbody",
            {},
            d.devices.map((x) =>
              h(
                "tr",
                { "data-device": x.id },
                h("td", {}, x.id),
                h("td", {}, has("sig." + x.kind) ? t("sig." + x.kind) : x.kind),
                h(
                  "td",
                  {},
                  x.revoked_at
                    ? h("span", { class: "dot off" }, t("home.revoked"))
                    : h("span", { class: `dot ${x.online ? "on" : "off"}` }, x.online ? t("home.online") : t("home.offline")),
                ),
                h("td", { class: x.battery !== null && x.battery < 20 ? "bad" : null }, x.battery === null ? "—" : `${Math.round(x.battery)}%`),
                h(
                  "td",
                  {},
                  x.last_seen ? fmtTime(x.last_seen, true) : "—",
                  x.last_signal ? h("span", { class: "muted" }, ` ${t("sig." + x.last_signal)}`) : null,
                ),
              ),
            ),
          ),
        ),
      ),
      section(
        "home.events",
        d.recent_events.length
          ? h(
              "ul",
              { class: "plain events" },
              d.recent_events.map((e) =>
                h("li", {}, h("time", {}, fmtTime(e.at, true)), ` ${t("sig." + e.signal)}`, e.value !== undefined ? ` · ${valueText(e.value)}` : "", h("span", { class: "muted" }, ` ${e.device}`)),
              ),
            )
          : h("p", { class: "muted" }, t("home.no_events")),
      ),
      section(
        "home.alarms",
        d.alarms.length
          ? h(
              "ul",
              { class: "plain" },
              d.alarms.map((a) =>
                h(
                  "li",
                  { class: `sev-${a.severity}` },
                  h("time", {}, fmtTime(a.raised_at, true)),
                  " ",
                  h("a", { href: `/board/alarms/${encodeURIComponent(a.id)}` }, alarmTitle(a)),
                  " ",
                  h("span", { class: `badge state-${a.state}` }, t("state." + a.state)),
                  a.disposition ? h("span", { class: "muted" }, ` ${t("disp." + a.disposition)}`) : null,
                ),
              ),
            )
          : h("p", { class: "muted" }, t("home.no_alarms")),
      ),
      section("home.contacts", h("ul", { class: "plain" }, d.family_contacts.map(contact))),
      section(
        "home.on_duty",
        d.on_duty.length ? h("ul", { class: "plain", id: "on-duty" }, d.on_duty.map(contact)) : h("p", { class: "bad" }, t("home.nobody_on_duty")),
      ),
    );
  },
};

// ---------- supervisor view ----------

const Supervisor = {
  scope: "",
  async start() {
    this.dir = await api("/api/directory");
    await this.load();
    let pending = null;
    new Live({
      onUpdate: () => {
        clearTimeout(pending);
        pending = setTimeout(() => this.load(), 1500);
      },
      onOpen: () => this.load(),
    }).start();
    setInterval(() => this.load(), 60000);
    document.body.dataset.ready = "1";
  },

  async load() {
    let s;
    try {
      s = await api("/api/summary" + (this.scope ? `?scope=${encodeURIComponent(this.scope)}` : ""));
    } catch (e) {
      put($("#summary"), h("p", { class: "error" }, t("err.load", { msg: e.message })));
      return;
    }
    this.render(s);
  },

  scopePicker() {
    if (UI.contact.scope.kind !== "district") return null;
    const towns = new Map(this.dir.villages.map((v) => [v.town_id, v.town_name]));
    return h(
      "label",
      { class: "field" },
      h("span", {}, t("sup.scope")),
      h(
        "select",
        {
          id: "sup-scope",
          onchange: (e) => {
            this.scope = e.target.value;
            this.load();
          },
        },
        h("option", { value: "" }, t("filter.all")),
        [...towns].map(([id, n]) => h("option", { value: `town:${id}`, selected: this.scope === `town:${id}` }, n)),
      ),
    );
  },

  render(s) {
    const open = s.villages.reduce((n, v) => n + v.open, 0);
    const unacked = s.villages.reduce((n, v) => n + v.unacknowledged, 0);
    const offline = s.villages.reduce((n, v) => n + v.devices_offline, 0);
    const tile = (id, key, value, bad) =>
      h("div", { class: `tile${bad ? " bad" : ""}`, id }, h("div", { class: "v" }, value), h("div", { class: "k" }, t(key)));
    const villages = [...s.villages].sort((a, b) => b.open - a.open || a.village_id.localeCompare(b.village_id));
    const households = new Map(this.dir.households.map((x) => [x.id, x]));
    const place = (hid) => {
      const hh = households.get(hid);
      return hh ? `${hh.elders.join("、")} · ${hh.address} · ${hh.village_name}` : hid || "";
    };
    put($("#summary"), 
      h("div", { class: "toolbar" }, this.scopePicker()),
      h(
        "div",
        { class: "tiles" },
        tile("k-open", "sup.open", open, open > 0),
        tile("k-unacked", "sup.unacked", unacked, unacked > 0),
        tile("k-overdue", "sup.overdue", s.overdue.length, s.overdue.length > 0),
        tile("k-offline", "sup.offline", offline, offline > 0),
        tile("k-median", "sup.ack_median", fmtDuration(s.ack_today.median_ms)),
        tile("k-worst", "sup.ack_worst", fmtDuration(s.ack_today.worst_ms)),
      ),
      h("p", { class: "muted" }, t("sup.ack_count", { raised: s.ack_today.raised, acked: s.ack_today.acknowledged })),
      h(
        "div",
        { class: "charts" },
        h("section", { class: "card" }, h("h2", {}, t("sup.by_village")), barChart(villages.filter((v) => v.open > 0).slice(0, 15))),
        h("section", { class: "card" }, h("h2", {}, t("sup.ack_chart")), ackChart(s.ack_today.waits_ms)),
      ),
      h(
        "section",
        { class: "card" },
        h("h2", {}, t("sup.overdue_list")),
        s.overdue.length
          ? h(
              "ul",
              { class: "plain", id: "overdue" },
              s.overdue.map((a) =>
                h("li", {}, h("a", { href: `/board/alarms/${encodeURIComponent(a.id)}` }, alarmTitle(a)), " · ", place(a.household_id), " · ", h("span", { class: "bad" }, agoText(a.raised_at))),
              ),
            )
          : h("p", { class: "muted" }, t("sup.none")),
      ),
      h(
        "section",
        { class: "card" },
        h("h2", {}, t("sup.offline_list")),
        s.devices_offline.length
          ? h(
              "ul",
              { class: "plain", id: "offline" },
              s.devices_offline.map((d) =>
                h("li", {}, h("a", { href: `/home/${encodeURIComponent(d.household_id)}` }, d.device_id), " · ", place(d.household_id), " · ", fmtTime(d.offline_since, true)),
              ),
            )
          : h("p", { class: "muted" }, t("sup.none")),
      ),
      h(
        "section",
        { class: "card" },
        h(
          "table",
          { id: "villages" },
          h("thead", {}, h("tr", {}, ["sup.village", "sup.open", "sup.unacked", "sup.overdue", "sup.offline"].map((k) => h("th", {}, t(k))))),
          h(
            "tbody",
            {},
            villages.map((v) =>
              h(
                "tr",
                { "data-village": v.village_id },
                h("td", {}, `${v.town_name || ""} · ${v.village_name || v.village_id}`),
                h("td", {}, v.open),
                h("td", {}, v.unacknowledged),
                h("td", {}, v.overdue),
                h("td", {}, `${v.devices_offline} / ${v.devices}`),
              ),
            ),
          ),
        ),
      ),
    );
  },
};

/** Horizontal bars: open alarms per village, critical part in red. */
function barChart(rows) {
  if (!rows.length) return h("p", { class: "muted" }, t("sup.none"));
  const W = 560;
  const rowH = 26;
  const labelW = 170;
  const max = Math.max(...rows.map((r) => r.open), 1);
  const scale = (W - labelW - 40) / max;
  const svg = h("svg", { viewBox: `0 0 ${W} ${rows.length * rowH + 8}`, class: "chart", role: "img", id: "chart-villages" });
  rows.forEach((r, i) => {
    const y = i * rowH + 4;
    const crit = r.critical * scale;
    const rest = (r.open - r.critical) * scale;
    svg.append(
      h("text", { x: labelW - 8, y: y + 16, "text-anchor": "end", class: "label" }, r.village_name || r.village_id),
      h("rect", { x: labelW, y, width: Math.max(crit, 0), height: rowH - 8, class: "bar crit" }, h("title", {}, `${t("sup.critical")}: ${r.critical}`)),
      h("rect", { x: labelW + crit, y, width: Math.max(rest, 0), height: rowH - 8, class: "bar other" }, h("title", {}, `${t("sup.other")}: ${r.open - r.critical}`)),
      h("text", { x: labelW + crit + rest + 6, y: y + 16, class: "value" }, String(r.open)),
    );
  });
  return svg;
}

/** One bar per alarm acknowledged today: minutes it waited, with the median line. */
function ackChart(waits) {
  if (!waits.length) return h("p", { class: "muted" }, t("sup.none"));
  const W = 560;
  const H = 180;
  const pad = 30;
  const mins = waits.map((w) => w / 60000);
  const max = Math.max(...mins, 1);
  const bw = Math.max(2, Math.min(24, (W - pad * 2) / mins.length - 2));
  const svg = h("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", id: "chart-ack" });
  svg.append(h("line", { x1: pad, y1: H - pad, x2: W - pad, y2: H - pad, class: "axis" }));
  svg.append(h("text", { x: 2, y: pad - 8, class: "label" }, fmtDuration(Math.ceil(max) * 60000)));
  mins.forEach((m, i) => {
    const bh = (m / max) * (H - pad * 2);
    svg.append(
      h("rect", { x: pad + i * (bw + 2), y: H - pad - bh, width: bw, height: Math.max(bh, 1), class: m > 5 ? "bar crit" : "bar other" }, h("title", {}, fmtDuration(waits[i]))),
    );
  });
  const sorted = [...mins].sort((a, b) => a - b);
  const med = sorted.length % 2 ? sorted[(sorted.length - 1) / 2] : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2;
  const my = H - pad - (med / max) * (H - pad * 2);
  svg.append(h("line", { x1: pad, y1: my, x2: W - pad, y2: my, class: "median" }));
  return svg;
}

// ---------- family view ----------

const Family = {
  async start() {
    const dir = await api("/api/directory");
    learnPeople(dir);
    this.ids = dir.households.map((x) => x.id);
    this.cards = new Map();
    const root = $("#family");
    put(root);
    for (const id of this.ids) {
      const card = h("section", { class: "card elder-card", "data-household": id });
      this.cards.set(id, card);
      root.append(card);
    }
    await Promise.all(this.ids.map((id) => this.load(id)));
    new Live({
      onUpdate: (u) => u.alarm.household_id && this.cards.has(u.alarm.household_id) && this.load(u.alarm.household_id),
      onOpen: () => this.ids.forEach((id) => this.load(id)),
    }).start();
    setInterval(() => this.ids.forEach((id) => this.load(id)), 60000);
    document.body.dataset.ready = "1";
  },

  async load(id) {
    const card = this.cards.get(id);
    let d;
    try {
      d = await api(`/api/households/${encodeURIComponent(id)}`);
    } catch (e) {
      put(card, h("p", { class: "error" }, t("err.load", { msg: e.message })));
      return;
    }
    const open = d.open_alarms;
    const note = card.querySelector(".fam-note")?.value || "";
    const name = d.elders.map((e) => e.name).join("、") || d.household.address;
    const me = UI.contact.id;
    const statusLine = open.length
      ? open.map((a) =>
          h(
            "div",
            { class: `alert-box sev-${a.severity}`, "data-alarm-id": a.id, "data-state": a.state },
            h("strong", {}, t("fam.alarm_open", { title: alarmTitle(a), t: fmtTime(a.raised_at, true) })),
            h(
              "p",
              {},
              isUnacked(a)
                ? t("fam.waiting")
                : a.acked_by === me ? t("fam.handled_by_you") : t("fam.handled_by", { who: personWithRole(a.acked_by) }),
              a.response && a.response !== "seen" ? ` · ${statusText(a)}` : "",
            ),
            isUnacked(a)
              ? h(
                  "div",
                  { class: "form" },
                  h("textarea", { class: "fam-note", rows: 2, maxlength: 300, placeholder: t("fam.note") }),
                  h(
                    "button",
                    {
                      class: "primary big handle",
                      onclick: async (e) => {
                        const text = e.target.closest(".form").querySelector(".fam-note").value.trim();
                        try {
                          await api(`/api/alarms/${encodeURIComponent(a.id)}/acknowledge`, { json: text ? { note: text } : {} });
                          status(t("alarm.done"));
                        } catch (err) {
                          status(t("alarm.failed", { msg: err.message }), "error");
                        }
                        this.load(id);
                      },
                    },
                    t("fam.handling"),
                  ),
                )
              : null,
          ),
        )
      : [
          h(
            "p",
            { class: "all-normal" },
            h("strong", {}, t("fam.all_normal")),
            " — ",
            d.last_activity ? t("fam.last_activity", { t: fmtTime(d.last_activity) }) : t("fam.no_activity"),
          ),
        ];
    card.dataset.status = open.length ? "alarm" : "normal";
    put(card, 
      h("h2", {}, name),
      h("p", { class: "muted" }, d.household.address),
      ...statusLine,
      d.on_duty.length
        ? h("p", { class: "muted" }, `${t("home.on_duty")}：`, d.on_duty.map((c) => [c.name, " ", c.phone ? h("a", { href: `tel:${c.phone}` }, c.phone) : null]))
        : null,
      h("h3", {}, t("fam.history")),
      d.alarms.length
        ? h(
            "ul",
            { class: "plain history" },
            d.alarms.slice(0, 10).map((a) =>
              h("li", {}, h("time", {}, fmtTime(a.raised_at, true)), " ", alarmTitle(a), " · ", t("state." + a.state), a.disposition ? ` · ${t("disp." + a.disposition)}` : ""),
            ),
          )
        : h("p", { class: "muted" }, t("home.no_alarms")),
    );
    const again = card.querySelector(".fam-note");
    if (again && note) again.value = note;
  },
};

// ---------- login ----------

function startLogin() {
  const form = $("#login");
  const params = new URLSearchParams(location.search);
  const next = params.get("next");
  // Only a path of this hub (no "//host" or "/\\host", which browsers read as another site).
  const safeNext = next && /^\/(?![\/\\])[A-Za-z0-9\/_.-]*$/.test(next) ? next : "/";
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const err = $("#login-error");
    err.hidden = true;
    const body = { username: form.username.value.trim(), password: form.password.value };
    const r = await fetch("/api/login", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    }).catch(() => null);
    if (r && r.ok) {
      location.href = safeNext;
      return;
    }
    let msg = t("login.error", { msg: "network" });
    if (r && r.status === 401) msg = t("login.failed");
    else if (r && r.status === 429) msg = t("login.throttled", { s: r.headers.get("Retry-After") || "60" });
    else if (r) msg = t("login.error", { msg: (await r.json().catch(() => ({}))).error || r.status });
    err.textContent = msg;
    err.hidden = false;
  });
  put($("#lang-slot"), langPicker());
  document.body.dataset.ready = "1";
}

// ---------- start ----------

async function main() {
  applyStaticTexts();
  const page = document.body.dataset.page;
  if (page === "login") return startLogin();
  if (page === "not-found") return;
  try {
    await loadUi();
  } catch (e) {
    if (e.status !== 401) status(t("err.load", { msg: e.message }), "error");
    return;
  }
  header(page);
  const start = { board: Board, home: Home, supervisor: Supervisor, family: Family }[page];
  if (!start) return;
  try {
    await start.start();
  } catch (e) {
    status(t("err.load", { msg: e.message }), "error");
  }
}

main();
