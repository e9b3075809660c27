// codehub: the workspace's warnings in the editor, loaded into its page by
// the gateway. It reads GET /api/v1/me/workspace every 30 seconds and
// shows, bottom right:
// - before an idle workspace is stopped, a warning with "Keep working";
// - when the home is nearly full, and again when it is full (saving files
//   fails), until dismissed for that level;
// - when a program was killed for lack of memory, once per new kill.
(function () {
  "use strict";
  var api = "/api/v1/me/workspace";
  var stack = null;
  var boxes = {};

  // remember keeps what was dismissed for this tab's life.
  function remember(key, value) {
    try { sessionStorage.setItem("codehub-" + key, value); } catch (e) { /* private mode */ }
  }
  function recall(key) {
    try { return sessionStorage.getItem("codehub-" + key); } catch (e) { return null; }
  }

  // banner shows one warning of a kind (idle, storage, oom), replacing
  // the previous one of that kind.
  function banner(kind, text, action, onAction, opts) {
    opts = opts || {};
    if (!stack) {
      stack = document.createElement("div");
      stack.id = "codehub-warnings";
      var ss = stack.style;
      ss.position = "fixed"; ss.right = "16px"; ss.bottom = "16px"; ss.zIndex = "100000";
      ss.display = "flex"; ss.flexDirection = "column"; ss.gap = "10px"; ss.maxWidth = "380px";
      document.body.appendChild(stack);
    }
    var box = boxes[kind];
    if (!box) {
      box = document.createElement("div");
      box.id = "codehub-" + kind + "-warning";
      var s = box.style;
      s.padding = "14px 16px"; s.borderRadius = "8px";
      s.font = "13px system-ui, sans-serif"; s.color = "#1b2233";
      s.boxShadow = "0 6px 24px rgba(0,0,0,.25)";
      stack.appendChild(box);
      boxes[kind] = box;
    }
    box.setAttribute("role", opts.role || "alertdialog");
    box.setAttribute("aria-live", "assertive");
    box.setAttribute("data-level", opts.level || "");
    box.style.background = opts.danger ? "#fde8e8" : "#fff7e0";
    box.style.border = "1px solid " + (opts.danger ? "#d64545" : "#e0b84c");
    box.textContent = "";
    var p = document.createElement("p");
    p.style.margin = "0 0 10px";
    p.textContent = text;
    box.appendChild(p);
    var b = document.createElement("button");
    b.type = "button";
    b.textContent = action;
    var bs = b.style;
    bs.font = "inherit"; bs.fontWeight = "600"; bs.padding = "6px 12px"; bs.border = "0";
    bs.borderRadius = "6px"; bs.background = "#2563eb"; bs.color = "#fff"; bs.cursor = "pointer";
    b.addEventListener("click", onAction);
    box.appendChild(b);
    if (opts.focus) { b.focus(); }
  }

  function hide(kind) {
    var box = boxes[kind];
    if (box) { box.remove(); delete boxes[kind]; }
  }

  function size(bytes) {
    var units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    var i = 0;
    while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i++; }
    return (i === 0 ? bytes : bytes.toFixed(1)) + " " + units[i];
  }

  function keepWorking() {
    fetch(api + "/keepalive", { method: "POST", credentials: "same-origin" }).then(
      function () { hide("idle"); }, function () { hide("idle"); });
  }

  function idle(st) {
    if (st.state === "stopped") {
      banner("idle", "Your workspace was stopped because it was idle. Your files are kept.",
        "Start it again", function () { location.reload(); }, { focus: true });
      return;
    }
    if (st.idle && st.idle.warning) {
      var min = Math.max(1, Math.ceil((st.idle.secondsLeft || 0) / 60));
      banner("idle", "Your workspace has been idle and will stop in about " + min +
        (min === 1 ? " minute" : " minutes") + " to free resources. Your files are kept.",
        "Keep working", keepWorking, { focus: true });
    } else {
      hide("idle");
    }
  }

  // storage warns when the home is nearly full and when it is full,
  // each once until dismissed (a new level shows again).
  function storage(st, id) {
    var s = st.usage && st.usage.storage;
    var level = !s ? "" : s.full ? "full" : s.warning ? "warning" : "";
    var key = "storage-dismissed-" + id;
    if (!level) {
      hide("storage");
      remember(key, "");
      return;
    }
    if (recall(key) === level) { return; }
    var dismiss = function () { remember(key, level); hide("storage"); };
    var amount = size(s.used) + " of " + size(s.limit);
    if (level === "full") {
      banner("storage", "Your home is full (" + amount + "): saving files fails with \u201cNo space left on device\u201d, " +
        "and the editor cannot save its own state. Delete or move files you do not need, then reload the editor.",
        "OK", dismiss, { level: level, danger: true, role: "alert" });
    } else {
      banner("storage", "Your home is " + Math.floor(s.percent) + "% full (" + amount + "). Free some space soon: " +
        "when it is full, saving files fails and the editor can lose its own state.",
        "OK", dismiss, { level: level, role: "alert" });
    }
  }

  // oom says when programs were killed for lack of memory since the
  // last time this tab said so.
  function oom(st, id) {
    var m = st.usage && st.usage.memory;
    var n = (m && m.oomKills) || 0;
    var key = "oom-seen-" + id;
    var seen = parseInt(recall(key) || "0", 10);
    if (n <= seen) { return; }
    var limit = m.limit ? " (" + size(m.limit * 1048576) + ")" : "";
    banner("oom", "A program in your workspace was stopped because the workspace ran out of memory" + limit +
      (n > 1 ? "; " + n + " since it started" : "") + ". Close programs you do not need, or ask for a larger limit.",
      "OK", function () { remember(key, String(n)); hide("oom"); }, { level: String(n), danger: true, role: "alert" });
  }

  function check() {
    fetch(api, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (st) {
        if (!st) { return; }
        idle(st);
        if (st.state === "running" && st.workspace) {
          var id = st.workspace.id + "-" + st.workspace.startedAt;
          storage(st, id);
          oom(st, id);
        }
      })
      .catch(function () {});
  }

  setInterval(check, 30000);
  setTimeout(check, 5000);
})();
