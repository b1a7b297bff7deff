"""The human pages agree with the code: every bit position an example in docs/formats.md
quotes is where the named layout puts that field, and every module, function and file
named in docs/ and the README exists."""

import importlib
import re
from pathlib import Path

import pytest

import spec  # noqa: F401  (the layouts named in the examples)
from spec.packing import leaves

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
PACKAGES = ("spec", "hw", "golden", "compiler", "verif", "synth", "tessera")

# "<!-- layout: EXPR -->" then a paragraph quoting "lo..hi `field`" / "bit `field`".
EXAMPLE = re.compile(r"<!-- layout: (.+?) -->\n(.+?)(?:\n\n|\Z)", re.DOTALL)
SPAN = re.compile(r"(\d+)(?:\.\.(\d+))?\s+`([\w\[\].]+)`")
TOTAL = re.compile(r"an?\s+(\d+)-bit\s+(?:payload|code)")


def _examples():
    text = (ROOT / "docs" / "formats.md").read_text()
    found = EXAMPLE.findall(text)
    assert len(found) >= 5, "docs/formats.md lost its annotated examples"
    return found


def _layout(expr: str):
    names = {p: importlib.import_module(p) for p in ("spec",)}
    for mod in re.findall(r"spec\.\w+", expr):
        importlib.import_module(mod)
    return eval(expr, names)


def _span(layout, name: str) -> tuple[int, int]:
    """(first, last) bit of every leaf a doc name covers: `f[0..3]` is f[0]..f[3]; a bare
    name covers every leaf under it, at any depth (`values`: each row's values)."""
    ranged = re.fullmatch(r"(.*)\[(\d+)\.\.(\d+)\]", name)
    names = ([f"{ranged[1]}[{k}]" for k in range(int(ranged[2]), int(ranged[3]) + 1)] if ranged
             else [name])
    bits = []
    for leaf in leaves(layout):
        for n in names:
            if re.search(rf"(^|\.){re.escape(n)}($|[.\[])", leaf.path):
                bits.append((leaf.offset, leaf.offset + leaf.width - 1))
    assert bits, f"no field {name!r} in the layout"
    return bits


@pytest.mark.parametrize("expr,paragraph", _examples(), ids=lambda v: v.split("(")[0][:40])
def test_every_quoted_bit_position_is_the_layouts(expr, paragraph):
    layout = _layout(expr)
    spans = SPAN.findall(paragraph)
    assert spans, f"no bit positions quoted under {expr}"
    for lo, hi, name in spans:
        lo, hi = int(lo), int(hi or lo)
        pieces = sorted(_span(layout, name))
        # The quoted range is the run of the name's leaves that starts at `lo` (a name
        # several rows share, `values` in a 2-row beat, is one run per row).
        starts = [p for p in pieces if p[0] == lo]
        assert starts, f"{name}: the doc says it starts at bit {lo}; the layout has it at {pieces}"
        end = starts[0][1]
        for p_lo, p_hi in pieces:
            if p_lo == end + 1:
                end = p_hi
        assert end == hi, f"{name}: the doc says bits {lo}..{hi}, the layout {lo}..{end}"
    total = TOTAL.search(paragraph)
    assert total, f"the example under {expr} does not say the total width"
    assert int(total[1]) == layout.size


def _references():
    for page in PAGES:
        for ref in sorted(set(re.findall(r"`([^`\s]+)`", page.read_text()))):
            ref = ref.split("(")[0].rstrip(",.:")
            if re.fullmatch(rf"({'|'.join(PACKAGES)})/[\w/]*\.py", ref) or \
                    re.fullmatch(rf"({'|'.join(PACKAGES)})(\.\w+)+", ref):
                yield page.name, ref


@pytest.mark.parametrize("page,ref", list(_references()), ids=lambda v: v)
def test_every_named_module_function_and_file_exists(page, ref):
    if "/" in ref:
        assert (ROOT / ref).exists(), f"{page} names {ref}, which is not in the repository"
        return
    parts = ref.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
            break
        except ImportError:
            continue
    for attr in parts[cut:]:
        assert hasattr(obj, attr), f"{page} names {ref}: {'.'.join(parts[:cut])} has no {attr}"
        obj = getattr(obj, attr)
