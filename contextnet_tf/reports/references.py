"""The papers' reference numbers, each with its paper, table or section, split and hardware: the one place the
studies, the model table, the notebooks and the docs read them from.

Papers (text in ``shared/papers/``):

* ContextNet: R. Poudel, U. Bonde, S. Liwicki, C. Zach, "ContextNet: Exploring Context and Detail for Semantic
  Segmentation in Real-time", BMVC 2018.
* Fast-SCNN: R. Poudel, S. Liwicki, R. Cipolla, "Fast-SCNN: Fast Semantic Segmentation Network", BMVC 2019.

mIoU values are percentages; fps are frames per second at 1024x2048 unless a resolution is given; parameters are
counts. Every number is checked against the paper's text by tests/test_reports_references.py where the text is
available.
"""

# ------------------------------------------------------------------------------------------------------- ContextNet

CONTEXTNET_TABLE4_SOURCE = "ContextNet Table 4 (Cityscapes val mIoU; fps at 1024x2048 on a Titan X Maxwell)"
CONTEXTNET_TABLE4 = {
    # Parameters: Table 4 gives 0.85M / 0.93M; cn14-500 and cn14-160 exactly in section 3.2 "Number of Parameters".
    "cn18": dict(miou=60.1, fps=21.0, params=850_000),
    "cn14": dict(miou=65.9, fps=18.3, params=850_000),
    "cn12": dict(miou=68.7, fps=11.4, params=850_000),
    "cn124": dict(miou=67.3, fps=7.6, params=930_000),
    "cn14-500": dict(miou=62.1, fps=20.6, params=490_459),
    "cn14-160": dict(miou=57.7, fps=22.0, params=159_387),
}

CONTEXTNET_ENSEMBLE_SOURCE = "ContextNet section 3.2, ContextNet vs Ensemble Nets (Cityscapes val mIoU)"
CONTEXTNET_ENSEMBLE = {
    "cn14-context": 63.3,
    "cn14-detail": 25.1,
    "ensemble": 60.3,
    # Table 4's cn14. (The section's "60.3% ... which is 6.6% less than cn14" would make it 66.9; Table 4, Figure 2
    # and section 3.2 "Input resolution" all say 65.9.)
    "cn14": CONTEXTNET_TABLE4["cn14"]["miou"],
}

CONTEXTNET_PRUNING_SOURCE = "ContextNet section 3.2, Network Pruning (Cityscapes TEST mIoU, not val)"
# cn14 trained at 2x width and pruned to 1.5x, 1.25x, 1x: "we improve the mIoU from 64.2% to 66.1% on the Cityscape
# test set".
CONTEXTNET_PRUNING = {"before pruning": 64.2, "after pruning": 66.1}

CONTEXTNET_TABLE6_SOURCE = "ContextNet Table 6 (Cityscapes test)"
CONTEXTNET_TABLE6 = dict(class_miou=66.1, category_miou=82.7, params=850_000)

CONTEXTNET_TABLE7_SOURCE = "ContextNet Table 7 (fps on a Titan X Maxwell; kernel_fps: kernel execution alone)"
CONTEXTNET_TABLE7 = {
    "1024x2048": dict(fps=18.3, kernel_fps=41.9),
    "512x1024": dict(fps=65.5, kernel_fps=136.2),
    "256x512": dict(fps=139.2, kernel_fps=299.5),
}

# ------------------------------------------------------------------------------------------------------- Fast-SCNN

FAST_SCNN_PARAMS_SOURCE = "Fast-SCNN section 1.1 and section 3.2 (1.11 million parameters)"
FAST_SCNN_PARAMS = 1_110_000

FAST_SCNN_TABLE4_SOURCE = "Fast-SCNN Table 4 (Cityscapes test)"
FAST_SCNN_TABLE4 = dict(class_miou=68.0, category_miou=84.7, params=FAST_SCNN_PARAMS)

FAST_SCNN_TABLE7_SOURCE = "Fast-SCNN Table 7 (Cityscapes TEST class mIoU; fps on a Titan Xp)"
FAST_SCNN_TABLE7 = {
    "1024x2048": dict(miou=68.0, fps=123.5),
    "512x1024": dict(miou=62.8, fps=285.8),
    "256x512": dict(miou=51.9, fps=485.4),
}

FAST_SCNN_SKIP_SOURCE = "Fast-SCNN section 3.2, Ablation Study (Cityscapes val mIoU)"
FAST_SCNN_SKIP = {"with skip": 69.22, "skip zeroed": 64.30}

FAST_SCNN_TABLE8_SOURCE = "Fast-SCNN Table 8 (Cityscapes val class mIoU)"
FAST_SCNN_TABLE8 = {"fine": 68.62, "+ ImageNet": 69.15, "+ coarse": 69.22, "+ coarse + ImageNet": 69.19}

# --------------------------------------------------------------------------------------------------------- derived

# Parameters per model name, as the papers report them (the model table's "params (paper)" column).
PAPER_PARAMS = {"fast_scnn": FAST_SCNN_PARAMS, **{name: row["params"] for name, row in CONTEXTNET_TABLE4.items()}}
