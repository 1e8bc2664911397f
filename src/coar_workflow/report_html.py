"""Pages for the Snakemake report: a table or a text shown in place.

The report (``snakemake --report``) shows images, PDFs and HTML inline and offers every
other file (CSV, text) only for download. A CSV that a caption refers to, and a
figure's provenance, are therefore also written as a small self-contained HTML page.

>>> import pandas as pd
>>> page = table_page(pd.DataFrame({"k": [1, 2], "r": [0.5, float("nan")]}), "t.csv")
>>> "<th>k</th>" in page and "n/a" in page and "<title>t.csv</title>" in page
True
>>> "&lt;b&gt;" in text_page("<b>", "x")
True
"""

from __future__ import annotations

import html

import pandas as pd

from coar.atomic import atomic_path

_STYLE = """
body { font-family: sans-serif; font-size: 13px; margin: 1em; color: #111; background: #fff; }
h1 { font-size: 15px; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #eee; position: sticky; top: 0; }
pre { font-size: 12px; white-space: pre; }
"""


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n"
    )


def table_page(frame: pd.DataFrame, title: str) -> str:
    """``frame`` as an HTML table (numbers to 4 significant digits, NaN as n/a);
    ``title``: the file it shows, whose full numbers the page points to."""
    table = frame.to_html(index=False, na_rep="n/a", float_format=lambda v: f"{v:.4g}", border=0)
    note = f"<p>Rounded to 4 significant digits; full precision: {html.escape(title)}.</p>"
    return _page(title, note + table)


def text_page(text: str, title: str) -> str:
    """``text`` verbatim (preformatted, escaped) under ``title``."""
    return _page(title, f"<pre>{html.escape(text)}</pre>")


def write_page(page: str, path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
