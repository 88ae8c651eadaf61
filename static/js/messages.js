// Says why an htmx request changed nothing. Without this a refused click (a viewer pressing
// a control, a 403) or a server error failed silently: htmx swaps nothing on 4xx/5xx.
// Writes into the page's #messages region (templates/partials/_messages.html); a static
// file, so the Content-Security-Policy (script-src 'self') allows it.
(function () {
  "use strict";
  var TEXT = {
    403: "You can look at this project but not change it. Ask one of its owners for the editor role.",
    404: "That is no longer here. Reload the page to see the project as it is now.",
    413: "That was too large to send.",
  };

  function say(text) {
    var region = document.getElementById("messages");
    if (!region) {
      return;
    }
    var list = document.createElement("ul");
    list.className = "messages";
    var item = document.createElement("li");
    item.className = "error";
    item.setAttribute("role", "alert");
    item.setAttribute("data-testid", "refusal");
    item.textContent = text;
    list.appendChild(item);
    region.replaceChildren(list);
    region.scrollIntoView({ block: "nearest" });
  }

  document.addEventListener("htmx:responseError", function (event) {
    var status = event.detail.xhr ? event.detail.xhr.status : 0;
    say(TEXT[status] || "The server answered " + status + " and nothing was changed. Reload the page and try again.");
  });
  document.addEventListener("htmx:sendError", function () {
    say("The server could not be reached; nothing was changed. Check the connection and try again.");
  });
})();
