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


def test_readme_commands_run(tmp_path, shared_data) -> None:  # type: ignore[no-untyped-def]
    """Every command of a README block marked docs-test runs, with game.mp4/yolox.onnx the shared clip/model."""
    import re
    import shlex

    from tests.conftest import run_trackcast

    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"<!-- docs-test[^>]*-->\n```sh\n(.*?)```", text, re.S)
    assert blocks
    (tmp_path / "game.mp4").symlink_to(shared_data / "video" / "futsal_broadcast_720x1280p30.mp4")
    (tmp_path / "yolox.onnx").symlink_to(shared_data / "models" / "yolox_nano_416x416.onnx")
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for block in blocks:
            for line in block.strip().splitlines():
                args = shlex.split(line)
                assert args[0] == "trackcast"
                args = [
                    str(tmp_path / a) if a.startswith(("game.", "yolox.", "out/")) else a for a in args[1:]
                ]
                res = run_trackcast(*args, timeout=600)
                assert res.returncode == 0, f"{line}\n{res.stderr}"
    finally:
        os.chdir(cwd)
    assert (tmp_path / "out" / "game-annotated.mp4").stat().st_size > 100_000
