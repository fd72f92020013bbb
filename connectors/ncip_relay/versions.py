"""NCIP 1.0 <-> 2.0, as tree rewrites (sans-IO, lxml).

Every document the relay handles is first brought to one form, a 2.0 tree in the NCIP
namespace (`to_v2`: from 1.0 or from any 2.x style: namespace present, absent or prefixed,
Scheme attributes qualified or not); edits (the codes a member needs) are made there; the
tree is then written in the version of its recipient (`write_v2`, `write_v1`).

What differs between the versions, and where it is handled:
- 1.0 has no namespace and a DOCTYPE; 2.0 has the namespace and a version attribute.
- 1.0 wraps identifiers as `Unique*Id` holding a `UniqueAgencyId`; 2.0 has `UserId`,
  `ItemId`, `RequestId`, `BibliographicId` with an optional `AgencyId` (tables.V1_TO_V2).
- 1.0 writes coded values as `Scheme`/`Value` children; 2.0 as text with a Scheme attribute.
- 1.0 errors are `Problem/ProcessingError` or `Problem/MessagingError` with nested
  `*ErrorElement`s; 2.0 has `Problem` with `ProblemType`, `ProblemDetail`, `ProblemElement`,
  `ProblemValue`.
- 2.0-only elements (Ext, identifier types, PickupLocation) have no place in 1.0.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from lxml import etree

from connectors import xmlsafe
from connectors.ncip_relay import tables as t

NSMAP = {"ns1": t.NS}


def q(name: str) -> str:
    return f"{{{t.NS}}}{name}"


def _children(node: etree._Element) -> list[etree._Element]:
    return [c for c in node if isinstance(c.tag, str)]


def _text(node: etree._Element | None) -> str:
    return (node.text or "").strip() if node is not None else ""


def _scheme_attribute(node: etree._Element) -> str | None:
    return next((v for k, v in node.attrib.items() if etree.QName(k).localname == "Scheme"), None)


def child(node: etree._Element | None, *path: str) -> etree._Element | None:
    """The first descendant along `path` by local name (None if any step is missing)."""
    for name in path:
        if node is None:
            return None
        node = next((c for c in _children(node) if xmlsafe.local(c) == name), None)
    return node


# -- to 2.0 --------------------------------------------------------------------------------


def to_v2(source: etree._Element) -> etree._Element:
    """Any NCIP document (1.0, or 2.x in any namespace style) as a 2.0 tree."""
    root = etree.Element(q("NCIPMessage"), nsmap=NSMAP)
    root.set(q("version"), t.VERSION_2)
    for node in _children(source):
        root.extend(_v2(node))
    return root


def _v2(node: etree._Element) -> list[etree._Element]:
    namespace = etree.QName(node).namespace
    if namespace not in (None, t.NS):
        return [copy.deepcopy(node)]  # a foreign extension (OCLC WCL Ext): kept as it came
    name = xmlsafe.local(node)
    kids = _children(node)
    if name == "Problem" and any(
        xmlsafe.local(k) in ("ProcessingError", "MessagingError") for k in kids
    ):
        return [_problem_from_v1(error) for error in kids]
    names = [xmlsafe.local(k) for k in kids]
    out = etree.Element(q(t.V1_TO_V2.get(name, name)))
    if kids and "Value" in names and set(names) <= {"Scheme", "Value"}:
        # 1.0 Scheme/Value pair -> 2.0 text with a Scheme attribute
        scheme = _text(child(node, "Scheme"))
        if scheme:
            out.set(q("Scheme"), scheme)
        out.text = _text(child(node, "Value"))
        return [out]
    attribute = _scheme_attribute(node)
    if attribute:
        out.set(q("Scheme"), attribute)
    if not kids:
        out.text = node.text
    place = t.VISIBLE_PLACES_V1.get(name)
    last: list[etree._Element] = []
    for kid in kids:
        kid_name = xmlsafe.local(kid)
        if kid_name not in t.VISIBLE_V1:
            out.extend(_v2(kid))
        elif place is not None and place[0] == kid_name:
            # 2.0 has no Visible ids: the same id with its identifier type
            converted = _v2(_renamed(kid, *t.VISIBLE_V1[kid_name]))
            (last if place[1] else out).extend(converted)
        # else: a Visible id 2.0 has no place for (ItemDescription's); it is on ill.audit
    out.extend(last)
    return [out]


def _renamed(node: etree._Element, name: str, children: dict[str, str]) -> etree._Element:
    """A copy of `node` named `name` (same namespace) with its children renamed by
    `children`; children not named there are left out."""
    namespace = etree.QName(node).namespace
    out = etree.Element(f"{{{namespace}}}{name}" if namespace else name, node.attrib)
    for kid in _children(node):
        renamed = children.get(xmlsafe.local(kid))
        if renamed is None:
            continue
        copied = copy.deepcopy(kid)
        copied.tag = f"{{{namespace}}}{renamed}" if namespace else renamed
        out.append(copied)
    return out


def _problem_from_v1(error: etree._Element) -> etree._Element:
    """One 1.0 ProcessingError / MessagingError as a 2.0 Problem."""
    kind = next(
        (c for c in _children(error) if xmlsafe.local(c).endswith("ErrorType")),
        None,
    )
    problem = etree.Element(q("Problem"))
    problem_type = etree.SubElement(problem, q("ProblemType"))
    if kind is not None:
        scheme = _text(child(kind, "Scheme")) or _scheme_attribute(kind)
        if scheme:
            problem_type.set(q("Scheme"), scheme)
        problem_type.text = _text(child(kind, "Value")) or _text(kind)
    path, value = [], ""
    element = next((c for c in _children(error) if xmlsafe.local(c).endswith("ErrorElement")), None)
    while element is not None:
        name = _text(child(element, "ElementName"))
        if name:
            path.append(t.V1_TO_V2.get(name, name))
        found = next(
            (c for c in _children(element) if xmlsafe.local(c).endswith("ErrorValue")), None
        )
        if found is not None:
            value = _text(found)
        element = next(
            (c for c in _children(element) if xmlsafe.local(c).endswith("ErrorElement")), None
        )
    if path:
        etree.SubElement(problem, q("ProblemElement")).text = "/".join(path)
    if value:
        etree.SubElement(problem, q("ProblemValue")).text = value
    return problem


def write_v2(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


# -- to 1.0 --------------------------------------------------------------------------------


@dataclass(frozen=True)
class V1Context:
    """What 1.0 requires that 2.0 may leave out: the agency of an identifier (2.0's AgencyId
    is optional, 1.0's UniqueAgencyId is not) and the agency scheme its recipient uses."""

    agency: str
    agency_scheme: str = t.AGENCY_SCHEME_1


def to_v1(root: etree._Element, context: V1Context) -> etree._Element:
    """A 2.0 tree (from `to_v2`) as a 1.0 tree."""
    out = etree.Element("NCIPMessage")
    out.set("version", t.VERSION_1)
    for node in _children(root):
        out.extend(_v1(node, context))
    _merge_problems(out)
    _bare_errors(out)
    return out


def _agency_v1(value: str, scheme: str) -> etree._Element:
    agency = etree.Element("UniqueAgencyId")
    etree.SubElement(agency, "Scheme").text = scheme
    etree.SubElement(agency, "Value").text = value
    return agency


def _v1(node: etree._Element, context: V1Context) -> list[etree._Element]:
    if etree.QName(node).namespace not in (None, t.NS):
        return []  # a foreign extension has no place in a DTD-bound 1.0 message
    name = xmlsafe.local(node)
    if name in t.V2_ONLY:
        return []
    if name == "Problem":
        return [_problem_to_v1(node)]
    if name == "AgencyId":
        return [_agency_v1(_text(node), _scheme_attribute(node) or context.agency_scheme)]
    if name in t.SCHEME_VALUE_V1:
        pair = etree.Element(name)
        etree.SubElement(pair, "Scheme").text = _scheme_attribute(node) or t.default_scheme(name)
        etree.SubElement(pair, "Value").text = _text(node)
        return [pair]
    renamed = t.V2_TO_V1.get(name, name)
    out = etree.Element(renamed)
    kids = _children(node)
    if not kids:
        out.text = node.text
    place = t.VISIBLE_PLACES_V1.get(name)
    visible_id = t.VISIBLE_V1[place[0]][0] if place else None
    first: list[etree._Element] = []
    for kid in kids:
        if visible_id is None or xmlsafe.local(kid) != visible_id:
            out.extend(_v1(kid, context))
            continue
        typed = child(kid, f"{visible_id.removesuffix('Id')}IdentifierType") is not None
        if typed:  # an id with its type (a barcode): 1.0 calls that a Visible id
            converted = _v1(_renamed(kid, *t.VISIBLE_V2[visible_id]), context)
            (first if place and place[1] else out).extend(converted)
        elif not (place and place[1]):
            out.extend(_v1(kid, context))  # the record's own id: Unique*Id
        # else: an untyped id where 1.0 takes only Visible ids (UserOptionalFields)
    for index, node_v1 in enumerate(first):
        out.insert(index, node_v1)
    if renamed in t.NEEDS_AGENCY_V1 and child(out, "UniqueAgencyId") is None:
        out.insert(0, _agency_v1(context.agency, context.agency_scheme))
    return [out]


def _problem_to_v1(problem: etree._Element) -> etree._Element:
    kind = child(problem, "ProblemType")
    type_text = _text(kind)
    scheme = (_scheme_attribute(kind) if kind is not None else None) or t.SCHEME_GENERAL
    messaging = type_text in t.MESSAGING_TYPES or "messagingerror" in scheme.lower()
    prefix = "Messaging" if messaging else "Processing"
    out = etree.Element("Problem")
    error = etree.SubElement(out, f"{prefix}Error")
    error_type = etree.SubElement(error, f"{prefix}ErrorType")
    etree.SubElement(error_type, "Scheme").text = scheme
    etree.SubElement(error_type, "Value").text = type_text
    # 1.0 names the element as a chain of ElementNames; 2.0 writes a path ("A/B" or "A.B").
    path = _text(child(problem, "ProblemElement")).replace(".", "/")
    names = [t.V2_TO_V1.get(part, part) for part in path.split("/") if part] or ["NCIPMessage"]
    value = _text(child(problem, "ProblemValue")) or _text(child(problem, "ProblemDetail"))
    holder = error
    for name in names:
        holder = etree.SubElement(holder, f"{prefix}ErrorElement")
        etree.SubElement(holder, "ElementName").text = name
    if value:
        etree.SubElement(holder, f"{prefix}ErrorValue").text = value
    return out


def _merge_problems(root: etree._Element) -> None:
    """1.0 allows one Problem per response (holding several errors of one kind)."""
    for holder in [root, *root.iter()]:
        problems = [c for c in _children(holder) if c.tag == "Problem"]
        if len(problems) < 2:
            continue
        first = problems[0]
        kind = _children(first)[0].tag
        for extra in problems[1:]:
            for error in _children(extra):
                if error.tag == kind:
                    first.append(error)
            holder.remove(extra)


def _bare_errors(root: etree._Element) -> None:
    """A 1.0 notification's acknowledgement (ItemRequestedResponse) holds its errors bare,
    and only MessagingErrors (the DTD: ResponseHeader, MessagingError*): a member's
    processing error is passed on as one, its type and scheme kept."""
    for response in root:
        if response.tag not in t.BARE_ERRORS_V1:
            continue
        for problem in [c for c in _children(response) if c.tag == "Problem"]:
            position = response.index(problem)
            for offset, error in enumerate(_children(problem)):
                for node in error.iter():
                    if isinstance(node.tag, str) and node.tag.startswith("Processing"):
                        node.tag = "Messaging" + node.tag.removeprefix("Processing")
                response.insert(position + offset, error)
            response.remove(problem)


def write_v1(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", doctype=t.DOCTYPE_1)
