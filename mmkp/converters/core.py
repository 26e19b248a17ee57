"""Shared machinery of the converters from released original checkpoints to mmkp models.

A converter is data: one or more :class:`Layout` s of the released file (ordered ``(regex, replacement)`` key rules,
first match wins) and the target keys / shapes of the mmkp model (read off the model built from a config, or given).
:class:`StateDictConverter` applies them and refuses, with :class:`ConversionError` naming the file and the key,
whenever the result would not load with ``strict=True`` into the model:

* a source key that no rule maps (``unmapped``), or that maps to a name the model does not have (``unknown target``);
* two source keys that map to the same target name (``collision``);
* a target key that no source key fills (``missing``), except the optional ones below;
* a shape that differs between source and target (``shape mismatch``, both shapes named).

Source keys (``state_dict()`` names of the original model)
    One leading ``module.`` (``nn.DataParallel`` / the originals' ``DummyModule`` wrapper) is removed from every key
    before the rules run, so rules are written without it; a file may hold keys with and without it.

Optional targets
    BatchNorm's ``num_batches_tracked`` buffers (shape ``[]``, int64) appeared in PyTorch 0.4.1. Files saved under
    PyTorch 0.4.0 (the original CornerNet repository pins it) lack them. A target key matching one of
    :data:`OPTIONAL_TARGETS` that no source key fills is set to ``torch.zeros(shape, dtype=torch.long)``: BN reads
    the buffer only in training with ``momentum=None`` (cumulative averaging) and never in evaluation, so 0 ("no
    batch seen since loading") changes no output. Filled keys are listed in the output's ``meta['filled']``.

Rules
    ``(pattern, replacement)`` pairs; the first pattern that ``re.search`` es the key wins and the key becomes
    ``re.sub(pattern, replacement, key, count=1)``: anchor patterns with ``^``; the part of the key the pattern does
    not consume is kept (``(r'^hg\\.cnvs\\.', 'backbone.out_convs.')`` renames a prefix). A replacement of ``None``
    drops the key on purpose (e.g. a classifier the original stores but never runs); dropped keys are listed in
    ``meta['dropped']``. A :class:`Layout` may also carry ``aliases``: rules of the same form tried first, whose
    result (or the key unchanged when none matches) then goes through ``rules``; they write a second layout of a
    released file in the names of the first.

Bias folds
    A :class:`Layout` may carry ``bias_folds``: ``(pattern, replacement)`` pairs tried on every source key (after
    ``module.`` is removed) before ``aliases`` and ``rules``. A key one of them matches is the bias ``b`` [C] of a
    convolution whose target module has no bias (mmcv ``ConvModule(bias='auto')`` before a norm layer); the
    replacement names the target ``running_mean`` [C] of the BatchNorm that follows it, which another source key
    fills. The converter writes ``running_mean - b`` there: with BN ``y = g (x + b - m) / sqrt(v + eps) + beta``,
    ``m' = m - b`` gives the same output in evaluation (up to float32 rounding of the difference); in training the
    batch statistics absorb the constant either way. A fold is refused like a key (``unknown target``, two folds
    into one target: ``collision``, ``shape mismatch`` against the target's shape, a target that no source key
    fills: ``missing``); done folds are listed in ``meta['folded']`` as ``'source -> target'``. With shapes instead
    of tensors (key lists) only the checks run.

Reshapes
    A :class:`Layout` may carry ``reshapes``: patterns ``re.search`` ed on the *target* key. A mapped source value
    whose shape differs from its target's is then given the target's shape with ``value.reshape(target_shape)``
    (the same elements in the same row-major order) when both hold the same number of elements, and refused as a
    ``shape mismatch`` (both shapes and element counts named) otherwise; a target no pattern matches is never
    reshaped. It is for the same parameter stored in another tensor rank, e.g. the original FCOS ``Scale`` holds a
    ``(1,)`` tensor where mmcv's ``Scale`` holds a 0-dim one (``[1] -> []``). Reshaped targets are listed in the
    output's ``meta['reshaped']`` as ``'target [source shape] -> [target shape]'`` (only when one was reshaped).
    With shapes instead of tensors (key lists) the target's shape is passed on.

Files
    :func:`load_source` reads the released file with ``torch.load(..., map_location='cpu', weights_only=True)`` (the
    allowlist of mmengine types is installed by ``import mmkp``) and accepts a bare ``state_dict`` or one under
    ``'state_dict'`` / ``'model'``. :func:`save_converted` writes ``{'state_dict': OrderedDict, 'meta': dict}`` in the
    target's key order, loadable by ``tools/test.py CONFIG FILE`` / ``load_from`` / ``init_cfg=Pretrained``.

Command line
    :func:`main` is the whole body of a family script: ``python tools/model_converters/<family>_to_mmkp.py SRC DST
    [--config CFG] [--cfg-options k=v ...]``; without ``--config`` the family's released-model config is used.
"""
import argparse
import math
import os.path as osp
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch

#: ``(pattern, replacement)``; replacement ``None`` drops the key.
Rule = Tuple[str, Optional[str]]
Shape = Tuple[int, ...]

#: target keys that may be absent from the source; filled with zeros (int64) of the target shape.
OPTIONAL_TARGETS: Tuple[str, ...] = (r'(^|\.)num_batches_tracked$', )
#: top-level keys under which a checkpoint may hold its state dict, tried in this order.
WRAPPER_KEYS: Tuple[str, ...] = ('state_dict', 'model')
#: the prefix of ``nn.DataParallel`` / the originals' ``DummyModule``, removed once from every source key.
MODULE_PREFIX = 'module.'
#: at most this many keys are named in one error message.
MAX_NAMED = 8


class ConversionError(ValueError):
    """A released checkpoint cannot be converted to the target model; the message names the file and the keys."""


@dataclass(frozen=True)
class Layout:
    """The key layout of one released checkpoint.

    Args:
        name (str): short name, used in messages and ``meta['layout']`` (e.g. ``'CornerNet-Lite'``).
        original (str): the repository, commit and file that define the original model (``meta['original']``).
        rules (Sequence[Rule]): ordered key rules (see the module docstring); every kept source key must match one.
        aliases (Sequence[Rule]): ordered rules applied before ``rules``; a key none matches passes unchanged.
            Defaults to ().
        signature (str, optional): a pattern that some key of this layout matches (after the ``module.`` prefix is
            removed) and no key of the converter's other layouts does; needed only when a converter has several
            layouts. Defaults to None.
        bias_folds (Sequence[Rule]): ordered ``(pattern, running_mean target)`` rules of the convolution biases
            folded into the following BN's running mean (see the module docstring); tried before ``aliases``.
            Defaults to ().
        reshapes (Sequence[str]): patterns of target keys whose source value may be reshaped to the target's shape
            when the element counts are equal (see the module docstring). Defaults to ().

    Raises:
        re.error: a pattern does not compile.
        ValueError: an alias or a bias fold with replacement None.
    """
    name: str
    original: str
    rules: Sequence[Rule]
    aliases: Sequence[Rule] = ()
    signature: Optional[str] = None
    bias_folds: Sequence[Rule] = ()
    reshapes: Sequence[str] = ()

    def __post_init__(self) -> None:
        for pattern, repl in list(self.rules) + list(self.aliases) + list(self.bias_folds):
            re.compile(pattern)  # re.error early, naming the pattern
        for pattern in self.reshapes:
            re.compile(pattern)
        if any(repl is None for _, repl in self.aliases):
            raise ValueError(f'{self.name}: aliases rename keys, they cannot drop them (replacement None)')
        if any(repl is None for _, repl in self.bias_folds):
            raise ValueError(f'{self.name}: a bias fold needs the running_mean it goes into (replacement None)')

    def fold_target(self, key: str) -> Optional[str]:
        """The ``running_mean`` target that the bias ``key`` (``module.`` removed) folds into, or None."""
        matched, target = _apply_first(key, self.bias_folds)
        return target if matched else None

    def map_key(self, key: str) -> Tuple[bool, Optional[str]]:
        """Apply ``aliases`` then ``rules`` to one key (``module.`` already removed).

        Returns:
            tuple[bool, str | None]: (whether a rule matched, the new key or None when the rule drops it).
        """
        key = _apply_first(key, self.aliases)[1] if self.aliases else key
        return _apply_first(key, self.rules)


def _apply_first(key: str, rules: Sequence[Rule]) -> Tuple[bool, Optional[str]]:
    """The first rule whose pattern ``re.search`` es ``key`` rewrites it; (False, key) when none does."""
    for pattern, repl in rules:
        if re.search(pattern, key):
            return True, None if repl is None else re.sub(pattern, repl, key, count=1)
    return False, key


@dataclass
class ConversionResult:
    """What :meth:`StateDictConverter.convert` returns.

    Attributes:
        state_dict (OrderedDict[str, Any]): target key -> value, in the target's key order.
        layout (Layout): the layout the source was read as.
        sources (dict[str, str]): target key -> the source key it came from (as in the file, prefix included).
        filled (list[str]): optional target keys no source key filled (set to zeros).
        dropped (list[str]): source keys dropped on purpose by a ``None`` rule.
        folded (dict[str, str]): running_mean target key -> the bias source key folded into it (``bias_folds``).
        reshaped (dict[str, tuple[Shape, Shape]]): target key -> (source shape, target shape) of the values
            reshaped by a ``reshapes`` pattern.
    """
    state_dict: 'OrderedDict[str, Any]'
    layout: Layout
    sources: Dict[str, str] = field(default_factory=dict)
    filled: List[str] = field(default_factory=list)
    dropped: List[str] = field(default_factory=list)
    folded: Dict[str, str] = field(default_factory=dict)
    reshaped: Dict[str, Tuple[Shape, Shape]] = field(default_factory=dict)


def _shape_of(value: Any) -> Shape:
    """Shape of a tensor, or a shape given as a list / tuple of ints / ``torch.Size`` (key lists)."""
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return tuple(value)
    raise TypeError(f'not a tensor nor a shape: {type(value).__name__}')


def _named(keys: Sequence[str]) -> str:
    shown = ', '.join(repr(k) for k in keys[:MAX_NAMED])
    return shown + (f' and {len(keys) - MAX_NAMED} more' if len(keys) > MAX_NAMED else '')


class StateDictConverter:
    """Map a released checkpoint's ``state_dict`` onto an mmkp model's keys, refusing anything but a full match.

    Args:
        layouts (Layout | Sequence[Layout]): the released layouts this converter reads; with several, each needs a
            ``signature`` and exactly one must match the source.
        target_shapes (Mapping[str, Sequence[int]]): the model's ``state_dict()`` keys -> shapes (see
            :func:`target_shapes_from_model`, :func:`target_shapes_from_config`); their order is the output's.
        optional_targets (Sequence[str]): patterns of target keys that may be left unfilled (filled with int64
            zeros). Defaults to :data:`OPTIONAL_TARGETS` (``num_batches_tracked``).
        name (str): converter name for messages and ``meta['converter']``. Defaults to ``'converter'``.

    Raises:
        ValueError: no layout, or several layouts of which one has no ``signature``.
    """

    def __init__(self,
                 layouts: Union[Layout, Sequence[Layout]],
                 target_shapes: Mapping[str, Sequence[int]],
                 optional_targets: Sequence[str] = OPTIONAL_TARGETS,
                 name: str = 'converter') -> None:
        self.layouts = (layouts, ) if isinstance(layouts, Layout) else tuple(layouts)
        if not self.layouts:
            raise ValueError('a converter needs at least one layout')
        if len(self.layouts) > 1 and any(layout.signature is None for layout in self.layouts):
            raise ValueError('with several layouts every layout needs a signature')
        self.target_shapes: 'OrderedDict[str, Shape]' = OrderedDict(
            (k, tuple(int(s) for s in v)) for k, v in target_shapes.items())
        self.optional_targets = tuple(optional_targets)
        self.name = name

    def detect_layout(self, keys: Sequence[str], source: str = '<state_dict>') -> Layout:
        """The layout whose ``signature`` some key (``module.`` removed) matches.

        Raises:
            ConversionError: when no layout, or more than one, matches.
        """
        if len(self.layouts) == 1:
            return self.layouts[0]
        hits = [layout for layout in self.layouts if any(re.search(layout.signature, k) for k in keys)]
        if len(hits) != 1:
            what = 'none' if not hits else 'several (' + ', '.join(h.name for h in hits) + ')'
            known = '; '.join(f'{lay.name}: a key matching {lay.signature!r}' for lay in self.layouts)
            raise ConversionError(f'{source}: matches {what} of the layouts {self.name} reads ({known}); '
                                  f'first keys: {_named(list(keys)[:3])}')
        return hits[0]

    def convert(self, state_dict: Mapping[str, Any], source: str = '<state_dict>') -> ConversionResult:
        """Rename every source key to the target's, check names and shapes, fill the optional buffers.

        Args:
            state_dict (Mapping[str, Any]): source key (``module.`` prefix optional) -> tensor, or -> shape (a list
                of ints, as in a key list: values are passed through, so shapes come out as shapes).
            source (str): the file name used in messages. Defaults to ``'<state_dict>'``.

        Returns:
            ConversionResult: the converted state dict in the target's key order, and what was filled / dropped /
            folded.

        Raises:
            ConversionError: on an unmapped source key, a key mapped to a name the target lacks, two keys mapped to
                one name, a value that is neither a tensor nor a shape, a shape mismatch (also one that a
                ``reshapes`` pattern allows but whose element counts differ) or a missing target key (see the module
                docstring), and the same for a bias fold; the message names the file, the key(s) and the shapes.
        """
        stripped = [k[len(MODULE_PREFIX):] if k.startswith(MODULE_PREFIX) else k for k in state_dict]
        layout = self.detect_layout(stripped, source)
        where = f'{source} (read as the {layout.name} layout by {self.name})'
        mapped: Dict[str, Tuple[str, Any]] = {}
        folds: Dict[str, str] = {}
        unmapped, unknown, dropped = [], [], []
        for key, short in zip(state_dict, stripped):
            fold = layout.fold_target(short)
            if fold is not None:
                if fold not in self.target_shapes:
                    unknown.append(f'{key} -> {fold} (bias fold)')
                elif fold in folds:
                    raise ConversionError(f'{where}: {key!r} and {folds[fold]!r} both fold into {fold!r}')
                else:
                    folds[fold] = key
                continue
            matched, target = layout.map_key(short)
            if not matched:
                unmapped.append(key)
            elif target is None:
                dropped.append(key)
            elif target not in self.target_shapes:
                unknown.append(f'{key} -> {target}')
            elif target in mapped:
                raise ConversionError(f'{where}: {key!r} and {mapped[target][0]!r} both map to {target!r}')
            else:
                mapped[target] = (key, state_dict[key])
        if unmapped:
            raise ConversionError(f'{where}: {len(unmapped)} key(s) match no rule: {_named(unmapped)}')
        if unknown:
            raise ConversionError(f'{where}: {len(unknown)} key(s) map to names the model does not have: '
                                  f'{_named(unknown)}')
        result = ConversionResult(OrderedDict(), layout, dropped=dropped)
        missing = []
        for target, shape in self.target_shapes.items():
            if target not in mapped:
                if any(re.search(p, target) for p in self.optional_targets):
                    result.state_dict[target] = torch.zeros(shape, dtype=torch.long)
                    result.filled.append(target)
                else:
                    missing.append(target)
                continue
            key, value = mapped[target]
            try:
                got = _shape_of(value)
            except TypeError as e:
                raise ConversionError(f'{where}: {key!r}: {e}') from None
            if got != shape and any(re.search(p, target) for p in layout.reshapes):
                if math.prod(got) != math.prod(shape):
                    raise ConversionError(f'{where}: shape mismatch: {key!r} has shape {list(got)} '
                                          f'({math.prod(got)} elements), its target {target!r} has shape '
                                          f'{list(shape)} ({math.prod(shape)} elements): cannot be reshaped')
                value = value.reshape(shape) if isinstance(value, torch.Tensor) else list(shape)
                result.reshaped[target] = (got, shape)
            elif got != shape:
                raise ConversionError(f'{where}: shape mismatch: {key!r} has shape {list(got)}, '
                                      f'its target {target!r} has shape {list(shape)}')
            result.state_dict[target] = value
            result.sources[target] = key
        if missing:
            raise ConversionError(f'{where}: {len(missing)} key(s) of the model are filled by no source key: '
                                  f'{_named(missing)}')
        for target, key in folds.items():
            self._fold_bias(result, target, key, state_dict[key], where)
        return result

    def _fold_bias(self, result: ConversionResult, target: str, key: str, bias: Any, where: str) -> None:
        """``result.state_dict[target] -= bias`` (a new tensor); only the checks when either is a shape."""
        if target not in result.sources:  # a filled optional buffer: nothing to fold into
            raise ConversionError(f'{where}: {key!r} folds into {target!r}, which no source key fills')
        try:
            got = _shape_of(bias)
        except TypeError as e:
            raise ConversionError(f'{where}: {key!r}: {e}') from None
        shape = self.target_shapes[target]
        if got != shape:
            raise ConversionError(f'{where}: shape mismatch: {key!r} has shape {list(got)}, the running mean it '
                                  f'folds into, {target!r}, has shape {list(shape)}')
        mean = result.state_dict[target]
        if isinstance(mean, torch.Tensor) and isinstance(bias, torch.Tensor):
            result.state_dict[target] = mean - bias.to(mean.dtype)
        result.folded[target] = key


def target_shapes_from_model(model: torch.nn.Module) -> 'OrderedDict[str, Shape]':
    """``model.state_dict()`` keys -> shapes, in order (parameters and buffers)."""
    return OrderedDict((k, tuple(v.shape)) for k, v in model.state_dict().items())


def build_model_from_config(config: Union[str, Any],
                            cfg_options: Optional[dict] = None,
                            device: Union[str, torch.device] = 'cpu') -> torch.nn.Module:
    """Build ``cfg.model`` with mmdet's registry (mmkp and mmdet modules registered, default scope ``mmdet``).

    Args:
        config (str | mmengine.Config): a config file or a loaded config.
        cfg_options (dict, optional): ``--cfg-options`` style overrides. Defaults to None.
        device (str | torch.device): where to build; ``'meta'`` allocates nothing (shapes only). Defaults to
            ``'cpu'``.

    Returns:
        torch.nn.Module: the detector, not initialised beyond its constructors.
    """
    import mmkp  # noqa: F401  (registers mmkp modules, installs the checkpoint allowlist)
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from mmkp.utils import get_data_root
    if isinstance(config, str):
        get_data_root(set_env=True)  # configs read {{$MMKP_DATA:data}}
        config = Config.fromfile(config)
    if cfg_options:
        config.merge_from_dict(cfg_options)
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope('mmdet'), torch.device(device):
        return MODELS.build(config.model)


def target_shapes_from_config(config: Union[str, Any],
                              cfg_options: Optional[dict] = None) -> 'OrderedDict[str, Shape]':
    """The target keys / shapes of ``cfg.model``, built on the ``meta`` device (no memory, no initialisation)."""
    return target_shapes_from_model(build_model_from_config(config, cfg_options, device='meta'))


def extract_state_dict(ckpt: Any, source: str = '<checkpoint>') -> Tuple[Mapping[str, Any], str]:
    """The state dict inside a loaded checkpoint and where it was.

    Args:
        ckpt (Any): what ``torch.load`` returned: a bare state dict (str -> tensor) or a dict holding one under
            ``'state_dict'`` or ``'model'`` (:data:`WRAPPER_KEYS`, tried in order).
        source (str): the file name used in messages.

    Returns:
        tuple[Mapping, str]: the state dict, and ``'bare'`` or the wrapper key.

    Raises:
        ConversionError: when no mapping of tensors is found.
    """
    if not isinstance(ckpt, Mapping):
        raise ConversionError(f'{source}: holds a {type(ckpt).__name__}, not a state dict')
    for wrapper in WRAPPER_KEYS:
        inner = ckpt.get(wrapper)
        if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            return inner, wrapper
    if ckpt and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in ckpt.items()):
        return ckpt, 'bare'
    raise ConversionError(f'{source}: no state dict found: neither a mapping of names to tensors nor one under '
                          f'{" / ".join(map(repr, WRAPPER_KEYS))} (top-level keys: {_named([str(k) for k in ckpt])})')


def load_source(path: str) -> Tuple[Mapping[str, Any], str]:
    """Read a released checkpoint safely: ``torch.load(path, map_location='cpu', weights_only=True)``.

    Returns:
        tuple[Mapping, str]: its state dict and where it was (see :func:`extract_state_dict`).

    Raises:
        FileNotFoundError: no such file.
        ConversionError: no state dict in it, or it holds objects ``weights_only`` refuses.
    """
    import mmkp  # noqa: F401  (the checkpoint allowlist)
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path}: no such file')
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # pickle.UnpicklingError and the like: name the file
        raise ConversionError(f'{path}: torch.load(weights_only=True) refused it: {e}') from e
    return extract_state_dict(ckpt, path)


def save_converted(result: ConversionResult, dst: str, meta: Optional[dict] = None) -> dict:
    """Write ``{'state_dict': result.state_dict, 'meta': {...}}`` to ``dst`` (``torch.save``).

    ``meta`` holds plain types only (loadable with ``weights_only=True``): ``converter``, ``layout``, ``original``,
    ``filled``, ``dropped``, ``mmkp_version``, ``folded`` (``'source -> target'``; only when a bias was folded),
    ``reshaped`` (``'target [source shape] -> [target shape]'``; only when a value was reshaped), plus the given
    entries.

    Returns:
        dict: the meta written.
    """
    from mmkp.version import __version__
    full = dict(
        layout=result.layout.name,
        original=result.layout.original,
        filled=list(result.filled),
        dropped=list(result.dropped),
        mmkp_version=__version__)
    if result.folded:
        full['folded'] = [f'{key} -> {target}' for target, key in result.folded.items()]
    if result.reshaped:
        full['reshaped'] = [f'{target} {list(got)} -> {list(want)}' for target, (got, want) in result.reshaped.items()]
    full.update(meta or {})
    torch.save({'state_dict': result.state_dict, 'meta': full}, dst)
    return full


@dataclass(frozen=True)
class Family:
    """A family script's converter: its layouts and their released-model configs.

    Args:
        name (str): script name, e.g. ``'cornernet_to_mmkp'`` (``meta['converter']``).
        description (str): one line for ``--help``.
        layouts (Sequence[Layout]): the released layouts read (see :class:`StateDictConverter`).
        default_config (str): the released-model config, relative to the repository root.
        configs (Mapping[str, str], optional): layout name -> its released-model config (relative to the repository
            root), for families whose files are different models (CenterNet ResDCN-18 / DLA-34 / Hourglass-104);
            a layout not listed uses ``default_config``. Defaults to None.
        file_configs (Sequence[tuple[str, str]]): ``(regex, config)`` pairs tried on the lower-cased base name of
            the file, first match wins, for families whose released models have identical keys (FCOS and FCOS
            imprv): then the file name must name the model (:meth:`config_of_file`). Defaults to ().
    """
    name: str
    description: str
    layouts: Sequence[Layout]
    default_config: str
    configs: Optional[Mapping[str, str]] = None
    file_configs: Sequence[Tuple[str, str]] = ()

    def converter(self, target_shapes: Mapping[str, Sequence[int]]) -> StateDictConverter:
        """A :class:`StateDictConverter` of this family's layouts onto ``target_shapes`` (key -> shape)."""
        return StateDictConverter(self.layouts, target_shapes, name=self.name)

    def layout_of(self, keys: Sequence[str], source: str = '<state_dict>') -> Layout:
        """The layout of a source's keys (one ``module.`` prefix optional), as the converter detects it.

        Raises:
            ConversionError: no (or more than one) layout matches; the message names ``source``.
        """
        stripped = [k[len(MODULE_PREFIX):] if k.startswith(MODULE_PREFIX) else k for k in keys]
        return self.converter({}).detect_layout(stripped, source)

    def released_config(self, layout: Layout) -> str:
        """The released-model config of ``layout`` (relative to the repository root)."""
        return (self.configs or {}).get(layout.name, self.default_config)

    def config_of_file(self, src: str, keys: Sequence[str]) -> str:
        """The released-model config of the file ``src`` (relative to the repository root): by its name when the
        family has ``file_configs``, else by the layout of its ``keys``.

        Raises:
            ConversionError: ``file_configs`` match nothing in the name (pass a config), or no layout matches.
        """
        if self.file_configs:
            name = osp.basename(src).lower()
            for pattern, config in self.file_configs:
                if re.search(pattern, name):
                    return config
            raise ConversionError(f'{src}: the released files of {self.name} have the same keys, and the file name '
                                  f'names none of them (' + '; '.join(f'{p!r}: {c}' for p, c in self.file_configs) +
                                  '): pass the config (--config)')
        return self.released_config(self.layout_of(keys, src))


def convert_file(family: Family,
                 src: str,
                 dst: str,
                 config: Optional[str] = None,
                 cfg_options: Optional[dict] = None,
                 repo_root: str = '.') -> Tuple[ConversionResult, dict]:
    """Convert the released file ``src`` for the model of ``config`` and write it to ``dst``.

    Args:
        family (Family): what to convert.
        src (str): the released checkpoint.
        dst (str): where to write ``{'state_dict', 'meta'}``.
        config (str, optional): the target model's config; None: the released config of the file
            (:meth:`Family.config_of_file`, under ``repo_root``). The file is read once either way.
        cfg_options (dict, optional): overrides of the config. Defaults to None.
        repo_root (str): the folder the family's configs are relative to. Defaults to ``'.'``.

    Returns:
        tuple[ConversionResult, dict]: the conversion and the meta written (``config`` included).

    Raises:
        FileNotFoundError, ConversionError: see :func:`load_source` and :meth:`StateDictConverter.convert`.
    """
    state_dict, wrapper = load_source(src)
    if config is None:
        config = osp.join(repo_root, family.config_of_file(src, list(state_dict)))
    result = family.converter(target_shapes_from_config(config, cfg_options)).convert(state_dict, source=src)
    meta = save_converted(
        result, dst, dict(converter=family.name, source=osp.basename(src), source_wrapper=wrapper, config=config))
    return result, meta


def main(family: Family, repo_root: str, argv: Optional[Sequence[str]] = None) -> int:
    """Command line of a family script: ``SRC DST [--config CFG] [--cfg-options k=v ...]``.

    Args:
        family (Family): what to convert.
        repo_root (str): the folder ``family.default_config`` is relative to (the script's repository).
        argv (Sequence[str], optional): arguments; None reads ``sys.argv``.

    Returns:
        int: 0 on success; 1 (message on stderr) on a refusal or a missing file.
    """
    import sys

    from mmengine.config import DictAction
    configs = sorted({family.released_config(layout) for layout in family.layouts})
    if family.file_configs:
        default = 'by the file name: ' + ', '.join(f'{p!r}: {c}' for p, c in family.file_configs)
    elif len(configs) == 1:
        default = osp.join(repo_root, configs[0])
    else:
        default = 'the released config of the file: ' + ', '.join(
            f'{layout.name}: {family.released_config(layout)}' for layout in family.layouts)
    parser = argparse.ArgumentParser(description=family.description)
    parser.add_argument('src', help='the released checkpoint')
    parser.add_argument('dst', help='output file ({"state_dict", "meta"}, for tools/test.py or load_from)')
    parser.add_argument('--config', default=None, help=f'config of the target model (default: {default})')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='overrides of the config, key=value')
    args = parser.parse_args(argv)
    try:
        result, meta = convert_file(family, args.src, args.dst, args.config, args.cfg_options, repo_root)
    except (ConversionError, FileNotFoundError) as e:
        print(f'{family.name}: {e}', file=sys.stderr)
        return 1
    print(f'{family.name}: {len(result.sources)} tensors of {args.src} ({meta["layout"]} layout) written to '
          f'{args.dst} for {meta["config"]}')
    if result.filled:
        print(f'{len(result.filled)} num_batches_tracked buffers absent from the source, set to 0')
    if result.dropped:
        print(f'{len(result.dropped)} source keys dropped on purpose: {_named(result.dropped)}')
    if result.folded:
        print(f'{len(result.folded)} convolution biases folded into the running mean of the BN after them: '
              + ', '.join(f'{k} -> {t}' for t, k in result.folded.items()))
    if result.reshaped:
        print(f"{len(result.reshaped)} tensors reshaped to the model's shape (same elements): "
              + _named([f'{t} {list(g)} -> {list(s)}' for t, (g, s) in result.reshaped.items()]))
    return 0
