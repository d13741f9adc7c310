"""The report page: one self-contained HTML file (figures embedded as base64 PNG, inline CSS and
JavaScript, no network needed), and the interactive temperature slider."""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gumbelkit.apps.tour._report import Section

__all__ = ["slider_html", "write_html"]

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>gumbelkit tour</title>
<style>
body {{ font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }}
h1 {{ margin-bottom: 0.2em; }}
h2 {{ border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }}
figure {{ margin: 1em 0; }}
figure img {{ max-width: 100%; border: 1px solid #eee; }}
figcaption {{ font-size: 0.9em; color: #555; }}
table {{ border-collapse: collapse; font-size: 0.9em; margin: 0.8em 0; }}
td, th {{ border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }}
th {{ background: #f6f6f6; }}
.gk-worked td {{ font-family: monospace; text-align: right; }}
.gk-target th, .gk-target td {{ background: #fff7bc; }}
.gk-scroll {{ overflow-x: auto; }}
.gk-note, .gk-meta {{ font-size: 0.9em; color: #555; }}
.gk-widget {{ border: 1px solid #ccc; border-radius: 6px; padding: 0.8em 1em; margin: 1em 0; background: #fafafa; }}
.gk-widget label {{ font-weight: bold; }}
code {{ background: #f2f2f2; padding: 0 0.2em; }}
</style>
</head>
<body>
<h1>gumbelkit tour</h1>
<p class="gk-meta">A measured, illustrated report of the claims gumbelkit rests on. Every number on this
page was computed by this run and is in <code>results.json</code>; every figure is also a PNG in
<code>figures/</code>. Run settings: seed {seed}, {mode}, gumbelkit {version}, torch {torch_version},
total time {total:.1f} s. Regenerate with <code>{command}</code>.</p>
<h2>Summary</h2>
<table>
<tr><th>section</th><th>result</th><th>time (s)</th></tr>
{summary}
</table>
{sections}
</body>
</html>
"""

SECTION = """<section id="{key}">
<h2>{number}. {title}</h2>
{paragraphs}
{figures}
<table>
<tr><th>measured</th><th>value</th></tr>
{rows}
</table>
{extra}
</section>
"""

FIGURE = """<figure>
<img src="data:image/png;base64,{data}" alt="{alt}" data-file="{path}">
<figcaption>{caption} <a href="{path}">({path})</a></figcaption>
</figure>"""

SLIDER = """<div class="gk-widget" id="gk-slider-widget">
<p><label for="gk-tau">tau = <span id="gk-tau-value"></span></label>
<input type="range" id="gk-tau" min="-1.5" max="1.3" step="0.01" value="0" style="width: 60%">
<button type="button" id="gk-new-noise">new noise</button></p>
<svg id="gk-chart" width="560" height="230" viewBox="0 0 560 230" role="img"
     aria-label="bar chart of one Gumbel-Softmax sample"></svg>
<p class="gk-note">One Gumbel-Softmax sample y = softmax((logits + g) / tau) for the fixed logits
log p, p = {p_text} (red marks: p). Move the slider to change tau; the button draws new noise g.
The tallest bar never changes with tau: only how peaked the sample is. This illustration draws its
noise in your browser (g = -log(-log(u)) with JavaScript's Math.random), not with gumbelkit; the
measured numbers on this page come from the library.</p>
</div>
<script>
(function () {{
  "use strict";
  var logits = {logits_json};
  var labels = {labels_json};
  var K = logits.length;
  var svg = document.getElementById("gk-chart");
  var slider = document.getElementById("gk-tau");
  var tauText = document.getElementById("gk-tau-value");
  var NS = "http://www.w3.org/2000/svg";
  var W = 560, H = 230, top = 10, bottom = 40, left = 40;
  var plotH = H - top - bottom, bw = (W - left - 10) / K;
  var pmax = Math.max.apply(null, logits);
  var z = 0, i;
  for (i = 0; i < K; i++) {{ z += Math.exp(logits[i] - pmax); }}
  function gumbel() {{
    var u;
    do {{ u = Math.random(); }} while (u <= 0);  // u = 0 would give an infinite value
    return -Math.log(-Math.log(u));
  }}
  var g = [];
  function newNoise() {{ g = []; for (var j = 0; j < K; j++) {{ g.push(gumbel()); }} }}
  function sample(tau) {{
    var s = [], m = -Infinity, tot = 0, j;
    for (j = 0; j < K; j++) {{ s.push((logits[j] + g[j]) / tau); if (s[j] > m) {{ m = s[j]; }} }}
    for (j = 0; j < K; j++) {{ s[j] = Math.exp(s[j] - m); tot += s[j]; }}  // max-shift: no overflow
    for (j = 0; j < K; j++) {{ s[j] /= tot; }}
    return s;
  }}
  function el(name, attrs, text) {{
    var e = document.createElementNS(NS, name);
    for (var a in attrs) {{ e.setAttribute(a, attrs[a]); }}
    if (text !== undefined) {{ e.textContent = text; }}
    svg.appendChild(e);
    return e;
  }}
  var bars = [], vals = [];
  el("line", {{x1: left, y1: top + plotH, x2: W - 10, y2: top + plotH, stroke: "#333"}});
  el("text", {{x: 2, y: top + 8, "font-size": 11}}, "1");
  el("text", {{x: 2, y: top + plotH, "font-size": 11}}, "0");
  for (i = 0; i < K; i++) {{
    bars.push(el("rect", {{"class": "gk-bar", x: left + i * bw + 6, width: bw - 12, y: top + plotH,
                           height: 0, fill: "#3182bd"}}));
    var p = Math.exp(logits[i] - pmax) / z;
    el("line", {{x1: left + i * bw + 3, x2: left + (i + 1) * bw - 3, y1: top + plotH * (1 - p),
                 y2: top + plotH * (1 - p), stroke: "#cb181d", "stroke-width": 2}});
    vals.push(el("text", {{x: left + (i + 0.5) * bw, y: top + plotH - 4, "font-size": 11,
                           "text-anchor": "middle"}}, ""));
    el("text", {{x: left + (i + 0.5) * bw, y: H - 20, "font-size": 11, "text-anchor": "middle"}},
       labels[i]);
  }}
  function render() {{
    var tau = Math.pow(10, parseFloat(slider.value));
    tauText.textContent = tau.toPrecision(3);
    var y = sample(tau);
    for (var j = 0; j < K; j++) {{
      var h = plotH * y[j];
      bars[j].setAttribute("height", h.toFixed(2));
      bars[j].setAttribute("y", (top + plotH - h).toFixed(2));
      vals[j].setAttribute("y", (top + plotH - h - 4).toFixed(2));
      vals[j].textContent = y[j].toFixed(2);
    }}
  }}
  slider.addEventListener("input", render);
  document.getElementById("gk-new-noise").addEventListener("click", function () {{
    newNoise(); render();
  }});
  newNoise();
  render();
}})();
</script>
"""


def slider_html(logits: Sequence[float], labels: Sequence[str]) -> str:
    """The tau slider over a fixed logit vector (inline SVG bar chart, inline JavaScript).

    Args:
        logits: the fixed logit vector ``(K,)``.
        labels: one label per category.

    Returns:
        HTML for the widget and its script.
    """
    pmax = max(logits)
    z = sum(math.exp(v - pmax) for v in logits)
    p_text = ", ".join(f"{math.exp(v - pmax) / z:.3g}" for v in logits)
    return SLIDER.format(logits_json=json.dumps([float(v) for v in logits]),
                         labels_json=json.dumps([str(s) for s in labels]),
                         p_text=html.escape(p_text))


def _figure_html(out: Path, path: str, caption: str, name: str) -> str:
    data = base64.b64encode((out / path).read_bytes()).decode("ascii")
    return FIGURE.format(data=data, alt=html.escape(name), path=html.escape(path),
                         caption=html.escape(caption))


def render_section(out: Path, s: Section) -> str:
    paras = "\n".join(f"<p>{p if s.html_paragraphs else html.escape(p)}</p>" for p in s.paragraphs)
    figs = "\n".join(_figure_html(out, f.path, f.caption, f.name) for f in s.figures)
    rows = "\n".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in s.table)
    return SECTION.format(key=html.escape(s.key), number=s.number, title=html.escape(s.title),
                          paragraphs=paras, figures=figs, rows=rows, extra=s.extra_html)


def write_html(out: Path, sections: Sequence[Section], meta: dict[str, Any]) -> Path:
    """Write ``out/index.html`` for the finished sections; returns its path."""
    summary = "\n".join(
        f"<tr><td><a href=\"#{html.escape(s.key)}\">{s.number}. {html.escape(s.title)}</a></td>"
        f"<td>{html.escape(s.headline)}</td><td>{s.seconds:.1f}</td></tr>"
        for s in sections
    )
    page = PAGE.format(
        seed=meta["seed"], mode="quick mode (small samples)" if meta["quick"] else "full mode",
        version=html.escape(str(meta["gumbelkit_version"])),
        torch_version=html.escape(str(meta["torch_version"])), total=meta["total_seconds"],
        command=html.escape(meta["command"]), summary=summary,
        sections="\n".join(render_section(out, s) for s in sections),
    )
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
