r"""Training-speed benchmark: images/s of the training step of Fast-SCNN and ContextNet (their paper recipes).

    python experiments/benchmark_train.py --out_dir=/tmp/benchmark_train

Writes benchmark_train.json and benchmark_train.md to --out_dir and prints the markdown. About ten minutes on a
2-core CPU with the defaults (256x512 crops, batch 4, four step settings side by side). `--profile=default` adds
TensorFlow's profile of a step by op category. Numbers for this machine are in docs/training.md.
"""

import sys

from absl import flags

from contextnet_tf import cli, program
from contextnet_tf.training import step_speed

MODELS = flags.DEFINE_list("models", ["fast_scnn", "cn14"], "Networks to time.")
OUT_DIR = flags.DEFINE_string("out_dir", "/tmp/benchmark_train", "Where the JSON and markdown go.")
CROP = cli.define_size("crop", (256, 512), "Crop HxW.")
BATCH_SIZE = flags.DEFINE_integer("batch_size", 4, "Images per step.")
STEPS = flags.DEFINE_integer("steps", 10, "Timed steps per round.")
WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps first (tracing).")
ROUNDS = flags.DEFINE_integer("rounds", 3, "Timed rounds (median reported).")
SETTINGS = flags.DEFINE_list(
    "settings", ["before", "fast_loss", "default", "aux_eighth"],
    "Step settings timed side by side (step_speed.SETTINGS): before (the step before issue 18), fast_loss (its loss "
    "rewritten, Keras' batch norm), default (fast loss, fused batch norm), aux_eighth (auxiliary losses at 1/8 "
    "resolution, a deviation). The first is the baseline of the ratio column.")
BREAKDOWN = flags.DEFINE_boolean(
    "breakdown", False, "Also time the parts of the default step by ablation (forward, losses, backward, update, L2, "
    "auxiliary heads): step_speed.breakdown.")
PROFILE = flags.DEFINE_list(
    "profile", [], "Step settings to profile with TensorFlow's profiler after the timing (op time by category: batch "
    "norm, convolutions, upsampling, losses, optimiser; step_speed.profile), e.g. --profile=before,default.")
ENVIRONMENTS = flags.DEFINE_list(
    "environments", [], "Process environments timed side by side, each in its own worker process "
    "(step_speed.ENVIRONMENTS): onednn_off, onednn_on (TF_ENABLE_ONEDNN_OPTS, read when TensorFlow is imported). "
    "Empty: this process only.")
POLICY = flags.DEFINE_enum("policy", "float32", ["float32", "mixed_float16", "mixed_bfloat16"], "Dtype policy.")


def main(argv):
    del argv
    result = step_speed.run(
        MODELS.value,
        OUT_DIR.value,
        crop=CROP.value,
        batch_size=BATCH_SIZE.value,
        steps=STEPS.value,
        warmup=WARMUP.value,
        rounds=ROUNDS.value,
        policy=POLICY.value,
        settings=SETTINGS.value,
        with_breakdown=BREAKDOWN.value,
        profile_settings=PROFILE.value,
        environments=ENVIRONMENTS.value,
        command=" ".join(["python", *sys.argv]),
    )
    print(step_speed.markdown(result))


if __name__ == "__main__":
    program.run(main)  # a user error (bad file, flag or value) ends it in one line
