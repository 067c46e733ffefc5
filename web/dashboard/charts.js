// Line charts of a series, drawn as SVG (no library: a few dozen buckets, redrawn every poll).
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const CHART = { width: 400, height: 170, left: 44, right: 10, top: 10, bottom: 24 };

function svgElement(name, attributes, text) {
  const element = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  if (text !== undefined) element.textContent = text;
  return element;
}

// The bucket start as a person reads it at this granularity (with the day when the chart
// spans more than one).
function bucketLabel(start, granularity, multiDay) {
  const date = new Date(start);
  switch (granularity) {
    case "minute":
    case "hour":
      return multiDay
        ? date.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" })
        : date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    case "month":
      return date.toLocaleDateString([], { month: "short", year: "numeric" });
    default:
      return date.toLocaleDateString([], { month: "short", day: "numeric" });
  }
}

// A round upper bound for the y axis (1, 2 or 5 times a power of ten).
function niceMax(max) {
  if (!(max > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(max));
  return [1, 2, 5, 10].map((m) => m * power).find((m) => m >= max);
}

// Draws `points` ([{start, value}], value null for none) into `svg`.
// `whole`: the values are counts, so the axis has no fractional ticks; `multiDay`: the axis
// labels name the day too.
function drawLineChart(svg, points, { color, format, granularity, whole, multiDay }) {
  svg.replaceChildren();
  const plotWidth = CHART.width - CHART.left - CHART.right;
  const plotHeight = CHART.height - CHART.top - CHART.bottom;
  const values = points.map((p) => p.value).filter((v) => v !== null);
  const max = niceMax(Math.max(0, ...values));
  const x = (i) => CHART.left + (points.length > 1 ? (i * plotWidth) / (points.length - 1) : plotWidth / 2);
  const y = (v) => CHART.top + plotHeight - (v / max) * plotHeight;

  for (const fraction of [0, 0.5, 1]) {
    const v = max * fraction;
    if (whole && !Number.isInteger(v)) continue;
    svg.append(svgElement("line", { class: "grid", x1: CHART.left, x2: CHART.width - CHART.right, y1: y(v), y2: y(v) }));
    svg.append(svgElement("text", { class: "axis", x: CHART.left - 4, y: y(v) + 3, "text-anchor": "end" }, format(v)));
  }
  const labelled = points.length > 2 ? [0, Math.floor((points.length - 1) / 2), points.length - 1] : points.map((_, i) => i);
  for (const i of labelled) {
    const anchor = i === 0 && points.length > 1 ? "start" : i === points.length - 1 && points.length > 1 ? "end" : "middle";
    svg.append(svgElement("text", { class: "axis", x: x(i), y: CHART.height - 6, "text-anchor": anchor }, bucketLabel(points[i].start, granularity, multiDay)));
  }

  // Runs of buckets with a value, so that a bucket without one (a CTR without impressions) is a gap.
  let path = "";
  let area = "";
  let run = [];
  const lone = [];
  const flush = () => {
    if (run.length === 0) return;
    // A lone value has no line to draw: a dot shows it.
    if (run.length === 1) lone.push(run[0]);
    path += run.map(([i, v], k) => `${k ? "L" : "M"}${x(i)},${y(v)}`).join("");
    area += `M${x(run[0][0])},${y(0)}` + run.map(([i, v]) => `L${x(i)},${y(v)}`).join("") + `L${x(run[run.length - 1][0])},${y(0)}Z`;
    run = [];
  };
  points.forEach((p, i) => (p.value === null ? flush() : run.push([i, p.value])));
  flush();
  svg.append(svgElement("path", { class: "area", d: area, fill: color, "fill-opacity": 0.12, stroke: "none" }));
  svg.append(svgElement("path", { class: "line", d: path, fill: "none", stroke: color, "stroke-width": 2, "stroke-linejoin": "round" }));
  // Dots (with their value on hover) while there are few enough to tell apart.
  const dots = points.length <= 48 ? points.map((p, i) => [i, p.value]).filter(([, v]) => v !== null) : lone;
  for (const [i, v] of dots) {
    const dot = svgElement("circle", { cx: x(i), cy: y(v), r: 2.5, fill: color });
    dot.append(svgElement("title", {}, `${new Date(points[i].start).toLocaleString()}: ${format(v)}`));
    svg.append(dot);
  }
}
