// Keeps the admin table live: server states, CPU and memory, recent events.
(function () {
  "use strict";
  var box = document.getElementById("admin");
  if (!box) return;
  var api = box.dataset.api;
  var status = document.getElementById("live-status");
  var events = document.getElementById("events");
  var INTERVAL = 5000;

  function size(n) {
    var units = ["B", "KiB", "MiB", "GiB", "TiB"];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i < 2 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
  }
  function ago(t, now) {
    if (!t) return "never";
    var d = now - t;
    if (d < 60) return "just now";
    if (d < 3600) return Math.floor(d / 60) + " min ago";
    if (d < 86400) return Math.floor(d / 3600) + " h ago";
    var days = Math.floor(d / 86400);
    return days + (days === 1 ? " day ago" : " days ago");
  }
  function set(row, field, text) {
    var cell = row.querySelector('[data-field="' + field + '"]');
    if (cell && cell.textContent !== text) cell.textContent = text;
    return cell;
  }
  function update(data) {
    var rows = document.querySelectorAll("tr[data-user]");
    for (var i = 0; i < rows.length; i++) {
      var row = rows[i];
      var info = data.users[row.dataset.user];
      if (!info) continue;
      var badge = set(row, "state", info.state);
      if (badge) badge.className = "badge state-" + info.state;
      set(row, "error", info.state === "failed" ? (info.error || "") : "");
      set(row, "activity", ago(info.last_activity, data.time));
      var s = info.state === "running" ? info.stats : null;
      set(row, "cpu", s ? s.cpu_percent.toFixed(1) + " %" : "—");
      set(row, "memory", s ? size(s.mem_bytes) : "—");
      var forms = row.querySelectorAll("form[data-show]");
      for (var j = 0; j < forms.length; j++) {
        var show = forms[j].dataset.show.split(" ").indexOf(info.state) >= 0 && !info.disabled;
        forms[j].hidden = !show;
      }
    }
    if (events && data.events) {
      var items = document.createDocumentFragment();
      data.events.forEach(function (e) {
        var li = document.createElement("li");
        var time = document.createElement("time");
        time.textContent = ago(e.time, data.time);
        time.dateTime = new Date(e.time * 1000).toISOString();
        var kind = document.createElement("strong");
        kind.textContent = e.kind;
        var detail = document.createElement("span");
        detail.className = "muted";
        detail.textContent = e.detail || "";
        li.append(time, " ", kind, " ", e.user || "", " ", detail);
        items.appendChild(li);
      });
      if (data.events.length) events.replaceChildren(items);
    }
    status.textContent = "";
  }
  function poll() {
    fetch(api, {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (r) {
        if (!r.ok) throw new Error(r.status);
        return r.json();
      })
      .then(update)
      .catch(function () { status.textContent = "Live numbers unavailable; retrying."; })
      .then(function () { window.setTimeout(poll, INTERVAL); });
  }
  poll();
})();
