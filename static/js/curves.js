// Live training curves: a line chart for <canvas data-curves="ID">, where ID names a
// json_script element holding {"train_loss": [[step, value], ...], "val_loss": [...]}.
// The chart is drawn once; when htmx swaps in a fresh fragment (with a fresh json_script
// element of the same id) the chart's data are replaced in place, without a redraw flash.
(function () {
  var SERIES = [
    { key: "train_loss", label: "train loss", color: "#3b5bdb" },
    { key: "val_loss", label: "validation loss", color: "#e8590c" },
  ];
  var charts = {};

  function points(data, key) {
    return (data[key] || []).map(function (p) { return { x: p[0], y: p[1] }; });
  }

  function update(canvas) {
    if (typeof Chart === "undefined") return;
    var source = document.getElementById(canvas.dataset.curves);
    if (!source) return;
    var data = JSON.parse(source.textContent);
    var chart = charts[canvas.id];
    if (!chart) {
      chart = charts[canvas.id] = new Chart(canvas, {
        type: "line",
        data: {
          datasets: SERIES.map(function (s) {
            return { label: s.label, data: points(data, s.key), borderColor: s.color,
                     backgroundColor: s.color, pointRadius: 2, tension: 0.2 };
          }),
        },
        options: {
          animation: false,
          parsing: false,
          // A curve with no points yet (or none at all, as in alignment) has no legend entry.
          plugins: { legend: { labels: { filter: function (item, chartData) {
            return chartData.datasets[item.datasetIndex].data.length > 0; } } } },
          scales: { x: { type: "linear", title: { display: true, text: "step" } },
                    y: { title: { display: true,
                                  text: canvas.dataset.yLabel || "loss (target tokens)" } } },
        },
      });
      return;
    }
    SERIES.forEach(function (s, i) { chart.data.datasets[i].data = points(data, s.key); });
    chart.update("none");
  }

  function all() {
    document.querySelectorAll("canvas[data-curves]").forEach(update);
    // The log tail shows its newest line, also after each live refresh.
    document.querySelectorAll("pre.log").forEach(function (pre) { pre.scrollTop = pre.scrollHeight; });
  }
  document.addEventListener("DOMContentLoaded", all);
  document.addEventListener("htmx:afterSettle", all);
})();
