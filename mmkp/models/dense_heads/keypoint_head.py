"""What every keypoint head shares: named per-stack outputs, the stack check, the decoder built from ``test_cfg``."""
import copy
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from mmdet.utils import OptConfigType
from torch import Tensor

from mmkp.registry import TASK_UTILS

#: mmdet ``CornerHead``'s output order: (tl_heats, br_heats, tl_embs, br_embs, tl_offs, br_offs).
CORNER_ORDER: Tuple[Tuple[str, str], ...] = (('top_left', 'heatmap'), ('bottom_right', 'heatmap'),
                                             ('top_left', 'embedding'), ('bottom_right', 'embedding'),
                                             ('top_left', 'offset'), ('bottom_right', 'offset'))


class KeypointMaps(dict):
    """Raw outputs of a keypoint head, named: ``maps[group][branch]`` is a list over stacks of (B, C, H, W) maps.

    A group is a keypoint type (``'top_left'``, ``'bottom_right'``, ``'center'``) or another output family of a
    head (CornerNet-Saccade's ``'attention'``); a branch is what the maps hold (``'heatmap'`` logits with
    ``num_classes`` channels, ``'embedding'`` (1 channel), ``'offset'`` (dx, dy) in feature cells, ...). Stacks are
    ordered first to last; the last one is the one decoded at test time. A plain ``dict`` subclass, so it traces
    and exports as nested dicts and lists.

    Example:
        >>> maps = KeypointMaps(top_left=dict(heatmap=[h0, h1]), bottom_right=dict(heatmap=[g0, g1]))
        >>> maps.num_stacks, maps.stack(-1)['top_left']['heatmap'] is h1
        (2, True)
    """

    @property
    def num_stacks(self) -> int:
        """Number of stacks (length of every list; 0 when empty)."""
        lengths = {len(maps) for branches in self.values() for maps in branches.values()}
        if len(lengths) > 1:
            raise ValueError(f'the branches of a KeypointMaps hold different numbers of stacks: {sorted(lengths)}')
        return lengths.pop() if lengths else 0

    def stack(self, index: int) -> Dict[str, Dict[str, Tensor]]:
        """The maps of one stack: ``out[group][branch]`` is a (B, C, H, W) tensor."""
        return {group: {branch: maps[index] for branch, maps in branches.items()} for group, branches in self.items()}

    def select(self, index: int) -> 'KeypointMaps':
        """A :class:`KeypointMaps` holding stack ``index`` only (lists of one map)."""
        return KeypointMaps({group: {branch: [maps[index]] for branch, maps in branches.items()}
                             for group, branches in self.items()})

    def to_tuple(self, order: Sequence[Tuple[str, str]] = CORNER_ORDER) -> Tuple[List[Tensor], ...]:
        """The per-stack lists in a positional ``order`` of (group, branch), mmdet ``CornerHead``'s by default."""
        return tuple(self[group][branch] for group, branch in order)

    @classmethod
    def from_tuple(cls, outputs: Sequence[Sequence[Tensor]],
                   order: Sequence[Tuple[str, str]] = CORNER_ORDER) -> 'KeypointMaps':
        """Name positional per-stack lists (mmdet ``CornerHead``'s output order by default).

        Raises:
            ValueError: when the number of lists differs from ``len(order)``.
        """
        if len(outputs) != len(order):
            raise ValueError(f'expected {len(order)} lists of maps ({order}), got {len(outputs)}')
        maps = cls()
        for (group, branch), stacks in zip(order, outputs):
            maps.setdefault(group, {})[branch] = list(stacks)
        return maps

    @classmethod
    def from_stacks(cls, per_stack: Sequence[Mapping[str, Mapping[str, Tensor]]]) -> 'KeypointMaps':
        """Collect the ``out[group][branch]`` dicts of every stack (first first) into per-stack lists."""
        maps = cls()
        for stack in per_stack:
            for group, branches in stack.items():
                for branch, value in branches.items():
                    maps.setdefault(group, {}).setdefault(branch, []).append(value)
        return maps


class KeypointHeadMixin:
    """The checks and set-up the keypoint heads (corner, center, triplet, Saccade) share.

    Expects ``self.num_stacks``.
    """

    num_stacks: int

    def _check_stacks(self, x: Sequence[Tensor]) -> None:
        """Raise a ValueError naming ``bbox_head.num_stacks`` when ``len(x)`` differs from it."""
        if len(x) != self.num_stacks:
            raise ValueError(f'{type(self).__name__} has num_stacks={self.num_stacks} but got {len(x)} features; '
                             'set bbox_head.num_stacks to the number of backbone / neck outputs')

    @staticmethod
    def build_decoder(test_cfg: OptConfigType, default: dict, mmdet_keys: Optional[Mapping[str, str]] = None):
        """The decoder of ``test_cfg.decoder``, else ``default`` with mmdet's flat ``test_cfg`` keys applied.

        Args:
            test_cfg (dict, optional): the head's ``test_cfg``.
            default (dict): decoder config used when ``test_cfg`` has no ``decoder``.
            mmdet_keys (Mapping[str, str], optional): mmdet ``test_cfg`` key -> decoder argument (e.g.
                ``corner_topk`` -> ``topk``), honoured with the default decoder only.

        Returns:
            object: the decoder built from ``TASK_UTILS``.
        """
        test_cfg = test_cfg or {}
        decoder_cfg = copy.deepcopy(test_cfg.get('decoder', None))
        if decoder_cfg is None:
            decoder_cfg = copy.deepcopy(dict(default))
            for key, arg in (mmdet_keys or {}).items():
                if key in test_cfg:
                    decoder_cfg[arg] = test_cfg[key]
        return TASK_UTILS.build(decoder_cfg)
