"""The library's SCL step computes what the per-sample reference loop computes
(benchmarks/step_reference.py, which benchmarks/bench_step.py times)."""

import torch

from benchmarks import step_reference as bench

SMALL = bench.paper_settings(m=50)  # the paper's settings, 50 negatives for a 300-slot bank


def test_reference_matches_library_on_clustered_input(device):
    """The library's step on ``device`` against the loop on the CPU."""
    c = bench.equality_check(bench.paper_settings(), device)
    assert c["same_selection"]
    assert c["X_slots_written_repeatedly"] == 0
    assert c["loss_diff"] < 1e-9 and c["grad_diff"] < 1e-9
    assert max(c["G_diff"], c["L_diff"], c["X_diff_not_repeated"]) < 1e-6  # the update runs in float32
    assert bench.check_passes(c)


def test_clustered_input_has_disjoint_positives_and_needs_the_camera_mask():
    inp = bench.clustered_inputs(k=SMALL.k)
    with_penalty, _ = bench.library_step(inp, SMALL)
    without, _ = bench.library_step(inp, bench.paper_settings(m=50, lambda_c=0.0))
    assert bench.written_once(with_penalty.pos_idx, len(inp.G))[with_penalty.pos_idx.flatten()].all()
    assert (with_penalty.pos_idx != without.pos_idx).any()  # the check would notice a wrong mask


def test_repeated_writes_are_the_one_documented_difference():
    # 8 anchors x 8 positives in 60 slots: positives overlap, so some mixture slots get two writes.
    inp = bench.random_inputs(num_slots=60, dim=16, parts=8, batch=8, cameras=3, seed=1)
    inp = inp._replace(**{k: v.double() for k, v in inp._asdict().items() if v.is_floating_point()})
    s = bench.paper_settings(m=10)
    lib, _ = bench.library_step(inp, s)
    ref, _ = bench.per_sample_step(inp, s)
    c = bench.compare(lib, ref)
    assert c["same_selection"] and c["loss_diff"] < 1e-9 and c["grad_diff"] < 1e-9
    assert max(c["G_diff"], c["L_diff"], c["X_diff_not_repeated"]) < 1e-6
    repeated = ~bench.written_once(lib.pos_idx, 60) & (torch.bincount(lib.pos_idx.flatten(), minlength=60) > 0)
    assert repeated.any()
    # the library moves a repeated slot toward the mean of its writes, the loop one write at a time
    assert (lib.X - ref.X)[repeated].abs().amax(1).min() > 1e-6
