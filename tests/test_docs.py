"""The math lives in the repository: no citation of the old external spec is left, every
`docs/methods.md §N` citation names a section that exists, and the relative links of the README
and of docs/*.md point to files that exist. Text checks only (no JAX)."""

from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
METHODS = ROOT / "docs" / "methods.md"
SCANNED = ("safjax", "experiments", "tests", "docs")
SUFFIXES = (".py", ".md")

# The old citation of the external spec (spelt out in pieces so that a grep for it finds nothing
# in this file).
OLD = "spec " + "\u00a7"

# `docs/methods.md §4`, `methods.md §5.2` (inside docs/), `docs/methods.md §1, §4, §6`.
CITATION = re.compile(r"methods\.md((?:,? ?§\d+(?:\.\d+)?)+)")
SECTION = re.compile(r"§(\d+(?:\.\d+)?)")
HEADING = re.compile(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", re.M)
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _text_files():
    yield ROOT / "README.md"
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in SUFFIXES and path.is_file() and "__pycache__" not in path.parts:
                yield path


def _relative(path: pathlib.Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _sections() -> set[str]:
    return set(HEADING.findall(METHODS.read_text(encoding="utf-8")))


def test_methods_has_the_numbered_sections_the_code_cites():
    sections = _sections()
    assert {str(n) for n in range(1, 9)} <= sections
    assert {f"5.{n}" for n in range(1, 7)} <= sections  # the six identities, cited as §5.N


def test_no_citation_of_the_external_spec_is_left():
    found = []
    for path in _text_files():
        if path.name == "test_docs.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            stale = (OLD in line or "spec/" + "methods" in line or "shared/" + "spec" in line
                     or "steer" + "ing" in line)
            if stale:
                found.append(f"{_relative(path)}:{number}: {line.strip()}")
    assert not found, "cite docs/methods.md §N instead:\n" + "\n".join(found)


def test_every_methods_citation_names_an_existing_section():
    sections = _sections()
    bad = []
    for path in _text_files():
        if path.name == "test_docs.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            for match in CITATION.finditer(line):
                for section in SECTION.findall(match.group(1)):
                    if section not in sections:
                        bad.append(f"{_relative(path)}:{number}: §{section}")
    assert not bad, f"no such section in docs/methods.md (has {sorted(sections)}):\n" + "\n".join(bad)


@pytest.mark.parametrize(
    "document", ["README.md"] + sorted(_relative(p) for p in (ROOT / "docs").glob("*.md"))
)
def test_relative_links_point_to_existing_files(document):
    path = ROOT / document
    missing = []
    for target in LINK.findall(path.read_text(encoding="utf-8")):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL (https:, mailto:) or an anchor within the page
        file_part = target.split("#", 1)[0]
        if not (path.parent / file_part).exists():
            missing.append(target)
    assert not missing, f"{document} links to missing files: {missing}"


def _python_blocks(document: str) -> list[str]:
    text = (ROOT / document).read_text()
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


@pytest.mark.slow
def test_the_extension_guide_runs():
    """docs/extending.md's examples — a method, a neuron, a data set, a Flax model — run in order in one
    namespace; their asserts are the guide's claims."""
    from safjax import datasets, methods, neurons

    blocks = _python_blocks("docs/extending.md")
    assert len(blocks) == 4
    saved = (dict(methods.METHODS), dict(neurons.NEURONS), dict(datasets.LOADERS))
    try:
        namespace: dict = {}
        for block in blocks:
            exec(compile(block, "docs/extending.md", "exec"), namespace)
    finally:  # the registrations are the examples', not the suite's
        for registry, before in zip((methods.METHODS, neurons.NEURONS, datasets.LOADERS), saved):
            registry.clear()
            registry.update(before)
