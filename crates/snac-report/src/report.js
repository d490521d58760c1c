// snac report: the interactive Pareto scatter (selectable axes, hover shows a
// trial) and the sortable trial table. Plain DOM and SVG, no libraries, so
// report.html works offline. Reads the JSON in #report-data.
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var complete = data.trials.filter(function (t) { return t.state === "COMPLETE"; });
  var maximize = {}, axisOf = {};
  data.axes.forEach(function (a) { maximize[a.name] = a.maximize; axisOf[a.name] = a; });

  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }

  function fmt(v) {
    if (v === null || v === undefined || !isFinite(v)) return "–";
    var a = Math.abs(v);
    if (a === 0) return "0";
    if (a >= 1e5 || a < 1e-3) return v.toExponential(2);
    if (a >= 100) return v.toFixed(0);
    return String(Number(v.toFixed(4)));
  }

  // Round values (1, 2 or 5 times a power of ten) from a to b.
  function roundTicks(a, b) {
    var ticks = [];
    var raw = (b - a) / 5, power = Math.pow(10, Math.floor(Math.log10(raw)));
    var step = [1, 2, 5, 10].map(function (m) { return m * power; }).filter(function (s) { return s >= raw; })[0];
    for (var t = Math.ceil(a / step) * step; t <= b + step * 1e-9; t += step) {
      ticks.push(Math.abs(t) < step * 1e-9 ? 0 : t);
    }
    return ticks;
  }

  // m × 10^e for each mantissa m and every decade that puts it in [a, b] (log10 units).
  function logTicks(a, b, mantissas) {
    var ticks = [];
    for (var e = Math.floor(a); e <= Math.ceil(b); e++) {
      mantissas.forEach(function (m) {
        var t = e + Math.log10(m);
        if (t >= a && t <= b) ticks.push(Math.pow(10, t));
      });
    }
    return ticks;
  }

  // An axis for `values` of the metric `kind` scales (labels.rs: "log" for
  // BOPs, "log_if_wide" for costs spanning more than a decade, "linear").
  function scale(values, lo, hi, kind) {
    var finite = values.filter(function (v) { return isFinite(v); });
    var min = Math.min.apply(null, finite), max = Math.max.apply(null, finite);
    if (!finite.length) { min = 0; max = 1; }
    var log = min > 0 && (kind === "log" || (kind === "log_if_wide" && max / min > 10));
    var f = log ? Math.log10 : function (v) { return v; };
    var a = f(min), b = f(max);
    var pad = b > a ? (b - a) * 0.06 : Math.max(Math.abs(a), 1) * 0.1;
    a -= pad; b += pad;
    var map = function (v) { return lo + (f(v) - a) / (b - a) * (hi - lo); };
    var ticks = [];
    if (log) {
      ticks = logTicks(a, b, [1]);
      if (ticks.length > 8) {
        var every = Math.ceil(ticks.length / 8);
        ticks = ticks.filter(function (t, i) { return i % every === 0; });
      }
      if (ticks.length < 3) ticks = logTicks(a, b, [1, 2, 5]);
      if (ticks.length < 3) ticks = logTicks(a, b, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
      if (ticks.length < 3) {
        ticks = roundTicks(Math.pow(10, a), Math.pow(10, b)).filter(function (v) { return v > 0; });
      }
    } else {
      ticks = roundTicks(a, b);
    }
    return { map: map, ticks: ticks, log: log, ok: function (v) { return isFinite(v) && (!log || v > 0); } };
  }

  // Non-dominated points among `pts` ({x, y}) for the axes' directions.
  function front(pts, xmax, ymax) {
    function better(a, b, max) { return max ? a > b : a < b; }
    function noWorse(a, b, max) { return max ? a >= b : a <= b; }
    return pts.filter(function (p) {
      return !pts.some(function (q) {
        return q !== p && noWorse(q.x, p.x, xmax) && noWorse(q.y, p.y, ymax) &&
          (better(q.x, p.x, xmax) || better(q.y, p.y, ymax));
      });
    });
  }

  var xSelect = document.getElementById("x-axis");
  var ySelect = document.getElementById("y-axis");
  var plot = document.getElementById("pareto-plot");
  var tip = document.getElementById("tooltip");
  data.axes.forEach(function (a) {
    [xSelect, ySelect].forEach(function (s) {
      var o = document.createElement("option");
      o.value = a.name;
      o.textContent = a.label + (a.maximize ? " (max)" : " (min)");
      s.appendChild(o);
    });
  });
  xSelect.value = data.axes.length > 1 ? data.axes[1].name : data.axes[0].name;
  ySelect.value = data.axes[0].name;

  function showTip(event, t) {
    var rows = data.axes.map(function (a) {
      return "<tr><th>" + esc(a.label) + "</th><td>" + fmt(t.metrics[a.name]) + "</td></tr>";
    }).join("");
    var params = Object.keys(t.params).map(function (k) {
      return esc(k) + "=" + esc(t.params[k]);
    }).join(", ");
    tip.innerHTML = "<b>trial " + t.number + "</b>" + (t.feasible === false ? " (infeasible)" : "") +
      "<div class=arch>" + esc(t.arch || "") + "</div><table>" + rows + "</table>" +
      (params ? "<div class=params>" + params + "</div>" : "");
    tip.hidden = false;
    var box = plot.getBoundingClientRect();
    tip.style.left = (event.clientX - box.left + 14) + "px";
    tip.style.top = (event.clientY - box.top + 14) + "px";
  }

  function esc(s) {
    return String(s).replace(/[&<>"]/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;" }[c];
    });
  }

  function draw() {
    var xName = xSelect.value, yName = ySelect.value;
    var W = 820, H = 520, L = 80, R = 40, T = 20, B = 60;
    while (plot.firstChild) plot.removeChild(plot.firstChild);
    el("rect", { x: 0, y: 0, width: W, height: H, fill: "#fff" }, plot);
    var xAxis = axisOf[xName], yAxis = axisOf[yName];
    var xs = scale(complete.map(function (t) { return t.metrics[xName]; }), L, W - R, xAxis.scale);
    var ys = scale(complete.map(function (t) { return t.metrics[yName]; }), H - B, T, yAxis.scale);
    var axes = el("g", { "class": "axes" }, plot);
    el("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#333" }, axes);
    el("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#333" }, axes);
    xs.ticks.forEach(function (v) {
      var x = xs.map(v);
      el("line", { x1: x, y1: T, x2: x, y2: H - B, stroke: "#eee" }, axes);
      el("text", { x: x, y: H - B + 18, "text-anchor": "middle" }, axes).textContent = fmt(v);
    });
    ys.ticks.forEach(function (v) {
      var y = ys.map(v);
      el("line", { x1: L, y1: y, x2: W - R, y2: y, stroke: "#eee" }, axes);
      el("text", { x: L - 6, y: y + 4, "text-anchor": "end" }, axes).textContent = fmt(v);
    });
    el("text", { x: (L + W - R) / 2, y: H - 15, "text-anchor": "middle", "class": "axis-name" }, axes)
      .textContent = xAxis.label + (xs.log ? " (log scale)" : "");
    el("text", { x: 18, y: (T + H - B) / 2, "text-anchor": "middle", "class": "axis-name",
      transform: "rotate(-90 18 " + (T + H - B) / 2 + ")" }, axes).textContent = yAxis.label + (ys.log ? " (log scale)" : "");

    var pts = [], infeasible = [];
    complete.forEach(function (t) {
      var vx = t.metrics[xName], vy = t.metrics[yName];
      if (!xs.ok(vx) || !ys.ok(vy)) return;
      var p = { x: vx, y: vy, t: t };
      (t.feasible === false ? infeasible : pts).push(p);
    });
    var best = front(pts, maximize[xName], maximize[yName]);
    best.sort(function (a, b) { return a.x - b.x || a.y - b.y; });
    el("polyline", { "class": "front-line", fill: "none", stroke: "#d72828", "stroke-width": 2,
      points: best.map(function (p) { return xs.map(p.x) + "," + ys.map(p.y); }).join(" ") }, plot);
    var layer = el("g", { "class": "points" }, plot);
    infeasible.forEach(function (p) {
      var x = xs.map(p.x), y = ys.map(p.y), s = 5;
      var node = el("path", { "class": "infeasible", d: "M" + (x - s) + "," + (y - s) + "L" + (x + s) + "," + (y + s) +
        "M" + (x - s) + "," + (y + s) + "L" + (x + s) + "," + (y - s), stroke: "#f08c00", "stroke-width": 2 }, layer);
      node.addEventListener("mousemove", function (e) { showTip(e, p.t); });
      node.addEventListener("mouseleave", function () { tip.hidden = true; });
    });
    pts.forEach(function (p) {
      var onFront = best.indexOf(p) >= 0;
      var node = el("circle", { "class": onFront ? "pt front" : "pt", cx: xs.map(p.x), cy: ys.map(p.y),
        r: onFront ? 6 : 4, "data-trial": p.t.number }, layer);
      node.addEventListener("mousemove", function (e) { showTip(e, p.t); });
      node.addEventListener("mouseleave", function () { tip.hidden = true; });
    });
    plot.setAttribute("data-points", String(pts.length + infeasible.length));
    plot.setAttribute("data-front", String(best.length));
    document.getElementById("pareto-caption").textContent = pts.length + " feasible trials (" + best.length +
      " on the front, red)" + (infeasible.length ? ", " + infeasible.length + " infeasible (orange crosses)" : "") +
      "; failed trials are left out.";
  }
  xSelect.addEventListener("change", draw);
  ySelect.addEventListener("change", draw);
  draw();

  // Sortable tables: click a header to sort by it, again to reverse.
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    var heads = table.querySelectorAll("thead th");
    Array.prototype.forEach.call(heads, function (th, column) {
      th.addEventListener("click", function () {
        var ascending = th.getAttribute("data-sort") !== "asc";
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("data-sort"); });
        th.setAttribute("data-sort", ascending ? "asc" : "desc");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        function key(row) {
          var cell = row.cells[column];
          var v = cell.getAttribute("data-v");
          var n = parseFloat(v === null ? cell.textContent : v);
          return isNaN(n) ? (v === null ? cell.textContent : v) : n;
        }
        rows.sort(function (a, b) {
          var x = key(a), y = key(b);
          var c = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
          return ascending ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  // With #selftest in the URL (used by the tests in headless Chromium):
  // hover over a point, then switch the y axis, and record what happened.
  if (location.hash === "#selftest") {
    var first = plot.querySelector("circle.pt");
    if (first) first.dispatchEvent(new MouseEvent("mousemove", { clientX: 100, clientY: 100, bubbles: true }));
    document.body.setAttribute("data-selftest-tooltip", tip.hidden ? "" : tip.textContent);
    ySelect.value = data.axes[data.axes.length - 1].name;
    ySelect.dispatchEvent(new Event("change"));
    document.body.setAttribute("data-selftest-axis", ySelect.value);
    document.body.setAttribute("data-selftest-points", plot.getAttribute("data-points"));
  }
  document.body.setAttribute("data-ready", "1");
})();
