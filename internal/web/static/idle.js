// codehub: warns before an idle workspace is stopped, and offers to keep it
// running. Loaded into the editor's page by the gateway.
(function () {
  "use strict";
  var api = "/api/v1/me/workspace";
  var box = null;

  function banner(text, action, onAction) {
    if (!box) {
      box = document.createElement("div");
      box.setAttribute("role", "alertdialog");
      box.setAttribute("aria-live", "assertive");
      box.id = "codehub-idle-warning";
      var s = box.style;
      s.position = "fixed"; s.right = "16px"; s.bottom = "16px"; s.zIndex = "100000";
      s.maxWidth = "360px"; s.padding = "14px 16px"; s.borderRadius = "8px";
      s.font = "13px system-ui, sans-serif"; s.color = "#1b2233"; s.background = "#fff7e0";
      s.border = "1px solid #e0b84c"; s.boxShadow = "0 6px 24px rgba(0,0,0,.25)";
      document.body.appendChild(box);
    }
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
    b.focus();
  }

  function hide() {
    if (box) { box.remove(); box = null; }
  }

  function keepWorking() {
    fetch(api + "/keepalive", { method: "POST", credentials: "same-origin" }).then(hide, hide);
  }

  function check() {
    fetch(api, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (st) {
        if (!st) { return; }
        if (st.state === "stopped") {
          banner("Your workspace was stopped because it was idle. Your files are kept.",
            "Start it again", function () { location.reload(); });
          return;
        }
        if (st.idle && st.idle.warning) {
          var min = Math.max(1, Math.ceil((st.idle.secondsLeft || 0) / 60));
          banner("Your workspace has been idle and will stop in about " + min +
            (min === 1 ? " minute" : " minutes") + " to free resources. Your files are kept.",
            "Keep working", keepWorking);
        } else {
          hide();
        }
      })
      .catch(function () {});
  }

  setInterval(check, 30000);
  setTimeout(check, 5000);
})();
