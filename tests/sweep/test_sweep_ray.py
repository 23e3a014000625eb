"""The Ray executor on a small local instance: results, artifacts copied back, one store writer."""

from __future__ import annotations

import os

import pytest
from sweep_toy import assert_same_metrics, metrics_by_id, toy_task, write_spec

from shrinkbench.results.store import Store
from shrinkbench.sweep import Plan, Run, build_plan, expand, load_spec, run_plan, run_sweep

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    """One local Ray instance for this module: 2 CPUs, no dashboard, the toy tasks importable."""
    paths = [HERE, *(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)]
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
        runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(paths)}},
    )
    yield
    ray.shutdown()


def toy_plan(fail: tuple[int, ...] = ()) -> Plan:
    return build_plan(
        Run(f"r{x}", f"d{x % 2}", {"x": x, "base": 100 * (x % 2), "fail": x in fail}) for x in range(6)
    )


def test_ray_runs_every_job_and_copies_artifacts_back(tmp_path):
    plan = toy_plan(fail=(3,))
    result = run_plan(plan, tmp_path, executor="ray", workers=2, task_fn=toy_task, progress=False, lines=False)
    assert result.counts == {"pending": 0, "running": 0, "done": 5, "failed": 1}
    assert result.exit_code == 1
    with Store(tmp_path) as store:
        for x in (0, 1, 2, 4, 5):
            value = 100 * (x % 2) + x * x
            assert store.get(f"r{x}")["metrics"]["value"] == value
            assert [e["loss"] for e in store.epochs(f"r{x}")] == [1.0 + x, 0.5 + x]
            assert (tmp_path / "runs" / f"r{x}" / "result.txt").read_text() == str(value)
        assert store.get("r3")["error"] == "ValueError: run x=3 is broken"
        # the driver recorded every row: the pid of each is this process
        assert {row["pid"] for row in store.runs()} == {os.getpid()}
    for d in ("d0", "d1"):
        assert (tmp_path / "dense" / d / "model.pt").is_file()
        assert (tmp_path / "dense" / d / "trained_by").read_text().count("\n") == 1


def test_ray_uses_an_existing_dense_model_and_resume_files(tmp_path):
    (tmp_path / "dense" / "d7").mkdir(parents=True)
    (tmp_path / "dense" / "d7" / "model.pt").write_text("1000")
    with Store(tmp_path) as store:
        store.register("d7", "dense", {})
        store.start("d7")
        store.finish("d7", {})
    plan = build_plan([Run("r1", "d7", {"x": 1, "base": 0})])
    result = run_plan(plan, tmp_path, executor="ray", task_fn=toy_task, progress=False, lines=False)
    assert result.ran == 1 and result.exit_code == 0  # the dense model was not trained again
    assert (tmp_path / "runs" / "r1" / "result.txt").read_text() == "1001"
    assert not (tmp_path / "dense" / "d7" / "trained_by").exists()


def test_ray_gives_the_same_metrics_as_local(tmp_path):
    import torch

    spec = load_spec(write_spec(tmp_path))
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # see test_sweep_e2e: tiny runs crawl with two spinning threads on a busy machine
    try:
        local = run_sweep(spec, tmp_path / "local", progress=False, lines=False)
    finally:
        torch.set_num_threads(before)
    remote = run_sweep(spec, tmp_path / "ray", executor="ray", progress=False, lines=False)
    assert local.exit_code == remote.exit_code == 0
    assert_same_metrics(metrics_by_id(tmp_path / "local"), metrics_by_id(tmp_path / "ray"))
    for run in expand(spec):  # the artifacts came back from the workers' temporary folders
        for name in ("config.yaml", "metrics.json", "epochs.csv", "layers.csv", "model.pt"):
            assert (tmp_path / "ray" / "runs" / run.run_id / name).is_file(), name
