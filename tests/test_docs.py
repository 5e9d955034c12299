"""The guides in docs/ build as a site with `mkdocs build --strict` (every link, anchor and page
resolves), and the README, which mkdocs does not read, links only to guides and anchors that exist."""

import re
import subprocess
import sys
from pathlib import Path

from markdown.extensions.toc import slugify

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"


def test_mkdocs_builds_strictly(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                           str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").is_file()


def headings(path: Path):
    """The text of each Markdown heading outside code blocks, code spans unwrapped."""
    found, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            found.append(line.lstrip("#").strip().replace("`", ""))
    return found


def github_slug(text: str) -> str:
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(path: Path):
    """Anchors that both mkdocs (Python-Markdown's toc) and GitHub give the page's headings."""
    return {slugify(h, "-") for h in headings(path)} & {github_slug(h) for h in headings(path)}


def readme_links():
    text = README.read_text(encoding="utf-8")
    return re.findall(r"\]\((docs/[^)\s]+)\)", text)


def test_readme_links_into_docs_resolve():
    links = readme_links()
    assert len(links) >= 12, links
    broken = []
    for link in links:
        target, _, anchor = link.partition("#")
        path = ROOT / target
        if not path.is_file():
            broken.append(f"{link}: no such file")
        elif anchor and anchor not in anchors(path):
            broken.append(f"{link}: no heading gives #{anchor} (it has {sorted(anchors(path))})")
    assert not broken, "README links that do not resolve:\n" + "\n".join(broken)


def test_readme_links_every_guide():
    linked = {link.partition("#")[0] for link in readme_links()}
    generated = {"index.md", "continuum.md", "crossover.md"}  # the site's home; docs/regenerate.py's tables
    guides = {f"docs/{p.name}" for p in DOCS.glob("*.md") if p.name not in generated}
    assert guides <= linked, f"guides the README does not link: {sorted(guides - linked)}"


HF_README_MARK = "<!-- tests/test_docs.py: this block is docs/hf.md's first tested block"
HF_GUIDE_MARK = "<!-- tests/hf/test_docs.py runs this block verbatim -->"


def test_readme_hf_snippet_is_the_tested_one():
    """The README's Trainer snippet is, word for word, docs/hf.md's first block, which the Hugging Face
    tier runs verbatim (tests/hf/test_docs.py)."""
    readme = re.findall(re.escape(HF_README_MARK) + r"[^\n]*\n```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    guide = re.findall(re.escape(HF_GUIDE_MARK) + r"\n```python\n(.*?)```", (DOCS / "hf.md").read_text(encoding="utf-8"), re.S)
    assert len(readme) == 1 and guide, (readme, guide)
    assert readme[0] == guide[0]


def test_every_test_a_guide_cites_exists():
    """Guides back claims with `tests/...py::test_name`: each named test is defined in that file."""
    cited = set()
    for page in DOCS.glob("*.md"):
        cited |= {(page.name, path, name) for path, name in
                  re.findall(r"(tests/[\w/]+\.py)::(\w+)", page.read_text(encoding="utf-8"))}
    assert len(cited) >= 8, cited  # docs/security.md alone cites more
    missing = [(page, path, name) for page, path, name in sorted(cited)
               if not re.search(rf"^def {name}\(", (ROOT / path).read_text(encoding="utf-8"), re.M)]
    assert not missing, missing
