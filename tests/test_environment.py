"""environment: the machine record names the oneDNN state of TensorFlow's CPU kernels when it is known."""

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
