// Keyboard shortcuts for the rating page: 1 / ArrowLeft, 2 / ArrowRight, T (tie),
// B (both bad), C (comment box; Esc leaves it). Keys typed in the comment box are text.
// A key sends the form through htmx.ajax, so it works the moment the next row is in the
// page (no wait for htmx to process it), and keys pressed while a rating is on its way
// are ignored rather than sent as a second, full-page submission.
(function () {
  var KEYS = { "1": "left", ArrowLeft: "left", "2": "right", ArrowRight: "right",
               t: "tie", T: "tie", b: "both_bad", B: "both_bad" };
  var busy = false;
  function idle() { busy = false; }
  document.addEventListener("htmx:afterSwap", idle);
  document.addEventListener("htmx:responseError", idle);
  document.addEventListener("htmx:sendError", idle);
  document.addEventListener("keydown", function (event) {
    var form = document.getElementById("rate-form");
    if (!form || event.ctrlKey || event.metaKey || event.altKey) return;
    var typing = event.target && /^(TEXTAREA|INPUT|SELECT)$/.test(event.target.tagName);
    if (typing) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    if (event.key === "c" || event.key === "C") {
      event.preventDefault();
      document.getElementById("id_comment").focus();
      return;
    }
    var choice = KEYS[event.key];
    if (!choice || typeof htmx === "undefined") return;
    event.preventDefault();
    if (busy) return;
    busy = true;
    htmx.ajax("POST", form.getAttribute("hx-post"), {
      source: form, target: "#rate-card", swap: "outerHTML", values: { choice: choice },
    });
  });
})();
