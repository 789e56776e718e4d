"""Hardened XML loading for untrusted warning payloads.

Every document goes through :func:`load_xml`:

1. the size is capped before anything else looks at the bytes;
2. the prolog (everything before the root element) is scanned *as bytes*: a ``<!DOCTYPE`` — or any other
   markup declaration — rejects the document before a parser sees it, so no entity can ever be declared, let
   alone expanded or fetched;
3. lxml parses with entity resolution, DTD loading, network access and huge trees all switched off;
   XInclude is never processed (lxml only does that when ``xinclude()`` is called, which this package
   never does);
4. as a second line of defence, a tree that nonetheless carries a DTD is rejected.

The declared encoding is honoured (libxml2 decodes), and bytes that do not decode under it give a clear error.
"""

from __future__ import annotations

import re
import threading

from lxml import etree

from .model import InvalidDocument, Issue

DEFAULT_MAX_BYTES = 5_000_000

_local = threading.local()
_ENCODING_RE = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""")


def _parser() -> etree.XMLParser:
    """One parser per thread (lxml parser objects must not be shared between threads)."""
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            attribute_defaults=False,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
            collect_ids=False,
            recover=False,
        )
        _local.parser = parser
    return parser


def check_size(data: bytes, max_bytes: int) -> None:
    if len(data) > max_bytes:
        raise InvalidDocument([Issue("document", f"payload is {len(data)} bytes, limit {max_bytes}")])


def _prolog_text(data: bytes) -> str:
    """The start of the document as text, for scanning the prolog (UTF-16/32 aware, else byte-for-byte)."""
    head = data[:4]
    if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")) or head in (
        b"\x00\x00\x00<",
        b"<\x00\x00\x00",
    ):
        codec = "utf-32"
        if head == b"\x00\x00\x00<":
            codec = "utf-32-be"
        elif head == b"<\x00\x00\x00":
            codec = "utf-32-le"
        return data.decode(codec, errors="replace")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    if head.startswith(b"\x00<"):
        return data.decode("utf-16-be", errors="replace")
    if head.startswith(b"<\x00"):
        return data.decode("utf-16-le", errors="replace")
    # ASCII-compatible encodings (UTF-8, ISO-8859-x, GB18030, ...): markup is plain ASCII, map bytes 1:1.
    return data.decode("latin-1")


def check_prolog(data: bytes) -> None:
    """Reject a DOCTYPE (or any markup declaration) before the root element; reject non-XML starts."""
    text = _prolog_text(data)
    i = 0
    n = len(text)
    if text.startswith("\ufeff"):
        i = 1
    elif text.startswith("\xef\xbb\xbf"):
        i = 3
    while True:
        while i < n and text[i] in " \t\r\n":
            i += 1
        if i >= n:
            raise InvalidDocument([Issue("document", "no root element")])
        if text.startswith("<?", i):
            j = text.find("?>", i + 2)
            if j < 0:
                return  # unterminated: the parser reports it
            i = j + 2
            continue
        if text.startswith("<!--", i):
            j = text.find("-->", i + 4)
            if j < 0:
                return
            i = j + 3
            continue
        if text.startswith("<!", i):
            line = text.count("\n", 0, i) + 1
            if text[i + 2 : i + 9].upper() == "DOCTYPE":
                msg = "DOCTYPE declarations are not allowed (entities and DTDs are never processed)"
            else:
                msg = f"markup declaration {text[i : i + 10]!r} before the root is not allowed (DOCTYPE)"
            raise InvalidDocument([Issue("document", msg, line)])
        if text[i] == "<":
            return  # root element
        raise InvalidDocument([Issue("document", "not an XML document (does not start with '<')", 1)])


def _declared_encoding(data: bytes) -> str | None:
    m = _ENCODING_RE.match(data[:200])
    return m.group(1).decode("ascii") if m else None


def load_xml(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> etree._Element:
    """Parse untrusted bytes into an element tree, or raise :class:`InvalidDocument`."""
    check_size(data, max_bytes)
    check_prolog(data)
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise InvalidDocument([_syntax_issue(data, exc)]) from None
    except ValueError as exc:  # e.g. lxml refusing input it cannot handle
        raise InvalidDocument([Issue("document", f"not parseable as XML: {exc}")]) from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise InvalidDocument([Issue("document", "DOCTYPE declarations are not allowed")])
    return root


def _syntax_issue(data: bytes, exc: etree.XMLSyntaxError) -> Issue:
    msg = str(exc.msg or exc).strip()
    line = exc.lineno or None
    low = msg.lower()
    if "unsupported encoding" in low:
        enc = _declared_encoding(data) or "?"
        return Issue("document", f"declared encoding {enc!r} is not supported", line)
    if (
        "invalid bytes in character encoding" in low
        or "not proper utf-8" in low
        or "conversion failed" in low
    ):
        enc = _declared_encoding(data) or "UTF-8 (default)"
        return Issue("document", f"bytes do not decode as the declared encoding {enc}", line)
    if "entity" in low and ("not defined" in low or "undeclared" in low):
        return Issue("document", f"undefined entity reference (entities are not processed): {msg}", line)
    # strip lxml's trailing "(<string>, line N)" noise
    msg = re.sub(r"\s*\(<string>, line \d+\)$", "", msg)
    return Issue("document", f"not well-formed XML: {msg}", line)
