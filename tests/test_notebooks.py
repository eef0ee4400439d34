"""notebooks/: every notebook runs in smoke mode on the synthetic city without a cell error, and the committed
notebooks carry the outputs of their real run.

Smoke mode follows papermill's convention: a cell tagged ``injected-parameters`` right after the ``parameters`` cell
overrides the real study's values (tiny steps, crops, resolutions and frame counts). Executed with nbclient in a
temporary folder; the notebooks' own run folders go there too.
"""

import os

import nbformat
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = os.path.join(REPO, "notebooks")

# Each trained network costs a model build, a traced train step, a validation and two saves (10-30 s on two busy
# cores) whatever its steps, and each timed model, resolution and path a build and a trace or a TFLite conversion
# (about 12 s). So the smoke versions train and time as few networks, resolutions and paths as still run every
# cell's code, and the pruning schedule prunes the smallest network (the detail branch alone, 23 layers) once. The
# seeded studies run one seed (contextnet_resolution, pruning: the single-seed paths, spread and verdict n/a) or two
# (contextnet_branches, fast_scnn_ablations: the spread and the verdicts computed).
COMMON = dict(DATASET="synthetic", DATA_ROOT=None, STEPS=2, BATCH_SIZE=2, CROP=(64, 128))
SMOKE = {
    "model_zoo": dict(RESOLUTIONS=["64x128"]),
    "contextnet_resolution": dict(COMMON, HOLDOUT_SEQUENCE=None, MODELS=["cn14", "cn124"], SEEDS=[0], EVALS=1,
                                  BUDGET_CHECK=1, FPS_RESOLUTION="64x128", FPS_FRAMES=2),
    "contextnet_branches": dict(COMMON, HOLDOUT_SEQUENCE=None, SEEDS=[0, 1], EVALS=1, BUDGET_CHECK=1, NUM_IMAGES=1),
    "fast_scnn_ablations": dict(COMMON, HOLDOUT_SEQUENCE=None, SEEDS=[0, 1], EVALS=2, FPS_RESOLUTIONS=["64x128"],
                                FPS_FRAMES=2, NUM_IMAGES=1),
    "pruning": dict(DATASET="synthetic", DATA_ROOT=None, HOLDOUT_SEQUENCE=None, MODEL="cn14-detail", SEEDS=[0],
                    WIDTHS=[1.25, 1.0], WIDE_STEPS=2, FINETUNE_STEPS=1, FINETUNE_LR=0.001, RECALIBRATE_BATCHES=1,
                    EVALS=1, BATCH_SIZE=2, CROP=(64, 128)),
    "runtime": dict(MODELS=["fast_scnn"], RESOLUTIONS=["32x64"],
                    PATHS=["keras_unfolded", "keras_folded", "tflite"], FRAMES=2, BURN_IN=1),
}
# Notebooks whose study trains networks: their committed outputs come from CamVid.
TRAINING = ("contextnet_resolution", "contextnet_branches", "fast_scnn_ablations", "pruning")


def _read(name):
    return nbformat.read(os.path.join(NOTEBOOKS, f"{name}.ipynb"), as_version=4)


def _parameters_index(notebook):
    tagged = [i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell must carry the 'parameters' tag"
    return tagged[0]


def _errors(notebook):
    return [(i, out.get("ename"), out.get("evalue")) for i, cell in enumerate(notebook.cells)
            if cell.cell_type == "code" for out in cell.get("outputs", []) if out.get("output_type") == "error"]


def _has_output(notebook, mime):
    return any(mime in out.get("data", {}) for cell in notebook.cells if cell.cell_type == "code"
               for out in cell.get("outputs", []))


def test_every_notebook_has_a_smoke_configuration():
    found = sorted(f[:-6] for f in os.listdir(NOTEBOOKS) if f.endswith(".ipynb"))
    assert found == sorted(SMOKE)
    for name in SMOKE:
        notebook = _read(name)
        source = notebook.cells[_parameters_index(notebook)].source
        for key in SMOKE[name]:
            if key not in ("RUNS_ROOT",):
                assert f"\n{key} = " in f"\n{source}", f"{name}: parameters cell lacks {key}"


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_committed_notebook_carries_its_real_run(name):
    notebook = _read(name)
    assert not _errors(notebook), f"{name}.ipynb was committed with cell errors: {_errors(notebook)}"
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), f"{name}.ipynb has unexecuted cells"
    assert _has_output(notebook, "text/markdown") and _has_output(notebook, "image/png")
    if name in TRAINING:
        assert 'DATASET = "camvid"' in notebook.cells[_parameters_index(notebook)].source
        printed = "".join(out.get("text", "") for c in code for out in c.get("outputs", []))
        assert "data: camvid" in printed, f"{name}.ipynb's outputs are not from the CamVid run"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMOKE))
def test_notebook_runs_in_smoke_mode(name, tmp_path):
    nbclient = pytest.importorskip("nbclient", reason="nbclient is in the 'test' extra")
    notebook = _read(name)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    overrides = dict(SMOKE[name])
    if "DATASET" in overrides or name in TRAINING:
        overrides["RUNS_ROOT"] = str(tmp_path / "runs")
    injected = nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in overrides.items()))
    injected.metadata["tags"] = ["injected-parameters"]
    notebook.cells.insert(_parameters_index(notebook) + 1, injected)
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert not _errors(notebook)
    assert _has_output(notebook, "text/markdown")
    assert _has_output(notebook, "image/png"), f"{name}: no plot was drawn"
