"""Seeded comparisons: each arm of a study trained with several seeds, and a claim judged by one stated rule.

One training run is one draw: the same recipe with another seed (initialisation, data order, augmentation) moves
CamVid mIoU by a point or more at the budgets this project can afford, which is as large as most of the differences
the papers' ablations report. So a study here trains every arm with several seeds (`run_arms`), summarises each arm
as mean +- sample standard deviation (`summarise`) and judges a claim with `judge`, whose rule is `VERDICT_RULE`:

    d  = mean(B) - mean(A)                           (B: the arm the claim is about, A: its baseline)
    se = sqrt(s_A**2 / n_A + s_B**2 / n_B)          (s: sample standard deviation over seeds)
    I  = [d - 2 se, d + 2 se]

* claim "higher" (B scores more than A): *reproduced* if I lies above 0, *contradicted* if it lies below 0;
* claim "lower": the mirror image;
* claim "same" within a margin m (a change that should cost nothing, such as a cheaper loss): *reproduced* if I lies
  inside [-m, m], *contradicted* if I lies entirely outside it;
* otherwise, or with fewer than 2 seeds in an arm (no spread to judge by), *inconclusive*.

Twice the standard error is the usual rough 95% interval; with 3 seeds per arm it is optimistic (Student's t with
about 4 degrees of freedom would use 2.8 rather than 2), which is one more reason to read "reproduced" from 3 seeds as
"consistent with", and "inconclusive" as the honest answer it is.

`results_record` writes every run's score, seed, folder and training time with the summaries and verdicts as JSON, so
the verdicts can be recomputed from the record (`verdicts_from_record`), and `markdown` renders the table.
"""

import dataclasses
import json
import math
import os

import numpy as np

VERDICT_RULE = ("difference of the means d = mean(B) - mean(A) against twice its standard error se = "
                "sqrt(s_A^2/n_A + s_B^2/n_B): for a claim that B is higher (lower), reproduced if d - 2se > 0 "
                "(d + 2se < 0), contradicted if the whole interval d +- 2se is on the other side of 0; for a claim "
                "that B is the same within a margin m, reproduced if d +- 2se lies inside [-m, m], contradicted if it "
                "lies entirely outside; otherwise, or with fewer than 2 seeds per arm, inconclusive")
CLAIMS = ("higher", "lower", "same")


def summarise(values):
    """{"n", "mean", "std", "values"} of one arm's per-seed scores (std: sample standard deviation, None for n < 2)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("an arm needs at least one result")
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return {"n": len(values), "mean": float(np.mean(values)), "std": std, "values": values}


def judge(baseline, arm, claim, margin=None):
    """Judges `claim` about `arm` against `baseline` (per-seed scores of each) by `VERDICT_RULE`.

    Args:
        baseline: scores of arm A (one per seed).
        arm: scores of arm B.
        claim: ``"higher"``, ``"lower"`` or ``"same"`` (B against A).
        margin: for ``"same"``: the largest difference still counted as the same, in the scores' unit.

    Returns:
        {"claim", "margin", "difference", "se", "interval", "verdict", "reason"}; ``se`` and ``interval`` are None
        when an arm has fewer than 2 seeds.
    """
    if claim not in CLAIMS:
        raise ValueError(f"claim must be one of {', '.join(CLAIMS)}, got {claim!r}")
    if claim == "same" and (margin is None or not margin > 0):
        raise ValueError(f"a 'same' claim needs a positive margin, got {margin!r}")
    a, b = summarise(baseline), summarise(arm)
    result = {"claim": claim, "margin": margin if claim == "same" else None,
              "difference": b["mean"] - a["mean"], "se": None, "interval": None}
    if a["n"] < 2 or b["n"] < 2:
        return {**result, "verdict": "inconclusive",
                "reason": f"needs at least 2 seeds per arm (has {a['n']} and {b['n']})"}
    se = math.sqrt(a["std"] ** 2 / a["n"] + b["std"] ** 2 / b["n"])
    low, high = result["difference"] - 2 * se, result["difference"] + 2 * se
    result.update(se=se, interval=[low, high])
    if claim == "higher":
        verdict = "reproduced" if low > 0 else "contradicted" if high < 0 else "inconclusive"
    elif claim == "lower":
        verdict = "reproduced" if high < 0 else "contradicted" if low > 0 else "inconclusive"
    else:
        verdict = ("reproduced" if -margin <= low and high <= margin
                   else "contradicted" if high < -margin or low > margin else "inconclusive")
    reason = f"d = {result['difference']:+.4g}, d +- 2se = [{low:+.4g}, {high:+.4g}]"
    if claim == "same":
        reason += f", margin +-{margin:g}"
    return {**result, "verdict": verdict, "reason": reason}


def run_arms(runs_root, arms, seeds, model_fn=None, progress=print):
    """Trains every arm with every seed (or reuses the finished runs) in ``runs_root/{arm}_s{seed}``.

    Args:
        runs_root: the study's folder.
        arms: {arm name: `contextnet_tf.training.TrainConfig`}; each config's seed is replaced by each of `seeds`.
        seeds: the seeds (at least one).
        model_fn: passed to `train` (all arms).
        progress: called with one line before each run (None: silent).

    Returns:
        {arm name: [`studies.StudyRun`, one per seed in the order of `seeds`]}. Runs are made seed by seed (every arm
        of seed 0, then of seed 1, ...), so a study stopped early has complete pairs.
    """
    from contextnet_tf.reports import studies

    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and at least one, got {seeds}")
    for name in arms:
        if not name or os.sep in name or name != name.strip():
            raise ValueError(f"arm name {name!r} cannot be a folder name")
    runs = {name: [] for name in arms}
    total, done = len(arms) * len(seeds), 0
    for seed in seeds:
        for name, config in arms.items():
            done += 1
            if progress is not None:
                progress(f"[{done}/{total}] {name}, seed {seed}: {os.path.join(runs_root, f'{name}_s{seed}')}")
            runs[name].append(studies.train_study_run(runs_root, f"{name}_s{seed}",
                                                      dataclasses.replace(config, seed=seed), model_fn=model_fn))
    return runs


def results_record(runs, comparisons=(), metric="miou", split=None):
    """The JSON record of a seeded study.

    Args:
        runs: {arm: [StudyRun]} from `run_arms`.
        comparisons: (baseline arm, arm, claim, margin) tuples to judge.
        metric: the key of each run's metrics that is compared.
        split: the evaluation split named in the record (default: each run's config's val_split, which must agree).

    Returns:
        {"metric", "split", "rule", "arms": {arm: {"runs": [{"seed", "workdir", "score", "train_seconds"}],
        "summary": ...}}, "comparisons": [{"baseline", "arm", ...judge()}]}.
    """
    splits = {run.config.get("val_split") for arm_runs in runs.values() for run in arm_runs}
    if split is None:
        if len(splits) != 1:
            raise ValueError(f"the runs were evaluated on different splits {sorted(map(str, splits))}")
        split = splits.pop()
    arms = {}
    for name, arm_runs in runs.items():
        entries = [{"seed": run.config.get("seed"), "workdir": run.workdir, "score": float(run.metrics[metric]),
                    "train_seconds": run.train_seconds} for run in arm_runs]
        arms[name] = {"runs": entries, "summary": summarise([e["score"] for e in entries])}
    record = {"metric": metric, "split": split, "rule": VERDICT_RULE, "arms": arms, "comparisons": []}
    record["comparisons"] = verdicts_from_record(record, comparisons)
    return record


def verdicts_from_record(record, comparisons):
    """Recomputes the judgements of `comparisons` ((baseline, arm, claim, margin) tuples) from a record's scores."""
    judged = []
    for baseline, arm, claim, margin in comparisons:
        for name in (baseline, arm):
            if name not in record["arms"]:
                raise ValueError(f"no arm {name!r} in the record (arms: {', '.join(record['arms'])})")
        scores = {name: [run["score"] for run in record["arms"][name]["runs"]] for name in (baseline, arm)}
        judged.append({"baseline": baseline, "arm": arm, **judge(scores[baseline], scores[arm], claim, margin)})
    return judged


def write_record(path, record):
    """Writes `record` as indented JSON (creating the folder)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")


def _points(value, scale):
    return "n/a" if value is None else f"{scale * value:.2f}"


def markdown(record, scale=100.0):
    """Two markdown tables: each arm (seeds, mean +- std, per-seed scores, training minutes), then each judged claim
    (difference, its 2-se interval, verdict). `scale` 100 shows mIoU in percent points."""
    lines = [f"| arm | seeds | {record['metric']} mean +- std | per seed | training minutes (mean) |",
             "|---|---|---|---|---|"]
    for name, arm in record["arms"].items():
        summary = arm["summary"]
        seconds = [run["train_seconds"] for run in arm["runs"] if run["train_seconds"] is not None]
        minutes = f"{np.mean(seconds) / 60:.1f}" if seconds else "n/a"
        per_seed = ", ".join(_points(run["score"], scale) for run in arm["runs"])
        spread = "" if summary["std"] is None else f" +- {_points(summary['std'], scale)}"
        seeds = ", ".join(str(run["seed"]) for run in arm["runs"])
        lines.append(f"| {name} | {seeds} | {_points(summary['mean'], scale)}{spread} | {per_seed} | {minutes} |")
    if record["comparisons"]:
        lines += ["", "| claim | difference | d +- 2se | verdict |", "|---|---|---|---|"]
        for c in record["comparisons"]:
            claim = f"{c['arm']} {c['claim']} than {c['baseline']}" if c["claim"] != "same" else (
                f"{c['arm']} same as {c['baseline']} (margin {_points(c['margin'], scale)})")
            interval = "n/a" if c["interval"] is None else (
                f"[{_points(c['interval'][0], scale)}, {_points(c['interval'][1], scale)}]")
            lines.append(f"| {claim} | {_points(c['difference'], scale)} | {interval} | {c['verdict']} |")
    return "\n".join(lines) + "\n"


def _not_varied():
    """Settings a study may not vary: the run record's bookkeeping fields (`run_dir.BOOKKEEPING_FIELDS`: where runs
    live, logging, checkpoints, evaluation cadence; not what they train) and the seed (the seeds are the study's
    replicates, not an arm)."""
    from contextnet_tf.training.run_dir import BOOKKEEPING_FIELDS

    return ("seed", *BOOKKEEPING_FIELDS)


def arms_varying(make_config, field, values, given=()):
    """One arm per value of one `TrainConfig` field, named after the value.

    Args:
        make_config: ``make_config(**{field: value})`` -> the arm's TrainConfig (e.g. the program's flags plus it).
        field: the field varied.
        values: its parsed values (at least 2, distinct).
        given: fields set explicitly elsewhere (a program's flags): varying one of them is refused.

    Returns:
        {arm name: TrainConfig} in the order of `values`; names are the values as flag text (``input``, ``0.4``,
        ``352x480``) with characters a folder name cannot hold replaced by ``_``.
    """
    from contextnet_tf import cli
    from contextnet_tf.training import TrainConfig

    fields = {f.name: f for f in cli.flag_fields(TrainConfig)}
    if field not in fields:
        raise ValueError(f"--vary: TrainConfig has no field {field!r}")
    if field in _not_varied():
        raise ValueError(f"--vary: {field} does not change what a run trains (seeds are --seeds)")
    if field in given:
        raise ValueError(f"--vary={field} and --{field} were both given: set its values with --values only")
    if len(values) < 2 or len(set(map(repr, values))) != len(values):
        raise ValueError(f"--values: a comparison needs at least 2 distinct values of {field}, got {list(values)}")
    syntax = fields[field].metadata.get("syntax")
    arms = {}
    for value in values:
        name = "".join(c if c.isalnum() or c in "._-" else "_" for c in cli.flag_text(value, syntax))
        arms[name] = make_config(**{field: value})
    if len(arms) != len(values):
        raise ValueError(f"--values {list(values)} give the same arm names {list(arms)}")
    return arms


def add_scores(record, name, seeds, scores, how, train_seconds=None):
    """Adds an arm trained or evaluated outside `run_arms` (each seed's model with a branch zeroed, at half input
    resolution, or at the end of a pruning schedule) to `record`: one score per seed, `how` it was obtained, and
    optionally the training seconds per seed."""
    if len(seeds) != len(scores) or (train_seconds is not None and len(train_seconds) != len(seeds)):
        raise ValueError(f"arm {name!r}: {len(seeds)} seeds but {len(scores)} scores"
                         + ("" if train_seconds is None else f" and {len(train_seconds)} training times"))
    if name in record["arms"]:
        raise ValueError(f"the record already has an arm {name!r}")
    seconds = train_seconds or [None] * len(seeds)
    runs = [{"seed": int(s), "workdir": None, "score": float(v), "train_seconds": t}
            for s, v, t in zip(seeds, scores, seconds)]
    record["arms"][name] = {"runs": runs, "summary": summarise(scores), "how": how}
    return record


def curves(runs, metric="miou"):
    """Each arm's validation curve over its seeds: {arm: {"steps", "mean", "std", "n"}} at the steps every seed of
    the arm evaluated (from each run's metrics.jsonl; std None where n < 2)."""
    from contextnet_tf.reports.plots import read_metrics

    result = {}
    for name, arm_runs in runs.items():
        per_run = []
        for run in arm_runs:
            _, val = read_metrics(os.path.join(run.workdir, "metrics.jsonl"))
            per_run.append({r["step"]: r[metric] for r in val if r.get(metric) is not None})
        steps = sorted(set.intersection(*(set(p) for p in per_run))) if per_run else []
        values = [[p[step] for p in per_run] for step in steps]
        result[name] = {"steps": steps, "values": values, "n": len(per_run),
                        "mean": [float(np.mean(v)) for v in values],
                        "std": [float(np.std(v, ddof=1)) if len(v) > 1 else None for v in values]}
    return result


def still_rising(curve):
    """Whether an arm's curve (from `curves`) was still rising at its end, by `VERDICT_RULE`: the last evaluation
    against the one before as a claim "higher". Returns the `judge` result with the two steps (None with fewer than
    two evaluations); its verdict "reproduced" means the budget is short of a plateau."""
    if len(curve["steps"]) < 2:
        return None
    result = judge(curve["values"][-2], curve["values"][-1], "higher")
    return {**result, "steps": curve["steps"][-2:]}


def add_curves(record, runs, metric="miou"):
    """Adds to a `results_record` its arms' validation curves (``record["curves"]``, `curves` of `runs`) and whether
    each was still rising at its end (``record["still_rising"]``, `still_rising`); returns the record."""
    record["curves"] = curves(runs, metric)
    record["still_rising"] = {arm: still_rising(curve) for arm, curve in record["curves"].items()}
    return record


def still_rising_lines(record):
    """One line per arm of a `results_record` whose curve has two evaluations or more: the last two steps, the
    change in points and whether the arm was still rising at its end by the rule (`still_rising`)."""
    return [f"{arm}: step {rising['steps'][0]} -> {rising['steps'][1]}: {100 * rising['difference']:+.2f} points "
            f"({rising['reason']}); still rising by the rule: {rising['verdict'] == 'reproduced'}"
            for arm, rising in record["still_rising"].items() if rising is not None]


def budget_record(runs_by_budget, metric="miou", split=None):
    """Whether each arm still gains from a larger budget: the same arms trained at several budgets, each a full
    schedule (unlike the points of one run's curve, whose end the poly schedule bends upwards).

    Args:
        runs_by_budget: {steps: {arm: [StudyRun]}}, e.g. `run_arms` of one recipe at two values of its steps; at least
            two budgets.
        metric, split: as `results_record`.

    Returns:
        A `results_record` whose arms are ``"{arm} @ {steps}"`` and whose comparisons judge, for every arm trained at
        every budget, each budget against the one before it with the claim "higher". *reproduced* says the arm was
        still rising, so the smaller budget is short of a plateau; *inconclusive* or *contradicted* says the larger
        budget bought nothing the seeds can tell apart, the rule's reading of "has stopped rising".
    """
    budgets = sorted(int(steps) for steps in runs_by_budget)
    if len(budgets) < 2 or len(set(budgets)) != len(budgets):
        raise ValueError(f"a budget check needs at least two distinct budgets, got {sorted(runs_by_budget)}")
    runs = {f"{arm} @ {steps}": arm_runs for steps in budgets for arm, arm_runs in runs_by_budget[steps].items()}
    common = [arm for arm in runs_by_budget[budgets[0]] if all(arm in runs_by_budget[b] for b in budgets)]
    if not common:
        raise ValueError("no arm was trained at every budget")
    comparisons = [(f"{arm} @ {a}", f"{arm} @ {b}", "higher", None)
                   for arm in common for a, b in zip(budgets, budgets[1:])]
    record = results_record(runs, comparisons, metric, split)
    record["budgets"] = budgets
    return record
