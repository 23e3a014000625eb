"""A report as a list of blocks, rendered to one self-contained HTML file or to Markdown plus images."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Union

import pandas as pd

if TYPE_CHECKING:  # matplotlib is imported by the plots, when there are any
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class Heading:
    """A section title; level 1 is the report title."""

    text: str
    level: int = 2


@dataclass(frozen=True)
class Text:
    """A paragraph of plain text."""

    text: str


@dataclass(frozen=True)
class Bullets:
    """A bulleted list of plain-text items."""

    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    """A table of already formatted cells."""

    frame: pd.DataFrame
    caption: str = ""


@dataclass(frozen=True)
class Image:
    """A figure with a file-name stem (for Markdown) and a caption."""

    figure: "Figure"
    name: str
    caption: str


@dataclass(frozen=True)
class Preformatted:
    """Monospaced text kept as is (error messages, tracebacks)."""

    text: str


Block = Union[Heading, Text, Bullets, Table, Image, Preformatted]


@dataclass
class Document:
    """An ordered list of blocks with a title."""

    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> None:
        """Append blocks in order."""
        self.blocks.extend(blocks)

    def images(self) -> list[Image]:
        """The figures, in order."""
        return [b for b in self.blocks if isinstance(b, Image)]


def slug(text: str) -> str:
    """A file- and anchor-safe name: lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #0072B2;padding-bottom:.2em}
h2{margin-top:2em;border-bottom:1px solid #ccc;padding-bottom:.15em}
h3{margin:1.4em 0 .4em}
.table-wrap{max-width:100%;overflow-x:auto;margin:0 0 1.4em}
table{border-collapse:collapse;font-size:.88em}
th,td{border:1px solid #d0d0d0;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f0f4f8}
tr:nth-child(even) td{background:#fafafa}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
p.caption{font-weight:600;font-size:.88em;margin:1em 0 .3em}
figure{margin:1em 0 2em}
figure img{display:block;width:100%;height:auto}
figcaption{font-size:.88em;color:#444;margin-top:.3em}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:.85em}
nav ul{columns:2}
ul.findings li{margin:.25em 0}
.pass{color:#009E73;font-weight:700}.fail{color:#D55E00;font-weight:700}
"""

_NUMBER = r"<?[-+\u2212]?[\d.,]+(e[-+]?\d+)?"
_NUMERIC = re.compile(rf"^({_NUMBER}\s*(\u00b1\s*[\d.,]+)?\s*[%\u00d7]?(\s*\(\d+\))?"
                      rf"|({_NUMBER}\s*)?\[{_NUMBER}, {_NUMBER}\])$")


def _text(value: object) -> str:
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def _cell_html(text: str, numeric: bool) -> str:
    if text in ("\u2713", "\u2717"):
        css = "pass" if text == "\u2713" else "fail"
        return f'<td class="{css}">{text}</td>'
    css = ' class="num"' if numeric and text else ""
    return f"<td{css}>{html.escape(text)}</td>"


def _table_html(table: Table) -> str:
    """A table inside a wrapper that scrolls sideways when the table is wider than the page."""
    cells = [[_text(v) for v in row] for row in table.frame.itertuples(index=False, name=None)]
    # a column is right-aligned when every non-empty cell in it is a number
    numeric = [all(_NUMERIC.match(c) for c in col if c) and any(col) for col in zip(*cells)] \
        if cells else []
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.frame.columns)
    rows = "".join("<tr>" + "".join(_cell_html(c, n) for c, n in zip(row, numeric)) + "</tr>"
                   for row in cells)
    # the caption stays outside the scrolling box, so it wraps at the page width
    caption = f'<p class="caption">{html.escape(table.caption)}</p>' if table.caption else ""
    return (f'{caption}<div class="table-wrap"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{rows}</tbody></table></div>")


def to_html(doc: Document) -> str:
    """The document as one HTML page: inline CSS, figures as data: URIs, no external references."""
    parts: list[str] = []
    toc: list[str] = []
    anchors: set[str] = set()
    for block in doc.blocks:
        if isinstance(block, Heading):
            anchor = slug(block.text)
            if anchor in anchors:  # the same pair heads its part of each section: ids stay unique
                anchor = next(f"{anchor}-{i}" for i in range(2, len(anchors) + 3)
                              if f"{anchor}-{i}" not in anchors)
            anchors.add(anchor)
            if block.level == 2:
                toc.append(f'<li><a href="#{anchor}">{html.escape(block.text)}</a></li>')
            level = min(max(block.level, 1), 6)
            parts.append(f'<h{level} id="{anchor}">{html.escape(block.text)}</h{level}>')
        elif isinstance(block, Text):
            parts.append(f"<p>{html.escape(block.text)}</p>")
        elif isinstance(block, Bullets):
            items = "".join(f"<li>{html.escape(i)}</li>" for i in block.items)
            parts.append(f"<ul class=\"findings\">{items}</ul>")
        elif isinstance(block, Table):
            parts.append(_table_html(block))
        elif isinstance(block, Image):
            from .style import data_uri

            alt = html.escape(block.caption, quote=True)
            # vector figures: shown at the column's width, up to 1.2x their natural size
            width = round(block.figure.get_figwidth() * 96 * 1.2)
            parts.append(
                f'<figure><img src="{data_uri(block.figure)}" alt="{alt}" style="max-width:min(100%,{width}px)">'
                f"<figcaption>{html.escape(block.caption)}</figcaption></figure>"
            )
        elif isinstance(block, Preformatted):
            parts.append(f"<pre>{html.escape(block.text)}</pre>")
    nav = f"<nav><strong>Contents</strong><ul>{''.join(toc)}</ul></nav>" if toc else ""
    title = html.escape(doc.title)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<h1>{title}</h1>\n"
        f"{nav}\n" + "\n".join(parts) + "\n</body>\n</html>\n"
    )


def _md_escape(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _table_md(table: Table) -> str:
    frame = table.frame
    header = "| " + " | ".join(_md_escape(c) for c in frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    rows = [
        "| " + " | ".join("" if pd.isna(v) else _md_escape(v) for v in row) + " |"
        for row in frame.itertuples(index=False, name=None)
    ]
    caption = [f"**{table.caption}**", ""] if table.caption else []
    return "\n".join([*caption, header, rule, *rows])


def to_markdown(doc: Document, image_dir: Path, image_prefix: str) -> tuple[str, dict[Path, bytes]]:
    """The document as Markdown and the image files it references (PNG shown, SVG beside it)."""
    parts = [f"# {doc.title}"]
    files: dict[Path, bytes] = {}
    used: set[str] = set()
    for block in doc.blocks:
        if isinstance(block, Heading):
            parts.append("#" * min(max(block.level, 1), 6) + " " + block.text)
        elif isinstance(block, Text):
            parts.append(block.text)
        elif isinstance(block, Bullets):
            parts.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            parts.append(_table_md(block))
        elif isinstance(block, Image):
            from .style import figure_bytes

            stem = _unique(slug(block.name), used)
            for fmt in ("png", "svg"):
                files[image_dir / f"{stem}.{fmt}"] = figure_bytes(block.figure, fmt)
            parts.append(f"![{stem}]({image_prefix}/{stem}.png)\n\n*{block.caption}* "
                         f"([SVG]({image_prefix}/{stem}.svg))")
        elif isinstance(block, Preformatted):
            parts.append("```\n" + block.text.replace("```", "'''") + "\n```")
    return "\n\n".join(parts) + "\n", files


def _unique(stem: str, used: set[str]) -> str:
    name, i = stem, 2
    while name in used:
        name, i = f"{stem}-{i}", i + 1
    used.add(name)
    return name
