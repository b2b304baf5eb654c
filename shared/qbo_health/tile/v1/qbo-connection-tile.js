/*! <qbo-connection-tile> v1, QBO Connection Health. Usage, attributes, events and theming: docs/tile.md */
(function () {
  "use strict";
  var TAG = "qbo-connection-tile";
  if (!window.customElements || window.customElements.get(TAG)) return;

  // The API this file was served from: /tile/v1/qbo-connection-tile.js sits two folders below its base.
  var SCRIPT = document.currentScript;
  var DEFAULT_API = SCRIPT && SCRIPT.src ? new URL("../../", SCRIPT.src).href : "";
  // Shown before the connection's own texts arrive (they come in its language with the first answer), in
  // the language of the page around the tile: the locales the notices speak, English otherwise.
  var FALLBACKS = {
    en: {
      region: "QuickBooks connection",
      loading: "Loading the QuickBooks connection...",
      unavailable: "The QuickBooks connection status is not available right now.",
      retry: "Try again"
    },
    fr: {
      region: "Connexion QuickBooks",
      loading: "Chargement de la connexion QuickBooks...",
      unavailable: "L\u2019\u00e9tat de la connexion QuickBooks n\u2019est pas disponible pour le moment.",
      retry: "R\u00e9essayer"
    },
    es: {
      region: "Conexi\u00f3n con QuickBooks",
      loading: "Cargando la conexi\u00f3n con QuickBooks...",
      unavailable: "El estado de la conexi\u00f3n con QuickBooks no est\u00e1 disponible en este momento.",
      retry: "Reintentar"
    }
  };
  function pageTexts(node) {
    var owner = node.closest("[lang]") || document.documentElement;
    var lang = (owner.getAttribute("lang") || "").toLowerCase().split("-")[0];
    return FALLBACKS[lang] || FALLBACKS.en;
  }
  var ICONS = { healthy: "\u2713", attention: "!", disconnected: "\u00d7", pending: "\u2026", error: "?" };

  var CSS = [
    ":host{display:block;max-width:var(--qbo-tile-max-width,40rem);font-family:var(--qbo-tile-font,system-ui,-apple-system,'Segoe UI',Roboto,sans-serif);font-size:var(--qbo-tile-font-size,1rem);line-height:1.45;color:var(--qbo-tile-color,#1f2328)}",
    ":host([hidden]){display:none}",
    ".tile{--tone:var(--qbo-tile-pending,#44546a);position:relative;box-sizing:border-box;background:var(--qbo-tile-background,#fff);border:1px solid var(--qbo-tile-border,#d0d7de);border-left:.375rem solid var(--tone);border-radius:var(--qbo-tile-radius,.5rem);padding:var(--qbo-tile-padding,1rem 1.25rem)}",
    ".healthy{--tone:var(--qbo-tile-healthy,#1e6b34)}.attention{--tone:var(--qbo-tile-attention,#8a4600)}.disconnected{--tone:var(--qbo-tile-disconnected,#b3261e)}",
    ".eyebrow{margin:0 0 .5rem;font-size:.8125em;letter-spacing:.02em;text-transform:uppercase;color:var(--qbo-tile-muted,#57606a)}",
    ".head{display:flex;gap:.75rem;align-items:flex-start}",
    ".icon{flex:none;display:inline-flex;align-items:center;justify-content:center;width:1.75rem;height:1.75rem;border-radius:50%;background:var(--tone);color:var(--qbo-tile-background,#fff);font-weight:700}",
    ".heading{margin:0;font-size:1.125em;line-height:1.3;color:var(--tone)}.heading:focus{outline:none}",
    ".company{margin:.125rem 0 0;color:var(--qbo-tile-muted,#57606a);overflow-wrap:anywhere}",
    ".title{margin:.75rem 0 0;font-weight:600}.message{margin:.75rem 0 0}",
    "dl{margin:.75rem 0 0}dl>div{margin:0 0 .625rem}dt{font-weight:600}dd{margin:0}",
    ".note{margin:.25rem 0 0;color:var(--qbo-tile-muted,#57606a);font-size:.9375em}",
    ".actions{margin:1rem 0 0}",
    "button{font:inherit;font-weight:600;cursor:pointer;border:0;border-radius:var(--qbo-tile-button-radius,.375rem);padding:.625rem 1.25rem;background:var(--qbo-tile-accent,#2e7d32);color:var(--qbo-tile-accent-text,#fff)}",
    "button:hover{filter:brightness(.92)}button:focus-visible{outline:3px solid var(--qbo-tile-focus,#0969da);outline-offset:2px}",
    ".sr{position:absolute;width:1px;height:1px;margin:-1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}",
    // The live region is for screen readers; what a sighted user also needs to read (the window) shows.
    ".live:not(.shown){position:absolute;width:1px;height:1px;margin:-1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}",
    ".live.shown{margin:.75rem 0 0;font-size:.9375em;color:var(--qbo-tile-muted,#57606a)}"
  ].join("");

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text != null) node.textContent = String(text); // every text is set as text, never parsed as HTML
    return node;
  }

  function originOf(url) {
    try {
      return new URL(url, location.href).origin;
    } catch (error) {
      return null;
    }
  }

  var sheet = null;
  function styleInto(root) {
    if (root.adoptedStyleSheets !== undefined && window.CSSStyleSheet) {
      try {
        // A constructed sheet: no <style> element, so a page's strict CSP (style-src) needs no exception.
        if (!sheet) {
          sheet = new CSSStyleSheet();
          sheet.replaceSync(CSS);
        }
        root.adoptedStyleSheets = [sheet];
        return;
      } catch (error) {
        /* fall back to a <style> element below */
      }
    }
    root.appendChild(el("style", null, CSS));
  }

  var counter = 0;

  class QboConnectionTile extends HTMLElement {
    static get observedAttributes() {
      return ["connection", "token", "api"];
    }

    connectedCallback() {
      if (!this._root) this._build();
      window.addEventListener("message", this._onMessage);
      document.addEventListener("visibilitychange", this._onVisible);
      this.refresh();
    }

    disconnectedCallback() {
      window.removeEventListener("message", this._onMessage);
      document.removeEventListener("visibilitychange", this._onVisible);
      this._stopWatching();
    }

    attributeChangedCallback(name, before, after) {
      if (before !== after && this._root && this.isConnected) this.refresh();
    }

    get token() {
      return this.getAttribute("token");
    }

    set token(value) {
      if (value == null) this.removeAttribute("token");
      else this.setAttribute("token", value);
    }

    /** The latest answer of the API (what the tile shows), or null. */
    get status() {
      return this._data || null;
    }

    /** Load the connection's health again (the tile does this itself after a reconnect). */
    refresh() {
      var id = this.getAttribute("connection");
      var token = this.getAttribute("token");
      if (!this._root || !id) return Promise.resolve();
      if (!token) {
        this._tokenNeeded(id, token);
        return Promise.resolve();
      }
      var seq = ++this._seq;
      var self = this;
      this._tile.setAttribute("aria-busy", "true");
      var base = (this.getAttribute("api") || DEFAULT_API).replace(/\/+$/, "");
      return fetch(base + "/tile/connections/" + encodeURIComponent(id), {
        headers: { Authorization: "Bearer " + token, Accept: "application/json" },
        mode: "cors",
        credentials: "omit",
        cache: "no-store",
        referrerPolicy: "no-referrer"
      })
        .then(function (response) {
          if (response.status === 401) return { expired: true };
          if (!response.ok) return { failed: response.status };
          return response.json().then(function (data) {
            return { data: data };
          });
        })
        .catch(function () {
          return { failed: 0 };
        })
        .then(function (result) {
          if (seq !== self._seq) return; // a newer load is under way
          self._tile.removeAttribute("aria-busy");
          if (result.expired) return self._tokenNeeded(id, token);
          if (result.data) return self._show(result.data);
          self._emit("qbo-tile-error", { connectionId: id, status: result.failed });
          if (!self._data) self._renderMessage(self._texts.unavailable, true);
        });
    }

    _build() {
      counter += 1;
      this._id = "qbo-tile-" + counter;
      this._seq = 0;
      this._onMessage = this._message.bind(this);
      this._onVisible = this._visible.bind(this);
      this._root = this.attachShadow({ mode: "open" });
      styleInto(this._root);
      this._tile = el("section", "tile pending");
      this._tile.setAttribute("part", "tile");
      this._texts = pageTexts(this);
      this._eyebrow = el("p", "eyebrow", this._texts.region);
      this._eyebrow.id = this._id + "-label";
      this._eyebrow.setAttribute("part", "label");
      this._tile.setAttribute("aria-labelledby", this._eyebrow.id);
      this._body = el("div");
      // A polite live region, there from the start: screen readers announce what changes after a load.
      this._live = el("p", "live");
      this._live.setAttribute("role", "status");
      this._live.setAttribute("aria-live", "polite");
      this._tile.append(this._eyebrow, this._body, this._live);
      this._root.appendChild(this._tile);
      this._renderMessage(this._texts.loading, false);
    }

    _emit(type, detail) {
      this.dispatchEvent(new CustomEvent(type, { bubbles: true, composed: true, detail: detail }));
    }

    _announce(text, shown) {
      this._live.className = shown ? "live shown" : "live";
      this._live.textContent = text || "";
    }

    _tokenNeeded(id, token) {
      if (this._askedFor === token) return; // once per token: the page answers by setting a new one
      this._askedFor = token;
      this._emit("qbo-tile-token-expired", { connectionId: id });
      if (!this._data) this._renderMessage(this._texts.unavailable, false);
    }

    _show(data) {
      var before = this._data;
      var focused = this._root.activeElement;
      this._data = data;
      this._askedFor = undefined;
      this._loadedAt = Date.now();
      this._render(data);
      this.setAttribute("design", data.design);
      if (this._reloading || (before && before.design !== data.design)) {
        this._announce(data.heading + ". " + data.message);
      }
      this._reloading = false;
      // The button a keyboard user pressed may be gone (the connection is healthy): keep focus in the tile.
      if (focused && !this._root.contains(focused)) this._heading.focus();
      this._emit("qbo-tile-status", {
        connectionId: data.connection_id,
        state: data.state,
        design: data.design,
        daysLeft: data.days_left
      });
    }

    _head(design, heading, level) {
      this._tile.className = "tile " + design;
      var head = el("div", "head");
      var icon = el("span", "icon", ICONS[design] || ICONS.error);
      icon.setAttribute("aria-hidden", "true");
      var titles = el("div");
      this._heading = el(level ? "h" + level : "p", "heading", heading);
      this._heading.tabIndex = -1;
      this._heading.setAttribute("part", "heading");
      titles.appendChild(this._heading);
      head.append(icon, titles);
      this._body.textContent = "";
      this._body.appendChild(head);
      return titles;
    }

    _renderMessage(text, retry) {
      this._head(this._data ? this._data.design : "pending", text, 0);
      if (!retry) return;
      var button = el("button", null, this._texts.retry);
      button.type = "button";
      button.addEventListener("click", this.refresh.bind(this));
      this._body.appendChild(el("div", "actions")).appendChild(button);
    }

    _render(data) {
      var labels = data.labels || {};
      var body = this._body;
      this.setAttribute("lang", data.lang || "");
      this._eyebrow.textContent = labels.region || this._texts.region;
      var level = Math.min(6, Math.max(1, parseInt(this.getAttribute("heading-level"), 10) || 2));
      var titles = this._head(data.design, data.heading, level);
      if (data.company_name) {
        var company = el("p", "company", data.company_name);
        company.setAttribute("part", "company");
        titles.appendChild(company);
      }
      if (data.design === "attention") {
        if (data.title) body.appendChild(el("p", "title", data.title));
        var list = el("dl");
        var add = function (label, text, note) {
          if (!text) return;
          var item = el("div");
          var value = el("dd", null, text);
          if (note) value.appendChild(el("span", "note", " " + note));
          item.append(el("dt", null, label), value);
          list.appendChild(item);
        };
        add(labels.what_happened, data.message);
        add(labels.what_to_do, data.remedy);
        add(labels.who_can_fix, data.who_can_fix);
        add(labels.time_left, data.days_left_text, data.consequence);
        body.appendChild(list);
      } else {
        body.appendChild(el("p", "message", data.message));
        if (data.remedy) body.appendChild(el("p", "message", data.remedy));
        if (data.last_success_text) body.appendChild(el("p", "note", data.last_success_text));
      }
      if (data.reauthorize && data.reconnect_url) {
        var button = el("button", null, labels.reauthorize);
        button.type = "button";
        button.setAttribute("part", "button");
        button.appendChild(el("span", "sr", " (" + labels.new_window + ")"));
        button.addEventListener("click", this._reauthorize.bind(this));
        body.appendChild(el("div", "actions")).appendChild(button);
      }
    }

    /** The Reauthorize button: the reconnect flow in a new window; its result page tells us the outcome. */
    _reauthorize() {
      var data = this._data;
      if (!data || !data.reconnect_url) return;
      var labels = data.labels || {};
      var popup = window.open(data.reconnect_url, this._id + "-reconnect", "popup,width=560,height=720");
      if (!popup) {
        this._announce(labels.popup_blocked, true);
        return;
      }
      this._popup = popup;
      // The result page is served from the API's public origin, where the reconnect link points.
      this._expected = originOf(data.reconnect_url);
      this._announce(labels.window_open, true);
      this._stopWatching();
      var self = this;
      // A user may close the window without finishing: look again then.
      this._timer = window.setInterval(function () {
        if (self._popup && self._popup.closed) {
          self._popup = null;
          self._stopWatching();
          self._reload();
        }
      }, 500);
    }

    _stopWatching() {
      if (this._timer) window.clearInterval(this._timer);
      this._timer = null;
    }

    _message(event) {
      var data = event.data;
      if (!this._expected || event.origin !== this._expected) return; // only the API's result pages
      if (!this._popup || event.source !== this._popup) return; // only the window this tile opened
      if (!data || data.type !== "qbo-connection" || data.connectionId !== this.getAttribute("connection")) {
        return;
      }
      this._emit("qbo-tile-result", { connectionId: data.connectionId, status: data.status });
      if (data.status === "connected") {
        var popup = this._popup;
        this._popup = null;
        this._stopWatching();
        popup.close(); // it is done: the tile shows the outcome
      }
      this._reload();
    }

    _reload() {
      this._announce(((this._data && this._data.labels) || {}).refreshing);
      this._reloading = true;
      return this.refresh();
    }

    _visible() {
      if (document.visibilityState === "visible" && this._loadedAt && Date.now() - this._loadedAt > 60000) {
        this.refresh();
      }
    }
  }

  window.customElements.define(TAG, QboConnectionTile);
})();
