// gcircus dashboard: takes over the server-rendered table and keeps it live from /dashboard/events (server-sent
// events). Hand-written, no build step, no dependency. Charts keep the last 10 minutes in this page only.
"use strict";
(() => {
  const WINDOW = 600; // seconds of history the charts show
  const ACTIONS = [
    ["start", "Start", "Start watcher {name}?"],
    ["stop", "Stop", "Stop watcher {name} and its {n} processes?"],
    ["restart", "Restart", "Restart watcher {name}? Its {n} processes are stopped and spawned again."],
    ["reload", "Reload", "Reload watcher {name}? New processes replace the {n} running ones."],
    ["incr", "+1", "Add one process to watcher {name} ({n} → {n1})?"],
    ["decr", "−1", "Remove one process from watcher {name} ({n} → {n_1})?"],
  ];
  const STATE_ORDER = ["failed", "backoff", "starting", "stopping", "active", "stopped"];
  const $ = (sel, root = document) => root.querySelector(sel);
  const csrf = $('meta[name="csrf-token"]').content;
  const mayRun = new Set($('meta[name="may-run"]').content.split(" ")); // the commands the viewer's role allows
  const table = $("#watchers");
  const live = $("#live");
  const views = new Map(); // name -> view (the `watcher` messages)
  const history = new Map(); // name -> [[time, cpu, rss], ...]
  const procUsage = new Map(); // name -> {pid: [cpu, rss]}
  const opened = new Set(); // watchers whose processes are shown
  let offset = 0; // server time - browser time, seconds
  let filterText = "";
  let tail = null; // {name, source}

  document.documentElement.classList.add("js");

  // -- helpers ------------------------------------------------------------------------------------------------
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }
  const now = () => Date.now() / 1000 + offset;
  function duration(seconds) {
    let left = Math.max(0, Math.floor(seconds));
    for (const [unit, size, small, smallSize] of [["d", 86400, "h", 3600], ["h", 3600, "m", 60], ["m", 60, "s", 1]]) {
      if (left >= size) {
        const rest = Math.floor((left % size) / smallSize);
        return `${Math.floor(left / size)}${unit}${rest ? rest + small : ""}`;
      }
    }
    return `${left}s`;
  }
  const cpuText = (cpu) => (cpu === null || cpu === undefined ? "–" : `${cpu.toFixed(1)}%`);
  function memText(rss) {
    if (rss === null || rss === undefined) return "–";
    for (const [unit, size] of [["GiB", 2 ** 30], ["MiB", 2 ** 20], ["KiB", 2 ** 10]]) if (rss >= size) return `${(rss / size).toFixed(1)} ${unit}`;
    return `${rss} B`;
  }
  function toast(text, error = false) {
    const node = el("div", {class: "toast" + (error ? " error" : ""), text});
    $("#toasts").append(node);
    setTimeout(() => node.remove(), error ? 9000 : 4000);
  }

  // -- charts -------------------------------------------------------------------------------------------------
  function sparkline(points, index, kind, label) {
    const width = 96, height = 24, t1 = now();
    const values = points.filter((p) => p[0] >= t1 - WINDOW && p[index] !== null);
    // Until there are 10 minutes of samples, the chart spans what there is (at least a minute).
    const span = values.length ? Math.min(WINDOW, Math.max(60, t1 - values[0][0])) : WINDOW, t0 = t1 - span;
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("class", "chart");
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", label);
    if (values.length < 2) return svg;
    const max = Math.max(kind === "cpu" ? 5 : 1, ...values.map((p) => p[index])) * (kind === "cpu" ? 1.1 : 1.3);
    const xy = values.map((p) => [((p[0] - t0) / span) * width, height - 1 - (p[index] / max) * (height - 2)]);
    const line = xy.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" ");
    const ns = "http://www.w3.org/2000/svg";
    const area = document.createElementNS(ns, "polygon");
    area.setAttribute("points", `${xy[0][0].toFixed(1)},${height} ${line} ${xy[xy.length - 1][0].toFixed(1)},${height}`);
    area.setAttribute("class", `area-${kind}`);
    const poly = document.createElementNS(ns, "polyline");
    poly.setAttribute("points", line);
    poly.setAttribute("fill", "none");
    poly.setAttribute("stroke-width", "1.5");
    poly.setAttribute("class", `line-${kind}`);
    svg.append(area, poly);
    return svg;
  }
  function usageCells(name, row) {
    const points = history.get(name) || [];
    const last = points.length ? points[points.length - 1] : null;
    const cpu = row.querySelector(".cpu"), mem = row.querySelector(".mem");
    cpu.replaceChildren(el("span", {class: "val", text: cpuText(last && last[1])}),
      sparkline(points, 1, "cpu", `CPU of ${name}, last 10 minutes`));
    mem.replaceChildren(el("span", {class: "val", text: memText(last && last[2])}),
      sparkline(points, 2, "mem", `Memory of ${name}, last 10 minutes`));
  }

  // -- rendering ----------------------------------------------------------------------------------------------
  function actionButtons(view) {
    const n = view.numprocesses;
    const stopped = view.state === "stopped";
    const cell = el("td", {class: "actions"});
    for (const [command, label, question] of ACTIONS) {
      if (!mayRun.has(command)) continue; // the API would refuse it (403): no button
      const disabled = (command === "start" && (view.state === "active" || view.state === "starting"))
        || (command === "stop" && stopped) || ((command === "incr" || command === "reload") && stopped)
        || (command === "decr" && (stopped || n <= 0));
      const text = question.replaceAll("{name}", view.name).replaceAll("{n}", n).replace("{n1}", n + 1).replace("{n_1}", n - 1);
      cell.append(el("button", {type: "button", class: command === "stop" ? "danger" : null, "data-command": command,
        "aria-label": `${command} ${view.name}`, disabled, onclick: () => confirmCommand(command, view.name, text)}, label));
    }
    cell.append(el("button", {type: "button", "data-command": "tail", disabled: !view.tail,
      title: view.tail ? null : "No stream is configured: gcircusd does not read this watcher's output",
      "aria-label": `output of ${view.name}`, onclick: () => openTail(view.name)}, "Output"));
    return cell;
  }
  function processRow(name, p) {
    const usage = (procUsage.get(name) || {})[p.pid] || [null, null];
    const detail = [p.detail, p.last_exit ? `last exit: ${p.last_exit}` : ""].filter(Boolean).join("; ");
    return el("tr", {class: "prow", "data-pid": p.pid},
      el("td", {class: "pid"}, `pid ${p.pid} `, el("span", {class: "wid", text: `wid ${p.wid}`})),
      el("td", {class: "st"}, el("span", {class: `pstate pstate-${p.state}`, text: p.state})),
      el("td", {class: "age", "data-started": p.started, text: `up ${duration(now() - p.started)}${p.restarts ? `, ${p.restarts} restarts` : ""}`}),
      el("td", {class: "cpu num", text: cpuText(usage[0])}),
      el("td", {class: "mem num", text: memText(usage[1])}),
      el("td", {class: "detail", text: detail}));
  }
  function watcherBody(view) {
    const isOpen = opened.has(view.name);
    const toggle = el("button", {type: "button", class: "toggle", "aria-expanded": String(isOpen),
      "aria-label": `${view.name}: show or hide its ${view.processes.length} processes`,
      onclick: () => { isOpen ? opened.delete(view.name) : opened.add(view.name); render(view.name); }},
      el("span", {class: "chev", "aria-hidden": "true", text: "▸"}), el("span", {class: "wname", text: view.name}));
    const row = el("tr", {class: "wrow"},
      el("th", {scope: "row", class: "name"}, toggle),
      el("td", {class: "st"}, el("span", {class: `state state-${view.state}`, text: view.state}),
        view.reason ? el("span", {class: "reason", text: view.reason}) : null),
      el("td", {class: "np", text: `${view.ready}/${view.numprocesses} ready`}),
      el("td", {class: "cpu num"}), el("td", {class: "mem num"}), actionButtons(view));
    usageCells(view.name, row);
    const body = el("tbody", {class: "watcher" + (isOpen ? " open" : ""), "data-name": view.name, "data-state": view.state}, row);
    if (isOpen) for (const p of view.processes) body.append(processRow(view.name, p));
    body.hidden = !matches(view);
    return body;
  }
  function bodyOf(name) {
    for (const body of table.tBodies) if (body.dataset.name === name) return body;
    return null;
  }
  function render(name) {
    const view = views.get(name), old = bodyOf(name);
    if (!view) { if (old) old.remove(); return; }
    const focused = old && old.contains(document.activeElement) ? document.activeElement.getAttribute("data-command") || "toggle" : null;
    const body = watcherBody(view);
    if (old) old.replaceWith(body);
    else {
      const after = [...table.tBodies].find((b) => b.dataset.name && b.dataset.name.toLowerCase() > name.toLowerCase());
      table.insertBefore(body, after || null);
    }
    if (focused) {
      const target = focused === "toggle" ? body.querySelector(".toggle") : body.querySelector(`[data-command="${focused}"]`);
      if (target && !target.disabled) target.focus();
    }
  }
  function renderAll() {
    for (const body of [...table.tBodies]) body.remove();
    const fragment = document.createDocumentFragment();
    const names = [...views.keys()].sort((a, b) => a.toLowerCase().localeCompare(b.toLowerCase()));
    for (const name of names) fragment.append(watcherBody(views.get(name)));
    if (!names.length) fragment.append(el("tbody", {}, el("tr", {}, el("td", {colspan: 6, class: "empty", text: "No watchers."}))));
    table.append(fragment);
    renderSummary();
  }
  function renderSummary() {
    const counts = {};
    let procs = 0;
    for (const view of views.values()) { counts[view.state] = (counts[view.state] || 0) + 1; procs += view.processes.length; }
    const list = el("ul", {class: "states", "aria-label": "Watchers by state"});
    for (const state of STATE_ORDER) {
      if (!counts[state]) continue;
      list.append(el("li", {}, el("button", {type: "button", title: `Show only ${state} watchers`,
        onclick: () => setFilter(`state:${state}`)},
      el("span", {class: `state state-${state}`, text: state}), el("span", {class: "count", text: counts[state]}))));
    }
    $("#summary").replaceChildren(el("p", {class: "totals"}, el("strong", {text: views.size}), " watchers, ",
      el("strong", {text: procs}), " processes"), list);
    applyFilter();
  }

  // -- filter -------------------------------------------------------------------------------------------------
  function matches(view) {
    if (!filterText) return true;
    return filterText.split(/\s+/).every((word) => {
      if (word.startsWith("state:")) return view.state.startsWith(word.slice(6));
      return view.name.toLowerCase().includes(word) || String(view.reason || "").toLowerCase().includes(word);
    });
  }
  function applyFilter() {
    let shown = 0;
    for (const body of table.tBodies) {
      const view = views.get(body.dataset.name);
      if (!view) continue;
      body.hidden = !matches(view);
      if (!body.hidden) shown += 1;
    }
    $("#shown").textContent = filterText ? `${shown} of ${views.size} shown` : "";
  }
  function setFilter(text) {
    const input = $("#filter");
    input.value = text;
    filterText = text.trim().toLowerCase();
    applyFilter();
  }
  let filterTimer = 0;
  $("#filter").addEventListener("input", (event) => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => { filterText = event.target.value.trim().toLowerCase(); applyFilter(); }, 80);
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "/" && document.activeElement.tagName !== "INPUT") { event.preventDefault(); $("#filter").focus(); }
  });

  // -- commands -----------------------------------------------------------------------------------------------
  function confirmCommand(command, name, question) {
    const dialog = $("#confirm");
    $("#confirm-title").textContent = `${command[0].toUpperCase()}${command.slice(1)} ${name}`;
    $("#confirm-text").textContent = question;
    const ok = $("#confirm-ok");
    ok.textContent = command === "incr" ? "Add a process" : command === "decr" ? "Remove a process" : `${command[0].toUpperCase()}${command.slice(1)}`;
    ok.classList.toggle("danger", command === "stop");
    const opener = document.activeElement;
    dialog.returnValue = "";
    dialog.onclose = () => {
      if (opener && opener.isConnected) opener.focus();
      if (dialog.returnValue === "ok") runCommand(command, name);
    };
    dialog.showModal();
  }
  async function runCommand(command, name) {
    try {
      const response = await fetch(`/api/${command}`, {method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf}, body: JSON.stringify({name})});
      const reply = await response.json().catch(() => ({}));
      if (response.ok && reply.status !== "error") toast(`${command} ${name}: ok`);
      else toast(`${command} ${name} refused: ${reply.reason || reply.error || response.status}`, true);
    } catch (error) {
      toast(`${command} ${name} failed: ${error}`, true);
    }
  }

  // -- output tail --------------------------------------------------------------------------------------------
  const tailLines = $("#tail-lines");
  function appendLines(lines) {
    const follow = $("#tail-follow").checked;
    const fragment = document.createDocumentFragment();
    for (const [time, stream, pid, wid, text] of lines) {
      const clock = new Date(time * 1000).toLocaleTimeString([], {hour12: false});
      fragment.append(el("span", {class: `ln ${stream}`}, el("span", {class: "meta", text: `${clock} ${pid}`}), text));
    }
    tailLines.append(fragment);
    while (tailLines.childElementCount > 2000) tailLines.firstElementChild.remove();
    if (follow) tailLines.scrollTop = tailLines.scrollHeight;
  }
  function openTail(name) {
    closeTail();
    $("#tail-title").textContent = `Output of ${name}`;
    tailLines.replaceChildren();
    const panel = $("#tail");
    panel.hidden = false;
    panel.dataset.name = name;
    document.body.classList.add("has-tail");
    const source = new EventSource(`/dashboard/tail?name=${encodeURIComponent(name)}`);
    source.addEventListener("lines", (event) => appendLines(JSON.parse(event.data).lines));
    source.addEventListener("skipped", (event) => tailLines.append(el("span", {class: "ln note",
      text: `… ${JSON.parse(event.data).count} records skipped (the page could not keep up)`})));
    source.onerror = () => { if (source.readyState === EventSource.CLOSED) tailLines.append(el("span", {class: "ln note", text: "(tail closed)"})); };
    tail = {name, source};
    tailLines.focus();
  }
  function closeTail() {
    if (tail) tail.source.close();
    tail = null;
    $("#tail").hidden = true;
    document.body.classList.remove("has-tail");
  }
  $("#tail-close").addEventListener("click", closeTail);

  // -- the live feed ------------------------------------------------------------------------------------------
  function addUsage(usage) {
    if (!usage) return;
    for (const [name, sample] of Object.entries(usage.watchers)) {
      const points = history.get(name) || [];
      const cpu = Object.values(sample.procs).some((p) => p[0] !== null) ? sample.cpu : null;
      points.push([usage.time, cpu, sample.rss]);
      while (points.length && points[0][0] < usage.time - WINDOW) points.shift();
      history.set(name, points);
      procUsage.set(name, sample.procs);
    }
  }
  function updateUsageCells() {
    for (const body of table.tBodies) {
      const name = body.dataset.name;
      if (!name || !views.has(name)) continue;
      usageCells(name, body.rows[0]);
      const procs = procUsage.get(name) || {};
      for (const row of body.querySelectorAll(".prow")) {
        const usage = procs[row.dataset.pid] || [null, null];
        row.querySelector(".cpu").textContent = cpuText(usage[0]);
        row.querySelector(".mem").textContent = memText(usage[1]);
      }
    }
  }
  function setLive(state, text) {
    live.className = `live ${state}`;
    live.textContent = text;
  }
  function connect() {
    const source = new EventSource("/dashboard/events");
    source.addEventListener("snapshot", (event) => {
      const data = JSON.parse(event.data);
      offset = data.time - Date.now() / 1000;
      views.clear();
      for (const view of data.watchers) views.set(view.name, view);
      addUsage(data.usage);
      renderAll();
      setLive("on", "Live");
    });
    source.addEventListener("watcher", (event) => {
      const view = JSON.parse(event.data);
      views.set(view.name, view);
      render(view.name);
      renderSummary();
    });
    source.addEventListener("removed", (event) => {
      const {name} = JSON.parse(event.data);
      views.delete(name);
      opened.delete(name);
      render(name);
      renderSummary();
    });
    source.addEventListener("usage", (event) => { addUsage(JSON.parse(event.data)); updateUsageCells(); });
    source.addEventListener("bus", (event) => {
      const bus = JSON.parse(event.data);
      document.body.dataset.lastEvent = `${bus.watcher}.${bus.name}`;
    });
    // "Live" only once the snapshot is rendered (it follows every connection, reconnections included).
    source.onerror = () => setLive("off", source.readyState === EventSource.CLOSED ? "Disconnected" : "Reconnecting…");
  }
  setInterval(() => {
    for (const cell of table.querySelectorAll(".watcher.open .age")) {
      const text = cell.textContent, comma = text.indexOf(",");
      cell.textContent = `up ${duration(now() - Number(cell.dataset.started))}${comma >= 0 ? text.slice(comma) : ""}`;
    }
  }, 1000);
  connect();
})();
