"""Input throughput: images per second for PNG decode plus training augmentation, and where the time goes.

Two pipelines read the same files with the same decoding, label mapping and random draws and differ only in the
augmentation: ``naive`` (`augment.reference_augment`: resize the whole image, pad, crop, flip, then the `tf.image`
colour ops) and ``optimised`` (`augment.augment`: resample only the crop window with one `crop_and_resize`, colour
jitter as one 3x3 matrix). Each runs as a parallel tf.data map on a private thread pool of ``cores`` threads with
single-threaded ops, so ``cores`` is the number of CPU cores the input pipeline may use. Measurements of the two
pipelines alternate round by round, so that load from other processes on a shared machine hits both alike; the
report gives the median over rounds and the optimised/naive ratio of each round.
"""

import json
import os
import statistics
import time

import numpy as np
import tensorflow as tf

from contextnet_tf.data import augment as augment_lib
from contextnet_tf.data import decode, files, labels

PIPELINES = ("naive", "optimised")


def _options(cores):
    options = tf.data.Options()
    options.threading.private_threadpool_size = cores
    options.threading.max_intra_op_parallelism = 1
    options.autotune.cpu_budget = cores
    options.deterministic = False
    return options


def augmented_dataset(name, examples, pipeline, crop_size, cores, seed=0):
    """Endless dataset of augmented (image, label) examples read from ``examples`` with ``cores`` threads."""
    info = labels.get_info(name)
    to_train_ids = decode.train_id_mapper(name)
    function = {"naive": augment_lib.reference_augment, "optimised": augment_lib.augment}[pipeline]
    config = augment_lib.AugmentConfig()
    paths = tf.data.Dataset.from_tensor_slices(
        (tf.constant([image for image, _ in examples]), tf.constant([label for _, label in examples]))
    )

    def example(index, element):
        image_path, label_path = element
        image, values = decode.decode_example(
            tf.io.read_file(image_path), tf.io.read_file(label_path), image_path, label_path
        )
        seed_pair = tf.stack([tf.constant(seed, tf.int64), index])
        return function(image, values, lambda v: to_train_ids(v, label_path), seed_pair, crop_size, config,
                        info.mean_rgb)

    ds = paths.repeat().enumerate().map(example, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(4).with_options(_options(cores))


def _measure(ds, num_images, warmup):
    """(images per second of wall time, CPU milliseconds of this process per image)."""
    iterator = iter(ds)
    for _ in range(warmup):
        next(iterator)
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(num_images):
        next(iterator)
    return num_images / (time.perf_counter() - start), 1000 * (time.process_time() - start_cpu) / num_images


def measure_throughput(name, examples, crop_size, cores_list, num_images, rounds, warmup=4):
    """Images per second of both pipelines for each core count, alternating naive and optimised every round.

    Besides wall-clock throughput, each measurement records the CPU time the process spent per image. On a machine
    shared with other work the wall-clock rate drops with the load while the CPU time per image barely moves, so
    ``cores * 1000 / cpu_ms_per_image`` estimates the rate on ``cores`` cores of one's own.

    Returns:
        List of dicts with ``pipeline``, ``cores``, ``images_per_s`` and ``cpu_ms_per_image`` (one value per
        round), their medians ``median`` and ``cpu_ms_median``, and ``cpu_bound_images_per_s``.
    """
    samples = {(p, c): [] for c in cores_list for p in PIPELINES}
    datasets = {(p, c): augmented_dataset(name, examples, p, crop_size, c) for p, c in samples}
    for _ in range(rounds):
        for key, ds in datasets.items():
            samples[key].append(_measure(ds, num_images, warmup))
    rows = []
    for (pipeline, cores), values in samples.items():
        rates, cpu_ms = [v[0] for v in values], [v[1] for v in values]
        rows.append(dict(pipeline=pipeline, cores=cores, images_per_s=[round(v, 2) for v in rates],
                         median=round(statistics.median(rates), 2), cpu_ms_per_image=[round(v, 2) for v in cpu_ms],
                         cpu_ms_median=round(statistics.median(cpu_ms), 2),
                         cpu_bound_images_per_s=round(cores * 1000 / statistics.median(cpu_ms), 1)))
    return rows


def _stage_ms(function, num_calls):
    """CPU milliseconds per call of ``function(index)`` run by tf.data on one thread (ops single-threaded too).

    CPU time of the process rather than wall time, so that other work on a shared machine does not count.
    """
    function = tf.autograph.experimental.do_not_convert(function)
    ds = tf.data.Dataset.range(num_calls + 2).map(function).with_options(_options(1))
    iterator = iter(ds)
    next(iterator), next(iterator)
    start = time.process_time()
    for _ in iterator:
        pass
    return round(1000 * (time.process_time() - start) / num_calls, 2)


def stage_breakdown(name, examples, crop_size, num_calls=8):
    """Single-thread CPU cost of each stage in ms per image, on the first example (geometry varies per call).

    Returns:
        Dict stage name -> ms.
    """
    info = labels.get_info(name)
    config = augment_lib.AugmentConfig()
    image_path, label_path = examples[0]
    image_png, label_png = tf.io.read_file(image_path), tf.io.read_file(label_path)
    image, values = decode.decode_example(image_png, label_png, image_path, label_path)
    to_train_ids = decode.train_id_mapper(name)
    size = tf.shape(image)[:2]

    def draws(index):
        return augment_lib.sample(tf.stack([tf.constant(0, tf.int64), index]), size, crop_size, config)

    def naive_geometry(index):
        geometry, _ = draws(index)
        return augment_lib.reference_scale_crop(image, to_train_ids(values, label_path), geometry, crop_size,
                                                info.mean_rgb)

    def optimised_geometry(index):
        geometry, _ = draws(index)
        crop, ids, paddings = augment_lib.scale_crop(image, values, geometry, crop_size)
        return augment_lib.pad(crop, to_train_ids(ids, label_path), paddings, info.mean_rgb)

    crop = tf.cast(image[: crop_size[0], : crop_size[1]], tf.float32)
    stages = {
        "read both files": lambda i: (tf.io.read_file(image_path), tf.io.read_file(label_path)),
        "decode image PNG": lambda i: tf.io.decode_png(image_png, channels=3),
        "decode label PNG": lambda i: tf.io.decode_png(label_png, channels=1),
        "label ids -> train ids (full image)": lambda i: to_train_ids(values, label_path),
        "naive: resize whole image + pad + crop + flip (image and label)": naive_geometry,
        "optimised: crop_and_resize of the crop window (image and label)": optimised_geometry,
        "naive: tf.image saturation, hue, contrast (crop)": lambda i: augment_lib.reference_color(crop, draws(i)[1]),
        "optimised: one colour matrix (crop)": lambda i: augment_lib.apply_color(crop, draws(i)[1]),
    }
    return {stage: _stage_ms(function, num_calls) for stage, function in stages.items()}


def run(data_dir, out_dir, name="synthetic", split="train", crop_size=(1024, 1024), cores_list=(1, 2),
        num_images=24, rounds=3, command=""):
    """Runs the throughput measurement and the stage breakdown; writes JSON and a markdown table.

    Args:
        data_dir: dataset root in the Cityscapes layout (e.g. a synthetic city written at 1024x2048).
        out_dir: where ``benchmark_input.json`` and ``benchmark_input.md`` go.
        name, split: dataset and split to read.
        crop_size: training crop.
        cores_list: core counts to measure.
        num_images: images timed per measurement (after a warm-up).
        rounds: alternating rounds per (pipeline, cores).
        command: the command line, recorded in the outputs.

    Returns:
        The result dict (also in the JSON file).
    """
    examples = files.list_examples(name, data_dir, split)
    header = files.read_png_header(examples[0][0])
    result = dict(
        command=command,
        dataset=dict(name=name, data_dir=os.fspath(data_dir), split=split, num_files=len(examples),
                     image_size=[header["height"], header["width"]],
                     mean_image_png_bytes=int(np.mean([os.path.getsize(i) for i, _ in examples]))),
        crop_size=list(crop_size),
        machine=dict(cpu_count=os.cpu_count(), load_average_before=list(os.getloadavg()),
                     tensorflow=tf.__version__),
        throughput=measure_throughput(name, examples, crop_size, cores_list, num_images, rounds),
        stages_ms=stage_breakdown(name, examples, crop_size),
    )
    result["machine"]["load_average_after"] = list(os.getloadavg())
    for cores in cores_list:
        by = {r["pipeline"]: r for r in result["throughput"] if r["cores"] == cores}
        ratios = [o / n for o, n in zip(by["optimised"]["images_per_s"], by["naive"]["images_per_s"])]
        by["optimised"]["ratio_to_naive_per_round"] = [round(r, 2) for r in ratios]
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "benchmark_input.json"), "w") as f:
        json.dump(result, f, indent=2)
    with open(os.path.join(out_dir, "benchmark_input.md"), "w") as f:
        f.write(markdown(result))
    return result


def markdown(result):
    """The result of `run` as markdown tables."""
    size, crop = result["dataset"]["image_size"], result["crop_size"]
    lines = [
        f"Decode + training augmentation of {size[1]}x{size[0]} PNGs to {crop[1]}x{crop[0]} crops "
        f"({result['dataset']['num_files']} files, mean image PNG {result['dataset']['mean_image_png_bytes'] / 1e6:.2f}"
        f" MB), load average {result['machine']['load_average_before'][0]:.2f} before and "
        f"{result['machine']['load_average_after'][0]:.2f} after.",
        "",
        "| pipeline | cores | images/s (median) | per round | optimised / naive per round "
        "| CPU ms per image | cores x 1000 / CPU ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["throughput"]:
        ratio = ", ".join(f"{v:.2f}" for v in r.get("ratio_to_naive_per_round", [])) or "-"
        rounds = ", ".join(f"{v:.1f}" for v in r["images_per_s"])
        lines.append(f"| {r['pipeline']} | {r['cores']} | {r['median']:.1f} | {rounds} | {ratio} "
                     f"| {r['cpu_ms_median']:.0f} | {r['cpu_bound_images_per_s']:.1f} |")
    lines += ["", "| stage (one thread) | CPU ms per image |", "|---|---|"]
    lines += [f"| {stage} | {ms:.1f} |" for stage, ms in result["stages_ms"].items()]
    if result["command"]:
        lines += ["", f"Command: `{result['command']}`"]
    return "\n".join(lines) + "\n"
