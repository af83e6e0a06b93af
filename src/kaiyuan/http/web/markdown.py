"""Model and dataset cards as HTML: Markdown rendered, then sanitised, because a card is input.

Cards on hubs mix Markdown with raw HTML (centred logos, badges, tables), so raw HTML is allowed
through the Markdown renderer and then cleaned by nh3 (the ammonia sanitiser): an allow-list of
tags and attributes, URL schemes limited to http(s) and mailto, `<script>`/`<style>` dropped with
their content, event handlers and `style` attributes removed. Relative links and images are
pointed into the repository at the revision shown.
"""

from __future__ import annotations

import posixpath
import re
from urllib.parse import quote, urlsplit

import nh3
from markdown_it import MarkdownIt

_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "center", "code", "dd", "del", "details",
    "div", "dl", "dt", "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
    "i", "img", "ins", "kbd", "li", "mark", "ol", "p", "picture", "pre", "q", "s", "samp",
    "small", "source", "span", "strong", "sub", "summary", "sup", "table", "tbody", "td",
    "tfoot", "th", "thead", "tr", "u", "ul",
}  # fmt: skip
_ATTRIBUTES = {
    "*": {"align", "title", "lang", "dir"},
    "a": {"href", "name"},
    "img": {"src", "alt", "width", "height"},
    "source": {"srcset", "media", "type"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
    "ol": {"start"},
    "details": {"open"},
    "code": {"class"},  # language-xyz from fenced code blocks
}
_SCHEMES = {"http", "https", "mailto"}
_RENDERER = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])


_LANGUAGE_CLASS = re.compile(r"language-[A-Za-z0-9_+#.-]{1,40}")


def render_card(markdown: str, file_base: str, raw_base: str) -> str:
    """Safe HTML for a card body.

    `file_base` is the URL prefix of the repository's file pages at the shown revision (relative
    links go there), `raw_base` the prefix of its downloads (relative images load from there).
    """
    html = _RENDERER.render(markdown)

    def rewrite(tag: str, attribute: str, value: str) -> str | None:
        if attribute in {"href", "src", "srcset"}:
            return _in_repository(value, raw_base if tag in {"img", "source"} else file_base)
        if attribute == "class":  # a fence's language: a name, nothing that reads like a URL
            return value if _LANGUAGE_CLASS.fullmatch(value) else None
        return value

    return nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes=_SCHEMES,
        attribute_filter=rewrite,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


def _in_repository(url: str, base: str) -> str | None:
    """Absolute and anchor links stay; a relative path is resolved inside the repository."""
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or url.startswith("#"):
        return url  # nh3 itself drops schemes outside the allow-list
    if url.startswith("/"):
        return url
    path = posixpath.normpath(parts.path).lstrip("/")
    if path.startswith("..") or path == ".":
        return None
    suffix = f"#{parts.fragment}" if parts.fragment else ""
    return f"{base}/{quote(path)}{suffix}"
