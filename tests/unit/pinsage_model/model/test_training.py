"""Multi-worker roles from TF_CONFIG (the batch split across workers: test_minibatch.py)."""

from __future__ import annotations

import json

import pytest

from pinsage_model.model.training import WorkerRole, worker_role


def tf_config(cluster: dict, task_type: str, index: int) -> dict:
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})}


def test_without_tf_config_the_process_is_a_cluster_of_one():
    assert worker_role({}) == WorkerRole("worker", 0, 1, True)
    assert worker_role({"TF_CONFIG": " "}) == WorkerRole("worker", 0, 1, True)


def test_worker_zero_is_chief_unless_the_cluster_has_a_chief():
    workers = {"worker": ["h0:1", "h1:1", "h2:1"]}
    assert [worker_role(tf_config(workers, "worker", i)).is_chief for i in range(3)] == [True, False, False]
    assert worker_role(tf_config(workers, "worker", 2)) == WorkerRole("worker", 2, 3, False)
    with_chief = {"chief": ["c:1"], "worker": ["h0:1", "h1:1"]}  # a TFJob with a Chief replica
    assert worker_role(tf_config(with_chief, "chief", 0)) == WorkerRole("chief", 0, 3, True)
    assert worker_role(tf_config(with_chief, "worker", 0)) == WorkerRole("worker", 0, 3, False)


@pytest.mark.parametrize(
    "environ, match",
    [
        ({"TF_CONFIG": "{not json"}, "not a TensorFlow cluster description"),
        (tf_config({"ps": ["p:1"], "worker": ["h:1"]}, "ps", 0), "'chief' and 'worker' tasks only"),
        (tf_config({"worker": ["h0:1", "h1:1"]}, "worker", 2), "worker:2 is not in its cluster"),
    ],
)
def test_bad_tf_config_is_an_error_naming_it(environ, match):
    with pytest.raises(ValueError, match=match):
        worker_role(environ)
