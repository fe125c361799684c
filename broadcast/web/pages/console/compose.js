// The compose form: parameters for the chosen event, the area picker (search and tree), and a live
// preview of every channel's text, its cost, and how many people the draft reaches.
"use strict";
(function () {
  const form = document.getElementById("compose");
  const csrf = form.querySelector("input[name=csrf]").value;
  const composer = form.dataset.composer;
  const eventSelect = document.getElementById("event");
  const levelSelect = document.getElementById("level");
  const chosen = document.getElementById("chosen");

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  async function api(path, body) {
    const options = { headers: { "X-CSRF-Token": csrf }, credentials: "same-origin" };
    if (body !== undefined) {
      options.method = "POST";
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    const data = await response.json();
    if (!response.ok) throw data.error || { message: response.statusText };
    return data;
  }

  // Parameters and levels follow the event.
  function showEvent() {
    const option = eventSelect.selectedOptions[0];
    const levels = option.dataset.levels.split(" ");
    for (const choice of levelSelect.options) {
      if (choice.value) choice.disabled = !levels.includes(choice.value);
    }
    if (levelSelect.value && !levels.includes(levelSelect.value)) levelSelect.value = "";
    for (const set of form.querySelectorAll("fieldset.params")) {
      const mine = set.dataset.event === eventSelect.value;
      set.hidden = !mine;
      set.disabled = !mine;
    }
  }
  if (eventSelect.dataset.fixed) {
    for (const choice of eventSelect.options) choice.disabled = choice.value !== eventSelect.value;
  }
  eventSelect.addEventListener("change", showEvent);
  showEvent();

  // Areas: chosen ones are chips holding a hidden input each.
  function chosenCodes() {
    return [...chosen.querySelectorAll("input[name=area]")].map((input) => input.value);
  }
  function choose(code, name) {
    if (chosenCodes().includes(code)) return;
    const chip = el("span", name + " ");
    chip.dataset.code = code;
    chip.title = code;
    chip.append(el("small", code, "code"));
    const input = el("input");
    input.type = "hidden";
    input.name = "area";
    input.value = code;
    const remove = el("button", "✕", "remove");
    remove.type = "button";
    remove.setAttribute("aria-label", "移除 Remove " + name);
    chip.append(input, remove);
    chosen.append(chip);
    changed();
  }
  chosen.addEventListener("click", (event) => {
    if (event.target.classList.contains("remove")) {
      event.target.parentElement.remove();
      changed();
    }
  });

  function areaItem(area, expandable) {
    const item = el("li");
    item.dataset.code = area.code;
    item.dataset.name = area.name;
    if (expandable) {
      const expand = el("button", "＋", "expand");
      expand.type = "button";
      item.append(expand);
    }
    item.append(document.createTextNode(area.name + " "));
    item.append(el("small", area.code, "code"), document.createTextNode(" "));
    const add = el("button", "添加 Add", "add");
    add.type = "button";
    item.append(add);
    return item;
  }

  const search = document.getElementById("area-search");
  const results = document.getElementById("area-results");
  let searchTimer = null;
  search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(async () => {
      const query = search.value.trim();
      results.replaceChildren();
      if (!query) return;
      try {
        const found = await api("/api/v1/search/areas?q=" + encodeURIComponent(query));
        for (const area of found.areas) {
          const item = areaItem(area, false);
          item.lastChild.before(document.createTextNode((area.parents || []).join(" › ") + " "));
          results.append(item);
        }
        if (!found.areas.length) results.append(el("li", "没有找到 Nothing found", "muted"));
      } catch (problem) {
        results.append(el("li", problem.message, "error"));
      }
    }, 250);
  });

  function onAreaClick(event) {
    const item = event.target.closest("li");
    if (!item) return;
    if (event.target.classList.contains("add")) {
      choose(item.dataset.code, item.dataset.name || item.firstChild.textContent.trim());
      if (results.contains(item)) {
        // Chosen: the search is done; clear it for the next area.
        results.replaceChildren();
        search.value = "";
        search.focus();
      }
    } else if (event.target.classList.contains("expand")) {
      expandTree(item, event.target);
    }
  }
  results.addEventListener("click", onAreaClick);
  document.getElementById("area-tree").addEventListener("click", onAreaClick);

  async function expandTree(item, button) {
    const open = item.querySelector("ul");
    if (open) {
      open.remove();
      button.textContent = "＋";
      return;
    }
    const report = await api("/api/v1/areas/" + encodeURIComponent(item.dataset.code));
    if (!item.dataset.name) item.dataset.name = report.area.name;
    const list = el("ul");
    for (const child of report.children) {
      const people = child.residents + child.key_unit_contacts;
      const sub = areaItem(child, ["district", "street", "community", "grid"].includes(child.level));
      sub.insertBefore(document.createTextNode("（" + people + " 人）"), sub.lastChild);
      list.append(sub);
    }
    item.append(list);
    button.textContent = "－";
  }

  // The live preview: the draft as the API would take it.
  function draft() {
    const data = new FormData(form);
    const params = {};
    for (const [key, value] of data.entries()) {
      if (key.startsWith("param:") && String(value).trim()) params[key.slice(6)] = String(value).trim();
    }
    const body = {
      event: data.get("event"),
      level: data.get("level"),
      target: { areas: data.getAll("area"), groups: data.getAll("group") },
      channels: data.getAll("channel"),
      languages: data.getAll("language"),
      params: params,
      exercise: data.get("drill") === "on",
      msg_type: data.get("msg_type") || "alert",
    };
    if (data.get("references")) body.references = data.get("references");
    if (data.get("valid_minutes")) body.valid_minutes = Number(data.get("valid_minutes"));
    return body;
  }

  const reach = document.getElementById("reach");
  const messages = document.getElementById("messages");
  const problem = document.getElementById("preview-problem");
  const channelNames = { sms: "短信 SMS", push: "推送 Push", voice: "语音 Voice", screen: "屏幕 Screen", none: "无可用渠道 No channel" };

  function showReach(counts) {
    const table = el("table");
    const head = el("tr");
    head.append(el("th", "区域 Area"), el("th", "人数 People", "num"));
    table.append(head);
    for (const row of counts.areas.street) {
      const tr = el("tr");
      tr.append(el("td", row.name), el("td", row.targeted.toLocaleString(), "num"));
      table.append(tr);
    }
    const total = el("p", "共 " + counts.targeted.toLocaleString() + " 人 · " + counts.targeted.toLocaleString() + " people", "big");
    total.id = "reach-count";
    document.getElementById("reach-mini").textContent = "将发送给 " + counts.targeted.toLocaleString() + " 人 · reaches " + counts.targeted.toLocaleString() + " people";
    const channels = el("p");
    for (const [name, count] of Object.entries(counts.channels)) {
      channels.append(el("span", (channelNames[name] || name) + ": " + count.toLocaleString() + "　"));
    }
    channels.append(el("span", "楼宇屏 Screens: " + counts.screens));
    reach.replaceChildren(total, channels, table);
  }

  function showMessages(preview, ticked) {
    messages.replaceChildren();
    for (const [channel, byLanguage] of Object.entries(preview.messages)) {
      if (!ticked.includes(channel)) continue; // residents get only the ticked channels
      for (const [language, message] of Object.entries(byLanguage)) {
        const card = el("div", null, "card");
        let cost = "";
        if (channel === "sms") cost = " · " + message.segments + " 条 parts";
        if (channel === "push") cost = " · " + message.bytes + " bytes";
        card.append(el("h2", (channelNames[channel] || channel) + " (" + language + ")" + cost));
        if (message.title) card.append(el("strong", message.title));
        const text = el("p", message.text, "message");
        text.dataset.channel = channel;
        text.dataset.language = language;
        card.append(text);
        messages.append(card);
      }
    }
  }

  // A parameter problem is shown beside its field, in Chinese with the English beside.
  function markFields(problems) {
    for (const note of form.querySelectorAll(".field-error.live")) note.remove();
    for (const input of form.querySelectorAll("fieldset.params input[aria-invalid]")) {
      input.removeAttribute("aria-invalid");
      input.removeAttribute("aria-describedby");
    }
    let marked = 0;
    for (const message of problems) {
      const found = /parameter (\w+)/.exec(message);
      if (!found) continue;
      const input = form.querySelector("fieldset.params:not([hidden]) input[data-key='" + found[1] + "']");
      if (!input) continue;
      const words = message.includes("needs parameter") ? "必填" : message.includes("characters long") ? "太长，消息放不下" : "格式不对";
      const note = el("p", "⚠ " + words + " · " + message, "field-error live");
      note.id = "live-err-" + found[1];
      input.before(note);
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-describedby", note.id);
      marked += 1;
    }
    return marked;
  }

  let previewTimer = null;
  let generation = 0;
  function changed() {
    clearTimeout(previewTimer);
    previewTimer = setTimeout(refresh, 400);
  }
  async function refresh() {
    const body = draft();
    const mine = ++generation;
    if (!body.target.areas.length || !body.level) {
      problem.hidden = false;
      problem.textContent = !body.level ? "请选择级别 Choose a level" : "请选择区域 Choose at least one area";
      return;
    }
    // Who it reaches and what it says are asked for separately: a parameter still missing does not
    // hide how many people the areas hold.
    const [wording, people] = await Promise.allSettled([
      api("/api/v1/alerts/preview", { ...body, composed_by: composer }),
      api("/api/v1/targets/preview", { ...body.target, channels: body.channels, level: body.level }),
    ]);
    if (mine !== generation) return;
    if (people.status === "fulfilled") showReach(people.value);
    if (wording.status === "fulfilled") {
      problem.hidden = true;
      markFields([]);
      showMessages(wording.value, body.channels);
    } else {
      const error = wording.reason || {};
      problem.hidden = false;
      const marked = markFields(error.field === "params" ? String(error.message).split("; ") : []);
      problem.textContent = marked
        ? "请修改标出的参数 Please correct the marked parameters"
        : (error.field ? error.field + ": " : "") + error.message;
    }
    if (people.status === "rejected" && wording.status === "fulfilled") {
      problem.hidden = false;
      problem.textContent = people.reason.message;
    }
  }
  form.addEventListener("change", changed);
  form.addEventListener("input", (event) => {
    if (event.target !== search) changed();
  });
  if (chosenCodes().length) changed();
})();
