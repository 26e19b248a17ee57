"""ONNX graphs of mmkp's detectors: the network plus the peak extraction and decoding that fit in a graph.

One :class:`torch.nn.Module` per family wraps a built detector; its ``forward`` takes the data preprocessor's
output (B, 3, H, W) and returns a tuple of tensors named by :data:`OUTPUT_NAMES` of the family: the raw maps of
the last stack (keypoint heads) or of every level (FCOS), then the decoded candidates. What needs the image metas
(``border`` of a crop-pad test pipeline, ``scale_factor``, ``ori_shape``, the batch input size the feature cells map
to), soft-NMS / NMS, score thresholds and ``max_per_img`` stay outside, in :mod:`mmkp.deployment.postprocess`.

In the graph, per family (B images, K peaks, D pairs):

- ``centernet`` (objects as points, xingyizhou/CenterNet@4c50fd3 ``src/lib/models/decode.py::ctdet_decode``):
  sigmoid, 3x3 max-pool peaks, top-K over classes and cells, boxes (x + dx -/+ w / 2, y + dy -/+ h / 2) in
  feature cells;
- ``cornernet`` (CornerNet, CornerNet-Squeeze; princeton-vl/CornerNet-Lite@6a54505
  ``core/models/py_utils/utils.py::_decode``): corner peaks, embedding / class / geometry pair rejection, the top
  D pairs (score -1 marks a rejected pair), boxes in feature cells;
- ``triplet`` (Duankaiwen/CenterNet@3ad3a10 ``models/py_utils/kp_utils.py::_decode``): the corner pairs as above
  plus the top center keypoints (x + dx, y + dy) in feature cells;
- ``fcos`` (tianzhi0549/FCOS@a773f12 ``fcos_core/modeling/rpn/fcos/inference.py``): per level the candidates
  above ``score_thr``, the top ``nms_pre`` by the configured rank, their boxes in input pixels (not yet clipped).

The peak extraction is the dense form (:func:`mmkp.models.utils.heatmap.local_maximum` +
:func:`~mmkp.models.utils.heatmap.topk_heatmap`), which :func:`~mmkp.models.utils.heatmap.topk_peaks` equals up to
the order of equal scores; the candidate search and the NaN check of ``topk_peaks`` are data-dependent control
flow, which a graph cannot hold. The pooling ops run on :mod:`mmkp.deployment.onnx_ops` during the export.
"""
import contextlib
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from mmkp.models.utils.heatmap import gather_feat, local_maximum, topk_heatmap
from .onnx_ops import onnx_pools

FAMILIES = ('centernet', 'fcos', 'cornernet', 'triplet')
CORNER_MAPS = ('tl_heatmap', 'br_heatmap', 'tl_embedding', 'br_embedding', 'tl_offset', 'br_offset')
PAIR_OUTPUTS = ('det_bboxes', 'det_scores', 'det_labels', 'det_tl_scores', 'det_br_scores')
FCOS_CANDIDATES = ('cand_valid', 'cand_cls_scores', 'cand_centerness', 'cand_labels', 'cand_bboxes')
#: directional pools of a dynamic-shape export cover feature maps up to this length (extra steps are no-ops)
DYNAMIC_MAX_LENGTH = 4096


def dense_topk_peaks(logits: Tensor, k: int, kernel: int = 3,
                     num_candidates: Tuple[int, ...] = ()) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Graph form of :func:`mmkp.models.utils.heatmap.topk_peaks` (same signature, same outputs).

    ``topk_heatmap(local_maximum(sigmoid(logits), kernel), k)``: the dense computation ``topk_peaks`` falls back to
    and equals; ``num_candidates`` is accepted and ignored.

    Args:
        logits (Tensor): (B, C, H, W) heatmap logits.
        k (int): peaks per image, clipped to C * H * W.
        kernel (int): odd peak window. Defaults to 3.
        num_candidates (tuple[int]): ignored.

    Returns:
        tuple: ``scores`` (B, k), ``index`` (B, k) flat ``y * W + x``, ``labels`` (B, k), ``ys``, ``xs`` (B, k).
    """
    return topk_heatmap(local_maximum(logits.sigmoid(), kernel), k)


@contextlib.contextmanager
def graph_decoding() -> Iterator[None]:
    """Patch the decoders' ``topk_peaks`` with :func:`dense_topk_peaks` inside the ``with`` block (restored after)."""
    from mmkp.models.task_modules.coders import corner_pair_decoder, triplet_decoder
    modules = (corner_pair_decoder, triplet_decoder)
    saved = [m.topk_peaks for m in modules]
    for m in modules:
        m.topk_peaks = dense_topk_peaks
    try:
        yield
    finally:
        for m, fn in zip(modules, saved):
            m.topk_peaks = fn


def detect_family(model: nn.Module) -> str:
    """The export family of a built detector, from its head's class.

    Returns:
        str: one of :data:`FAMILIES`.

    Raises:
        NotImplementedError: CornerNet-Saccade (its crops are chosen from attention maps image by image) and heads
            mmkp does not export.
    """
    from mmkp.models.dense_heads import (CenterHeatmapHead, CornerPoolHead, FCOSPointHead, SaccadeHead,
                                         TripletHead)
    head = getattr(model, 'bbox_head', None)
    if isinstance(head, SaccadeHead):
        raise NotImplementedError('CornerNet-Saccade cannot be exported: its crops are chosen per image from the '
                                  'attention maps (data-dependent control flow)')
    if isinstance(head, TripletHead):
        return 'triplet'
    if isinstance(head, CornerPoolHead):
        return 'cornernet'
    if isinstance(head, CenterHeatmapHead):
        return 'centernet'
    if isinstance(head, FCOSPointHead):
        return 'fcos'
    raise NotImplementedError(f'no ONNX export for bbox_head {type(head).__name__}; supported: CenterHeatmapHead, '
                              'FCOSPointHead, CornerPoolHead, TripletHead')


def output_names(family: str, num_levels: int = 5) -> List[str]:
    """Names of the graph outputs of ``family``, in the order of the wrapper's ``forward``.

    Args:
        family (str): one of :data:`FAMILIES`.
        num_levels (int): FCOS levels. Defaults to 5.

    Raises:
        ValueError: unknown family.
    """
    if family == 'centernet':
        return ['heatmap', 'size', 'offset', 'det_bboxes', 'det_scores', 'det_labels']
    if family == 'cornernet':
        return [*CORNER_MAPS, *PAIR_OUTPUTS]
    if family == 'triplet':
        return [*CORNER_MAPS, 'ct_heatmap', 'ct_offset', *PAIR_OUTPUTS, 'centers', 'center_scores',
                'center_labels']
    if family == 'fcos':
        maps = [f'{name}_{lvl}' for name in ('cls_score', 'bbox_pred', 'centerness') for lvl in range(num_levels)]
        return [*maps, *FCOS_CANDIDATES]
    raise ValueError(f'family must be one of {FAMILIES}, got {family!r}')


class CenterNetGraph(nn.Module):
    """CenterNet (objects as points) in a graph: network, peaks and boxes in feature cells.

    Outputs: ``heatmap`` (B, C, h, w) logits, ``size`` (B, 2, h, w), ``offset`` (B, 2, h, w) of the last stack;
    ``det_bboxes`` (B, K, 4) (x1, y1, x2, y2) in feature cells, ``det_scores`` (B, K) sigmoid scores descending,
    ``det_labels`` (B, K) int64; K = min(decoder topk, C * h * w).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.head = model.bbox_head

    def forward(self, img: Tensor) -> Tuple[Tensor, ...]:
        x = self.model.extract_feat(img)
        heat = self.head.heatmap_branches[-1](x[-1])
        size = self.head.size_branches[-1](x[-1])
        offset = self.head.offset_branches[-1](x[-1])
        dec = self.head.decoder
        scores, index, labels, ys, xs = dense_topk_peaks(heat, dec.topk, dec.local_maximum_kernel)
        wh = gather_feat(size, index)
        off = gather_feat(offset, index)
        cx, cy = xs + off[..., 0], ys + off[..., 1]
        half_w, half_h = wh[..., 0] / 2, wh[..., 1] / 2
        bboxes = torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=-1)
        return heat, size, offset, bboxes, scores, labels


class CornerNetGraph(nn.Module):
    """CornerNet / CornerNet-Squeeze (and, with ``with_centers``, keypoint triplets) in a graph.

    Outputs: the six corner maps of the last stack (``tl_heatmap`` (B, C, h, w), ``br_heatmap``, ``tl_embedding``
    (B, 1, h, w), ``br_embedding``, ``tl_offset`` (B, 2, h, w), ``br_offset``), for triplets ``ct_heatmap`` and
    ``ct_offset``; then :meth:`CornerPairDecoder.decode_pairs`: ``det_bboxes`` (B, D, 4) in feature cells,
    ``det_scores`` (B, D) descending, -1 for rejected pairs, ``det_labels``, ``det_tl_scores``, ``det_br_scores``
    (B, D); for triplets ``centers`` (B, N, 2) (x, y) in feature cells, ``center_scores``, ``center_labels`` (B, N).
    """

    def __init__(self, model: nn.Module, with_centers: bool = False) -> None:
        super().__init__()
        self.model = model
        self.head = model.bbox_head
        self.with_centers = with_centers

    def forward(self, img: Tensor) -> Tuple[Tensor, ...]:
        x = self.model.extract_feat(img)
        maps = self.head.forward_single(x[-1], -1)  # the last stack only, as CornerPoolHead.predict
        tl, br = maps['top_left'], maps['bottom_right']
        raw = [tl['heatmap'], br['heatmap'], tl['embedding'], br['embedding'], tl['offset'], br['offset']]
        dec = self.head.decoder
        pairs = dec.decode_pairs(*raw)
        if not self.with_centers:
            return (*raw, *pairs)
        ct = maps['center']
        centers = dec.decode_centers(ct['heatmap'], ct['offset'])
        return (*raw, ct['heatmap'], ct['offset'], *pairs, *centers)


class FCOSGraph(nn.Module):
    """FCOS in a graph: network and the batched candidate selection of :meth:`FCOSPointHead.predict_by_feat`.

    Outputs: per level ``cls_score_l`` (B, C, h_l, w_l) logits, ``bbox_pred_l`` (B, 4, h_l, w_l) distances in input
    pixels, ``centerness_l`` (B, 1, h_l, w_l) logits; then over the levels' top ``nms_pre`` (K in all):
    ``cand_valid`` (B, K) bool (class probability > ``score_thr``), ``cand_cls_scores`` (B, K) class probability,
    ``cand_centerness`` (B, K) center-ness probability, ``cand_labels`` (B, K) int64, ``cand_bboxes`` (B, K, 4) in
    input pixels, not clipped (the clip needs ``img_shape``).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.head = model.bbox_head

    def forward(self, img: Tensor) -> Tuple[Tensor, ...]:
        from mmdet.structures.bbox import distance2bbox
        head = self.head
        cls_scores, bbox_preds, centernesses = head(self.model.extract_feat(img))
        cfg = head.test_cfg
        num_imgs = img.shape[0]
        num_classes = head.cls_out_channels
        points_per_level = head.prior_generator.grid_priors([m.shape[-2:] for m in cls_scores],
                                                            dtype=bbox_preds[0].dtype, device=img.device)
        nms_pre = cfg.get('nms_pre', -1)
        score_thr = cfg.get('score_thr', 0.0)
        kept: Dict[str, List[Tensor]] = {k: [] for k in ('valid', 'cls', 'ctr', 'labels', 'points', 'dist')}
        for cls_score, bbox_pred, centerness, points in zip(cls_scores, bbox_preds, centernesses, points_per_level):
            scores = cls_score.permute(0, 2, 3, 1).reshape(num_imgs, -1).sigmoid()  # (B, hw * C)
            ctr = centerness.permute(0, 2, 3, 1).reshape(num_imgs, -1).sigmoid()  # (B, hw)
            dist = bbox_pred.permute(0, 2, 3, 1).reshape(num_imgs, -1, 4)
            candidate = scores > score_thr
            if cfg.nms_pre_by == 'cls_centerness':
                rank = (scores.view(num_imgs, -1, num_classes) * ctr[..., None]).view(num_imgs, -1)
            else:
                rank = scores
            total = int(cls_score.shape[1] * cls_score.shape[2] * cls_score.shape[3])
            k = total if nms_pre is None or nms_pre <= 0 else min(int(nms_pre), total)
            _, top_idx = rank.masked_fill(~candidate, -1.0).topk(k, dim=1)
            loc = torch.div(top_idx, num_classes, rounding_mode='floor')
            kept['valid'].append(candidate.gather(1, top_idx))
            kept['cls'].append(scores.gather(1, top_idx))
            kept['ctr'].append(ctr.gather(1, loc))
            kept['labels'].append(top_idx - loc * num_classes)
            kept['points'].append(points[loc])
            kept['dist'].append(dist.gather(1, loc[..., None].expand(-1, -1, 4)))
        cat = {k: torch.cat(v, dim=1) for k, v in kept.items()}
        bboxes = distance2bbox(cat['points'], cat['dist'])
        return (*cls_scores, *bbox_preds, *centernesses, cat['valid'], cat['cls'], cat['ctr'], cat['labels'],
                bboxes)


def build_graph(model: nn.Module, family: Optional[str] = None) -> nn.Module:
    """The graph wrapper of ``model`` (in eval mode) for its family (:func:`detect_family` when None)."""
    family = family or detect_family(model)
    model.eval()
    if family == 'centernet':
        return CenterNetGraph(model).eval()
    if family == 'fcos':
        return FCOSGraph(model).eval()
    if family in ('cornernet', 'triplet'):
        return CornerNetGraph(model, with_centers=family == 'triplet').eval()
    raise ValueError(f'family must be one of {FAMILIES}, got {family!r}')


def _register_symbolics(opset: int) -> None:
    """Map ``aten::__ior_`` (the decoders' in-place ``reject |= ...``) to the standard ONNX ``Or``."""
    torch.onnx.register_custom_op_symbolic('aten::__ior_', lambda g, a, b: g.op('Or', a, b), opset)


@contextlib.contextmanager
def export_mode(dynamic: bool = False) -> Iterator[None]:
    """Standard-op pools (:func:`onnx_pools`) and graph decoding (:func:`graph_decoding`) inside the block.

    Args:
        dynamic (bool): the directional pools cover :data:`DYNAMIC_MAX_LENGTH` instead of the traced length.
    """
    with onnx_pools(DYNAMIC_MAX_LENGTH if dynamic else 0), graph_decoding():
        yield


def run_graph(graph: nn.Module, img: Tensor, dynamic: bool = False) -> Tuple[Tensor, ...]:
    """Run a wrapper in PyTorch under :func:`export_mode` (what the exported graph computes)."""
    with torch.no_grad(), export_mode(dynamic):
        return graph(img)


def export_onnx(model: nn.Module,
                out_file: str,
                shape: Sequence[int] = (512, 512),
                batch_size: int = 1,
                dynamic: bool = False,
                opset: int = 17,
                family: Optional[str] = None) -> List[str]:
    """Export ``model`` (a built mmkp detector) to ``out_file`` with the TorchScript exporter (``dynamo=False``).

    Args:
        model (nn.Module): detector with weights loaded.
        out_file (str): the ``.onnx`` path.
        shape (Sequence[int]): (H, W) of the traced input in pixels; for keypoint heads a size the backbone
            accepts (e.g. 127 k + 1 ... as its test pipeline pads). Defaults to (512, 512).
        batch_size (int): traced batch. Defaults to 1.
        dynamic (bool): batch, H and W dynamic axes. Top-K sizes stay those of the traced shape (K = min(topk,
            C h w)); directional pools cover feature maps up to :data:`DYNAMIC_MAX_LENGTH`. Defaults to False.
        opset (int): ONNX opset. Defaults to 17.
        family (str, optional): :data:`FAMILIES`; None detects it.

    Returns:
        list[str]: the output names (also stored with the family in the model's ``metadata_props``:
        ``mmkp_family``, ``mmkp_outputs``).

    Raises:
        NotImplementedError: a family without export (:func:`detect_family`).
        ValueError: a bad ``shape``.
    """
    import onnx
    if len(shape) != 2 or min(int(s) for s in shape) < 1:
        raise ValueError(f'shape must be (H, W) positive, got {tuple(shape)}')
    family = family or detect_family(model)
    graph = build_graph(model, family)
    param = next(model.parameters())
    img = torch.zeros((batch_size, 3, int(shape[0]), int(shape[1])), dtype=param.dtype, device=param.device)
    num_levels = len(model.bbox_head.strides) if family == 'fcos' else 0
    names = output_names(family, num_levels)
    dynamic_axes = None
    if dynamic:
        dynamic_axes = {'input': {0: 'batch', 2: 'height', 3: 'width'}}
        for name in names:
            dynamic_axes[name] = {0: 'batch'}
    _register_symbolics(opset)
    with torch.no_grad(), export_mode(dynamic):
        torch.onnx.export(graph, (img, ), out_file, input_names=['input'], output_names=names,
                          dynamic_axes=dynamic_axes, opset_version=opset, do_constant_folding=True, dynamo=False)
    proto = onnx.load(out_file)
    for key, value in (('mmkp_family', family), ('mmkp_outputs', ','.join(names))):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, out_file)
    return names
