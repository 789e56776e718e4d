"""Containers that carry CAP: ATOM (fat and thin), RSS 2.0 indexes, and EDXL-DE 1.0 distributions.

Feed-level problems (a feed or entry without id/title/link, unknown Atom elements, CAP alerts placed outside
an entry) reject the whole payload. An invalid *embedded* alert only rejects that alert: it goes to
``ParseResult.rejected`` and the valid ones still count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

from lxml import etree

from .model import FeedLink, InvalidDocument, Issue, ParsedAlert, ParseResult, RejectedItem
from .parse import CAP_PROFILES, convert_alert, is_cap_alert, local_name, namespace, serialize

Element: TypeAlias = etree._Element

ATOM_NS = "http://www.w3.org/2005/Atom"
EDXL_DE_NS = "urn:oasis:names:tc:emergency:EDXL:DE:1.0"
CAP_MIME_TYPES = ("application/cap+xml",)

FEED_ELEMENTS = frozenset(
    (
        "author",
        "category",
        "contributor",
        "generator",
        "icon",
        "id",
        "link",
        "logo",
        "rights",
        "subtitle",
        "title",
        "updated",
        "entry",
    )
)
ENTRY_ELEMENTS = frozenset(
    (
        "author",
        "category",
        "content",
        "contributor",
        "id",
        "link",
        "published",
        "rights",
        "source",
        "summary",
        "title",
        "updated",
    )
)
EDXL_REQUIRED = (
    "distributionID",
    "senderID",
    "dateTimeSent",
    "distributionStatus",
    "distributionType",
    "combinedConfidentiality",
)


def _text(el: Element | None) -> str:
    if el is None:
        return ""
    return "".join(el.itertext()).strip()


def _add_embedded(result: ParseResult, el: Element, path: str) -> None:
    alert, errors, _warnings = convert_alert(el, path)
    xml = serialize(el)
    if alert is None:
        result.rejected.append(RejectedItem(tuple(errors), xml, _identifier_of(el)))
    else:
        result.alerts.append(ParsedAlert(alert, xml))


def _identifier_of(el: Element) -> str | None:
    for child in el:
        if isinstance(child.tag, str) and local_name(child.tag) == "identifier":
            return (child.text or "").strip() or None
    return None


def _cap_alerts_in(el: Element) -> list[Element]:
    return [c for c in el if isinstance(c.tag, str) and is_cap_alert(c)]


# --- ATOM -------------------------------------------------------------------------------------------------


def _atom_children(
    el: Element, path: str, allowed: frozenset[str], errors: list[Issue]
) -> tuple[dict[str, list[Element]], list[Element]]:
    """Atom children by name; foreign markup is allowed (returned apart), unknown Atom elements are not."""
    groups: dict[str, list[Element]] = {}
    foreign: list[Element] = []
    prefix = "{" + ATOM_NS + "}"
    for child in el:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        if tag.startswith(prefix):
            name = tag[len(prefix) :]
            if name not in allowed:
                errors.append(
                    Issue(f"{path}/{name}", "unknown element in the Atom namespace", child.sourceline)
                )
                continue
            groups.setdefault(name, []).append(child)
        else:
            foreign.append(child)
    return groups, foreign


def _required_atom(
    groups: dict[str, list[Element]], name: str, path: str, parent: Element, errors: list[Issue]
) -> str | None:
    els = groups.get(name)
    if not els:
        errors.append(Issue(f"{path}/{name}", "required element missing", parent.sourceline))
        return None
    value = _text(els[0])
    if not value:
        errors.append(Issue(f"{path}/{name}", "empty value", els[0].sourceline))
        return None
    return value


def _cap_link(links: list[Element]) -> str | None:
    """The entry's link to its CAP document, best match first."""
    typed = related = plain = None
    for link in links:
        href = (link.get("href") or "").strip()
        if not href:
            continue
        rel = (link.get("rel") or "alternate").strip()
        mime = (link.get("type") or "").strip().lower()
        if mime in CAP_MIME_TYPES:
            typed = typed or href
        elif rel in ("alternate", "related"):
            bare = href.split("?", 1)[0].split("#", 1)[0].lower()
            if bare.endswith((".cap", ".xml")) and mime in ("", "text/xml", "application/xml"):
                related = related or href
            elif rel == "alternate" and mime in ("", "text/xml", "application/xml"):
                plain = plain or href  # e.g. NWS index: wwacapget.php?x=... without a type
    return typed or related or plain


def parse_atom(root: Element) -> ParseResult:
    errors: list[Issue] = []
    result = ParseResult(kind="atom")
    path = "feed"
    groups, foreign = _atom_children(root, path, FEED_ELEMENTS, errors)
    for el in foreign:
        if is_cap_alert(el):
            errors.append(Issue(f"{path}/alert", "CAP alert outside an <entry>", el.sourceline))
    _required_atom(groups, "id", path, root, errors)
    _required_atom(groups, "title", path, root, errors)
    if "updated" not in groups:
        result.warnings.append(
            Issue(f"{path}/updated", "required element missing (accepted)", root.sourceline)
        )
    for i, entry in enumerate(groups.get("entry", ()), 1):
        epath = f"{path}/entry[{i}]"
        eg, eforeign = _atom_children(entry, epath, ENTRY_ELEMENTS, errors)
        entry_id = _required_atom(eg, "id", epath, entry, errors)
        title = _required_atom(eg, "title", epath, entry, errors)
        updated = _text(eg["updated"][0]) if "updated" in eg else None
        embedded: list[tuple[Element, str]] = []
        for content in eg.get("content", ())[:1]:
            embedded.extend((a, f"{epath}/content/alert") for a in _cap_alerts_in(content))
        for el in eforeign:
            if is_cap_alert(el):
                result.warnings.append(
                    Issue(f"{epath}/alert", "CAP alert outside <content> (accepted)", el.sourceline)
                )
                embedded.append((el, f"{epath}/alert"))
        if embedded:
            for n, (el, apath) in enumerate(embedded, 1):
                _add_embedded(result, el, apath if len(embedded) == 1 else f"{apath}[{n}]")
            continue
        url = _cap_link(eg.get("link", []))
        if url is None:
            errors.append(
                Issue(epath, "no embedded CAP alert and no link to a CAP document", entry.sourceline)
            )
            continue
        result.links.append(FeedLink(url=url, entry_id=entry_id, updated=updated, title=title))
    if errors:
        raise InvalidDocument(errors)
    return result


# --- RSS 2.0 ----------------------------------------------------------------------------------------------


def parse_rss(root: Element) -> ParseResult:
    errors: list[Issue] = []
    result = ParseResult(kind="rss")
    if root.get("version") != "2.0":
        result.warnings.append(
            Issue("rss", f"version {root.get('version')!r}, expected '2.0' (accepted)", root.sourceline)
        )
    channels = [c for c in root if c.tag == "channel"]
    if len(channels) != 1:
        raise InvalidDocument(
            [Issue("rss/channel", f"expected exactly one <channel>, found {len(channels)}", root.sourceline)]
        )
    channel = channels[0]
    for name in ("title", "link", "description"):
        if channel.find(name) is None:
            result.warnings.append(
                Issue(f"rss/channel/{name}", "required element missing (accepted)", channel.sourceline)
            )
    items = [c for c in channel if c.tag == "item"]
    for i, item in enumerate(items, 1):
        ipath = f"rss/channel/item[{i}]"
        title = _text(item.find("title")) or None
        description = _text(item.find("description")) or None
        guid = _text(item.find("guid")) or None
        if title is None and description is None:
            errors.append(Issue(f"{ipath}/title", "an item needs a title or a description", item.sourceline))
        if guid is None:
            errors.append(Issue(f"{ipath}/guid", "required element missing", item.sourceline))
        alerts = _cap_alerts_in(item)
        if alerts:
            for n, el in enumerate(alerts, 1):
                _add_embedded(result, el, f"{ipath}/alert" if len(alerts) == 1 else f"{ipath}/alert[{n}]")
            continue
        url = None
        for enc in item.findall("enclosure"):
            if (enc.get("type") or "").strip().lower() in CAP_MIME_TYPES and enc.get("url"):
                url = enc.get("url", "").strip()
                break
        if url is None:
            url = _text(item.find("link")) or None
        if url is None:
            errors.append(Issue(f"{ipath}/link", "no link to a CAP document", item.sourceline))
            continue
        result.links.append(
            FeedLink(url=url, entry_id=guid, updated=_text(item.find("pubDate")) or None, title=title)
        )
    if errors:
        raise InvalidDocument(errors)
    return result


# --- EDXL-DE 1.0 ------------------------------------------------------------------------------------------


def parse_edxl_de(root: Element) -> ParseResult:
    errors: list[Issue] = []
    result = ParseResult(kind="edxl-de")
    path = "EDXLDistribution"
    prefix = "{" + EDXL_DE_NS + "}"
    present = {local_name(c.tag) for c in root if isinstance(c.tag, str) and c.tag.startswith(prefix)}
    for name in EDXL_REQUIRED:
        if name not in present:
            errors.append(Issue(f"{path}/{name}", "required element missing", root.sourceline))
    objects = root.findall(prefix + "contentObject")
    for i, obj in enumerate(objects, 1):
        opath = f"{path}/contentObject[{i}]"
        for xc in obj.findall(prefix + "xmlContent"):
            for emb in xc.findall(prefix + "embeddedXMLContent"):
                for child in emb:
                    if not isinstance(child.tag, str):
                        continue
                    apath = f"{opath}/xmlContent/embeddedXMLContent/alert"
                    if is_cap_alert(child):
                        _add_embedded(result, child, apath)
                    elif namespace(child.tag) in CAP_PROFILES:
                        result.rejected.append(
                            RejectedItem(
                                (
                                    Issue(
                                        f"{opath}/xmlContent/embeddedXMLContent/{local_name(child.tag)}",
                                        "CAP element is not an <alert>",
                                        child.sourceline,
                                    ),
                                ),
                                serialize(child),
                            )
                        )
                    else:
                        result.warnings.append(
                            Issue(
                                f"{opath}/xmlContent/embeddedXMLContent/{local_name(child.tag)}",
                                "non-CAP content ignored",
                                child.sourceline,
                            )
                        )
        for nx in obj.findall(prefix + "nonXMLContent"):
            mime = _text(nx.find(prefix + "mimeType")).lower()
            uri = _text(nx.find(prefix + "uri"))
            if mime in CAP_MIME_TYPES and uri:
                result.links.append(
                    FeedLink(url=uri, entry_id=_text(root.find(prefix + "distributionID")) or None)
                )
    if errors:
        raise InvalidDocument(errors)
    return result


ROOT_HANDLERS: dict[str, Callable[[Element], ParseResult]] = {
    f"{{{ATOM_NS}}}feed": parse_atom,
    "rss": parse_rss,
    f"{{{EDXL_DE_NS}}}EDXLDistribution": parse_edxl_de,
}
