"""Labels in a tree (``train --hierarchy``): ``animals/birds/robin`` is a leaf under ``animals/birds`` under ``animals``.

The model scores the leaves; a node's probability is the sum of its leaves' (calibrated, so a node's is too). An
answer walks down from the top, taking at each level the most probable child of the node above, and stops at the
deepest node whose probability reaches the model's target: "birds" when robin and sparrow cannot be told apart,
"robin" when they can. Every answer lists each level's best node and its probability (``levels``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

#: The probability a node needs for an answer to go down to it, unless the model says otherwise.
DEFAULT_TARGET = 0.9
SEP = "/"


@dataclass(frozen=True)
class Tree:
    """The tree of a model's leaf ``labels`` (paths joined with ``/``)."""

    labels: tuple[str, ...]

    @cached_property
    def depth(self) -> int:
        return max(len(lab.split(SEP)) for lab in self.labels)

    def ancestor(self, label: str, level: int) -> str:
        """``label``'s node at ``level`` (1: the top), or the leaf itself when it is shallower."""
        return SEP.join(label.split(SEP)[:level])

    def nodes(self, level: int) -> list[str]:
        """The distinct nodes at ``level``, in the order of the labels."""
        return list(dict.fromkeys(self.ancestor(lab, level) for lab in self.labels))

    def node_probabilities(self, probabilities: np.ndarray, level: int) -> tuple[list[str], np.ndarray]:
        """The nodes at ``level`` and their probabilities (N, nodes): each the sum of its leaves'."""
        nodes, member = self._membership[level - 1]
        return nodes, probabilities @ member.astype(probabilities.dtype, copy=False)

    @cached_property
    def _membership(self) -> list[tuple[list[str], np.ndarray]]:
        """Per level, its nodes and which leaf is under which (labels × nodes, 0 or 1): made once per tree, as every
        answer of a hierarchical model walks it."""
        out = []
        for level in range(1, self.depth + 1):
            nodes = self.nodes(level)
            member = np.zeros((len(self.labels), len(nodes)))
            for i, lab in enumerate(self.labels):
                member[i, nodes.index(self.ancestor(lab, level))] = 1
            out.append((nodes, member))
        return out

    def walk(self, probabilities: np.ndarray, target: float) -> tuple[list[dict], int]:
        """One photo's ``levels`` (the best node at each level under the one above, with its probability) and how many
        of them the answer goes down (at least one: the top level's best node answers when none reaches ``target``)."""
        levels, answered, prefix = [], 0, ""
        for level in range(1, self.depth + 1):
            nodes, p = self.node_probabilities(probabilities[None, :], level)
            allowed = [k for k, node in enumerate(nodes) if not prefix or node == prefix or node.startswith(prefix + SEP)]
            best = max(allowed, key=lambda k: p[0, k])
            if nodes[best] == prefix:  # a leaf shallower than the tree: nothing further down
                break
            prefix = nodes[best]
            levels.append({"label": prefix, "confidence": round(float(p[0, best]), 6)})
            if answered == level - 1 and p[0, best] >= target:
                answered = level
        return levels, max(1, answered)


def per_level(tree: Tree, probabilities: np.ndarray, truth: list[str], target: float) -> list[dict]:
    """For photos with known leaf labels ``truth``: per level, the best guess's accuracy at that level, the share of
    answers that stop there and how many of those are right."""
    walks = [tree.walk(p, target) for p in probabilities]
    out = []
    for level in range(1, tree.depth + 1):
        nodes, p = tree.node_probabilities(probabilities, level)
        guess = [nodes[k] for k in p.argmax(1)]
        right = [g == tree.ancestor(t, level) for g, t in zip(guess, truth)]
        stop = [i for i, (levels, answered) in enumerate(walks) if answered == level]
        stopped_right = [walks[i][0][level - 1]["label"] == tree.ancestor(truth[i], level) for i in stop]
        out.append({"level": level, "nodes": len(nodes), "accuracy": round(float(np.mean(right)), 6) if right else None,
                    "stopped": round(len(stop) / len(truth), 6) if truth else 0.0,
                    "stopped_right": round(float(np.mean(stopped_right)), 6) if stopped_right else None, "n": len(truth)})
    return out
