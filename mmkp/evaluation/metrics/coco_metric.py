"""``CocoMetric`` whose ground truth is the ground truth ``CheckedCocoDataset`` uses.

mmdet's ``CocoMetric`` reads its ``ann_file`` with pycocotools: the boxes that ``CheckedCocoDataset`` ignores
(zero / negative size, wholly outside, NaN / inf, unknown category, ``area <= 0``, ...; the rules of
:mod:`mmkp.datasets.coco`) still count as ground truth there, so a perfect model scores below 1 (each such box is a
miss), boxes that the dataset clips are matched unclipped, and an annotation without ``area`` stops the evaluation
(``KeyError: 'area'``). :class:`CheckedCocoMetric` reads the same file and builds its COCO API with
:class:`mmkp.datasets.coco.CheckedCOCO` (:func:`mmkp.datasets.coco.check_coco_annotations`) -- what the dataset builds
its annotations with -- and evaluates against the result, in memory (no file written).
"""
from typing import Dict, Optional, Sequence

from mmdet.evaluation import CocoMetric
from mmengine.fileio import get_local_path

from mmkp.datasets.coco import CheckedCOCO, log_annotation_report, read_coco_json
from mmkp.registry import METRICS


@METRICS.register_module()
class CheckedCocoMetric(CocoMetric):
    """mmdet's ``CocoMetric`` with the annotation rules of :mod:`mmkp.datasets.coco` applied to its ``ann_file``.

    The ground truth is the file as ``CheckedCocoDataset`` uses it: the boxes the rules ignore are left out, the
    boxes partly outside the image are clipped to it, a missing ``area`` is the clipped box's w * h, and the
    annotations of categories outside the dataset's ``classes`` are left out (they are not evaluated either way).
    The same one counted warning as the dataset's is logged (``CheckedCocoMetric: <file>: I of N annotations
    ignored, C clipped (<rule>: n, ...); first: image <id> annotation <id> (<rule>); ...``) when the ground truth is
    built: when the loop hands the metric the dataset's meta information (``dataset_meta``, with ``classes``), else
    at the first ``process`` / ``compute_metrics``. The file is read and parsed once, when the metric is built
    (a missing, non-JSON or incomplete file stops there, named); a later change of ``classes`` reads it again.
    Everything else (``metric``, ``classwise``, ``format_only``, the results files, ...) is ``CocoMetric``'s.

    Without ``ann_file`` it is ``CocoMetric`` converting the dataset's own instances (the samples' ``instances``).

    Args:
        ann_file (str, optional): the COCO annotation file (any ``backend_args`` backend). Defaults to None.
        backend_args (dict, optional): file backend arguments. Defaults to None.
        sort_categories (bool): sort the file's categories by id (as ``CocoMetric``). Defaults to False.
        **kwargs: the other (keyword) arguments of ``mmdet.evaluation.CocoMetric``.

    Attributes:
        annotation_report (dict or None): the report of :func:`mmkp.datasets.coco.check_coco_annotations` for the
            ground truth in use (``total``, ``counts`` per rule and ``'clipped'``, ``examples``); None before it is
            built.

    Raises:
        FileNotFoundError: ``<ann_file>: annotation file not found``.
        ValueError: the file is not a COCO detection file, an entry is malformed, or a class of ``classes`` is no
            category of the file (named; see :func:`mmkp.datasets.coco.check_coco_annotations`).
    """

    def __init__(self,
                 ann_file: Optional[str] = None,
                 *,
                 backend_args: Optional[dict] = None,
                 sort_categories: bool = False,
                 **kwargs) -> None:
        super().__init__(ann_file=None, backend_args=backend_args, **kwargs)
        self.ann_file = ann_file
        self.sort_categories = sort_categories
        self.annotation_report: Optional[Dict[str, object]] = None
        self._raw: Optional[dict] = None  # the parsed file until the ground truth is first built from it
        self._built_for = None  # the classes the ground truth was built for
        if ann_file is not None:
            self._raw = self._read()

    def _read(self) -> dict:
        with get_local_path(self.ann_file, backend_args=self.backend_args) as local_path:
            return read_coco_json(local_path, str(self.ann_file))

    @property
    def dataset_meta(self) -> Optional[dict]:
        """dict or None: the dataset's meta information; setting it (re)builds the ground truth for its
        ``classes``."""
        return self._dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, dataset_meta: Optional[dict]) -> None:
        self._dataset_meta = dataset_meta
        if self.ann_file is not None:
            classes = self._classes()
            if self._coco_api is None or classes != self._built_for:
                self._build(classes)

    def _classes(self) -> Optional[tuple]:
        classes = (self._dataset_meta or {}).get('classes')
        return tuple(classes) if classes is not None else None

    def _build(self, classes: Optional[tuple]) -> None:
        """Build the COCO API over the checked file for ``classes`` and log the warning."""
        # the parsed file serves one build: pycocotools' evaluation writes into the annotations it is given
        data, self._raw = (self._raw if self._raw is not None else self._read()), None
        name = str(self.ann_file)
        coco = CheckedCOCO(data, classes, name)
        if self.sort_categories:  # as CocoMetric does for Objects365
            coco.cats = {i: coco.cats[i] for i in sorted(coco.cats)}
            coco.dataset['categories'] = sorted(coco.dataset['categories'], key=lambda c: c['id'])
        self._coco_api = coco
        self._built_for = classes
        self.annotation_report = coco.report
        self.cat_ids = None  # CocoMetric's lazy per-api state
        self.img_ids = None
        log_annotation_report(coco.report, name, type(self).__name__)

    def _ensure_built(self) -> None:
        if self.ann_file is not None and self._coco_api is None:
            self._build(self._classes())

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """``CocoMetric.process``, with the ground truth built first (see the class docstring)."""
        self._ensure_built()
        super().process(data_batch, data_samples)

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """``CocoMetric.compute_metrics`` against the checked ground truth."""
        self._ensure_built()
        return super().compute_metrics(results)


__all__ = ['CheckedCocoMetric']
