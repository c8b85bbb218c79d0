"""Memory: the sampled RSS peak sees a known allocation."""
from __future__ import annotations

import dataclasses
import gc
import time

import pytest
import torch

from beexbench.profilers.memory import MemoryRecord, track_memory

MB = 2**20


def test_peak_rss_sees_allocation():
    gc.collect()  # earlier tests' garbage freed inside the window would offset the allocation (seen in a full run)
    with track_memory("cpu") as mem:
        x = torch.ones(50 * MB // 4)  # 50 MB of float32, touched
        time.sleep(0.02)
        del x
    rec = mem.record
    assert rec.unit == "bytes" and rec.target == "cpu"
    assert rec.peak_rss_delta_bytes >= 40 * MB
    assert rec.peak_rss_bytes == rec.baseline_rss_bytes + rec.peak_rss_delta_bytes
    assert rec.device_peak_allocated_bytes is None
    assert "RSS" in rec.method and rec.samples >= 1


def test_record_frozen_and_round_trips():
    with track_memory() as mem:
        pass
    rec = mem.record
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.peak_rss_bytes = 0
    assert MemoryRecord.from_dict(rec.to_dict()) == rec


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_peak_allocated():
    with track_memory("cuda") as mem:
        y = torch.empty(64 * MB, dtype=torch.uint8, device="cuda")
        del y
    rec = mem.record
    assert rec.device_peak_allocated_bytes - rec.device_baseline_allocated_bytes >= 64 * MB
