"""Keypoint triplets: the cost of the center keypoint at test time, mmkp's ``TripletDecoder`` against mmkp's
``CornerPairDecoder`` (CornerNet's pair decoding) on the same maps, same run.

Setting: one 511 x 511 image, 128 x 128 maps, 80 classes (the CornerNet head's benchmark inputs of
``head_benchmarks/cornernet.py``, plus a center heatmap and center offsets drawn the same way), the triplets'
decoding settings of Duankaiwen/CenterNet@3ad3a10 ``models/py_utils/kp_utils.py::_decode`` (K = 70, kernel 3,
ae threshold 0.5, 1000 pairs) on both sides:

* ``triplet/decode``: ``TripletDecoder.decode_outputs`` (pairs, top-70 centers, the center-region check, the 5 px
  rule) against ``CornerPairDecoder.decode_outputs`` (pairs only), random logits;
* ``triplet/decode-blobs``: the same on heatmaps of smooth blobs plus noise (see ``cornernet.py``).

The speed-up column is pairs / triplets: below 1, the extra time the center step costs.
"""
from typing import Dict, List

import torch

from mmkp.utils.benchmark import make_record, median_time
from .cornernet import FEAT, NUM_CLASSES, SIZE, random_outputs

DECODE = dict(topk=70, local_maximum_kernel=3, ae_threshold=0.5, num_dets=1000)


def triplet_maps(device: str, blobs: bool, seed: int = 1) -> Dict[str, Dict[str, torch.Tensor]]:
    """One image's named maps: the CornerNet benchmark's corner maps (last stack) and a center heatmap / offset."""
    tl_h, br_h, tl_e, br_e, tl_o, br_o = [maps[-1][:1] for maps in random_outputs(1, device, blobs=blobs,
                                                                                 seed=seed)]
    ct_h, _, _, _, ct_o, _ = [maps[-1][:1] for maps in random_outputs(1, device, blobs=blobs, seed=seed + 1)]
    return dict(top_left=dict(heatmap=tl_h, embedding=tl_e, offset=tl_o),
                bottom_right=dict(heatmap=br_h, embedding=br_e, offset=br_o),
                center=dict(heatmap=ct_h, offset=ct_o))


def run(args) -> List[Dict[str, object]]:
    from mmkp.models.task_modules.coders import CornerPairDecoder
    from mmkp.models.task_modules.coders.triplet_decoder import TripletDecoder
    device = args.device
    triplets = TripletDecoder(center_topk=70, **DECODE)
    pairs = CornerPairDecoder(**DECODE)
    meta = [dict(batch_input_shape=(SIZE, SIZE), img_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE),
                 pad_shape=(SIZE, SIZE), border=[0, SIZE, 0, SIZE])]
    records = []
    for name, blobs in (('triplet/decode', False), ('triplet/decode-blobs', True)):
        maps = triplet_maps(device, blobs)

        def ours():
            return triplets.decode_outputs(maps, meta, rescale=True)

        def baseline():
            return pairs.decode_outputs(maps, meta, rescale=True)

        records.append(
            make_record(name, f'1x{NUM_CLASSES}x{FEAT}x{FEAT}, K=70, 1000 pairs',
                        median_time(ours, args.repeats, device=device),
                        median_time(baseline, args.repeats, device=device)))
    return records
