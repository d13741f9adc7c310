"""Load the tour's page in headless Chromium: every figure loads and the tau slider redraws.

Chromium runs the page with a small JavaScript harness appended (a copy of the page; the report
itself is untouched); the harness writes its findings as JSON into the DOM, which
``--dump-dom`` prints. Skipped, with the reason, when Debian's ``chromium`` is not installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gumbelkit.apps import cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Runs before the page's own script: records errors and replaces Math.random by a seeded
# generator (mulberry32), so the page's noise, and hence this test, is deterministic.
ERRORS_HOOK = """<script>
window.__gkErrors = [];
(function () {
  var a = 12345;
  Math.random = function () {
    a = (a + 0x6D2B79F5) | 0;
    var t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
})();
window.addEventListener("error", function (e) { window.__gkErrors.push(String(e.message)); });
</script>"""

HARNESS = """<script>
window.addEventListener("load", function () {
  var out = {errors: window.__gkErrors};
  var imgs = Array.prototype.slice.call(document.images);
  out.images = imgs.length;
  out.loaded = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var slider = document.getElementById("gk-tau");
  function heights() {
    return Array.prototype.map.call(document.querySelectorAll("#gk-chart rect.gk-bar"),
                                    function (r) { return parseFloat(r.getAttribute("height")); });
  }
  out.initial = heights();
  slider.value = slider.min; slider.dispatchEvent(new Event("input"));
  out.at_min = heights();
  out.tau_text_min = document.getElementById("gk-tau-value").textContent;
  slider.value = slider.max; slider.dispatchEvent(new Event("input"));
  out.at_max = heights();
  out.tau_text_max = document.getElementById("gk-tau-value").textContent;
  document.getElementById("gk-new-noise").click();
  out.after_noise = heights();
  var pre = document.createElement("pre");
  pre.id = "gk-test-result";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def quick_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``--quick`` report, shared with test_tour.py when both run in one session."""
    out = tmp_path_factory.getbasetemp() / "tour-quick"
    if not (out / "index.html").exists():
        assert cli.main(["tour", "--quick", "--out", str(out), "--seed", "0", "--no-progress"]) == 0
    return out


def _run_in_chromium(page: Path, profile: Path) -> dict[str, Any]:
    assert CHROMIUM is not None
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--no-first-run", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom", page.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)
    m = re.search(r'<pre id="gk-test-result">(.*?)</pre>', proc.stdout, re.S)
    assert m, f"no harness output; rc={proc.returncode}, stderr tail:\n{proc.stderr[-2000:]}"
    return json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install chromium)")
def test_page_in_headless_chromium(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    report = quick_report(tmp_path_factory)
    n_figures = sum(len(s["figures"]) for s in json.loads((report / "results.json").read_text())["sections"].values())
    page = (report / "index.html").read_text(encoding="utf-8")
    test_page = report / "browser-test.html"  # next to index.html, so relative links resolve alike
    test_page.write_text(page.replace("<head>", "<head>" + ERRORS_HOOK, 1).replace("</body>", HARNESS + "</body>"),
                         encoding="utf-8")
    out = _run_in_chromium(test_page, tmp_path / "profile")

    assert out["errors"] == []
    assert out["images"] == n_figures and out["loaded"] == n_figures
    k = len(out["initial"])
    assert k >= 3 and len(out["at_min"]) == k and len(out["at_max"]) == k
    assert out["at_min"] != out["at_max"], "moving the slider must redraw the chart"
    assert out["tau_text_min"] != out["tau_text_max"]
    # Same noise, two temperatures: the largest entry of softmax(z / tau) strictly decreases with
    # tau and its position does not change, whatever the noise.
    assert max(out["at_min"]) > max(out["at_max"])
    assert out["at_min"].index(max(out["at_min"])) == out["at_max"].index(max(out["at_max"]))
    # With the seeded noise: almost one-hot at tau = 10^-1.5, close to uniform at tau = 10^1.3.
    assert max(out["at_min"]) > 0.95 * sum(out["at_min"])
    assert max(out["at_max"]) < 2 * sum(out["at_max"]) / k
    assert out["after_noise"] != out["at_max"], "'new noise' must redraw the chart"
