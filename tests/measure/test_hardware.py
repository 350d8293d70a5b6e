"""Hardware fingerprints: what they hold and how they tell machines apart."""

from __future__ import annotations

from dataclasses import replace

import torch

from nas.measure.hardware import Hardware, cpu_model, fingerprint


def test_fingerprint_names_device_cpu_threads_dtype_and_torch() -> None:
    hw = fingerprint(torch.device("cpu"))
    assert hw.device == "cpu" and hw.dtype == "fp32"
    assert hw.threads == torch.get_num_threads()
    assert hw.cpu == cpu_model() and hw.cpu
    assert hw.torch == torch.__version__.split("+")[0]
    assert Hardware.from_dict(hw.to_dict()) == hw
    assert str(hw.threads) + "t" in hw.key()


def test_fingerprint_follows_the_thread_count(monkeypatch) -> None:
    before = fingerprint(torch.device("cpu"))
    old = torch.get_num_threads()
    torch.set_num_threads(old + 1)
    try:
        after = fingerprint(torch.device("cpu"))
    finally:
        torch.set_num_threads(old)
    assert after.key() != before.key()
    assert before.differences(after) == [f"threads: {old} -> {old + 1}"]


def test_differences_list_every_field_that_differs() -> None:
    hw = fingerprint(torch.device("cpu"))
    other = replace(hw, cpu="Other CPU", dtype="bf16")
    assert hw.differences(other) == [f"cpu: {hw.cpu} -> Other CPU", "dtype: fp32 -> bf16"]
    assert hw.differences(hw) == []
