"""The console's front-end files ship in the package with their licences, and nothing loads from elsewhere."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
CONSOLE = REPO / "gateway" / "console"


def test_every_template_and_static_file_is_package_data() -> None:
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["gateway"]
    files = [p for d in ("templates", "static") for p in (CONSOLE / d).rglob("*") if p.is_file()]
    assert files
    missing = [
        str(p) for p in files if not any(fnmatch.fnmatch(str(p.relative_to(REPO / "gateway")), g) for g in globs)
    ]
    assert missing == []


def test_vendored_files_carry_their_licences() -> None:
    vendor = CONSOLE / "static" / "vendor"
    assert "MIT" in (vendor / "nhsuk-frontend" / "LICENSE.txt").read_text()
    assert "Zero-Clause BSD" in (vendor / "htmx" / "LICENSE.txt").read_text()


def test_templates_have_no_inline_script_or_style_and_no_remote_urls() -> None:
    for template in (CONSOLE / "templates").glob("*.html"):
        text = template.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), template.name
        assert not re.search(r"\sstyle=", text) and "<style" not in text, template.name
        assert not re.search(r"""(src|href)=["']https?://""", text), template.name
    css = (CONSOLE / "static" / "vendor" / "nhsuk-frontend" / "nhsuk-frontend.min.css").read_text()
    assert not re.search(r"url\((?!assets/|data:)", css)
