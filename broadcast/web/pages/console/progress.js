// Live progress of one alert. The server pushes the progress document over SSE whenever it changes;
// this draws, in the order a duty room needs them: the requests for help (newest first, with the
// number to call and who is handling each), the funnel with the time since issue and an estimated
// end, the channels, the confirmation curve (plotly.js), and the areas. A new request for help changes
// the tab's title and, once the officer has allowed it, chimes and shows a notification.
"use strict";
(function () {
  const section = document.getElementById("progress");
  if (!section) return;
  const alertId = section.dataset.alert;
  const zone = section.dataset.zone || "Asia/Shanghai";
  const canMark = section.dataset.canMark === "1";
  const csrf = section.dataset.csrf;
  const finishedStatus = { cancelled: "已解除 lifted", superseded: "已更新 superseded", expired: "已过期 expired" };
  const stateNames = {
    targeted: "目标 Targeted",
    queued: "排队 Queued",
    sent: "已发送 Sent",
    delivered: "已送达 Delivered",
    confirmed: "已确认 Confirmed",
    acknowledged: "已确认 Confirmed",
    failed: "失败 Failed",
    needs_help: "求助 Needs help",
  };
  const channelNames = { sms: "短信 SMS", push: "应用推送 App push", voice: "语音电话 Voice call", screen: "楼宇屏 Screens", none: "无可用渠道 No channel" };
  const noticeNames = { help: "求助通知 help alerts", lists: "上门名单 door-to-door lists", rollup: "社区汇总 roll-ups" };
  const helpStates = [["new", "未处理 new"], ["assigned", "已指派 assigned"], ["handled", "已处理 handled"]];
  const clockTime = new Intl.DateTimeFormat("zh-CN", { timeZone: zone, hour: "2-digit", minute: "2-digit", hour12: false });
  const fmt = (n) => Number(n || 0).toLocaleString("en-US");

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
  function minutesText(ms) {
    const minutes = Math.max(0, Math.floor(ms / 60000));
    const h = Math.floor(minutes / 60), m = minutes % 60;
    return h ? h + " 小时 " + m + " 分钟 (" + h + " h " + m + " min)" : m + " 分钟 (" + m + " min)";
  }

  // The server's clock, carried forward by the browser's: tests and replays run on an injected clock.
  let serverOffset = 0;
  function setServerNow(iso) {
    if (iso) serverOffset = Date.parse(iso) - Date.now();
  }
  const now = () => Date.now() + serverOffset;

  // ---- phase: a finished warning is grey and offers no Update or Cancel
  function phase(progress) {
    const alert = progress.alert;
    const t = progress.totals;
    if (finishedStatus[alert.status]) return { key: "finished", label: finishedStatus[alert.status], finished: true };
    if (alert.status === "pending_approval") return { key: "pending", label: "待审批 waiting for approval", finished: false };
    const issued = Date.parse(alert.issued_at || alert.created_at);
    if (now() >= issued + alert.valid_minutes * 60000) return { key: "finished", label: "已过期 expired", finished: true };
    const allSent = t.targeted > 0 && t.sent + t.failed >= t.targeted;
    if (alert.msg_type === "cancel") {
      return { key: "cancelling", label: allSent ? "解除通知已发完 cancellation sent" : "解除通知发送中 sending the cancellation", finished: true };
    }
    return allSent ? { key: "sent", label: "已全部发出 all sent · 生效中 in force", finished: false } : { key: "live", label: "发送中 sending", finished: false };
  }
  function drawPhase(progress) {
    const p = phase(progress);
    const status = document.getElementById("alert-status");
    status.textContent = p.label;
    status.dataset.phase = p.key;
    if (p.finished) {
      document.getElementById("banner").className = "banner finished";
      for (const id of ["update", "cancel"]) {
        const button = document.getElementById(id);
        if (button) button.remove();
      }
    }
    return p;
  }

  // ---- help requests first
  let knownHelp = null;
  let chimes = 0;
  const baseTitle = document.title;
  let audio = null;

  function soundAllowed() {
    return localStorage.getItem("helpSound") === "on";
  }
  function prepareAudio() {
    if (!audio && window.AudioContext) audio = new AudioContext();
    if (audio && audio.state === "suspended") audio.resume();
  }
  function chime() {
    chimes += 1;
    section.dataset.chimes = String(chimes);
    if (!soundAllowed()) return;
    prepareAudio();
    if (audio) {
      for (const [offset, pitch] of [[0, 880], [0.25, 660], [0.5, 880]]) {
        const tone = audio.createOscillator();
        const gain = audio.createGain();
        tone.frequency.value = pitch;
        gain.gain.setValueAtTime(0.2, audio.currentTime + offset);
        gain.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + offset + 0.22);
        tone.connect(gain).connect(audio.destination);
        tone.start(audio.currentTime + offset);
        tone.stop(audio.currentTime + offset + 0.23);
      }
    }
  }
  function announce(newOnes, progress, what) {
    document.title = "【" + (what || "新求助") + " " + newOnes + " New help】" + baseTitle;
    chime();
    if (soundAllowed() && window.Notification && Notification.permission === "granted") {
      const latest = what ? (progress.reports.reports || []).find((r) => r.urgent) : (progress.help.cases || [])[0];
      const body = latest ? (what ? latest.place_name + " " + latest.text : latest.place + " " + latest.name) : "";
      new Notification((what || "新求助 New help request") + " · #" + alertId, { body: body });
    }
  }
  for (const event of ["focus", "click", "keydown"]) {
    window.addEventListener(event, () => {
      document.title = baseTitle;
      if (soundAllowed()) prepareAudio();
    });
  }
  // Ask once: the choice is remembered in this browser.
  const ask = document.getElementById("sound-ask");
  if (ask && localStorage.getItem("helpSound") === null) ask.hidden = false;
  document.getElementById("sound-on")?.addEventListener("click", async () => {
    localStorage.setItem("helpSound", "on");
    prepareAudio();
    if (window.Notification && Notification.permission === "default") {
      try { await Notification.requestPermission(); } catch (e) { /* the chime still plays */ }
    }
    ask.hidden = true;
  });
  document.getElementById("sound-no")?.addEventListener("click", () => {
    localStorage.setItem("helpSound", "off");
    ask.hidden = true;
  });

  function askedText(seconds) {
    const when = seconds * 1000;
    return clockTime.format(new Date(when)) + " · " + Math.max(0, Math.floor((now() - when) / 60000)) + " 分钟前 min ago";
  }

  // One form for marking a help request or a field report: state, to whom, (a note), saved in place.
  function markForm(action, states, entry, key, withNote) {
    const form = el("form");
    form.method = "post";
    form.action = action;
    const token = el("input");
    token.type = "hidden"; token.name = "csrf"; token.value = csrf;
    const stateLabel = el("label", "处理状态 State", "sr");
    const select = el("select");
    select.name = "state";
    select.id = stateLabel.htmlFor = "state-" + key;
    for (const [value, label] of states) {
      const option = el("option", label);
      option.value = value;
      option.selected = value === entry.state;
      select.append(option);
    }
    const whoLabel = el("label", "指派给 Assigned to", "sr");
    const who = el("input");
    who.type = "text"; who.name = "assignee"; who.maxLength = 40; who.value = entry.assignee || "";
    who.placeholder = "指派给 assign to";
    who.id = whoLabel.htmlFor = "assignee-" + key;
    form.append(token, stateLabel, select, whoLabel, who);
    if (withNote) {
      const noteLabel = el("label", "备注 Note", "sr");
      const note = el("input");
      note.type = "text"; note.name = "note"; note.maxLength = 200; note.value = entry.note || "";
      note.placeholder = "备注 note";
      note.id = noteLabel.htmlFor = "note-" + key;
      form.append(noteLabel, note);
    }
    const save = el("button", "保存 Save");
    save.type = "submit";
    form.append(save);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const response = await fetch(form.action, {
        method: "POST", body: new FormData(form), credentials: "same-origin",
        headers: { Accept: "application/json", "X-CSRF-Token": csrf },
      });
      const body = await response.json();
      const row = form.closest("[data-mark]");
      if (!response.ok) {
        row.querySelector(".mark-note").textContent = body.error ? body.error.message : response.statusText;
        return;
      }
      entry.state = body.saved.state; entry.assignee = body.saved.assignee; entry.note = body.saved.note;
      entry.marked_by = body.saved.by; entry.marked_at = body.saved.at;
      row.classList.remove("state-new", "state-seen", "state-assigned", "state-handled", "state-resolved");
      row.classList.add("state-" + entry.state);
      row.querySelector(".mark-note").textContent = "已保存 saved · " + body.saved.by;
    });
    return form;
  }
  function helpForm(entry) {
    return markForm("/console/alerts/" + alertId + "/help/" + entry.ordinal, helpStates, entry, entry.ordinal, false);
  }

  let lastHelp = "";
  function drawHelp(progress) {
    const help = progress.help || { total: 0, open: 0, cases: [], more: false };
    document.getElementById("help-count").textContent =
      "(" + fmt(help.total) + "，未处理完 " + fmt(help.open) + " open)";
    document.getElementById("help-card").classList.toggle("quiet-help", !help.open);
    document.getElementById("help-more").hidden = !help.more;
    if (knownHelp !== null && help.total > knownHelp) announce(help.total - knownHelp, progress);
    knownHelp = help.total;
    // Redraw only when the cases changed, and never under an officer's hands.
    const signature = JSON.stringify(help.cases);
    const table = document.getElementById("help-table");
    if (signature === lastHelp || table.contains(document.activeElement)) return;
    lastHelp = signature;
    table.replaceChildren();
    const head = el("tr");
    for (const title of ["求助时间 Asked", "地点 Where", "姓名 Name", "电话 Phone", "处理 Handling"]) {
      const th = el("th", title);
      th.scope = "col";
      head.append(th);
    }
    table.append(head);
    for (const entry of help.cases) {
      const tr = el("tr", null, "state-" + entry.state);
      tr.dataset.ordinal = entry.ordinal;
      tr.dataset.mark = "help";
      // Building names usually begin with their committee's; say it once.
      const place = entry.place.startsWith(entry.community) ? entry.place : entry.community + " · " + entry.place;
      const where = el("td", place + " ");
      where.append(el("small", entry.place_code, "code"));
      const phone = el("td");
      if (entry.dial) {
        const call = el("a", "拨打 " + entry.phone, "tel");
        call.href = "tel:" + entry.dial;
        phone.append(call);
      }
      const handling = el("td");
      if (canMark) handling.append(helpForm(entry));
      else handling.append(el("span", (helpStates.find((s) => s[0] === entry.state) || ["", entry.state])[1]));
      const note = el("small", entry.marked_by ? entry.marked_by + " " + clockTime.format(new Date(entry.marked_at)) : "", "muted mark-note");
      handling.append(note);
      if (entry.outcome) handling.append(el("div", "志愿者 volunteer: " + entry.outcome));
      tr.append(el("td", askedText(entry.asked_at)), where, el("td", entry.name), phone, handling);
      table.append(tr);
    }
    if (!help.cases.length) {
      const tr = el("tr");
      const td = el("td", "暂无求助 No help requests so far", "muted");
      tr.append(td);
      table.append(tr);
    }
  }

  // ---- field reports, by street, newest first; a trapped person is raised as a call for help is
  const reportStates = [["new", "未处理 new"], ["seen", "已阅 seen"], ["assigned", "已指派 assigned"], ["resolved", "已解决 resolved"]];
  let knownUrgent = null;
  let lastReports = "";
  function reportItem(entry) {
    const item = el("div", null, "report state-" + entry.state + (entry.urgent ? " urgent" : ""));
    item.dataset.report = entry.id;
    item.dataset.mark = "report";
    const head = el("div");
    if (entry.urgent) head.append(el("span", "紧急 URGENT", "urgent-tag"), document.createTextNode(" "));
    head.append(el("b", entry.category_label + " "), document.createTextNode(entry.place_name + " "));
    head.append(el("small", entry.place, "code"));
    head.append(document.createTextNode(" · " + clockTime.format(new Date(entry.at))));
    item.append(head);
    if (entry.text) item.append(el("div", entry.text));
    const who = el("div", null, "muted");
    who.append(document.createTextNode((entry.source === "sms" ? "短信 SMS · " : "") + entry.reporter_name + " "));
    if (entry.dial) {
      const call = el("a", "拨打 Call", "tel");
      call.href = "tel:" + entry.dial;
      who.append(call);
    }
    if (entry.location) who.append(document.createTextNode(" · GPS " + entry.location.lat.toFixed(5) + ", " + entry.location.lon.toFixed(5)));
    if (entry.photo) {
      const photo = el("a", " 照片 photo");
      photo.href = "/console/alerts/" + alertId + "/reports/" + entry.id + "/photo";
      photo.target = "_blank";
      who.append(photo);
    }
    item.append(who);
    if (canMark) item.append(markForm("/console/alerts/" + alertId + "/reports/" + entry.id, reportStates, entry, "r" + entry.id, true));
    else item.append(el("span", (reportStates.find((s) => s[0] === entry.state) || ["", entry.state])[1]));
    item.append(el("small", entry.marked_by ? entry.marked_by + " " + clockTime.format(new Date(entry.marked_at)) : "", "muted mark-note"));
    return item;
  }
  function drawReports(progress) {
    const reports = progress.reports || { total: 0, open: 0, urgent_open: 0, reports: [] };
    document.getElementById("reports-count").textContent =
      "(" + fmt(reports.total) + "，未解决 " + fmt(reports.open) + " open" +
      (reports.urgent_open ? "，紧急 " + fmt(reports.urgent_open) + " urgent" : "") + ")";
    document.getElementById("reports-card").classList.toggle("quiet-help", !reports.urgent_open);
    const urgent = reports.reports.filter((r) => r.urgent).length;
    if (knownUrgent !== null && urgent > knownUrgent) announce(urgent - knownUrgent, progress, "被困 Trapped");
    knownUrgent = urgent;
    const box = document.getElementById("reports-list");
    const signature = JSON.stringify(reports.reports);
    if (signature === lastReports || box.contains(document.activeElement)) return;
    lastReports = signature;
    box.replaceChildren();
    const streets = new Map();
    for (const entry of reports.reports) {
      if (!streets.has(entry.street)) streets.set(entry.street, [entry.street_name, []]);
      streets.get(entry.street)[1].push(entry);
    }
    for (const [code, [name, rows]] of streets) {
      const group = el("section", null, "street-reports");
      group.dataset.street = code;
      group.append(el("h3", name + " (" + rows.length + ")"));
      for (const entry of rows) group.append(reportItem(entry));
      box.append(group);
    }
    if (!reports.reports.length) box.append(el("p", "暂无报告 No field reports so far", "muted"));
  }

  // ---- the funnel, the time since issue and the estimated end
  const seen = []; // (time, people done) as updates arrive, for the sending rate
  function drawClock(progress, p) {
    const alert = progress.alert;
    const t = progress.totals;
    const clock = document.getElementById("clock");
    if (!alert.issued_at) { clock.textContent = ""; return; }
    const issued = Date.parse(alert.issued_at);
    const done = t.sent + t.failed;
    seen.push([now(), done]);
    while (seen.length > 2 && seen[0][0] < now() - 120000) seen.shift();
    let text = "签发已 " + minutesText(now() - issued) + " since issue";
    if (p.finished && p.key !== "cancelling") {
      clock.textContent = text;
      return;
    }
    if (t.targeted > 0 && done >= t.targeted) {
      text += " · 已全部发出 all sent";
    } else if (t.targeted > 0) {
      let rate = 0; // people per ms
      const [t0, d0] = seen[0], [t1, d1] = seen[seen.length - 1];
      if (t1 - t0 >= 5000 && d1 > d0) rate = (d1 - d0) / (t1 - t0);
      else if (done > 0) rate = done / Math.max(1, now() - issued);
      if (rate > 0) {
        const end = now() + (t.targeted - done) / rate;
        text += " · 预计 " + clockTime.format(new Date(end)) + " 发完 (约 " + minutesText(end - now()) + ") estimated end";
      } else {
        text += " · 尚未开始发送 not sending yet";
      }
    }
    clock.textContent = text;
    clock.dataset.done = String(done);
  }

  function drawTotals(totals) {
    const table = document.getElementById("totals");
    table.replaceChildren();
    for (const state of ["targeted", "queued", "sent", "delivered", "confirmed", "failed", "needs_help"]) {
      const row = el("tr");
      const value = el("td", fmt(totals[state]), "num");
      value.id = "total-" + state;
      const bar = el("td", null, "bar");
      bar.append(meter(totals[state], totals.targeted));
      row.append(el("td", stateNames[state]), value, el("td", pct(totals[state], totals.targeted), "num"), bar);
      table.append(row);
    }
  }

  // Per channel, messages are counted per channel (a person reached on two channels counts on
  // both), and confirmations per person whichever way they came: the table shows each as it is
  // counted, with its own sum, and the people row that matches the funnel.
  function drawChannels(progress) {
    const channels = progress.channels, totals = progress.totals;
    const table = document.getElementById("channels");
    table.replaceChildren();
    const cols = [["planned", "首选 First choice"], ["sent", "已发送 Sent"], ["delivered", "已送达 Delivered"], ["failed", "失败 Failed"]];
    const head = el("tr");
    head.append(el("th", "渠道 Channel"));
    for (const [, title] of cols) head.append(el("th", title, "num"));
    table.append(head);
    const sums = { planned: 0, sent: 0, delivered: 0, failed: 0 };
    const notices = [];
    for (const [name, counts] of Object.entries(channels)) {
      const resident = name in channelNames || name.startsWith("voice.");
      if (!resident) {
        if (counts.notices) notices.push((noticeNames[name] || name) + " " + fmt(counts.notices));
        continue;
      }
      const row = el("tr");
      row.dataset.channel = name;
      const label = name.startsWith("voice.") ? "语音补呼 Voice follow-up (" + name.slice(6) + ")" : channelNames[name];
      row.append(el("td", label));
      for (const [state] of cols) {
        sums[state] += counts[state] || 0;
        row.append(el("td", fmt(counts[state]), "num"));
      }
      table.append(row);
    }
    const sum = el("tr", null, "sum");
    sum.id = "channel-sum";
    sum.append(el("th", "合计 Messages (sum of the rows)"));
    for (const [state] of cols) sum.append(el("td", fmt(sums[state]), "num"));
    table.append(sum);
    const people = el("tr", null, "people");
    people.id = "channel-people";
    people.append(el("th", "人数 People, each once"));
    people.append(el("td", fmt(totals.targeted), "num"), el("td", fmt(totals.sent), "num"),
                  el("td", fmt(totals.delivered), "num"), el("td", fmt(totals.failed), "num"));
    table.append(people);
    const note = document.getElementById("notices");
    note.textContent = "一人可经多个渠道，故消息数可多于人数；确认按人计：" + fmt(totals.confirmed) +
      " 人（见进度）。A person reached on two channels counts once per channel; confirmations count people." +
      (notices.length ? " 志愿者通知 Notices to volunteers: " + notices.join("，") : "");
  }

  function rateClass(rate) {
    return rate < 0.6 ? "low" : rate < 0.85 ? "mid" : "high";
  }
  function tile(row) {
    const rate = row.targeted ? row.acknowledged / row.targeted : 0;
    const node = el("div", null, "tile " + rateClass(rate));
    node.dataset.code = row.code;
    node.title = row.code;
    node.append(el("b", pct(row.acknowledged, row.targeted)));
    node.append(document.createTextNode(row.name + " · " + fmt(row.acknowledged) + "/" + fmt(row.targeted)));
    if (row.needs_help) node.append(el("div", "求助 help " + row.needs_help));
    return node;
  }
  function drawTiles(areas) {
    const box = document.getElementById("tiles");
    box.replaceChildren();
    for (const [level, title] of [["district", "区 Districts"], ["street", "街镇 Streets and towns"]]) {
      const tiles = el("div", null, "tiles");
      for (const row of areas[level]) tiles.append(tile(row));
      box.append(el("h3", title), tiles);
    }
    for (const street of areas.street) {
      const prefix = street.code.slice(0, 9);
      const rows = areas.community.filter((row) => row.code.startsWith(prefix));
      // The committees most in need first: lowest confirmation rate.
      rows.sort((a, b) => a.acknowledged / (a.targeted || 1) - b.acknowledged / (b.targeted || 1));
      const tiles = el("div", null, "tiles");
      for (const row of rows) tiles.append(tile(row));
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
      const name = el("td", row.name + " ");
      name.append(el("small", row.code, "code"));
      tr.append(name);
      for (const state of states) tr.append(el("td", fmt(row[state]), "num"));
      tr.append(el("td", pct(row.acknowledged, row.targeted), "num"));
      table.append(tr);
    }
  }

  // ---- the confirmation curve
  let curveAt = 0;
  let fetching = false;
  async function drawCurve(force) {
    if (!window.Plotly || fetching || (!force && now() - curveAt < 15000)) return;
    curveAt = now();
    fetching = true;
    try {
      await fetchCurve();
    } finally {
      fetching = false;
    }
  }
  async function fetchCurve() {
    const box = document.getElementById("curve");
    let data;
    try {
      const response = await fetch("/console/alerts/" + alertId + "/curve.json", { credentials: "same-origin", cache: "no-store" });
      if (!response.ok) return;
      data = await response.json();
    } catch (e) {
      return;
    }
    const last = data.minutes.length - 1;
    box.dataset.points = String(data.minutes.length);
    box.dataset.confirmed = String(last >= 0 ? data.confirmed[last] : 0);
    document.getElementById("curve-summary").textContent = last >= 0
      ? "签发后 " + data.minutes[last] + " 分钟：已发送 " + fmt(data.sent[last]) + " 人，已确认 " + fmt(data.confirmed[last]) +
        " 人。After " + data.minutes[last] + " min: " + fmt(data.sent[last]) + " sent, " + fmt(data.confirmed[last]) + " confirmed." +
        (data.sampled ? "（抽样估算 estimated from a sample）" : "")
      : "尚无数据 No data yet";
    const line = (name, values, color, extra) =>
      Object.assign({ x: data.minutes, y: values, name: name, type: "scatter", mode: "lines", line: { color: color, width: 2 } }, extra);
    const traces = [
      line("已发送 Sent", data.sent, "#1565c0"),
      line("已送达 Delivered", data.delivered, "#6d4c41", { line: { color: "#6d4c41", width: 2, dash: "dash" } }),
      line("已确认 Confirmed", data.confirmed, "#2e7d32", { line: { color: "#2e7d32", width: 3 }, fill: "tozeroy", fillcolor: "rgba(46,125,50,0.08)" }),
    ];
    const layout = {
      height: 260,
      margin: { l: 70, r: 16, t: 8, b: 48 },
      xaxis: { title: { text: "签发后分钟 Minutes since issue" }, rangemode: "tozero" },
      yaxis: { title: { text: "人数 People" }, rangemode: "tozero", separatethousands: true },
      legend: { orientation: "h", y: -0.25 },
      font: { family: "system-ui, 'WenQuanYi Zen Hei', sans-serif" },
    };
    // Plotly.react redraws in place: the chart keeps its size and the page does not jump.
    window.Plotly.react(box, traces, layout, { displaylogo: false, responsive: true });
  }

  function draw(progress) {
    const p = drawPhase(progress);
    drawHelp(progress);
    drawReports(progress);
    drawClock(progress, p);
    drawTotals(progress.totals);
    drawChannels(progress);
    drawTiles(progress.areas);
    drawAreas(progress.areas.community);
    drawCurve(false);
  }

  setServerNow(JSON.parse(document.getElementById("server-now").textContent));
  let latest = JSON.parse(document.getElementById("progress-data").textContent);
  draw(latest);
  const live = document.getElementById("live-state");
  const source = new EventSource(section.dataset.stream);
  source.addEventListener("progress", (event) => {
    latest = JSON.parse(event.data);
    setServerNow(latest.now);
    draw(latest);
    live.textContent = "实时 live · " + clockTime.format(new Date(now()));
  });
  source.addEventListener("error", () => {
    live.textContent = "连接中断，正在重连 reconnecting…";
  });
  // The clock and the curve move on between updates too.
  setInterval(() => {
    drawClock(latest, phase(latest));
    drawCurve(false);
  }, 5000);
})();
