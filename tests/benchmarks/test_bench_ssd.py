"""benchmarks/bench_ssd.py interleaves the two frameworks' workers (torch, minissd, minissd,
torch, ...) and pools their steps: the time ratio is not a comparison of two moments minutes
apart on a machine whose speed drifts."""


def test_workers_interleave_and_steps_pool(monkeypatch, capsys, load_bench):
    bench = load_bench("bench_ssd")
    calls = []

    def fake_worker(name, batch, steps, threads, keep_freed=False):
        calls.append(name)
        k = len(calls)
        base = 2.0 if name == "torch" else 1.0
        return dict(times=[base * k] * steps, rss_peak=1000 * k, rss_model=100 * k,
                    loss=1.0, grad_norm=2.0)

    monkeypatch.setattr(bench, "run_worker", fake_worker)
    assert bench.main(["--batch", "2", "--steps", "2", "--rounds", "3"]) == 0
    assert calls == ["torch", "minissd", "minissd", "torch", "torch", "minissd"]
    out = capsys.readouterr().out
    # torch's steps 2, 8, 10 (each twice), minissd's 2, 3, 6: medians 8 and 3
    assert "time ratio   minissd / torch:  0.38x" in out
    # the largest peak of each: torch's 5th worker (5000 KiB), minissd's 6th (6000 KiB)
    assert "peak RSS     minissd / torch:  1.20x" in out
    assert out.count("minissd / torch:") == 3 + 3  # a ratio per round, then time/peak/working


def test_pooled_keeps_every_step_and_the_largest_peak(load_bench):
    bench = load_bench("bench_ssd")
    runs = [dict(times=[1.0, 2.0], rss_peak=10, rss_model=1, loss=0.5, grad_norm=3.0),
            dict(times=[3.0], rss_peak=30, rss_model=2, loss=0.5, grad_norm=3.0),
            dict(times=[4.0], rss_peak=20, rss_model=3, loss=0.5, grad_norm=3.0)]
    r = bench.pooled(runs)
    assert r["times"] == [1.0, 2.0, 3.0, 4.0]
    assert (r["rss_peak"], r["rss_model"]) == (30, 2)
