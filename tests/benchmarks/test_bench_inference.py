"""benchmarks/bench_inference.py's contention timing: quiet and busy steps alternate in one
process, and the busy processes really run during the busy steps and are stopped during the
quiet ones (their state in /proc), so that the slowdown compares steps taken side by side."""

from pathlib import Path

import pytest


def _state(pid):
    """The process state letter of /proc/<pid>/stat: R running, S sleeping, T stopped."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("steps", [1, 2, 3])
def test_busy_steps_alternate_with_quiet_ones(steps, monkeypatch, load_bench):
    bench = load_bench("bench_inference")
    monkeypatch.setattr(bench.Busy, "SETTLE_S", 0.05)
    seen = []
    holder = {}
    original_enter = bench.Busy.__enter__

    def enter(self):
        holder["busy"] = self
        return original_enter(self)

    monkeypatch.setattr(bench.Busy, "__enter__", enter)

    def step():
        busy = holder.get("busy")
        states = {_state(p.pid) for p in busy.procs} if busy else set()
        seen.append(states)
        return len(seen)

    quiet, busy_times, out = bench._time(step, steps, busy=2)
    assert len(quiet) == len(busy_times) == steps
    assert out == len(seen) == 2 + 2 * steps
    # warm-up (two steps) with the others not started, then quiet/busy, busy/quiet, ...
    expected = [False, True, True, False, False, True][: 2 * steps]
    for states, contended in zip(seen[2:], expected, strict=True):
        assert len(states) == 1
        assert (states != {"T"}) == contended, (states, contended)
    assert all(p.poll() is not None for p in holder["busy"].procs)  # killed afterwards


def test_quiet_only_without_busy(load_bench):
    bench = load_bench("bench_inference")
    calls = []
    quiet, busy, out = bench._time(lambda: calls.append(1) or len(calls), 3)
    assert (len(quiet), busy, out) == (3, [], 5)


def test_pair_ratios(load_bench):
    bench = load_bench("bench_inference")
    assert bench.pair_ratios([1.0, 2.0], [1.5, 5.0]) == [1.5, 2.5]
    with pytest.raises(ValueError):
        bench.pair_ratios([1.0], [1.0, 2.0])


def test_workers_interleave_and_steps_pool(monkeypatch, capsys, load_bench):
    """torchvision, minissd, then minissd, torchvision, ...; every step of a framework pooled,
    quiet and busy ones still side by side; the largest peak; a ratio printed per round."""
    bench = load_bench("bench_inference")
    calls = []

    def fake_worker(name, batch, steps, threads, weights_path, busy):
        calls.append(name)
        k = len(calls)
        base = 2.0 if name == "torchvision" else 1.0
        return dict(times=[base * k] * steps, busy_times=[3 * base * k] * steps,
                    rss_peak=1000 * k, detections=[[[], [], []]])

    monkeypatch.setattr(bench, "run_worker", fake_worker)
    r = bench.measure(1, 2, 2, "unused.npz", 1, rounds=3)
    assert calls == ["torchvision", "minissd", "minissd", "torchvision", "torchvision",
                     "minissd"]
    assert r["torchvision"]["times"] == [2.0, 2.0, 8.0, 8.0, 10.0, 10.0]
    assert r["minissd"]["busy_times"] == [6.0, 6.0, 9.0, 9.0, 18.0, 18.0]
    assert bench.pair_ratios(r["minissd"]["times"], r["minissd"]["busy_times"]) == [3.0] * 6
    assert (r["torchvision"]["rss_peak"], r["minissd"]["rss_peak"]) == (5000, 6000)
    out = capsys.readouterr().out
    assert out.count("minissd / torchvision") == 3
    assert "round 2 batch 1: minissd / torchvision  0.38x" in out  # 3 / 8
