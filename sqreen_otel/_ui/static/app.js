// sqreen-otel Event Explorer. Every value shown comes from attackers: it is only ever set as
// text (textContent, SVG text nodes), never parsed as HTML, and control or bidirectional
// characters are shown escaped (the same rule as the terminal explorer).
"use strict";

(function () {
  const TOKEN_KEY = "sqreen-otel-token";
  const UNSAFE = /[\\\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff]/g;
  const COLORS = ["#c0392b", "#2471a3", "#229954", "#b9770e", "#7d3c98", "#5d6d7e", "#17a589"];
  let meta = { read_only: true };

  function shown(value) {
    if (value === null || value === undefined) return "";
    const text = typeof value === "string" ? value : JSON.stringify(value);
    return text.replace(UNSAFE, function (c) {
      if (c === "\\") return "\\\\";
      const code = c.charCodeAt(0);
      return code < 0x100 ? "\\x" + code.toString(16).padStart(2, "0") : "\\u" + code.toString(16).padStart(4, "0");
    });
  }

  function el(tag, text, attributes) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = shown(text);
    for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, value);
    return node;
  }

  function link(text, hash) {
    const a = el("a", text);
    a.href = "#" + new URLSearchParams(hash).toString();
    return a;
  }

  function token() {
    const hash = new URLSearchParams(location.hash.slice(1));
    if (hash.has("token")) {
      sessionStorage.setItem(TOKEN_KEY, hash.get("token"));
      hash.delete("token");
      history.replaceState(null, "", location.pathname + (hash.toString() ? "#" + hash.toString() : ""));
    }
    return sessionStorage.getItem(TOKEN_KEY) || "";
  }

  function fail(message) {
    const box = document.getElementById("error");
    box.textContent = shown(message);
    box.hidden = !message;
  }

  async function api(path, params, body) {
    const query = params ? "?" + new URLSearchParams(params).toString() : "";
    const options = { headers: { Authorization: "Bearer " + token() }, cache: "no-store" };
    if (body !== undefined) {
      options.method = "POST";
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path + query, options);
    const answer = await response.json().catch(function () { return { error: response.statusText }; });
    if (!response.ok) throw new Error(answer.error || response.statusText);
    return answer;
  }

  function filters() {
    const form = document.getElementById("filters");
    const out = {};
    for (const name of ["name", "user", "ip", "property", "since", "until"]) {
      const value = form.elements[name].value.trim();
      if (value) out[name] = value;
    }
    return out;
  }

  function iso(text) {
    return text ? text.replace("T", " ").slice(0, 19) : "";
  }

  function compact(map) {
    if (!map || typeof map !== "object") return shown(map);
    return Object.entries(map).map(function ([k, v]) { return k + "=" + (typeof v === "string" ? v : JSON.stringify(v)); }).join(" ");
  }

  function fill(tableId, rows) {
    const body = document.querySelector("#" + tableId + " tbody");
    body.replaceChildren(...rows);
    if (!rows.length) {
      const tr = el("tr");
      tr.append(el("td", "nothing matches", { colspan: "6", class: "empty" }));
      body.append(tr);
    }
  }

  function eventRows(events) {
    return events.map(function (event) {
      const tr = el("tr", null, { "data-id": String(event.id) });
      const time = el("td");
      time.append(link(iso(event.time), { view: "event", id: String(event.id) }));
      tr.append(time, el("td", event.name), el("td", compact(event.user)), el("td", event.client_ip),
        el("td", ((event.method || "") + " " + (event.path || "")).trim()));
      return tr;
    });
  }

  function groupRows(groups, by) {
    return groups.map(function (group) {
      const tr = el("tr");
      const cell = el("td");
      const value = group.value;
      if (value === null || value === undefined) {
        cell.textContent = "(none)";
      } else if (by === "ip") {
        cell.append(link(value, { view: "ip", ip: value }));
      } else if (by === "user") {
        cell.append(link(value, { view: "user", user: value }));
      } else {
        cell.textContent = shown(value);
      }
      tr.append(cell, el("td", String(group.count)), el("td", String(group.distinct_users)),
        el("td", iso(group.first)), el("td", iso(group.last)));
      return tr;
    });
  }

  function svg(tag, attributes) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, String(value));
    return node;
  }

  function drawTimeline(answer) {
    const box = document.getElementById("timeline");
    const legend = document.getElementById("legend");
    const buckets = answer.buckets;
    const names = answer.names;
    const width = 960, height = 220, pad = 30;
    const chart = svg("svg", { viewBox: "0 0 " + width + " " + height, role: "img", id: "timeline-chart" });
    const total = buckets.map(function (b) { return Object.values(b.counts).reduce(function (a, c) { return a + c; }, 0); });
    const top = Math.max(1, ...total);
    const step = (width - 2 * pad) / Math.max(1, buckets.length);
    buckets.forEach(function (bucket, index) {
      let y = height - pad;
      names.forEach(function (name, n) {
        const count = bucket.counts[name] || 0;
        if (!count) return;
        const h = (count / top) * (height - 2 * pad);
        y -= h;
        const bar = svg("rect", { x: pad + index * step, y: y, width: Math.max(1, step - 1), height: h, fill: COLORS[n % COLORS.length], class: "bar" });
        bar.dataset.name = name;
        bar.dataset.count = String(count);
        bar.dataset.time = bucket.time;
        const title = svg("title");
        title.textContent = shown(iso(bucket.time) + "  " + name + ": " + count);
        bar.append(title);
        chart.append(bar);
      });
    });
    const axis = svg("text", { x: pad, y: height - 8, class: "axis" });
    axis.textContent = buckets.length ? iso(buckets[0].time) + "  to  " + iso(buckets[buckets.length - 1].time) + " (UTC), peak " + top : "no events in this range";
    chart.append(axis);
    box.replaceChildren(chart);
    legend.replaceChildren(...names.map(function (name, n) {
      const item = el("span", name, { class: "key" });
      item.style.borderColor = COLORS[n % COLORS.length];
      return item;
    }));
  }

  function groupBy() {
    const custom = document.getElementById("group-custom").value.trim();
    return custom || document.getElementById("group-by").value;
  }

  async function explore() {
    const f = filters();
    const bucket = document.getElementById("filters").elements.bucket.value;
    const by = groupBy();
    const [timeline, groups, events] = await Promise.all([
      api("/api/timeline", Object.assign({ bucket: bucket }, f)),
      api("/api/groups", Object.assign({ by: by }, f)),
      api("/api/events", Object.assign({ limit: "100" }, f)),
    ]);
    drawTimeline(timeline);
    fill("groups", groupRows(groups.groups, by));
    fill("events", eventRows(events.events));
  }

  async function showEvent(id) {
    const event = (await api("/api/event", { id: id })).event;
    document.getElementById("event-title").textContent = shown(event.name);
    const list = document.getElementById("event-detail");
    const entries = [
      ["time (UTC)", event.time], ["name", event.name], ["type", event.type], ["user", compact(event.user)],
      ["client IP", event.client_ip], ["method", event.method], ["path", event.path], ["route", event.route],
      ["user agent", event.user_agent], ["parameters", compact(event.parameters)],
      ["properties", compact(event.properties)], ["service", event.service],
      ["trace id", event.trace_id], ["span id", event.span_id],
    ];
    list.replaceChildren();
    for (const [label, value] of entries) list.append(el("dt", label), el("dd", value, { "data-field": label }));
    if (event.client_ip) list.append(el("dt", ""), link("all events of " + event.client_ip, { view: "ip", ip: event.client_ip }));
  }

  async function showTarget(kind, value) {
    const isIp = kind === "ip";
    document.getElementById("target-title").textContent = shown((isIp ? "IP " : "User ") + value);
    const f = Object.assign(filters(), isIp ? { ip: value } : { user_json: value });
    delete f.user;
    const [groups, events, actions] = await Promise.all([
      api("/api/groups", Object.assign({ by: "name" }, f)),
      api("/api/events", Object.assign({ limit: "100" }, f)),
      api("/api/actions", isIp ? { ip: value } : { user: value }),
    ]);
    fill("target-groups", groupRows(groups.groups, "name"));
    fill("target-events", eventRows(events.events));
    const mine = actions.actions;
    const box = document.getElementById("target-actions");
    box.replaceChildren(...mine.map(function (action) {
      const p = el("p", (action.action === "block_ip" || action.action === "block_user" ? "Blocked" : "Redirected") + " by " + action.action_id + " until " + (action.until || "forever") + " ");
      if (!meta.read_only && action.source === "store") {
        const button = el("button", "Unblock", { type: "button", class: "unblock" });
        button.addEventListener("click", function () { removeAction(action.action_id).then(route); });
        p.append(button);
      }
      return p;
    }));
    const form = document.getElementById("block-form");
    form.hidden = meta.read_only;
    form.dataset.kind = kind;
    form.dataset.value = value;
    document.getElementById("block-button").textContent = isIp ? "Block this IP" : "Block this user";
  }

  async function removeAction(id) {
    try {
      await api("/api/actions/remove", null, { action_id: id });
    } catch (error) { fail(error.message); }
  }

  async function showActions() {
    const answer = await api("/api/actions");
    fill("actions", answer.actions.map(function (action) {
      const tr = el("tr");
      const cell = el("td");
      if (!meta.read_only && action.source === "store") {
        const button = el("button", "Remove", { type: "button" });
        button.addEventListener("click", function () { removeAction(action.action_id).then(route); });
        cell.append(button);
      }
      tr.append(el("td", action.source), el("td", action.action_id), el("td", action.action), el("td", action.target), el("td", action.until || "permanent"), cell);
      return tr;
    }));
  }

  async function showPlaybooks() {
    const answer = await api("/api/firings", filters());
    fill("firings", answer.firings.map(function (f) {
      const tr = el("tr");
      tr.append(el("td", iso(f.time)), el("td", f.playbook), el("td", f.group_by + "=" + f.group), el("td", String(f.count)), el("td", (f.action_ids || []).join(", ")));
      return tr;
    }));
    const area = document.querySelector("#dry-run textarea");
    if (!area.value && meta.playbooks) area.value = meta.playbooks;
  }

  function fillDryRun(firings) {
    fill("dry-results", firings.map(function (f) {
      const tr = el("tr");
      tr.append(el("td", iso(f.time)), el("td", f.playbook), el("td", f.group_by + "=" + f.group), el("td", String(f.count)), el("td", f.would.join("; ")));
      return tr;
    }));
  }

  const VIEWS = ["explore", "event", "target", "actions", "playbooks"];

  function show(view) {
    for (const name of VIEWS) document.getElementById("view-" + name).hidden = name !== view;
    document.body.dataset.view = view;
  }

  async function route() {
    fail("");
    const hash = new URLSearchParams(location.hash.slice(1));
    const view = hash.get("view") || "explore";
    try {
      if (view === "event") { show("event"); await showEvent(hash.get("id")); }
      else if (view === "ip") { show("target"); await showTarget("ip", hash.get("ip")); }
      else if (view === "user") { show("target"); await showTarget("user", hash.get("user")); }
      else if (view === "actions") { show("actions"); await showActions(); }
      else if (view === "playbooks") { show("playbooks"); await showPlaybooks(); }
      else { show("explore"); await explore(); }
      document.body.dataset.ready = view;
    } catch (error) {
      fail(error.message);
      document.body.dataset.ready = "error";
    }
  }

  async function start() {
    if (!token()) { document.getElementById("notoken").hidden = false; return; }
    try {
      meta = await api("/api/meta");
    } catch (error) { fail(error.message); return; }
    const mode = document.getElementById("mode");
    mode.textContent = meta.read_only ? "read-only" : "";
    mode.hidden = !meta.read_only;
    document.getElementById("filters").addEventListener("submit", function (e) { e.preventDefault(); route(); });
    document.getElementById("group-by").addEventListener("change", function () { document.getElementById("group-custom").value = ""; route(); });
    document.getElementById("group-custom").addEventListener("change", route);
    document.getElementById("block-form").addEventListener("submit", async function (e) {
      e.preventDefault();
      const form = e.target;
      const body = { duration: form.elements.duration.value.trim() };
      if (form.dataset.kind === "ip") { body.action = "block_ip"; body.ip = form.dataset.value; }
      else { body.action = "block_user"; body.user = JSON.parse(form.dataset.value); }
      try { await api("/api/actions", null, body); await route(); } catch (error) { fail(error.message); }
    });
    document.getElementById("dry-run").addEventListener("submit", async function (e) {
      e.preventDefault();
      try {
        const answer = await api("/api/playbooks/test", null, Object.assign({ toml: e.target.elements.toml.value }, filters()));
        fillDryRun(answer.firings);
        document.body.dataset.dryRun = String(answer.firings.length);
      } catch (error) { fail(error.message); }
    });
    window.addEventListener("hashchange", route);
    await route();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
