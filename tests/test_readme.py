"""README.md's public-API example runs as written, and prints and returns what its comments say.

Each statement of the example runs in turn (paths moved to a temporary folder, CamVid read from
CONTEXTNET_CAMVID_DIR); a comment that follows a ``print`` is the line it must print, a comment that starts with a
shape ``(1, 333, ...)`` is the shape of the array the statement assigns, and one that starts with ``{...}`` the keys
of the assigned model's output dict.
"""

import ast
import contextlib
import io
import os
import re
import tokenize

import cv2
import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAMVID = os.environ.get("CONTEXTNET_CAMVID_DIR")


def readme_example():
    """The source of README.md's first ``python`` block."""
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    match = re.search(r"```python\n(.*?)```", text, re.S)
    assert match, "README.md has no python example"
    return match.group(1)


def _comments(source):
    """{line number: comment text without '#'} of `source`."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return {t.start[0]: t.string.lstrip("#").strip() for t in tokens if t.type == tokenize.COMMENT}


def test_readme_example_parses_and_says_what_it_checks():
    source = readme_example()
    tree = ast.parse(source)
    comments = _comments(source)
    checked = [s for s in tree.body if s.end_lineno in comments and (
        _is_print(s) or re.match(r"[({]", comments[s.end_lineno]))]
    assert len(checked) >= 4  # the print, the two shapes, the aux dict


def _is_print(statement):
    return (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call)
            and getattr(statement.value.func, "id", None) == "print")


@pytest.mark.slow
@pytest.mark.skipif(not CAMVID, reason="CONTEXTNET_CAMVID_DIR is not set (the example evaluates on CamVid)")
def test_readme_example_runs_and_its_comments_are_true(tmp_path, monkeypatch):
    source = readme_example()
    frames = tmp_path / "frames"
    frames.mkdir()
    for name in sorted(os.listdir(os.path.join(CAMVID, "val")))[:2]:
        cv2.imwrite(str(frames / name), cv2.imread(os.path.join(CAMVID, "val", name)))
    source = (source.replace('"pretrained/', f'"{REPO}/pretrained/').replace('"../shared/data/camvid"', repr(CAMVID))
              .replace('"/tmp/fast_scnn_sm"', repr(str(tmp_path / "fast_scnn_sm"))))
    monkeypatch.chdir(tmp_path)  # frames/ and out/ are relative
    comments = _comments(source)
    namespace = {}
    for statement in ast.parse(source).body:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(ast.Module([statement], []), "README.md", "exec"), namespace)
        comment = comments.get(statement.end_lineno, "")
        if _is_print(statement):
            assert printed.getvalue().strip() == comment, f"README prints {printed.getvalue().strip()!r}"
        shape = re.match(r"\((\d+(?:, \d+)*)\)", comment)
        keys = re.match(r"\{(.*?)\}", comment)
        if (shape or keys) and isinstance(statement, ast.Assign):
            value = namespace[statement.targets[0].id]
            if shape:
                assert tuple(np.shape(value)) == tuple(int(d) for d in shape.group(1).split(", ")), comment
            else:
                assert set(value.output) == {k.strip(' "') for k in keys.group(1).split(",")}, comment
    assert sorted(os.listdir(tmp_path / "out")) and os.path.isdir(tmp_path / "fast_scnn_sm")
    assert 0.0 <= namespace["metrics"]["miou"] <= 1.0 and namespace["metrics"]["num_images"] == 101
