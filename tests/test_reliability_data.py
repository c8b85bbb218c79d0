"""Dataset sanity at load (issue 15): garbage datasets are refused with one line saying what
to do, on the shared path of local files, hub-like splits and registered builders."""
from __future__ import annotations

import json
import sys
import types

import pandas as pd
import pytest

from beexbench.data import assemble_task, load_task
from beexbench.data.tasks import MIN_PER_CLASS, MIN_ROWS
from beexbench.errors import BeexError


def csv_file(tmp_path, labels, name="d.csv", header="text,label"):
    path = tmp_path / name
    path.write_text("\n".join([header] + [f"row number {i},{lab}" for i, lab in enumerate(labels)]) + "\n")
    return path


def spec(path, extra=""):
    return f"csv:{path}?text=text&label=label{extra}"


def refused(task: str, *needles: str) -> str:
    with pytest.raises(BeexError) as err:
        load_task(task)
    msg = str(err.value)
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, msg
    return msg


def balanced(n=40):
    return ["pos" if i % 2 else "neg" for i in range(n)]


# --------------------------------------------------------------------------- #
# Sizes
# --------------------------------------------------------------------------- #
def test_header_only_csv_refused(tmp_path):
    refused(spec(csv_file(tmp_path, [])), "0 usable rows", "add rows", str(MIN_ROWS))


def test_three_row_csv_refused(tmp_path):
    refused(spec(csv_file(tmp_path, ["pos", "neg", "pos"])), "3 usable rows", "add rows")


def test_enough_rows_accepted_and_every_split_holds_every_class(tmp_path):
    d = load_task(spec(csv_file(tmp_path, balanced(MIN_ROWS))))
    for split in (d.train, d.val, d.test):
        assert set(split["label"]) == {0, 1}


def test_header_only_csv_is_one_line_in_the_cli(tmp_path, monkeypatch, capsys):
    from beexbench.cli import main

    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    with pytest.raises(SystemExit) as exc:
        main(["run", "--models", "fp32", "--tasks", spec(csv_file(tmp_path, [])),
              "--results", str(tmp_path / "res"), "--models-dir", str(tmp_path / "m")])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and err.startswith("error: dataset 'd' has 0 usable rows") and "\n" not in err


# --------------------------------------------------------------------------- #
# Classes
# --------------------------------------------------------------------------- #
def test_one_class_refused(tmp_path):
    refused(spec(csv_file(tmp_path, ["pos"] * 40)), "single class 'pos'", "training split")


def test_class_too_rare_for_every_split_refused(tmp_path):
    labels = balanced(60)
    refused(spec(csv_file(tmp_path, labels + ["odd"] * 2)), "class 'odd' has 2 examples", f"at least {MIN_PER_CLASS}")
    d = load_task(spec(csv_file(tmp_path, labels + ["odd"] * MIN_PER_CLASS, name="e.csv")))
    for split in (d.train, d.val, d.test):
        assert set(split["label"]) == {0, 1, 2}


@pytest.mark.parametrize("marker", ["", "NaN", "nan", " null ", "N/A"])
def test_missing_labels_in_csv_refused_not_classes(tmp_path, marker):
    labels = balanced(40)
    labels[7] = marker
    refused(spec(csv_file(tmp_path, labels)), "1 of 40 rows have no label", "data row 8", "&missing=drop")


def test_missing_labels_dropped_only_when_asked(tmp_path):
    labels = balanced(40) + ["NaN", "nan", ""]
    d = load_task(spec(csv_file(tmp_path, labels), "&missing=drop"))
    assert d.card.label_names == ("neg", "pos") and d.card.num_examples == 40
    refused(spec(csv_file(tmp_path, labels), "&missing=maybe"), "'missing' in dataset", "is 'maybe': use one of refuse, drop")


def test_null_labels_in_jsonl_refused(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"text": f"row {i}", "label": [0, 1, None][i % 3]}) + "\n"
                            for i in range(60)))
    refused(f"jsonl:{path}", "20 of 60 rows have no label", "empty")


def test_float_labels_on_classification_refused_with_hint(tmp_path):
    labels = [f"{i / 7:.3f}" for i in range(60)]
    refused(spec(csv_file(tmp_path, labels)), "non-integer numbers", "&problem=regression")
    d = load_task(spec(csv_file(tmp_path, labels), "&problem=regression"))
    assert d.card.problem == "regression" and d.card.num_labels == 1


def test_whole_numbers_and_named_decimals_stay_classes(tmp_path):
    d = load_task(spec(csv_file(tmp_path, ["1.0" if i % 2 else "2.0" for i in range(40)])))
    assert d.card.label_names == ("1.0", "2.0")  # whole numbers: classes, named as written
    d = load_task(spec(csv_file(tmp_path, ["0.5" if i % 2 else "1.5" for i in range(40)], name="n.csv"),
                       "&labels=0.5,1.5"))
    assert d.card.label_names == ("0.5", "1.5")


# --------------------------------------------------------------------------- #
# Regression
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("bad, needle", [("nan", "no label"), ("inf", "finite"), ("", "no label")])
def test_regression_labels_must_be_present_and_finite(tmp_path, bad, needle):
    labels = [str(i / 3) for i in range(40)]
    labels[5] = bad
    refused(spec(csv_file(tmp_path, labels), "&problem=regression"), needle)


def test_constant_regression_target_refused(tmp_path):
    refused(spec(csv_file(tmp_path, ["0.5"] * 40), "&problem=regression"), "single label value")


# --------------------------------------------------------------------------- #
# The shared path: registered builders and hub-like splits
# --------------------------------------------------------------------------- #
def frame(labels):
    return pd.DataFrame({"text": [f"text {i}" for i in range(len(labels))], "label": labels})


def test_builder_frames_get_the_same_checks():
    with pytest.raises(BeexError, match="no label"):
        assemble_task(frame(balanced(38) + [None, float("nan")]), name="built")
    with pytest.raises(BeexError, match="&problem=regression"):
        assemble_task(frame([i / 3 for i in range(40)]), name="built")


def test_given_splits_need_two_classes_in_train_and_no_empty_split():
    ok = frame(balanced(20))
    with pytest.raises(BeexError, match="single class"):
        assemble_task(name="hub", splits={"train": frame(["a"] * 20), "val": ok, "test": ok})
    with pytest.raises(BeexError, match="empty val split"):
        assemble_task(name="hub", splits={"train": ok, "val": frame([]), "test": ok})


def test_hub_split_of_train_promises_every_class_in_val(monkeypatch):
    """A hub dataset with train and a labelled test: val is a stratified 10% of train."""

    class Split:
        def __init__(self, labels):
            self.labels = labels
            self.features = {"label": types.SimpleNamespace(names=["a", "b", "c"], dtype="int64")}

        def to_pandas(self):
            return frame(self.labels)

    train = [0, 1] * 30 + [2] * 3  # class "c": too few for one in the 10% val
    fake = types.ModuleType("datasets")
    fake.load_dataset = lambda name, config, revision=None: {"train": Split(train), "test": Split([0, 1, 2] * 5)}
    monkeypatch.setitem(sys.modules, "datasets", fake)
    with pytest.raises(BeexError, match="class 'c' has 3 examples.*train, val"):
        load_task("hf:someone/data")
    fake.load_dataset = lambda name, config, revision=None: {
        "train": Split([0, 1] * 30 + [2] * 10), "test": Split([0, 1, 2] * 5)}
    d = load_task("hf:someone/data")
    assert set(d.val["label"]) == {0, 1, 2}
