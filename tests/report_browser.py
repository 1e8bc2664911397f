"""Open a single-file Snakemake report (``snakemake --report report.html``) in headless
Chromium and see what a reader sees: the report's own app, driven through its global
``app`` object, shows each result in turn; a script added to a copy of the page records
whether each image decoded, whether each result's caption was on the page, and what
each inline page holds, and writes that into the DOM, which Chromium dumps.

`inspect_report` returns that record; `screenshot_report` saves what the report shows,
the landing page or one result.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

# Chromium's package name on Debian/Ubuntu (scripts/install-system-deps.sh installs it).
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")

_CHECK = r"""
<script>
window.addEventListener("load", async () => {
  const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const squash = (text) => (text || "").replace(/\s+/g, " ").trim();
  const textOf = (html) => {
    const div = document.createElement("div");
    div.innerHTML = html || "";
    return squash(div.textContent);
  };
  await wait(1000);
  const record = {landing: squash(document.body.innerText), results: {}};
  for (const [path, entry] of Object.entries(results)) {
    const seen = {mime: entry.mime_type, labels: entry.labels};
    app.showResultInfo(path);
    await wait(200);
    const caption = textOf(entry.caption);
    seen.caption = caption;
    seen.caption_shown = caption.length > 0 && squash(document.body.innerText).includes(caption);
    if (entry.mime_type.startsWith("image/")) {
      app.setView({content: "img", contentPath: entry.data_uri, resultPath: path});
      await wait(200);
      const img = [...document.querySelectorAll("#app img")].find((i) => i.src === entry.data_uri);
      if (img) {
        for (let tries = 0; !img.complete && tries < 100; tries++) await wait(50);
        seen.shown = true;
        seen.width = img.naturalWidth;
        seen.height = img.naturalHeight;
      } else {
        seen.shown = false;
      }
    } else if (entry.mime_type === "text/html") {
      app.setView({content: "html", contentPath: entry.data_uri, resultPath: path});
      await wait(200);
      seen.shown = [...document.querySelectorAll("#app iframe")].some(
        (f) => f.getAttribute("src") === entry.data_uri);
      seen.page = await (await fetch(entry.data_uri)).text();
    }
    record.results[path] = seen;
  }
  const out = document.createElement("pre");
  out.id = "report-check";
  out.textContent = JSON.stringify(record);
  document.body.appendChild(out);
});
</script>
"""

_SHOW = r"""
<script>
window.addEventListener("load", () => setTimeout(() => {
  const path = %s;
  if (path !== null) {
    const entry = results[path];
    app.setView({content: "img", contentPath: entry.data_uri, resultPath: path});
    setTimeout(() => app.showResultInfo(path), 300);  // the menu then shows its caption
  }
}, 1000));
</script>
"""


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _with_script(report: Path, script: str, workdir: Path) -> Path:
    page = report.read_text(encoding="utf-8")
    if "</body>" not in page:
        raise ValueError(f"{report}: no </body>; is it a single-file report (.html)?")
    copy = workdir / f"{report.stem}.checked.html"
    head, tail = page.rsplit("</body>", 1)
    copy.write_text(head + script + "</body>" + tail, encoding="utf-8")
    return copy


def _chromium(chromium: str, workdir: Path, *args: str, timeout: int = 180):
    profile = workdir / "chromium-profile"
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",  # as root (CI containers) Chromium refuses to start otherwise
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=120000",
        *args,
    ]
    env = {**os.environ, "HOME": str(workdir)}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def inspect_report(report: Path, chromium: str, workdir: Path) -> dict:
    """What Chromium shows of ``report``: ``landing`` (the text of the first page) and,
    per result path, its ``mime``, ``labels``, ``caption`` (text) and ``caption_shown``;
    for images ``shown``, ``width`` and ``height`` (0 if it did not decode); for inline
    pages ``shown`` and their ``page`` (HTML)."""
    page = _with_script(Path(report), _CHECK, Path(workdir))
    run = _chromium(chromium, Path(workdir), "--dump-dom", page.as_uri())
    found = re.search(r'<pre id="report-check">(.*?)</pre>', run.stdout, re.S)
    if found is None:
        raise AssertionError(
            f"Chromium showed no check record for {report} (exit {run.returncode}):\n"
            f"{run.stderr[-3000:]}"
        )
    return json.loads(html.unescape(found[1]))


def screenshot_report(
    report: Path, chromium: str, workdir: Path, png: Path, result: str | None = None
) -> None:
    """A screenshot of ``report``: its landing page, or the image result ``result``
    (a path as the report names it) with its description."""
    page = _with_script(Path(report), _SHOW % json.dumps(result), Path(workdir))
    run = _chromium(
        chromium, Path(workdir), f"--screenshot={png}", "--window-size=1600,1000", page.as_uri()
    )
    if not Path(png).is_file():
        raise AssertionError(f"Chromium wrote no screenshot {png}:\n{run.stderr[-3000:]}")
