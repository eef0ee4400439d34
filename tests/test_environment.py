"""environment: the machine record names the oneDNN state of TensorFlow's CPU kernels when it is known."""

import pytest

from contextnet_tf.environment import describe, environment, onednn_enabled


def test_describe_names_the_onednn_state():
    info = dict(cpu="AMD EPYC", cpu_count=2, versions=dict(tensorflow="2.21.0", keras="3.15.1"))
    assert describe({**info, "onednn": True}).endswith("Keras 3.15.1, oneDNN on")
    assert describe({**info, "onednn": False}).endswith("Keras 3.15.1, oneDNN off")
    assert describe(info).endswith("Keras 3.15.1")  # a record from before the field, or a JAX process


def test_environment_records_this_process():
    record = environment()
    assert record["onednn"] is onednn_enabled() and isinstance(record["onednn"], bool)
    assert record["cpu_count"] >= 1 and record["versions"]["tensorflow"]


@pytest.mark.slow
def test_importing_the_package_turns_remapping_off_only_where_onednn_is_on():
    import json
    import os
    import subprocess
    import sys

    script = ("import json, contextnet_tf; from contextnet_tf.environment import environment, describe; "
              "e = environment(); print(json.dumps([e['onednn'], e['tf_remapping'], describe(e)]))")
    for onednn, remapping in (("1", False), ("0", True)):
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                             env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn})
        assert out.returncode == 0, out.stderr[-2000:]
        state, remap, line = json.loads(out.stdout.strip().splitlines()[-1])
        assert (state, remap) == (onednn == "1", remapping)
        assert line.endswith("oneDNN on (remapping off)" if onednn == "1" else "oneDNN off")
