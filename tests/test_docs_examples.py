"""What the documents say about the code: README's public-API example runs as written and prints and returns what its
comments say; every Python block of README, docs/, notebooks/README.md and WORKSPACE.md imports what exists; every
documented `experiments/` command uses flags its program defines; README's Models table is `model_summary.py`'s.

For README's example, each statement of the example runs in turn (paths moved to a temporary folder, CamVid read from
CONTEXTNET_CAMVID_DIR); a comment that follows a ``print`` is the line it must print, a comment that starts with a
shape ``(1, 333, ...)`` is the shape of the array the statement assigns, and one that starts with ``{...}`` the keys
of the assigned model's output dict.
"""

import ast
import contextlib
import glob
import importlib
import importlib.util
import io
import os
import re
import tokenize

import cv2
import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAMVID = os.environ.get("CONTEXTNET_CAMVID_DIR")


DOCS = ["README.md", *sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "docs", "*.md"))),
        "notebooks/README.md", "WORKSPACE.md"]


def python_blocks(path):
    """[(line, source)] of the ``python`` blocks of the markdown file `path` (relative to the repository)."""
    with open(os.path.join(REPO, path)) as f:
        text = f.read()
    return [(text[: m.start()].count("\n") + 1, m.group(1)) for m in re.finditer(r"```python\n(.*?)```", text, re.S)]


def readme_example():
    """The source of README.md's first ``python`` block."""
    blocks = python_blocks("README.md")
    assert blocks, "README.md has no python example"
    return blocks[0][1]


def _package_references(tree):
    """[(alias, module, attribute)] for each ``alias.attribute`` in `tree` whose alias an import of `tree` bound to a
    module of the package (``from contextnet_tf import data`` binds ``data`` to ``contextnet_tf.data``)."""
    modules = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update({(a.asname or a.name): a.name for a in node.names if a.name.startswith("contextnet_tf")})
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("contextnet_tf"):
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                if _is_module(name):
                    modules[alias.asname or alias.name] = name
    return [(n.value.id, modules[n.value.id], n.attr) for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in modules]


def _is_module(name):
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


@pytest.mark.parametrize("path", DOCS)
def test_every_python_block_imports_what_exists(path):
    """Every import of every block runs, and every ``module.name`` of the package a block uses exists. (Blocks that
    are not Python, such as docs/data.md's signature listing, are checked by the next test.)"""
    for line, source in python_blocks(path):
        try:
            tree = ast.parse(source)
        except SyntaxError as error:  # only a signature listing may be other than Python
            assert "->" in source, f"{path}:{line + (error.lineno or 0)}: {error.msg}"
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                try:
                    exec(compile(ast.Module([node], []), path, "exec"), {})
                except ImportError as error:
                    pytest.fail(f"{path}:{line + node.lineno}: {ast.unparse(node)}: {error}")
        for alias, module, attribute in _package_references(tree):
            assert hasattr(importlib.import_module(module), attribute), (
                f"{path}:{line}: {alias}.{attribute}: {module} has no {attribute}")


def test_data_api_listing_names_what_contextnet_tf_data_has():
    """docs/data.md's "Public API" listing (signatures, not Python): every ``data.NAME`` (and ``data.SUB.NAME``) it
    lists exists in `contextnet_tf.data`."""
    from contextnet_tf import data

    listings = [source for _, source in python_blocks("docs/data.md") if "->" in source]
    assert len(listings) == 1
    names = re.findall(r"(?<![\w.])data\.([A-Za-z_][\w.]*)", listings[0])
    assert len(names) > 15
    for name in names:
        obj = data
        for part in name.rstrip(".").split("."):
            assert hasattr(obj, part), f"docs/data.md lists data.{name}, which contextnet_tf.data lacks"
            obj = getattr(obj, part)


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


PROGRAM_SOURCES = sorted(glob.glob(os.path.join(REPO, "experiments", "*.py")))
COMMAND_SOURCES = [*DOCS, *sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "pretrained", "*.md"))),
                   *(os.path.relpath(p, REPO) for p in PROGRAM_SOURCES)]


@pytest.fixture(scope="module")
def program_flags():
    """{program: its flag names}, each program imported in turn in this process, its flags removed after it."""
    from absl import flags

    baseline = set(flags.FLAGS)
    defined = {}
    for path in PROGRAM_SOURCES:
        name = os.path.basename(path)[:-3]
        spec = importlib.util.spec_from_file_location(f"_documented_program_{name}", path)
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
        defined[name] = set(flags.FLAGS) - baseline
        for flag in defined[name]:
            delattr(flags.FLAGS, flag)
    return defined, baseline


def documented_commands(path):
    """[(program, [flag names])] of each ``python experiments/PROGRAM.py --flag ...`` in the file `path` (backslash
    continuations joined; a command ends at the line's end, a backtick or a table's bar)."""
    with open(os.path.join(REPO, path)) as f:
        text = f.read().replace("\\\n", " ")
    return [(m.group(1), re.findall(r"(?<![\w-])--(\w+)", m.group(2)))
            for m in re.finditer(r"python3? experiments/(\w+)\.py([^\n`|]*)", text)]


def test_every_documented_command_uses_flags_its_program_defines(program_flags):
    """The commands in README, docs/, notebooks/README.md, WORKSPACE.md, the model cards and the programs' own
    docstrings name programs that exist and flags they define (``--noflag`` for a boolean ``flag``; absl's own flags
    allowed): a command beside a reported number must still run."""
    defined, absl_flags = program_flags
    wrong, count = [], 0
    for path in COMMAND_SOURCES:
        for program, used in documented_commands(path):
            if program not in defined:
                wrong.append(f"{path}: experiments/{program}.py does not exist")
                continue
            for flag in used:
                count += 1
                if not (flag in defined[program] or flag in absl_flags
                        or (flag.startswith("no") and flag[2:] in defined[program])):
                    wrong.append(f"{path}: experiments/{program}.py has no --{flag}")
    assert count > 500  # the check saw the documents' commands
    assert not wrong, "\n".join(sorted(set(wrong)))


def _cells(row):
    """The stripped cells of a markdown table row."""
    return [cell.strip() for cell in row.strip().strip("|").split("|")]


def test_readme_models_table_is_what_model_summary_prints():
    """README's "Models" table: each row's parameters, the papers' counts and their ratio, and the GMACs at 256x512
    (its last column; the others are the same networks at 4x and 16x the pixels) are `model_summary.py`'s."""
    from contextnet_tf.reports import summary

    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    header = "| model | params (ours) | params (paper) | ours / paper |"
    table = text[text.index(header):].split("\n\n")[0].splitlines()
    readme_rows = [_cells(line) for line in table[2:]]
    names = [row[0] for row in readme_rows]
    assert names[:2] == ["fast_scnn", "cn14"] and len(names) == 7
    assert table[0].rstrip().endswith("| GMACs @ 256x512 |")
    ours = summary.markdown_table(summary.model_rows(names, [(256, 512)]), [(256, 512)]).splitlines()[2:]
    for readme_row, line in zip(readme_rows, ours):
        assert readme_row[:4] + readme_row[-1:] == _cells(line)
