// Live progress of one alert: the server pushes its progress document over SSE whenever it changes,
// and this draws the funnels, the confirmation tiles, the needs-help cases and the committee table.
"use strict";
(function () {
  const section = document.getElementById("progress");
  if (!section) return;
  const statusNames = {
    pending_approval: "待审批 waiting for approval",
    issued: "已签发 issued",
    sending: "发送中 sending",
    cancelled: "已取消 cancelled",
    superseded: "已更新 superseded",
    expired: "已过期 expired",
  };
  const stateNames = {
    targeted: "目标 Targeted",
    queued: "排队 Queued",
    sent: "已发送 Sent",
    delivered: "已送达 Delivered",
    acknowledged: "已确认 Confirmed",
    confirmed: "已确认 Confirmed",
    failed: "失败 Failed",
    needs_help: "求助 Needs help",
    planned: "计划 Planned",
  };

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  function pct(part, whole) {
    return whole ? Math.round((100 * part) / whole) + "%" : "–";
  }
  function meter(part, whole) {
    const outer = el("div", null, "meter");
    const inner = el("span");
    inner.style.width = whole ? Math.min(100, (100 * part) / whole) + "%" : "0";
    outer.append(inner);
    return outer;
  }
  function colour(rate) {
    return "hsl(" + Math.round(rate * 120) + ", 65%, 36%)";
  }

  function drawTotals(totals) {
    const table = document.getElementById("totals");
    table.replaceChildren();
    for (const state of ["targeted", "queued", "sent", "delivered", "confirmed", "failed", "needs_help"]) {
      const row = el("tr");
      const value = el("td", totals[state].toLocaleString(), "num");
      value.id = "total-" + state;
      const bar = el("td", null, "bar");
      bar.append(meter(totals[state], totals.targeted));
      row.append(el("td", stateNames[state]), value, el("td", pct(totals[state], totals.targeted), "num"), bar);
      table.append(row);
    }
  }

  function drawChannels(channels) {
    const table = document.getElementById("channels");
    table.replaceChildren();
    const head = el("tr");
    head.append(el("th", "渠道 Channel"));
    const states = ["planned", "sent", "delivered", "acknowledged", "failed"];
    for (const state of states) head.append(el("th", stateNames[state], "num"));
    table.append(head);
    for (const [name, counts] of Object.entries(channels)) {
      const row = el("tr");
      row.dataset.channel = name;
      row.append(el("td", name));
      for (const state of states) row.append(el("td", (counts[state] || 0).toLocaleString(), "num"));
      table.append(row);
      if (name === "screen") {
        const silent = (counts.planned || 0) - (counts.delivered || 0) - (counts.failed || 0);
        const note = el("tr");
        const cell = el("td", "未应答的屏幕 Screens not answering: " + Math.max(0, silent) + "；故障 failed: " + (counts.failed || 0));
        cell.colSpan = states.length + 1;
        cell.id = "screens-offline";
        note.append(cell);
        table.append(note);
      }
    }
    if (!Object.keys(channels).length) table.append(el("tr", "尚未排队 Nothing queued yet", "muted"));
  }

  function tile(row) {
    const rate = row.targeted ? row.acknowledged / row.targeted : 0;
    const node = el("div", null, "tile");
    node.style.background = colour(rate);
    node.dataset.code = row.code;
    node.append(el("b", pct(row.acknowledged, row.targeted)));
    node.append(document.createTextNode(row.name + " · " + row.acknowledged + "/" + row.targeted));
    if (row.needs_help) node.append(el("div", "求助 " + row.needs_help));
    return node;
  }

  function drawTiles(areas) {
    const box = document.getElementById("tiles");
    box.replaceChildren();
    for (const [level, title] of [["district", "区 Districts"], ["street", "街镇 Streets and towns"]]) {
      const heading = el("h3", title);
      const tiles = el("div", null, "tiles");
      for (const row of areas[level]) tiles.append(tile(row));
      box.append(heading, tiles);
    }
    for (const street of areas.street) {
      const prefix = street.code.slice(0, 9);
      const tiles = el("div", null, "tiles");
      for (const row of areas.community) if (row.code.startsWith(prefix)) tiles.append(tile(row));
      box.append(el("h3", street.name + " 居委 committees"), tiles);
    }
  }

  function drawAreas(rows) {
    const table = document.getElementById("areas");
    table.replaceChildren();
    const head = el("tr");
    const states = ["targeted", "sent", "delivered", "failed", "acknowledged", "needs_help"];
    head.append(el("th", "居委 Committee"));
    for (const state of states) head.append(el("th", stateNames[state], "num"));
    head.append(el("th", "确认率 Rate", "num"));
    table.append(head);
    for (const row of rows) {
      const tr = el("tr");
      tr.dataset.code = row.code;
      tr.append(el("td", row.name));
      for (const state of states) tr.append(el("td", row[state].toLocaleString(), "num"));
      tr.append(el("td", pct(row.acknowledged, row.targeted), "num"));
      table.append(tr);
    }
  }

  function drawHelp(progress) {
    const cases = progress.needs_help_cases || [];
    document.getElementById("help-count").textContent = "(" + progress.totals.needs_help + ")";
    const table = document.getElementById("help");
    table.replaceChildren();
    for (const entry of cases) {
      const tr = el("tr");
      tr.append(el("td", entry.community), el("td", entry.place), el("td", entry.name), el("td", entry.phone));
      table.append(tr);
    }
    if (!cases.length) table.append(el("tr", progress.totals.needs_help ? "" : "暂无 None so far", "muted"));
  }

  function draw(progress) {
    const status = document.getElementById("alert-status");
    status.textContent = statusNames[progress.alert.status] || progress.alert.status;
    status.dataset.status = progress.alert.status;
    drawTotals(progress.totals);
    drawChannels(progress.channels);
    drawTiles(progress.areas);
    drawHelp(progress);
    drawAreas(progress.areas.community);
  }

  draw(JSON.parse(document.getElementById("progress-data").textContent));
  const live = document.getElementById("live-state");
  const source = new EventSource(section.dataset.stream);
  source.addEventListener("progress", (event) => {
    draw(JSON.parse(event.data));
    live.textContent = "实时 live · " + new Date().toLocaleTimeString();
  });
  source.addEventListener("error", () => {
    live.textContent = "连接中断，正在重连 reconnecting…";
  });
})();
