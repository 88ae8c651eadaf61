// The scorecard chart: one bar per scored candidate for the metric picked in
// <select data-chart-metric>, from the json_script element named by the canvas's
// data-scorecard attribute ({candidates, baseline, metrics: [{key, label, values}], target}).
// The Scope target, when the chart shows its metric, is a dashed line across the bars.
// Redrawn when the metric changes and after htmx swaps in a fresh fragment.
(function () {
  var COLORS = ["#3b5bdb", "#e8590c", "#2b8a3e", "#ae3ec9", "#1098ad", "#f08c00", "#c92a2a", "#5c940d"];
  var chart = null;
  var targetValue = null;  // the Scope target on the shown metric, or null

  // The target as a dashed line across the whole plot area, from the y axis to the edge.
  var TARGET_LINE = {
    id: "targetLine",
    afterDatasetsDraw: function (c) {
      if (targetValue === null) return;
      var y = c.scales.y.getPixelForValue(targetValue);
      var area = c.chartArea;
      if (y < area.top || y > area.bottom) return;
      var ctx = c.ctx;
      ctx.save();
      ctx.strokeStyle = "#c92a2a";
      ctx.lineWidth = 2;
      ctx.setLineDash([6, 4]);
      ctx.beginPath();
      ctx.moveTo(area.left, y);
      ctx.lineTo(area.right, y);
      ctx.stroke();
      ctx.restore();
    },
  };

  function draw() {
    if (typeof Chart === "undefined") return;
    var canvas = document.querySelector("canvas[data-scorecard]");
    var source = canvas && document.getElementById(canvas.dataset.scorecard);
    if (!source) return;
    var data = JSON.parse(source.textContent);
    var picker = document.querySelector("[data-chart-metric]");
    var key = picker ? picker.value : (data.metrics[0] || {}).key;
    var metric = data.metrics.filter(function (m) { return m.key === key; })[0] || data.metrics[0];
    if (!metric) return;
    var datasets = [{
      type: "bar",
      label: metric.label + (metric.lower_is_better ? " (lower is better)" : ""),
      data: metric.values,
      backgroundColor: data.candidates.map(function (_, i) { return COLORS[i % COLORS.length]; }),
      borderColor: data.candidates.map(function (_, i) { return i === data.baseline ? "#000" : "transparent"; }),
      borderWidth: 2,
    }];
    var showsTarget = data.target && data.target.key === metric.key;
    if (showsTarget) {
      // No points: the legend entry only. The line itself is drawn edge to edge of the plot
      // area by TARGET_LINE below (a line through the bars' centres stopped half a bar short).
      datasets.push({
        type: "line",
        label: "Scope target " + data.target.label + " " + data.target.value,
        data: [],
        borderColor: "#c92a2a", borderDash: [6, 4], pointRadius: 0, fill: false,
      });
    }
    targetValue = showsTarget ? data.target.value : null;
    var yMax = showsTarget ? Math.max.apply(null, metric.values.concat([data.target.value])) * 1.15 : undefined;
    if (chart && chart.canvas !== canvas) { chart.destroy(); chart = null; }
    if (!chart) {
      chart = new Chart(canvas, {
        data: { labels: data.candidates, datasets: datasets },
        plugins: [TARGET_LINE],
        options: {
          animation: false,
          scales: { y: { beginAtZero: true, suggestedMax: yMax, title: { display: true, text: metric.label } } },
          plugins: { legend: { display: true } },
        },
      });
      return;
    }
    chart.data.labels = data.candidates;
    chart.data.datasets = datasets;
    chart.options.scales.y.title.text = metric.label;
    chart.options.scales.y.suggestedMax = yMax;
    chart.update("none");
  }

  document.addEventListener("DOMContentLoaded", draw);
  document.addEventListener("htmx:afterSettle", draw);
  document.addEventListener("change", function (e) {
    if (e.target && e.target.matches && e.target.matches("[data-chart-metric]")) draw();
  });
})();
