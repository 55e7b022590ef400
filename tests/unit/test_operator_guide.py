"""The operator's guide answers every failure message, and its architecture image is current.

- Every ``See docs/operator-guide.md#<anchor>`` in the roles and playbooks names a section of
  the guide (anchors as GitHub derives them from headings), and so does every value of a
  variable or key named ``anchor``/``*_anchors`` in their YAML (tables of step -> anchor).
- The guide's own ``(#anchor)`` links resolve.
- ``docs/architecture.dot`` renders with Graphviz, and ``docs/architecture.png`` is the
  rendering of the current source: the image carries the SHA-256 of the source it was drawn
  from in a PNG text chunk. Re-render after editing the source with::

      python tests/unit/test_operator_guide.py
"""

from __future__ import annotations

import hashlib
import re
import shutil
import struct
import subprocess
import sys
import unicodedata
import zlib
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "operator-guide.md"
DOT_SOURCE = REPO / "docs" / "architecture.dot"
IMAGE = REPO / "docs" / "architecture.png"
# Where failure messages are written.
MESSAGE_DIRS = ("roles", "playbooks")
# The anchor ends where a character that no GitHub anchor has begins (a quote, a Jinja
# delimiter, punctuation); a bare "docs/operator-guide.md#" (a test on a message) is no reference.
REFERENCE = re.compile(r"docs/operator-guide\.md#([\w-]+)")
# Keys whose values are anchors: `anchor: docs/operator-guide.md#x`, `__anchors: {step: x}`.
ANCHOR_KEY = re.compile(r"(^|_)anchors?$")
ANY_DOCS_REFERENCE = re.compile(r"See (docs/[\w./-]+)")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SOURCE_KEY = b"zimbra_geo:source-sha256"


# --- GitHub-style anchors --------------------------------------------------------------------

def heading_text(markdown: str) -> str:
    """The text GitHub derives an anchor from: inline markup removed, link text kept."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", markdown)  # links and images
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags
    return text.replace("`", "").strip()


def slugify(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading_text(heading).lower()
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if char in "-_ " or category[0] in "LN" or category == "Mn":
            kept.append(char)
    return "".join(kept).replace(" ", "-")


def headings(markdown: str) -> Iterator[str]:
    """ATX headings outside fenced code blocks."""
    fence = None
    for line in markdown.splitlines():
        stripped = line.lstrip()
        marker = re.match(r"(```+|~~~+)", stripped)
        if marker:
            if fence is None:
                fence = marker.group(1)[0] * 3
            elif stripped.startswith(fence):
                fence = None
            continue
        if fence is None:
            match = re.match(r" {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
            if match:
                yield match.group(1)


def anchors(markdown: str) -> List[str]:
    """Every anchor of the document, duplicates numbered as GitHub does (-1, -2, ...)."""
    seen: Dict[str, int] = {}
    result = []
    for heading in headings(markdown):
        slug = slugify(heading)
        if slug in seen:
            seen[slug] += 1
            result.append(f"{slug}-{seen[slug]}")
        else:
            seen[slug] = 0
            result.append(slug)
    return result


def message_files() -> Iterator[Path]:
    for top in MESSAGE_DIRS:
        base = REPO / top
        if base.is_dir():
            for path in sorted(base.rglob("*")):
                if path.is_file() and path.suffix in (".yml", ".yaml", ".j2", ".py", ".md"):
                    yield path


def mapped_anchors(node: object) -> Iterator[str]:
    """Values of ``anchor``/``*_anchors`` keys anywhere in a YAML document (templates skipped)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(key, str) and ANCHOR_KEY.search(key):
                values = value.values() if isinstance(value, dict) else [value]
                for item in values:
                    if isinstance(item, str) and "{" not in item:
                        yield item.rsplit("#", 1)[-1]
            yield from mapped_anchors(value)
    elif isinstance(node, list):
        for item in node:
            yield from mapped_anchors(item)


def references() -> List[Tuple[str, int, str]]:
    """(file, line, anchor) of every reference to a section of the guide."""
    found = []
    for path in message_files():
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for number, line in enumerate(lines, 1):
            for match in REFERENCE.finditer(line):
                found.append((str(path.relative_to(REPO)), number, match.group(1)))
        if path.suffix in (".yml", ".yaml"):
            for anchor in mapped_anchors(yaml.safe_load(text)):
                number = next((n for n, line in enumerate(lines, 1) if anchor in line), 0)
                found.append((str(path.relative_to(REPO)), number, anchor))
    return found


# --- The image ---------------------------------------------------------------------------------

def png_chunks(data: bytes) -> Iterator[Tuple[bytes, bytes]]:
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG file")
    offset = len(PNG_SIGNATURE)
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset:offset + 4])
        kind = data[offset + 4:offset + 8]
        yield kind, data[offset + 8:offset + 8 + length]
        offset += 12 + length


def png_text(data: bytes) -> Dict[bytes, bytes]:
    return dict(body.split(b"\0", 1) for kind, body in png_chunks(data) if kind == b"tEXt")


def with_text(data: bytes, key: bytes, value: bytes) -> bytes:
    """The PNG with a tEXt chunk ``key=value`` right after its header chunk."""
    body = key + b"\0" + value
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    header_end = len(PNG_SIGNATURE) + 12 + struct.unpack(">I", data[8:12])[0]
    return data[:header_end] + chunk + data[header_end:]


def render(source: Path) -> subprocess.CompletedProcess:
    dot = shutil.which("dot")
    if dot is None:
        pytest.fail("Graphviz's `dot` is not installed (bash scripts/dev.sh setup installs it)")
    return subprocess.run([dot, "-Tpng", str(source)], capture_output=True, timeout=60, check=False)


def source_digest() -> bytes:
    return hashlib.sha256(DOT_SOURCE.read_bytes()).hexdigest().encode()


def write_image() -> None:
    """Render docs/architecture.dot into docs/architecture.png, stamped with its source."""
    proc = subprocess.run(["dot", "-Tpng", str(DOT_SOURCE)], capture_output=True, check=True)
    IMAGE.write_bytes(with_text(proc.stdout, SOURCE_KEY, source_digest()))


# --- Tests -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("heading", "anchor"), [
    ("At 3 a.m.", "at-3-am"),
    ("failover (planned)", "failover-planned"),
    ("The `zimbra_geo` report: JSON & HTML", "the-zimbra_geo-report-json--html"),
    ("[Failback](#failback) -- step 2", "failback----step-2"),
    ("Ré-essayer", "ré-essayer"),
])
def test_slugify_follows_github(heading: str, anchor: str) -> None:
    assert slugify(heading) == anchor


def test_anchor_tables_are_read() -> None:
    doc = yaml.safe_load(
        "- vars:\n    __anchors: {a: x-one, b: x-two}\n  anchor: docs/operator-guide.md#x-three\n"
        "  other: {anchor: \"{{ 'docs/operator-guide.md#' ~ y }}\", name: no-anchor}\n"
    )
    assert sorted(mapped_anchors(doc)) == ["x-one", "x-three", "x-two"]


def test_duplicate_headings_are_numbered() -> None:
    doc = "# A\n## Step\n```sh\n# not a heading\n```\n## Step\n### Step\n"
    assert anchors(doc) == ["a", "step", "step-1", "step-2"]


def test_every_referenced_anchor_has_a_section() -> None:
    known = set(anchors(GUIDE.read_text(encoding="utf-8")))
    missing = [f"{file}:{line}: #{anchor}" for file, line, anchor in references() if anchor not in known]
    assert not missing, "sections missing from docs/operator-guide.md:\n" + "\n".join(missing)


def test_references_name_existing_documents() -> None:
    """A 'See docs/...' pointing at a document that does not exist helps nobody at 3 a.m."""
    wrong = []
    for path in message_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in ANY_DOCS_REFERENCE.finditer(line):
                target = match.group(1).split("#", 1)[0].rstrip(".")
                if not (REPO / target).is_file():
                    wrong.append(f"{path.relative_to(REPO)}:{number}: {match.group(1)}")
    assert not wrong, "references to missing documents:\n" + "\n".join(wrong)


def test_guide_links_resolve() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    known = set(anchors(text))
    broken = sorted({a for a in re.findall(r"\]\(#([^)]+)\)", text) if a not in known})
    assert not broken, f"links to missing sections of the guide: {broken}"
    for target in re.findall(r"\]\(([^)#:]+)\)", text):
        assert (GUIDE.parent / target).exists(), f"the guide links to a missing file: {target}"


def test_architecture_source_renders(tmp_path: Path) -> None:
    proc = render(DOT_SOURCE)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert not proc.stderr.strip(), "Graphviz warnings: " + proc.stderr.decode(errors="replace")
    kinds = [chunk[0] for chunk in png_chunks(proc.stdout)]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND"
    width, height = struct.unpack(">II", proc.stdout[16:24])
    assert width > 400 and height > 300, f"suspiciously small drawing: {width}x{height}"


def test_committed_image_is_the_rendering_of_the_source() -> None:
    text = png_text(IMAGE.read_bytes())
    assert text.get(SOURCE_KEY) == source_digest(), (
        "docs/architecture.png was not rendered from the current docs/architecture.dot: "
        "run `python tests/unit/test_operator_guide.py`"
    )


def test_stamp_round_trips(tmp_path: Path) -> None:
    """The stamp is a valid PNG text chunk: the image stays a well-formed PNG."""
    stamped = with_text(IMAGE.read_bytes(), b"k", b"v")
    chunks = list(png_chunks(stamped))
    assert chunks[0][0] == b"IHDR" and chunks[1] == (b"tEXt", b"k\0v") and chunks[-1][0] == b"IEND"


if __name__ == "__main__":
    write_image()
    sys.stdout.write(f"rendered {IMAGE.relative_to(REPO)} from {DOT_SOURCE.relative_to(REPO)}\n")
