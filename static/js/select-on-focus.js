// Inputs marked data-select-on-focus (a share link, a new API token) select their whole
// value when focused or clicked, so it can be copied at once. Delegated from the document,
// so inputs that htmx swaps in later work too; a static file, so the page's
// Content-Security-Policy (script-src 'self') allows it, where an onfocus attribute is refused.
(function () {
  "use strict";
  function select(event) {
    var target = event.target;
    if (target instanceof HTMLInputElement && target.hasAttribute("data-select-on-focus")) {
      target.select();
    }
  }
  document.addEventListener("focusin", select);
  document.addEventListener("click", select);
})();
