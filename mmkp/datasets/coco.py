"""COCO-format detection datasets whose annotation problems are named, counted and handled by a written rule.

mmdet's ``CocoDataset`` reads the file with pycocotools (a ``JSONDecodeError`` without the file's name; a file without
``images`` gives an empty dataset) and drops zero-size, negative, NaN, wholly-outside and unknown-category boxes in
``parse_data_info`` without a word. :class:`CheckedCocoDataset` checks the file first and applies these rules, each
box under the first rule it meets (vectorised over all annotations of the file):

==============================================  ===========================================================
annotation                                      what happens
==============================================  ===========================================================
not JSON, not an object, no ``images`` /        ``ValueError`` naming the file (and the line / column or the
``annotations`` / ``categories`` list           missing key)
image without ``id`` / ``file_name`` /          ``ValueError`` naming the file, the image and the key
``width`` / ``height``, size <= 0, duplicate id
annotation without ``id`` / ``image_id`` /      ``ValueError`` naming the file, the annotation and the key
``category_id`` / ``bbox``, bbox not 4 numbers
a class of ``metainfo['classes']`` that no      ``ValueError`` naming the file and the classes (labels would
category of the file has                        shift silently otherwise)
``image_id`` that no image has                  ignored, counted (``no such image``)
``category_id`` that no category has            ignored, counted (``unknown category``)
category of the file not in ``classes``         ignored, counted (``category not in classes``; mmdet's way
                                                of training on a subset of the classes)
NaN / inf in ``bbox``                           ignored, counted (``non-finite bbox``)
width or height < 1 px (zero, negative)         ignored, counted (``width or height < 1 px``)
less than 1 px wide / high inside the image     ignored, counted (``outside the image``)
partly outside the image                        clipped to it, counted (``clipped``)
``area`` <= 0 (a valid box)                     ignored, counted (``area <= 0``); a missing ``area`` is set to
                                                the clipped box's w * h
``ignore: true`` in the file                    left out, counted (``ignore flag``, the file's own choice;
                                                not warned alone)
an image whose boxes were all ignored           as an image without boxes: kept in test mode, dropped from
                                                training by ``filter_cfg.filter_empty_gt`` (mmdet's rule)
==============================================  ===========================================================

One warning per dataset (``print_log`` to the current ``MMLogger``) gives the counts and the first five (image id,
annotation id, rule) of the boxes ignored or clipped; :attr:`CheckedCocoDataset.annotation_report` keeps them all.

Evaluation: mmdet's ``CocoMetric`` reads its ``ann_file`` itself and still counts the ignored boxes as ground truth
(an unmatched NaN box lowers recall). :class:`mmkp.evaluation.CheckedCocoMetric` (the evaluator of mmkp's base dataset
configs) applies the same rules, through the same :class:`CheckedCOCO` (:func:`check_coco_annotations`), to the file
it reads, so that its ground truth is the dataset's. ``checked_ann_file`` (the dataset writes the file as it uses it)
remains for tools that read a path.
"""
import json
import logging
import multiprocessing
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmdet.datasets import CocoDataset
from mmdet.datasets.api_wrappers import COCO
from mmengine.logging import print_log

from mmkp.registry import DATASETS

#: the rules under which a box is left out, in the order they are applied (see the module docstring)
IGNORE_RULES = ('no such image', 'unknown category', 'category not in classes', 'non-finite bbox',
                'width or height < 1 px', 'outside the image', 'area <= 0', 'ignore flag')
#: the top-level keys a COCO detection file must have (each a list)
REQUIRED_KEYS = ('images', 'annotations', 'categories')
_IMAGE_KEYS = ('id', 'file_name', 'width', 'height')
_ANN_KEYS = ('id', 'image_id', 'category_id', 'bbox')
_SHOWN = 5


def read_coco_json(path: str, name: Optional[str] = None) -> dict:
    """Read a COCO annotation file, naming it in every error.

    Args:
        path (str): local path of the file.
        name (str, optional): the name to give in messages (e.g. the configured ``ann_file``). Defaults to ``path``.

    Returns:
        dict: the parsed file (``images``, ``annotations``, ``categories`` checked to be lists).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not JSON (with line and column), not an object, a required key missing or not a list.
    """
    name = name or path
    if not osp.isfile(path):
        raise FileNotFoundError(f'{name}: annotation file not found')
    with open(path, 'rb') as f:
        raw = f.read()
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f'{name}: not a JSON annotation file: {e}') from e
    if not isinstance(data, dict):
        raise ValueError(f'{name}: a COCO annotation file holds a JSON object, this one a {type(data).__name__}')
    for key in REQUIRED_KEYS:
        if key not in data:
            raise ValueError(f"{name}: no '{key}' key (a COCO detection file needs {', '.join(REQUIRED_KEYS)}; "
                             f"keys found: {', '.join(map(str, data)) or 'none'})")
        if not isinstance(data[key], list):
            raise ValueError(f"{name}: '{key}' is a {type(data[key]).__name__}, not a list")
    return data


def _require(entries: List[dict], keys: Sequence[str], what: str, name: str) -> None:
    """Raise naming the first entry (by id, else index) of ``entries`` lacking one of ``keys``."""
    for key in keys:
        missing = [i for i, e in enumerate(entries) if not isinstance(e, dict) or key not in e]
        if missing:
            entry = entries[missing[0]]
            ident = entry.get('id', '?') if isinstance(entry, dict) else '?'
            raise ValueError(f"{name}: {what} #{missing[0]} (id {ident}) has no '{key}' "
                             f'({len(missing)} {what}s lack it)')


def _ids(entries: List[dict], key: str, what: str, name: str) -> list:
    """The ``key`` of every entry; ids are compared as the file gives them (int or str), never converted."""
    values = [e[key] for e in entries]
    bad = [i for i, v in enumerate(values) if isinstance(v, bool) or not isinstance(v, (int, str))]
    if bad:
        raise ValueError(f"{name}: {what} #{bad[0]} has '{key}' {values[bad[0]]!r}, not an integer or a string "
                         f'({len(bad)} such)')
    return values


def check_coco_annotations(data: dict, classes: Optional[Sequence[str]] = None,
                           name: str = '<annotations>') -> Tuple[dict, Dict[str, object]]:
    """Apply the rules of the module docstring to a parsed COCO file.

    Args:
        data (dict): the parsed file (:func:`read_coco_json`); not modified.
        classes (Sequence[str], optional): the dataset's class names (``metainfo['classes']``); None: every category
            of the file. Defaults to None.
        name (str): the file's name for messages.

    Returns:
        tuple[dict, dict]: the file as used (a shallow copy whose ``annotations`` are the kept ones, clipped boxes
        and filled areas in copies of their dicts), and a report: ``total`` (int), ``counts`` (rule -> int, with
        ``'clipped'``), ``examples`` (list of (image id, annotation id, rule), every box ignored or clipped, in file
        order).

    Raises:
        ValueError: a malformed image or annotation entry, or a class of ``classes`` that no category has (named).
    """
    images, anns, cats = data['images'], data['annotations'], data['categories']
    _require(images, _IMAGE_KEYS, 'image', name)
    _require(anns, _ANN_KEYS, 'annotation', name)
    _require(cats, ('id', 'name'), 'category', name)
    img_ids = _ids(images, 'id', 'image', name)
    img_index = {v: i for i, v in enumerate(img_ids)}
    if len(img_index) != len(img_ids):
        seen, dup = set(), []
        for v in img_ids:
            (dup.append if v in seen else seen.add)(v)
        raise ValueError(f'{name}: image ids are not unique: {dup[:_SHOWN]} ({len(dup)} repeated)')
    try:
        sizes = np.asarray([(e['width'], e['height']) for e in images], dtype=np.float64).reshape(-1, 2)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: an image's width / height is not a number") from e
    bad_size = np.flatnonzero(~(sizes > 0).all(1))
    if len(bad_size):
        i = bad_size[0]
        raise ValueError(f'{name}: image id {img_ids[i]} has width x height {sizes[i, 0]:g} x {sizes[i, 1]:g} '
                         f'({len(bad_size)} images with a size <= 0)')
    cat_ids = _ids(cats, 'id', 'category', name)
    cat_names = [c['name'] for c in cats]
    if classes is not None:
        absent = [c for c in classes if c not in cat_names]
        if absent:
            raise ValueError(f'{name}: classes {absent} of the dataset are not categories of the file '
                             f'(its categories: {cat_names})')
        wanted = set(classes)
        used_cats = {i for i, c in zip(cat_ids, cat_names) if c in wanted}
    else:
        used_cats = set(cat_ids)

    n = len(anns)
    ann_ids = _ids(anns, 'id', 'annotation', name)
    ann_img = _ids(anns, 'image_id', 'annotation', name)
    ann_cat = _ids(anns, 'category_id', 'annotation', name)
    try:
        boxes = np.asarray([a['bbox'] for a in anns], dtype=np.float64).reshape(n, 4)
    except (TypeError, ValueError) as e:
        bad = next(i for i, a in enumerate(anns)
                   if not (isinstance(a['bbox'], (list, tuple)) and len(a['bbox']) == 4
                           and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in a['bbox'])))
        raise ValueError(f"{name}: annotation id {ann_ids[bad]} has bbox {anns[bad]['bbox']!r}, not 4 numbers "
                         '[x, y, w, h]') from e
    area = np.asarray([a['area'] if isinstance(a.get('area'), (int, float)) else np.nan for a in anns],
                      dtype=np.float64).reshape(n)
    has_area = np.asarray(['area' in a for a in anns], dtype=bool).reshape(n)
    ignore = np.asarray([bool(a.get('ignore', False)) for a in anns], dtype=bool).reshape(n)
    # per annotation: the index of its image (-1: none) and whether its category exists / is used
    img_of = np.asarray([img_index.get(v, -1) for v in ann_img], dtype=np.int64).reshape(n)
    all_cats = set(cat_ids)
    known_cat = np.asarray([c in all_cats for c in ann_cat], dtype=bool).reshape(n)
    used_cat = np.asarray([c in used_cats for c in ann_cat], dtype=bool).reshape(n)

    has_img = img_of >= 0
    wh = np.full((n, 2), np.nan)
    wh[has_img] = sizes[img_of[has_img]]
    x1, y1, w, h = boxes.T
    finite = np.isfinite(boxes).all(1)
    with np.errstate(invalid='ignore'):
        cx1, cy1 = np.clip(x1, 0, wh[:, 0]), np.clip(y1, 0, wh[:, 1])
        cx2, cy2 = np.clip(x1 + w, 0, wh[:, 0]), np.clip(y1 + h, 0, wh[:, 1])
        cw, ch = cx2 - cx1, cy2 - cy1
        rules = [
            ~has_img,
            ~known_cat,
            ~used_cat,
            ~finite,
            ~((w >= 1) & (h >= 1)),
            ~((cw >= 1) & (ch >= 1)),
            has_area & ~(area > 0),
            ignore,
        ]
    rule_of = np.full(n, -1, dtype=np.int64)  # first rule met, -1: kept
    for r, hit in enumerate(rules):  # 8 rules, each vectorised over all annotations
        rule_of[(rule_of < 0) & hit] = r
    kept = rule_of < 0
    clipped = kept & ((cx1 != x1) | (cy1 != y1) | (cx2 != x1 + w) | (cy2 != y1 + h))

    out_anns = []
    for i in np.flatnonzero(kept).tolist():  # build the kept list (file order); boxes already decided
        ann = anns[i]
        if clipped[i] or not has_area[i]:
            ann = dict(ann)
            if clipped[i]:
                ann['bbox'] = [float(cx1[i]), float(cy1[i]), float(cw[i]), float(ch[i])]
            if not has_area[i]:
                ann['area'] = float(cw[i] * ch[i])
        out_anns.append(ann)
    used = dict(data)
    used['annotations'] = out_anns
    counts = {rule: int((rule_of == r).sum()) for r, rule in enumerate(IGNORE_RULES)}
    counts['clipped'] = int(clipped.sum())
    noted = np.flatnonzero((rule_of >= 0) | clipped)
    names = IGNORE_RULES + ('clipped', )
    examples = [(ann_img[i], ann_ids[i], names[rule_of[i]] if rule_of[i] >= 0 else 'clipped')
                for i in noted.tolist()]
    return used, dict(total=n, counts=counts, examples=examples)


def format_annotation_report(report: Dict[str, object], name: str) -> Optional[str]:
    """The one-line warning for a report of :func:`check_coco_annotations`; None when there is nothing to say
    (no box ignored or clipped apart from the file's own ``ignore`` flags)."""
    counts = report['counts']
    if not any(v for k, v in counts.items() if k != 'ignore flag'):
        return None
    ignored = sum(v for k, v in counts.items() if k != 'clipped')
    parts = ', '.join(f'{k}: {v}' for k, v in counts.items() if v)
    shown = '; '.join(f'image {i} annotation {a} ({r})' for i, a, r in report['examples'][:_SHOWN])
    more = len(report['examples']) - _SHOWN
    return (f'{name}: {ignored} of {report["total"]} annotations ignored, {counts["clipped"]} clipped ({parts}); '
            f'first: {shown}' + (f'; and {more} more' if more > 0 else ''))


def exif_orientation(path: str) -> Optional[int]:
    """The EXIF orientation tag (0x0112, 1-8) of a local image file; None when it has none or cannot be read."""
    try:
        from PIL import Image
        with Image.open(path) as im:
            value = im.getexif().get(0x0112)
    except Exception:  # a message helper: an unreadable file has no orientation to report
        return None
    return int(value) if value is not None else None


def _size_mismatch_message(info: dict, shape: Tuple[int, int], name: str) -> str:
    """The error of :meth:`CheckedCocoDataset._check_size` for one image (``shape``: decoded height, width)."""
    path = str(info.get('img_path'))
    size = (info['height'], info['width'])
    orient = exif_orientation(path)
    msg = (f'{path}: the image decodes to height x width {shape[0]} x {shape[1]} but {name} gives '
           f'{size[0]} x {size[1]} for image id {info.get("img_id")}; its boxes would not match the pixels')
    if orient is not None and orient >= 5 and shape == size[::-1]:
        msg += (f'. The file has EXIF orientation {orient} (a 90-degree turn), which the loader applies '
                "(mmcv's color_type='color'): the annotation file gives the stored frame. If its boxes are in the "
                "stored frame, set color_type='color_ignore_orientation' in LoadImageFromFile; if they are in "
                'the displayed frame, fix width / height in the annotation file')
    elif orient is not None and orient != 1:
        msg += f' (EXIF orientation {orient})'
    return msg


class CheckedCOCO(COCO):
    """mmdet's COCO API (pycocotools' ``COCO`` with snake-case aliases) over a parsed COCO file as
    :func:`check_coco_annotations` leaves it, built in memory (no file is written).

    Args:
        data (dict): the parsed file (:func:`read_coco_json`); not modified.
        classes (Sequence[str], optional): the class names of the dataset / metric; None: every category of the file.
            Defaults to None.
        name (str): the file's name for messages. Defaults to ``'<annotations>'``.

    Attributes:
        used (dict): the file as used (also ``self.dataset``).
        report (dict): see :func:`check_coco_annotations`.

    Raises:
        ValueError: see :func:`check_coco_annotations`.
    """

    def __init__(self, data: dict, classes: Optional[Sequence[str]] = None, name: str = '<annotations>'):
        self.used, self.report = check_coco_annotations(data, classes, name)
        super().__init__(annotation_file=None)
        self.dataset = self.used
        self.createIndex()
        self.img_ann_map = self.imgToAnns
        self.cat_img_map = self.catToImgs


def load_checked_coco(path: str, classes: Optional[Sequence[str]] = None, name: Optional[str] = None) -> CheckedCOCO:
    """Read a local COCO file and apply the rules of this module (``CheckedCocoDataset``'s ground truth;
    ``CheckedCocoMetric`` builds the same :class:`CheckedCOCO` from the file it parsed: one set of rules, one place).

    Args:
        path (str): local path of the file.
        classes (Sequence[str], optional): see :class:`CheckedCOCO`. Defaults to None.
        name (str, optional): the name to give in messages (e.g. the configured ``ann_file``). Defaults to ``path``.

    Returns:
        CheckedCOCO: the API over the kept (and clipped) annotations, with its ``report``.

    Raises:
        FileNotFoundError, ValueError: see :func:`read_coco_json` and :func:`check_coco_annotations`.
    """
    name = name or path
    return CheckedCOCO(read_coco_json(path, name), classes, name)


def log_annotation_report(report: Dict[str, object], name: str, owner: str) -> Optional[str]:
    """Log the one counted warning of a report (``<owner>: <file>: I of N annotations ignored, ...``, see
    :func:`format_annotation_report`) to the current ``MMLogger``; nothing when there is nothing to say.

    Args:
        report (dict): from :func:`check_coco_annotations`.
        name (str): the file's name.
        owner (str): who speaks (the class name, e.g. ``'CheckedCocoDataset'``).

    Returns:
        str or None: the message logged.
    """
    message = format_annotation_report(report, name)
    if message:
        message = f'{owner}: {message}'
        print_log(message, logger='current', level=logging.WARNING)
    return message


@DATASETS.register_module()
class CheckedCocoDataset(CocoDataset):
    """mmdet's ``CocoDataset`` with the annotation rules of :mod:`mmkp.datasets.coco` (errors naming the file,
    one counted warning, clipping; no box dropped without a word).

    Images: an image the pipeline cannot load or transform (zero bytes, not an image, truncated, missing, ...)
    stops with an error naming the image file (the original exception chained; errors that already name it pass
    through unchanged, e.g. ``FileNotFoundError: [Errno 2] No such file or directory: '<path>'`` for a missing
    file). With ``skip_bad_images=True`` a training dataset logs the file, the error and the running count of
    skipped images, and mmdet's ``__getitem__`` takes another image instead; a missing file is one of these
    unreadable images (skipped alike; when every draw fails, mmengine's ``max_refetch`` limit stops the run with
    ``Cannot find valid image after N!``). A test-mode dataset never skips (every val / test image is evaluated, or
    the run stops naming the one that is not). The skips are also counted across the dataloader workers (a shared
    counter): :meth:`report_skipped_images` logs and resets the count of an epoch (``SkippedImagesHook`` calls it at
    the end of each training epoch).

    Image size: the image as decoded (``ori_shape`` of the packed sample, height x width, set by the loading
    transform) must be the ``height`` x ``width`` of the annotation file, else ``ValueError`` naming the file, the
    image id, both sizes and the EXIF orientation (never skipped). mmcv's ``LoadImageFromFile`` (``color_type=
    'color'``, OpenCV) applies the EXIF orientation tag, so mmkp's convention is that a COCO file's sizes and boxes
    are in that EXIF-applied frame (the frame image viewers show). A portrait photo stored as a landscape bitmap
    with orientation 5-8, annotated in the stored frame, has its sizes swapped and stops here instead of training
    on boxes that no longer match the pixels; set ``color_type='color_ignore_orientation'`` in ``LoadImageFromFile``
    if the file's boxes are in the stored frame. Orientations 2-4 (flips, 180 degrees) keep the size and cannot be
    detected: the convention is trusted. Samples without ``ori_shape`` (a custom ``PackDetInputs.meta_keys``) are
    not checked.

    Args:
        checked_ann_file (str, optional): where to write the annotation file as the dataset uses it (JSON, kept and
            clipped annotations, all images and categories), for tools that read a path (mmdet's ``CocoMetric``
            pointed at it scores what the dataset trains on; ``CheckedCocoMetric`` needs no such file). Its folder is
            created; the file is replaced whole (temporary file and rename). Defaults to None (not written).
        skip_bad_images (bool): in training, skip (and log) images the pipeline fails on instead of stopping.
            Defaults to False.
        **kwargs: the arguments of ``mmdet.datasets.CocoDataset``.

    Attributes:
        annotation_report (dict): see :func:`check_coco_annotations` (set by ``load_data_list``).

    Raises:
        FileNotFoundError, ValueError: see :func:`read_coco_json` and :func:`check_coco_annotations`.
        RuntimeError: mmdet's parsing left out a box the rules kept (a rule mismatch; should not happen).
        ValueError: (``dataset[i]``) the decoded image size is not the annotation file's (see above).
    """

    def __init__(self, *args, checked_ann_file: Optional[str] = None, skip_bad_images: bool = False, **kwargs):
        self.checked_ann_file = checked_ann_file
        self.skip_bad_images = bool(skip_bad_images)
        self.skipped_images: List[str] = []
        # shared with the dataloader workers (inherited at their start): skips of the current epoch, of the run
        self._skip_counts = multiprocessing.Array('q', 2) if self.skip_bad_images else None
        self.annotation_report: Optional[Dict[str, object]] = None
        super().__init__(*args, **kwargs)

    def report_skipped_images(self, epoch: Optional[int] = None, reset: bool = True) -> Tuple[int, int]:
        """Log (a warning, when any) and return the number of images skipped since the last reset by this dataset
        and all its dataloader workers, and in total; then reset the first count. Call it at the end of each training
        epoch (a hook's ``after_train_epoch``; in the main process).

        Args:
            epoch (int, optional): the epoch number for the message. Defaults to None.
            reset (bool): set the epoch's count back to 0. Defaults to True.

        Returns:
            tuple[int, int]: (skipped since the last reset, skipped in total); (0, 0) without ``skip_bad_images``.
        """
        if self._skip_counts is None:
            return 0, 0
        with self._skip_counts.get_lock():
            now, total = int(self._skip_counts[0]), int(self._skip_counts[1])
            if reset:
                self._skip_counts[0] = 0
        if now:
            when = f'in epoch {epoch}' if epoch is not None else 'since the last report'
            print_log(f'{type(self).__name__}: {self.ann_file}: {now} unreadable image(s) skipped {when} '
                      f'(all dataloader workers; {total} in total)', logger='current', level=logging.WARNING)
        return now, total

    def _check_size(self, idx: int, data: dict) -> None:
        """Raise ``ValueError`` when the decoded image size differs from the annotation file's (class docstring)."""
        samples = data.get('data_samples') if isinstance(data, dict) else None
        samples = samples if isinstance(samples, (list, tuple)) else [samples]
        info = None
        for sample in samples:
            shape = getattr(sample, 'metainfo', {}).get('ori_shape')
            if shape is None:
                continue
            info = info or self.get_data_info(idx)
            if 'height' not in info or 'width' not in info:
                return
            if tuple(shape[:2]) != (info['height'], info['width']):
                raise ValueError(_size_mismatch_message(info, tuple(shape[:2]), str(self.ann_file)))

    def prepare_data(self, idx: int):
        """The pipeline's output for image ``idx``; a failure names the image (see the class docstring).

        Returns:
            dict or None: the sample; None for a skipped image (training with ``skip_bad_images``), which makes
            mmdet's ``__getitem__`` take another one.

        Raises:
            RuntimeError: ``<img_path>: the data pipeline failed on this image: <type>: <message>`` (or the original
                exception when its message already names the file).
            ValueError: the decoded image is not ``height`` x ``width`` of the annotation file (named, with the EXIF
                orientation; see the class docstring).
        """
        try:
            data = super().prepare_data(idx)
        except Exception as e:
            path = str(self.get_data_info(idx).get('img_path', f'<image index {idx}>'))
            if self.skip_bad_images and not self.test_mode:
                self.skipped_images.append(path)
                with self._skip_counts.get_lock():
                    self._skip_counts[0] += 1
                    self._skip_counts[1] += 1
                print_log(f'{type(self).__name__}: skipped {path} ({type(e).__name__}: {e}); '
                          f'{len(self.skipped_images)} image(s) skipped so far in this process',
                          logger='current', level=logging.WARNING)
                return None
            if path in str(e):
                raise
            raise RuntimeError(f'{path}: the data pipeline failed on this image: {type(e).__name__}: {e}') from e
        if data is not None:
            self._check_size(idx, data)
        return data

    def load_data_list(self) -> List[dict]:
        built = []

        def build(local_path):
            built.append(load_checked_coco(local_path, self.metainfo['classes'], str(self.ann_file)))
            return built[-1]

        self.COCOAPI = build  # the parent's loop over the images, over the checked file
        try:
            data_list = super().load_data_list()
        finally:
            del self.COCOAPI
        coco = built[-1]
        self.annotation_report = coco.report
        used = sum(len(d['instances']) for d in data_list)
        if used != len(coco.used['annotations']):
            raise RuntimeError(f'{self.ann_file}: {len(coco.used["annotations"])} annotations passed the checks '
                               f'but mmdet parsed {used} (a rule of mmkp.datasets.coco misses one of mmdet\'s)')
        log_annotation_report(coco.report, str(self.ann_file), type(self).__name__)
        if self.checked_ann_file:
            # every rank writes the same content: through a temporary file and a rename, so that no metric ever
            # reads a half-written file
            path = osp.abspath(self.checked_ann_file)
            os.makedirs(osp.dirname(path), exist_ok=True)
            tmp = f'{path}.tmp-{os.getpid()}'
            with open(tmp, 'w') as f:
                json.dump(coco.used, f)
            os.replace(tmp, path)
        return data_list


__all__ = ['CheckedCocoDataset', 'CheckedCOCO', 'check_coco_annotations', 'read_coco_json', 'load_checked_coco',
           'format_annotation_report', 'log_annotation_report', 'exif_orientation', 'IGNORE_RULES', 'REQUIRED_KEYS']
