// Draws a bar chart for every <canvas data-histogram="ID">, where ID names a
// json_script element holding {"edges": [...], "counts": [...]}. Runs on page load and
// on content swapped in by htmx.
(function () {
  function draw(root) {
    if (typeof Chart === "undefined") return;
    root.querySelectorAll("canvas[data-histogram]").forEach(function (canvas) {
      if (canvas.dataset.drawn) return;
      var source = document.getElementById(canvas.dataset.histogram);
      if (!source) return;
      var data = JSON.parse(source.textContent);
      // Bins are whole tokens, [a, b): label them "a" or "a–(b-1)".
      var labels = data.counts.map(function (_, i) {
        var a = Math.round(data.edges[i]), b = Math.round(data.edges[i + 1]) - 1;
        return b > a ? a + "–" + b : String(a);
      });
      new Chart(canvas, {
        type: "bar",
        data: { labels: labels, datasets: [{ label: "rows", data: data.counts, backgroundColor: "#3b5bdb" }] },
        options: {
          animation: false,
          plugins: { legend: { display: false } },
          scales: { x: { title: { display: true, text: "tokens" } }, y: { beginAtZero: true, title: { display: true, text: "rows" } } },
        },
      });
      canvas.dataset.drawn = "1";
    });
  }
  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  document.addEventListener("htmx:load", function (e) { draw(e.target); });
})();
