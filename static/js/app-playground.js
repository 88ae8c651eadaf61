// The app playground: posts the question with fetch() and reads the answer as
// server-sent events from the response body (ReadableStream), so the retrieved passages,
// the exact prompt and the answer appear as the serving worker makes them. Without
// JavaScript the form posts normally and the page comes back with the whole answer.
(function () {
  function el(id) { return document.getElementById(id); }
  function text(node, value) { node.textContent = value; }
  function fixed(x) { return typeof x === "number" ? x.toFixed(3) : String(x); }

  function showHits(hits) {
    var list = el("app-hits");
    list.replaceChildren();
    hits.forEach(function (h) {
      var li = document.createElement("li");
      li.id = "hit-" + h.number;
      var head = document.createElement("strong");
      text(head, h.document_name);
      li.appendChild(head);
      var scores = " · part " + h.position + " · score " + fixed(h.score);
      Object.keys(h.scores || {}).forEach(function (k) { scores += " · " + k + " " + fixed(h.scores[k]); });
      li.appendChild(document.createTextNode(scores));
      li.appendChild(document.createElement("br"));
      var body = document.createElement("small");
      text(body, h.text.length > 400 ? h.text.slice(0, 399) + "…" : h.text);
      li.appendChild(body);
      list.appendChild(li);
    });
    if (!hits.length) {
      var none = document.createElement("li");
      none.className = "muted";
      text(none, "No passages (retrieval off, or nothing found).");
      list.appendChild(none);
    }
  }

  function showDone(event) {
    text(el("app-answer"), event.answer);
    var fb = el("app-fallback");
    fb.hidden = !event.fallback;
    if (event.fallback) {
      var p = fb.querySelector("p");
      if (p && p.firstChild) p.firstChild.textContent = "The application did not answer: " + (event.fallback_reason || "") + " The question was recorded for ";
    }
    var cites = el("app-citations");
    cites.replaceChildren();
    if (event.citations && event.citations.length) {
      var p2 = document.createElement("p");
      p2.appendChild(document.createTextNode("Sources: "));
      event.citations.forEach(function (c, i) {
        var a = document.createElement("a");
        a.href = "#hit-" + c.number;
        text(a, "[" + c.number + "] " + c.document_name + " · part " + c.position);
        if (i) p2.appendChild(document.createTextNode(", "));
        p2.appendChild(a);
      });
      cites.appendChild(p2);
    }
    var u = event.usage || {};
    text(el("app-usage"), (u.prompt_tokens || 0) + " prompt tokens, " + (u.completion_tokens || 0) + " answer tokens (" + event.finish_reason + ")");
  }

  function handle(event, state) {
    if (event.type === "retrieval") showHits(event.hits || []);
    else if (event.type === "prompt") { text(el("app-prompt"), event.text); el("app-prompt-box").open = true; }
    else if (event.type === "delta") { state.text += event.text; text(el("app-answer"), state.text); }
    else if (event.type === "done") { state.done = true; showDone(event); }
    else if (event.type === "error") {
      state.done = true;
      var p = document.createElement("p");
      p.className = "error";
      p.setAttribute("role", "alert");
      text(p, event.message || "The answer failed.");
      el("app-answer").replaceChildren(p);
    }
  }

  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (!form || form.id !== "ask-form" || !window.fetch || !window.TextDecoder) return;
    e.preventDefault();
    var button = form.querySelector("button[type=submit]");
    var status = el("ask-status");
    button.disabled = true;
    text(status, "Asking…");
    text(el("app-answer"), "");
    el("app-citations").replaceChildren();
    el("app-fallback").hidden = true;
    text(el("app-prompt"), "");
    el("app-hits").replaceChildren();
    var state = { text: "", done: false };
    fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      headers: { "Accept": "text/event-stream" },
      credentials: "same-origin",
    }).then(function (response) {
      var reader = response.body.getReader();
      var decoder = new TextDecoder();
      var buffer = "";
      function pump() {
        return reader.read().then(function (chunk) {
          if (chunk.done) return;
          buffer += decoder.decode(chunk.value, { stream: true });
          var parts = buffer.split("\n\n");
          buffer = parts.pop();
          parts.forEach(function (part) {
            part.split("\n").forEach(function (line) {
              if (line.indexOf("data: ") === 0) handle(JSON.parse(line.slice(6)), state);
            });
          });
          return pump();
        });
      }
      return pump();
    }).catch(function (err) {
      handle({ type: "error", message: "The connection failed: " + err }, state);
    }).finally(function () {
      button.disabled = false;
      text(status, state.done ? "" : "The answer stopped before it was complete.");
    });
  });
})();
