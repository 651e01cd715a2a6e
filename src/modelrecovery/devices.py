"""Where fits run: the ``device`` setting (``cpu``, ``cuda``, ``cuda:<n>``, ``auto``).

The setting is checked in two steps: :func:`check_device` accepts or rejects its spelling
(configurations are checked on any machine), :func:`require_device` also asks torch whether
the device exists here (call it before any work or MLflow run starts). Several jobs share
GPUs by :func:`worker_device`: worker ``i`` of a pool gets ``cuda:<i % n_gpus>``, and
:func:`pool_size` gives the pool ``jobs_per_gpu`` workers per GPU.

Results do not depend on the device beyond the last float bits, so the device is logged
with every run but enters no reuse key, job id or condition key.
"""

from __future__ import annotations

import re

DEVICES = ("cpu", "cuda", "auto")
DEVICE_HELP = "cpu (default), cuda, cuda:<n>, or auto (cuda when torch sees a GPU)"
_CUDA_INDEX = re.compile(r"cuda:(\d+)")


def check_device(device: object, name: str = "device") -> str:
    """``device`` as a string if it is ``cpu``, ``cuda``, ``auto`` or ``cuda:<n>``;
    otherwise a ValueError naming the parameter ``name``."""
    is_torch_device = hasattr(device, "type") and hasattr(device, "index")
    text = str(device).strip().lower() if isinstance(device, str) or is_torch_device else None
    if text is None or not (text in DEVICES or _CUDA_INDEX.fullmatch(text)):
        raise ValueError(f"{name} must be one of cpu, cuda, auto or cuda:<n>, got {device!r}")
    return text


def cuda_count() -> int:
    """The number of CUDA devices torch sees here (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve(device: str, n_gpus: int, name: str = "device") -> str:
    """The device ``device`` means on a machine with ``n_gpus`` CUDA devices: ``auto`` is
    ``cuda`` when there is one, else ``cpu``; ``cuda`` and ``cuda:<n>`` must exist."""
    device = check_device(device, name)
    if device == "auto":
        return "cuda" if n_gpus > 0 else "cpu"
    if device == "cpu":
        return device
    if n_gpus == 0:
        raise ValueError(f"{name}={device!r} was asked for but torch sees no CUDA device")
    match = _CUDA_INDEX.fullmatch(device)
    if match and int(match.group(1)) >= n_gpus:
        raise ValueError(
            f"{name}={device!r} was asked for but torch sees {n_gpus} CUDA device(s) "
            f"(cuda:0 to cuda:{n_gpus - 1})"
        )
    return device


def require_device(device: object, name: str = "device") -> str:
    """:func:`resolve` on this machine: the device to use, or a ValueError naming ``name``
    when it is misspelt or absent."""
    text = check_device(device, name)
    return resolve(text, 0 if text == "cpu" else cuda_count(), name)


def worker_device(device: str, worker_index: int, n_gpus: int, name: str = "device") -> str:
    """The device of pool worker ``worker_index`` (0, 1, ...) on a machine with ``n_gpus``
    GPUs: ``cpu`` stays ``cpu``; ``cuda`` (and ``auto`` with GPUs) spreads the workers over
    the GPUs round-robin (``cuda:<i % n_gpus>``); ``cuda:<n>`` puts every worker on GPU n."""
    if worker_index < 0:
        raise ValueError(f"worker_index must be >= 0, got {worker_index}")
    device = resolve(device, n_gpus, name)
    if device == "cuda":
        return f"cuda:{worker_index % n_gpus}"
    return device


def pool_size(
    device: str, n_gpus: int, jobs_per_gpu: int, cpu_workers: int, name: str = "device"
) -> int:
    """How many workers a local pool starts: ``cpu_workers`` on the CPU; on GPUs
    ``jobs_per_gpu`` per GPU used (every visible GPU for ``cuda``, one for ``cuda:<n>``)."""
    if jobs_per_gpu < 1:
        raise ValueError(f"jobs_per_gpu must be at least 1, got {jobs_per_gpu}")
    device = resolve(device, n_gpus, name)
    if device == "cpu":
        return cpu_workers
    return jobs_per_gpu * (n_gpus if device == "cuda" else 1)
