"""The README's configuration reference is the one the config models generate."""

from __future__ import annotations

from service.docs import reference
from tests.conftest import ROOT


def test_readme_config_reference_is_current() -> None:
    text = (ROOT / "README.md").read_text()
    start = text.index("<!-- config-reference:start -->") + len("<!-- config-reference:start -->")
    end = text.index("<!-- config-reference:end -->")
    assert text[start:end].strip() == reference().strip(), "run: python -m service.docs, paste into README.md"


def test_readme_opens_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    first_block = text.split("```")[1]
    assert "make demo" in first_block and "make test" in first_block
