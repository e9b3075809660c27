// codehub: the small scripts of the admin dashboard and the account page.
// Both pages work without them: an action form posted without
// confirmation gets a confirmation page from the server, and the
// workspace's state is current whenever the page is loaded.
(function () {
  "use strict";

  // Action forms carrying data-confirm ask in the page's <dialog> first,
  // then post with confirmed=yes.
  function confirmActions() {
    var dialog = document.getElementById("confirm-dialog");
    if (!dialog || typeof dialog.showModal !== "function") {
      return;
    }
    var text = document.getElementById("confirm-text");
    var ok = document.getElementById("confirm-ok");
    var pending = null;

    document.addEventListener("submit", function (ev) {
      var form = ev.target;
      if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-confirm")) {
        return;
      }
      ev.preventDefault();
      pending = form;
      text.textContent = form.getAttribute("data-confirm");
      ok.textContent = form.getAttribute("data-confirm-button") || "Confirm";
      ok.className = form.querySelector("button.danger") ? "danger" : "";
      dialog.returnValue = "";
      dialog.showModal();
    });

    dialog.addEventListener("close", function () {
      var form = pending;
      pending = null;
      if (!form || dialog.returnValue !== "ok") {
        return;
      }
      var confirmed = document.createElement("input");
      confirmed.type = "hidden";
      confirmed.name = "confirmed";
      confirmed.value = "yes";
      form.appendChild(confirmed);
      var buttons = form.querySelectorAll("button");
      for (var i = 0; i < buttons.length; i++) {
        buttons[i].disabled = true;
      }
      // submit() does not fire "submit" again, so the dialog is not
      // asked twice.
      HTMLFormElement.prototype.submit.call(form);
    });
  }

  // The account page follows the workspace while it starts or stops,
  // and reloads once it has settled in another state than the page
  // shows.
  function followWorkspace() {
    var box = document.getElementById("workspace");
    if (!box || !window.fetch) {
      return;
    }
    var shown = box.getAttribute("data-state");
    var badge = document.getElementById("ws-state");
    var phase = document.getElementById("ws-phase");

    function settled(state) {
      return state === "running" || state === "stopped" || state === "failed";
    }

    function schedule(state) {
      window.setTimeout(poll, settled(state) ? 15000 : 1500);
    }

    function poll() {
      fetch("/api/v1/me/workspace", { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (st) {
          if (!st) {
            return; // signed out, or the service is down: stop asking
          }
          if (st.state !== shown && settled(st.state)) {
            window.location.reload();
            return;
          }
          badge.textContent = st.state;
          badge.className = "badge badge-" + st.state;
          var p = st.progress;
          var words = "";
          if (p && !settled(st.state) && p.phase) {
            words = p.phase + (p.queuePosition ? " — number " + p.queuePosition + " in line" : "");
          }
          if (phase.textContent !== words) {
            phase.textContent = words;
          }
          schedule(st.state);
        }, function () {
          schedule(shown);
        });
    }

    schedule(shown);
  }

  // The change-password form says at once when the two new passwords
  // differ (the server checks again).
  function matchPasswords() {
    var next = document.getElementById("new-password");
    var again = document.getElementById("confirm-password");
    if (!next || !again) {
      return;
    }
    function check() {
      again.setCustomValidity(again.value && again.value !== next.value ? "The two new passwords differ." : "");
    }
    next.addEventListener("input", check);
    again.addEventListener("input", check);
  }

  confirmActions();
  followWorkspace();
  matchPasswords();
})();
