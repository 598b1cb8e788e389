"""Derived-task options of ``zoo.tasks`` (the tasks model-tree children are fine-tuned on)."""

import numpy as np
import pytest
import torch

from zoo.errors import SpecError
from zoo.format import short_hash
from zoo.tasks import build_task, normalize_task_spec

SOURCE = {"source": "mnist1d", "train_fraction": 0.25}


@pytest.fixture(scope="module")
def source():
    return build_task(SOURCE)


def test_specs_without_derived_options_keep_their_canonical_form_and_hash():
    spec = normalize_task_spec(SOURCE)
    assert not {"class_subset", "label_permutation", "corruption"} & set(spec)
    derived = normalize_task_spec({**SOURCE, "class_subset": [7, 2, 3], "corruption": {"kind": "scale", "level": 2}})
    assert derived["class_subset"] == [2, 3, 7] and derived["corruption"] == {"kind": "scale", "level": 2.0}
    assert normalize_task_spec(derived) == derived  # a fixed point
    assert short_hash(derived) != short_hash(spec)
    assert normalize_task_spec({**SOURCE, "class_subset": None}) == spec


def test_class_subset_keeps_the_label_space_and_the_parents_inputs(source):
    child = build_task({**SOURCE, "class_subset": [2, 3, 7]})
    assert child.n_classes == source.n_classes == 10 and child.classes == source.classes
    for split in ("train", "test"):
        xs, ys = source.split(split)
        xc, yc = child.split(split)
        keep = np.isin(ys.numpy(), [2, 3, 7])
        assert torch.equal(xc, xs[keep]) and torch.equal(yc, ys[keep])  # same normalisation as the parent
    assert set(child.y_train.tolist()) == {2, 3, 7}


def test_class_subset_within_relabelled_classes_uses_original_ids():
    parent = build_task({"source": "digits", "classes": [3, 5, 8, 9]})
    child = build_task({"source": "digits", "classes": [3, 5, 8, 9], "class_subset": [8, 3]})
    assert child.n_classes == 4 and set(child.y_test.tolist()) == {0, 2}
    assert torch.equal(child.x_test, parent.x_test[np.isin(parent.y_test.numpy(), [0, 2])])
    with pytest.raises(SpecError, match="field 'task.class_subset': class ids \\[4\\]"):
        build_task({"source": "digits", "classes": [3, 5, 8, 9], "class_subset": [3, 4]})


def test_label_permutation_maps_every_label(source):
    perm = [1, 2, 0, 3, 4, 5, 6, 7, 9, 8]
    child = build_task({**SOURCE, "label_permutation": perm})
    assert torch.equal(child.x_train, source.x_train)
    assert torch.equal(child.y_train, torch.tensor(perm)[source.y_train])
    assert torch.equal(child.y_test, torch.tensor(perm)[source.y_test])
    with pytest.raises(SpecError, match="field 'task.label_permutation': has 3 entries but the task has 10 classes"):
        build_task({**SOURCE, "label_permutation": [2, 0, 1]})


def test_corruptions_noise_shift_scale(source):
    noisy = build_task({**SOURCE, "corruption": {"kind": "noise", "level": 0.5, "seed": 3}})
    again = build_task({**SOURCE, "corruption": {"kind": "noise", "level": 0.5, "seed": 3}})
    other = build_task({**SOURCE, "corruption": {"kind": "noise", "level": 0.5, "seed": 4}})
    assert torch.equal(noisy.x_train, again.x_train) and not torch.equal(noisy.x_train, other.x_train)
    diff = (noisy.x_train - source.x_train).double()
    assert abs(diff.std().item() - 0.5) < 0.01 and abs(diff.mean().item()) < 0.01
    assert torch.equal(noisy.y_train, source.y_train) and not torch.equal(noisy.x_test, source.x_test)

    right = build_task({**SOURCE, "corruption": {"kind": "shift", "level": 3}})
    assert torch.equal(right.x_train[:, 3:], source.x_train[:, :-3]) and (right.x_train[:, :3] == 0).all()
    left = build_task({**SOURCE, "corruption": {"kind": "shift", "level": -2}})
    assert torch.equal(left.x_test[:, :-2], source.x_test[:, 2:]) and (left.x_test[:, -2:] == 0).all()

    scaled = build_task({**SOURCE, "corruption": {"kind": "scale", "level": 2.5}})
    assert torch.allclose(scaled.x_train, source.x_train * 2.5, atol=1e-6)
    assert torch.allclose(scaled.x_test, source.x_test * 2.5, atol=1e-6)


def test_shift_of_2d_images_moves_the_last_axis():
    source = build_task("digits")
    shifted = build_task({"source": "digits", "corruption": {"kind": "shift", "level": 1}})
    assert torch.equal(shifted.x_train[..., 1:], source.x_train[..., :-1])
    with pytest.raises(SpecError, match="field 'task.corruption.level': a shift of 8 positions"):
        build_task({"source": "digits", "corruption": {"kind": "shift", "level": 8}})


@pytest.mark.parametrize("options,field", [
    ({"class_subset": [3]}, "task.class_subset"),
    ({"class_subset": [3, 3]}, "task.class_subset"),
    ({"class_subset": "37"}, "task.class_subset"),
    ({"label_permutation": [0, 0, 1]}, "task.label_permutation"),
    ({"label_permutation": 5}, "task.label_permutation"),
    ({"corruption": "noise"}, "task.corruption"),
    ({"corruption": {"kind": "blur", "level": 1}}, "task.corruption.kind"),
    ({"corruption": {"kind": "noise"}}, "task.corruption.level"),
    ({"corruption": {"kind": "noise", "level": -1}}, "task.corruption.level"),
    ({"corruption": {"kind": "shift", "level": 1.5}}, "task.corruption.level"),
    ({"corruption": {"kind": "shift", "level": 0}}, "task.corruption.level"),
    ({"corruption": {"kind": "scale", "level": 2, "seed": 1}}, "task.corruption.seed"),
    ({"corruption": {"kind": "scale", "level": 2, "sigma": 1}}, "task.corruption.sigma"),
])
def test_bad_derived_options_name_the_field(options, field):
    with pytest.raises(SpecError, match=field.replace(".", r"\.")):
        normalize_task_spec({**SOURCE, **options})
