"""The self-contained HTML page of a report: tables, inlined images, escaped text (issue 28, point 4)."""

from __future__ import annotations

import base64

from pinsage_model.evaluation.report import markdown_to_html

MD = """# Offline evaluation

Split protocol: <temporal> & more.

| method | hit@10 |
|---|---:|
| pinsage | 0.1234 |

![hit-rate@K](curve.png)

![missing](nope.png)

- one
- two
"""


def test_tables_images_and_text_become_html():
    png = b"\x89PNG data"
    page = markdown_to_html(MD, {"curve.png": png}, "report")
    assert page.startswith("<!DOCTYPE html>") and "<title>report</title>" in page
    assert "<h1>Offline evaluation</h1>" in page and "<p>Split protocol: &lt;temporal&gt; &amp; more.</p>" in page
    assert '<tr><th>method</th><th>hit@10</th></tr><tr><td>pinsage</td><td class="n">0.1234</td></tr>' in page
    assert f'src="data:image/png;base64,{base64.b64encode(png).decode()}"' in page
    assert "nope.png not found" in page and "<ul><li>one</li><li>two</li></ul>" in page
    assert "http" not in page  # nothing to fetch: the page stands alone
