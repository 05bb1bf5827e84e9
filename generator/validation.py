"""Checks of user-given numbers and devices, shared by the command line, study specs and the library.

Every value a user gives (a seed, a device, a count, a float option) goes
through one of these functions *before* any file, folder or database is
created, so that a bad value ends in one :class:`InvalidInputError` line
instead of a traceback or a study whose every trial fails.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from pathlib import Path

from generator.errors import InvalidInputError

#: Largest seed accepted (numpy's and torch's generators both take it).
MAX_SEED = 2**32 - 1

#: Device types a torch device string may name.
DEVICE_TYPES = ("cpu", "cuda", "mps")

_DEVICE_RE = re.compile(r"(cpu|cuda|mps)(:\d+)?")


def check_seed(seed: int, what: str = "--seed") -> int:
    """Return ``seed`` if it is a whole number in ``[0, 2**32 - 1]``.

    Raises
    ------
    InvalidInputError
        Naming ``what``, for a negative, huge or non-integer seed.
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed <= MAX_SEED:
        raise InvalidInputError(f"{what}: must be a whole number in [0, {MAX_SEED}], got {seed!r}")
    return seed


def check_finite(value: float, what: str, *, minimum: float | None = None, maximum: float | None = None) -> float:
    """Return ``value`` as a float if it is finite (and within ``[minimum, maximum]`` where given).

    Raises
    ------
    InvalidInputError
        Naming ``what``, for NaN, infinity or a value out of range.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{what}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise InvalidInputError(f"{what}: must be a finite number, got {value!r}")
    if minimum is not None and number < minimum:
        raise InvalidInputError(f"{what}: must be at least {minimum:g}, got {number:g}")
    if maximum is not None and number > maximum:
        raise InvalidInputError(f"{what}: must be at most {maximum:g}, got {number:g}")
    return number


def check_device(device: object, what: str = "--device") -> str:
    """Return ``device`` as a string if torch can use it on this machine.

    Accepts ``cpu``, ``cuda``, ``cuda:N`` and ``mps`` (or a :class:`torch.device`).

    Raises
    ------
    InvalidInputError
        Naming ``what``, for an unknown device (``tpu``) or one this machine
        does not have (``cuda`` without a GPU, ``cuda:3`` with two GPUs).
    """
    text = str(device).strip()
    if not _DEVICE_RE.fullmatch(text):
        raise InvalidInputError(f"{what}: unknown device {text!r} (use cpu, cuda, cuda:N or mps)")
    import torch

    kind, _, index = text.partition(":")
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InvalidInputError(f"{what}: {text} is not available (this machine has no CUDA GPU that torch can use); use cpu")
        if index and int(index) >= count:
            raise InvalidInputError(f"{what}: {text} is not available (this machine has {count} CUDA GPU(s): cuda:0..cuda:{count - 1})")
    elif kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InvalidInputError(f"{what}: {text} is not available on this machine; use cpu")
    return text


def physical_memory() -> int:
    """Bytes of physical memory of this machine (0 when unknown)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 0


def check_memory(n_bytes: float, what: str) -> None:
    """Raise when holding ``n_bytes`` needs more than this machine's physical memory.

    The limit is the machine's total memory (not what is free right now), so
    the check gives the same answer on every run.

    Raises
    ------
    InvalidInputError
        Naming ``what`` and the sizes.
    """
    total = physical_memory()
    if total and n_bytes > total:
        raise InvalidInputError(f"{what}: needs about {_size(n_bytes)} of memory, more than this machine's {_size(total)}")


def _size(n_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n_bytes < 1024 or unit == "PiB":
            return f"{n_bytes:.3g} {unit}"
        n_bytes /= 1024
    raise AssertionError("unreachable")


def check_output_folder(path: Path, what: str = "--out") -> None:
    """Raise unless ``path`` is a folder that does not exist yet or is empty.

    A command that writes a set of files into a folder would otherwise leave
    the files of an earlier, larger run beside its own (stale samples that its
    table does not list).

    Raises
    ------
    InvalidInputError
        Naming ``what``, for a file, or a folder that already holds something.
    """
    if not path.exists():
        return
    if not path.is_dir():
        raise InvalidInputError(f"{what}: {path} exists and is not a folder")
    entries = sorted(p.name for p in path.iterdir())
    if entries:
        raise InvalidInputError(f"{what}: {path} is not empty (it holds {entries[0]}{' and more' if len(entries) > 1 else ''}); "
                                "give a new or empty folder")


#: Lightning accelerators a training config may name.
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")


def check_accelerator(accelerator: str, devices: object, what: str = "trainer") -> None:
    """Raise unless Lightning can train on ``accelerator`` with ``devices`` on this machine.

    ``auto`` always passes (Lightning picks what is there); ``gpu``/``cuda``
    need as many CUDA GPUs as ``devices`` asks for (an int or a list of indices).

    Raises
    ------
    InvalidInputError
        Naming ``what.accelerator`` or ``what.devices``.
    """
    name = str(accelerator).strip().lower()
    if name not in ACCELERATORS:
        raise InvalidInputError(f"{what}.accelerator: unknown accelerator {accelerator!r} (use {', '.join(ACCELERATORS)})")
    if name in ("gpu", "cuda"):
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InvalidInputError(f"{what}.accelerator: {accelerator} is not available (this machine has no CUDA GPU); use cpu")
        wanted = len(devices) if isinstance(devices, list) else devices if isinstance(devices, int) else None
        if isinstance(devices, list) and any(int(i) >= count for i in devices):
            raise InvalidInputError(f"{what}.devices: {devices} names a GPU this machine lacks (it has {count})")
        if wanted is not None and wanted > count:
            raise InvalidInputError(f"{what}.devices: {wanted} GPUs asked for, this machine has {count}")
    elif name == "mps":
        check_device("mps", f"{what}.accelerator")
