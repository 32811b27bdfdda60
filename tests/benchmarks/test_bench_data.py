"""benchmarks/bench_data.py runs end to end on a small VOC folder: minissd's pipeline timed, the
torchvision side timed or reported missing, the loader's rate measured."""

from minissd.data import SYNTHETIC_CLASSES, make_synthetic_voc


def test_pipeline_rates_are_measured(tmp_path, capsys, load_bench):
    make_synthetic_voc(tmp_path, num_train=12, num_test=1, image_size=96)
    bench = load_bench("bench_data")
    assert bench.main(["--data", str(tmp_path), "--split", "train", "--classes",
                       ",".join(SYNTHETIC_CLASSES), "--repeats", "1", "--batch", "4",
                       "--no-fed"]) == 0
    out = capsys.readouterr().out
    line = next(t for t in out.splitlines() if t.strip().startswith("minissd:"))
    assert float(line.split()[1]) > 0  # images per second
    assert "torchvision" in out  # its rate, or why it is missing


def test_missing_folder_is_one_line(tmp_path, capsys, load_bench):
    assert load_bench("bench_data").main(["--data", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.strip().endswith("no such folder")
