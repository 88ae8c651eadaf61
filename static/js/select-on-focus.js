// Inputs marked data-select-on-focus (a share link, a new API token) select their whole
// value when focused or clicked, so it can be copied at once; a button marked
// data-copy="INPUT_ID" copies that input's value to the clipboard and says so. Delegated
// from the document, so elements that htmx swaps in later work too; a static file, so the
// page's Content-Security-Policy (script-src 'self') allows it, where an onfocus attribute
// is refused.
(function () {
  "use strict";
  function select(event) {
    var target = event.target;
    if (target instanceof HTMLInputElement && target.hasAttribute("data-select-on-focus")) {
      target.select();
    }
  }

  function copied(button, ok) {
    var label = button.dataset.label || button.textContent;
    button.dataset.label = label;
    button.textContent = ok ? "Copied" : "Press Ctrl+C to copy";
    window.setTimeout(function () { button.textContent = label; }, 2000);
  }

  function copy(event) {
    var button = event.target instanceof Element ? event.target.closest("button[data-copy]") : null;
    if (!button) return;
    var input = document.getElementById(button.dataset.copy);
    if (!(input instanceof HTMLInputElement)) return;
    input.focus();
    input.select();
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(input.value).then(
        function () { copied(button, true); },
        function () { copied(button, false); }
      );
    } else {
      // Plain HTTP (a local server): the Clipboard API is off; the selected text still copies.
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      copied(button, ok);
    }
  }

  document.addEventListener("focusin", select);
  document.addEventListener("click", select);
  document.addEventListener("click", copy);
})();
