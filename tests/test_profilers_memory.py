"""Memory: the sampled RSS peak sees a known allocation."""
from __future__ import annotations

import dataclasses
import gc
import mmap
import time

import numpy as np

import pytest
import torch

from beexbench.profilers.memory import MemoryRecord, track_memory

MB = 2**20


def test_peak_rss_sees_allocation():
    gc.collect()  # earlier tests' garbage freed inside the window would offset the allocation
    with track_memory("cpu") as mem:
        # 50 MB of fresh pages, touched: an anonymous mapping, so the allocator cannot hand back
        # pages an earlier test freed but the process kept resident (seen in a full run: +8 KiB)
        block = mmap.mmap(-1, 50 * MB)
        np.frombuffer(block, dtype=np.uint8)[:] = 1
        time.sleep(0.02)
        block.close()
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
