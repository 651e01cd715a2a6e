"""The device setting: validation, no effect on keys, worker -> GPU assignment, clear errors
before any run when CUDA is missing, and the stages logging where they ran. No GPU needed:
the number of GPUs torch sees is patched where a test needs one."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import mlflow
import numpy as np
import pytest

from helpers import planted_grid_config, planted_grid_inputs, planted_recovery_world
from modelrecovery import devices
from modelrecovery.devices import check_device, pool_size, require_device, worker_device
from modelrecovery.recovery import executors
from modelrecovery.recovery.executors import run_grid, worker_index
from modelrecovery.recovery.grid import Level, jobs_of
from modelrecovery.recovery.store import ResultsStore
from modelrecovery.study.fitting import ProbeSetup
from modelrecovery.study.generators import GeneratorSetup, build_generators, generator_setups
from modelrecovery.study.pipeline import grid_config
from modelrecovery.study.spec import TuneSpec, load_spec, validate_spec
from modelrecovery.tracking import setup_experiment

NAMES = {"a": None, "b": None}


@pytest.fixture
def no_gpu(monkeypatch):
    """torch sees no CUDA device (whatever this machine has)."""
    monkeypatch.setattr(devices, "cuda_count", lambda: 0)
    monkeypatch.setattr(executors, "cuda_count", lambda: 0)


@pytest.fixture
def two_gpus(monkeypatch):
    """torch sees two CUDA devices (nothing is run on them)."""
    monkeypatch.setattr(devices, "cuda_count", lambda: 2)
    monkeypatch.setattr(executors, "cuda_count", lambda: 2)


@pytest.fixture
def tracking(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("OPTUNA_STORAGE", f"sqlite:///{tmp_path}/optuna.db")
    monkeypatch.setenv("MODELRECOVERY_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    experiment_id = setup_experiment("default")
    yield experiment_id
    mlflow.end_run()


def all_runs():
    return mlflow.search_runs(search_all_experiments=True)


def test_device_spellings_are_checked_with_the_parameter_named():
    assert [check_device(d) for d in ("cpu", "cuda", "auto", "cuda:1", " CUDA:0")] == [
        "cpu",
        "cuda",
        "auto",
        "cuda:1",
        "cuda:0",
    ]
    for bad in ("gpu", "cuda:", "cuda:x", "", None, 0, "mps"):
        with pytest.raises(ValueError, match="grid.device must be one of cpu, cuda, auto"):
            check_device(bad, "grid.device")
    with pytest.raises(ValueError, match="grid.device must be one of"):
        planted_grid_config(NAMES, device="gpu")
    # a generator set up in code: its device is checked before any file is read
    setup = GeneratorSetup(ProbeSetup(device="tpu"))
    with pytest.raises(ValueError, match="probe.device must be one of"):
        build_generators({"a": "missing.npy"}, None, tracker=None, setups=[setup])
    assert planted_grid_config(NAMES, device="CUDA:1").device == "cuda:1"


def test_the_device_enters_no_key_job_id_or_condition():
    cpu = planted_grid_config(NAMES)
    assert cpu.device == "cpu"
    for device in ("cuda", "cuda:1", "auto"):
        gpu = planted_grid_config(NAMES, device=device)
        assert gpu.key() == cpu.key()
        assert [j.job_id for j in jobs_of(gpu)] == [j.job_id for j in jobs_of(cpu)]
        assert gpu.condition(Level("full")) == cpu.condition(Level("full"))
        assert gpu.condition_key(Level("full")) == cpu.condition_key(Level("full"))
    assert "device" not in cpu.condition(Level("full"))


def test_configs_carry_devices_and_check_them():
    # the default study stays on the CPU; the paper's study takes a GPU when there is one
    for name, device in (("default", "cpu"), ("things_paper", "auto")):
        spec = load_spec(name)
        assert spec.probe.device == device and spec.grid.device == device
        assert spec.executor.jobs_per_gpu >= 1
    spec = load_spec("default", ["probe.device=auto", "grid.device=cuda:1"])
    assert {setup.probe.device for setup in generator_setups(spec)} == {"auto"}
    assert grid_config(spec, ["m0", "m1"]).device == "cuda:1"
    # a misspelt device fails when the configuration is read (its specification) ...
    for key in ("probe.device", "grid.device"):
        with pytest.raises(ValueError, match=f"{key} = 'gpu': expected one of cpu, cuda, auto"):
            load_spec("default", [f"{key}=gpu"])
    # ... when a configuration made in code is checked ...
    config = load_spec("default").as_config()
    config["probe"]["device"] = config["grid"]["device"] = "gpu"
    with pytest.raises(ValueError, match="probe.device = 'gpu': expected one of cpu, cuda"):
        validate_spec(config)
    # ... and in the settings built from a specification copied past its checks
    spec = load_spec("default")
    bad = spec.model_copy(
        update={
            "probe": spec.probe.model_copy(update={"device": "gpu"}),
            "grid": spec.grid.model_copy(update={"device": "gpu"}),
        }
    )
    with pytest.raises(ValueError, match="probe.device must be one of"):
        build_generators({"m0": "m0.npy"}, None, tracker=None, setups=generator_setups(bad))
    with pytest.raises(ValueError, match="grid.device must be one of"):
        grid_config(bad, ["m0", "m1"])


def test_workers_share_the_gpus_round_robin():
    assert [worker_device("cuda", i, 2) for i in range(5)] == [
        "cuda:0",
        "cuda:1",
        "cuda:0",
        "cuda:1",
        "cuda:0",
    ]
    assert [worker_device("cuda", i, 1) for i in range(3)] == ["cuda:0"] * 3
    assert [worker_device("auto", i, 3) for i in range(4)] == [
        "cuda:0",
        "cuda:1",
        "cuda:2",
        "cuda:0",
    ]
    assert worker_device("auto", 5, 0) == "cpu"
    assert worker_device("cpu", 3, 4) == "cpu"
    assert [worker_device("cuda:1", i, 2) for i in range(3)] == ["cuda:1"] * 3
    with pytest.raises(ValueError, match="grid.device='cuda' was asked for but torch sees no CUDA"):
        worker_device("cuda", 0, 0, "grid.device")
    with pytest.raises(ValueError, match="sees 2 CUDA device"):
        worker_device("cuda:2", 0, 2)
    # pool sizes: jobs_per_gpu workers per GPU used; the CPU pool is unchanged
    assert pool_size("cpu", 2, 3, cpu_workers=2) == 2
    assert pool_size("auto", 0, 3, cpu_workers=2) == 2
    assert pool_size("cuda", 2, 3, cpu_workers=2) == 6
    assert pool_size("cuda:1", 2, 3, cpu_workers=2) == 3
    with pytest.raises(ValueError, match="jobs_per_gpu must be at least 1"):
        pool_size("cuda", 1, 0, cpu_workers=2)
    assert [worker_index(n) for n in (0, 7, "SLURMCluster-3", "tcp://127.0.0.1:80x")] == [
        0,
        7,
        3,
        0,
    ]


def test_require_device_resolves_auto_and_rejects_missing_cuda(no_gpu):
    assert require_device("auto") == "cpu"
    assert require_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="--device='cuda' was asked for but torch sees no CUDA"):
        require_device("cuda", "--device")


class _Stop(Exception):
    pass


def test_grid_places_jobs_on_the_gpus(two_gpus, monkeypatch, tmp_path):
    features = planted_recovery_world(n_concepts=30)
    inputs = planted_grid_inputs(features, (Level("full"),))
    seen: list = []

    def fake_run(job, config, inputs):
        seen.append(config.device)
        raise _Stop

    def fake_dask(todo, config, inputs, store, finish, bar, address, n_workers):
        seen.append((config.device, n_workers))

    monkeypatch.setattr(executors, "_run", fake_run)
    monkeypatch.setattr(executors, "_run_dask", fake_dask)
    store = ResultsStore(tmp_path / "store")
    config = planted_grid_config(features, device="cuda", sizes=(60,))
    with pytest.raises(_Stop):
        run_grid(config, inputs, store, progress=False)
    assert seen == ["cuda:0"]  # in-process: one job at a time on the first GPU
    run_grid(config, inputs, store, executor="dask", jobs_per_gpu=3, progress=False)
    assert seen[-1] == ("cuda", 6)  # 3 workers per GPU, each picks its GPU by its index
    cpu = dataclasses.replace(config, device="cpu")
    run_grid(cpu, inputs, store, executor="dask", n_workers=2, jobs_per_gpu=3, progress=False)
    assert seen[-1] == ("cpu", 2)
    # on a worker: worker 3 of a pool on two GPUs runs on cuda:1
    import distributed
    import torch

    class FakeWorker:
        name = 3

    monkeypatch.setattr(distributed, "get_worker", lambda: FakeWorker())
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: seen.append(("set", device)))
    with pytest.raises(_Stop):
        executors._run_on_worker(jobs_of(config)[0], config, inputs)
    assert seen[-2:] == [("set", torch.device("cuda:1")), "cuda:1"]


def test_grid_without_cuda_fails_before_any_work(no_gpu, tmp_path):
    features = planted_recovery_world(n_concepts=30)
    inputs = planted_grid_inputs(features, (Level("full"),))
    store = ResultsStore(tmp_path / "store")
    for executor in ("inprocess", "dask"):
        config = planted_grid_config(features, device="cuda", sizes=(60,))
        with pytest.raises(ValueError, match="grid.device='cuda' was asked for but torch sees"):
            run_grid(config, inputs, store, executor=executor, progress=False)
    assert not store.done()
    with pytest.raises(ValueError, match="executor.jobs_per_gpu must be at least 1"):
        run_grid(planted_grid_config(features), inputs, store, jobs_per_gpu=0, progress=False)


def test_cuda_on_a_machine_without_it_exits_2_and_creates_no_run(no_gpu, tracking, capsys):
    from helpers import planted_triplets, repeated_triplets, write_things2023
    from modelrecovery.cli import main

    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 6))
    path = write_things2023(
        "human.tsv", planted_triplets(x, 200, seed=1), repeated_triplets(x, 20, 5, seed=2)
    )
    np.save("x.npy", x.astype(np.float32))
    data = ["--features", "x.npy", "--triplets", str(path), "--n-concepts", "30"]
    commands = [
        ["fit", *data, "--lam", "1", "--device", "cuda"],
        ["tune", *data, "--device", "cuda"],
        ["calibrate", "--run-id", "nope", "--triplets", str(path), "--device", "cuda"],
    ]
    for argv in commands:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [
            f"modelrecovery {argv[0]}: error: --device='cuda' was asked for but torch sees no "
            "CUDA device"
        ]
    assert main(["fit", *data, "--lam", "1", "--device", "gpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "argument --device: device must be one of cpu, cuda" in err[0]
    for override in ("probe.device=cuda", "grid.device=cuda"):
        for command in ("recover", "generators"):
            if command == "generators" and override.startswith("grid"):
                continue
            assert main([command, "--set", override, "executor.kind=inprocess"]) == 2
            err = capsys.readouterr().err
            assert f"{override.split('=')[0]}='cuda' was asked for" in err, err
    assert len(all_runs()) == 0
    assert not Path("data").exists()  # no world was built


def test_stages_log_the_device_and_reuse_across_devices(no_gpu, tracking, tmp_path):
    from helpers import planted_triplets, repeated_triplets, write_things2023
    from modelrecovery.study.inputs import load_human_data
    from modelrecovery.study.mlflow_tracker import MLflowTracker

    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 6)) / 2
    path = write_things2023(
        tmp_path / "human.tsv",
        planted_triplets(x, 300, seed=1),
        repeated_triplets(x, 30, 6, seed=2),
    )
    np.save(tmp_path / "x.npy", x.astype(np.float32))
    human = load_human_data(path, n_concepts=30)
    tune = TuneSpec(lams=(1.0,), n_folds=2)
    tracker = MLflowTracker("default")

    def build(device: str):
        setup = GeneratorSetup(ProbeSetup(Level("zero_shot"), device=device), tune, ceiling=0.6)
        return build_generators(
            {"x": tmp_path / "x.npy"},
            human,
            tracker=tracker,
            setups=[setup],
            progress=False,
        )[("zero_shot", "x")]

    first = build("auto")  # auto resolves to cpu here; logged as the device used
    runs = all_runs()
    for stage in ("generator", "tune", "fit", "calibrate"):
        part = runs[runs["tags.stage"] == stage]
        assert list(part["params.device"]) == ["cpu"], stage
    again = build("cpu")  # the device enters no reuse key
    assert again.reused and again.run_id == first.run_id
    assert len(all_runs()) == len(runs)


def test_mlproject_entry_points_pass_the_device_to_the_cli():
    import shlex

    import yaml

    from modelrecovery.cli import build_parser

    project = yaml.safe_load((Path(__file__).resolve().parents[1] / "MLproject").read_text())
    parser = build_parser()
    for entry in ("fit", "tune", "calibrate"):
        spec = project["entry_points"][entry]
        assert spec["parameters"]["device"]["default"] == "cpu"
        values = {
            name: str(p["default"]) if isinstance(p, dict) and "default" in p else "1"
            for name, p in spec["parameters"].items()
        } | {"device": "cuda:1"}
        args = parser.parse_args(shlex.split(spec["command"].format(**values))[1:])
        assert args.command == entry and args.device == "cuda:1"
