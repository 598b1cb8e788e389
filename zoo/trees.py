"""Reading model-tree zoos: multi-hot class labels, family structure, per-role checkpoint epochs.

A tree zoo (``kind: model_tree``) stores, besides the usual models table, the attribute ``tree``
(``docs/FORMAT.md``): the source task's class ids and the names of the multi-hot columns
``class_<id>``, children per base and family, and the checkpoint epochs of bases and of children.
Parents and task vectors come from :meth:`zoo.store.Zoo.parent` and :meth:`zoo.store.Zoo.task_vector`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from zoo.errors import ZooError

if TYPE_CHECKING:  # the store calls into this module; at run time only the type is needed
    from zoo.store import Zoo


def tree_meta(z: "Zoo") -> dict:
    """The ``tree`` attribute of a model-tree zoo (error for other kinds)."""
    tree = z.meta.get("tree")
    if tree is None:
        raise ZooError(f"{z.path} is a {z.meta.get('kind')!r} zoo, not a model tree (attribute 'tree' missing)")
    return dict(tree)


def class_ids(z: Zoo) -> list[int]:
    """The source task's original class ids, in label order (the columns of :func:`class_multi_hot`)."""
    return [int(c) for c in tree_meta(z)["class_ids"]]


def class_multi_hot(z: Zoo, ids: Sequence[int] | None = None) -> np.ndarray:
    """Multi-hot class labels ``[n_models (or len(ids)), n_classes]`` bool: entry ``[m, k]`` is True when
    model ``m`` was trained on class ``class_ids(z)[k]`` (a class-subset child: its subset; any other
    model: every class). Read from the ``class_<id>`` columns of the models table."""
    columns = tree_meta(z)["class_columns"]
    planned = z.planned
    missing = [c for c in columns if c not in planned.columns]
    if missing:
        raise ZooError(f"{z.path}: models table lacks the multi-hot columns {missing[:3]} listed in attribute 'tree'")
    labels = planned[columns].to_numpy(dtype=bool)
    return labels if ids is None else labels[np.asarray(ids, dtype=np.int64)]


def children_of(z: Zoo, model_id: int) -> np.ndarray:
    """Sorted ids ``[n_children]`` of the models fine-tuned from ``model_id``."""
    planned = z.planned
    if "parent_id" not in planned.columns:
        return np.zeros(0, dtype=np.int64)
    return np.sort(planned.loc[planned["parent_id"] == int(model_id), "model_id"].to_numpy().astype(np.int64))


def checkpoint_epochs_of(z: Zoo, model_id: int) -> list[int]:
    """The epochs of model ``model_id``'s checkpoints: bases and children of a tree count their own
    epochs (a child's epoch 0 is its parent's final weights); other zoos: ``z.checkpoint_epochs``."""
    meta = z.meta
    if "tree" not in meta:
        return list(meta["checkpoint_epochs"])
    role = str(z.row(model_id)["tree_role"])  # range-checked, with an error naming the ids
    return [int(e) for e in meta["tree"]["checkpoint_epochs"][role]]


def tree_info(z: Zoo) -> dict[str, Any]:
    """Summary for ``weightzoo info``: bases, children (total, per base and family), classes, epochs."""
    tree = tree_meta(z)
    return {"n_bases": tree["n_bases"], "n_children": tree["n_children"],
            "children_per_base": tree["children_per_base"], "n_classes": len(tree["class_ids"]),
            "shared_tasks": tree["shared_tasks"], "checkpoint_epochs": tree["checkpoint_epochs"]}
