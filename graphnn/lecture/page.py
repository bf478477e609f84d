"""The page: one self-contained HTML file from a `Lesson`.

The template, the stylesheet and the script are package data (``assets/``); the math font
comes once, as base64, with the derivations' stylesheet (`documents.html_style`); the
pictures are inline SVG, the training images data: URIs, the lesson JSON. The result holds
no web address, so it opens offline, from a USB stick, in any browser.
"""
from __future__ import annotations

import html
import re
from importlib import resources

from ..derive.documents import html_style
from .lesson import Lesson
from .svg import picture_font_css

#: a reference the page would have to fetch (the page must not have one)
EXTERNAL = re.compile(r"https?://|\b(?:src|href)\s*=\s*[\"'](?!data:|#)[^\"']+", re.I)


def asset(name: str) -> str:
    return resources.files(__package__).joinpath("assets", name).read_text(encoding="utf-8")


def external_references(page: str) -> list:
    """Every web address or fetched file the page names (it must be [])."""
    return [m.group(0) for m in EXTERNAL.finditer(page)]


def render(lesson: Lesson) -> str:
    """The whole page as a string."""
    pictures = "".join(f'<div class="pic" data-picture="{html.escape(name)}">{pic.svg}</div>'
                       for name, pic in lesson.pictures.items())
    chips = "".join(f'<button class="chip" type="button" data-weight="{html.escape(name)}">{_chip(name)}</button>'
                    for name in lesson.weights)
    page = asset("page.html")
    parts = {"TITLE": html.escape(lesson.title), "STYLE": html_style(embed_font=True) + asset("lecture.css") + picture_font_css(),
             "PICTURES": pictures, "CHIPS": chips, "DATA": lesson.to_json(), "SCRIPT": asset("lecture.js")}
    for key, value in parts.items():
        page = page.replace("{{" + key + "}}", value)
    found = external_references(page)
    if found:
        raise AssertionError(f"the lecture page would fetch {found[:3]}: it must be self-contained")
    return page


def _chip(name: str) -> str:
    from ..notation import html_name
    return html_name(name)
