"""Training hooks for long runs: stop (or skip) on a non-finite loss, never leave a checkpoint half-written, resume
with the random generators where they were.

All are mmengine hooks registered in mmkp's (mmdet's) ``HOOKS``:

- :class:`FiniteLossHook`: add through ``custom_hooks=[dict(type='FiniteLossHook')]``;
- :class:`AtomicCheckpointHook`: replaces mmengine's checkpoint hook through
  ``default_hooks=dict(checkpoint=dict(type='AtomicCheckpointHook', ...))`` (same arguments as ``CheckpointHook``);
- :class:`RandomStateHook`: add through ``custom_hooks=[dict(type='RandomStateHook')]``.
"""
import logging
import os
import os.path as osp
import random
import shutil
from typing import Dict, List, Optional

import numpy as np
import torch
from mmengine.dist import all_reduce, is_main_process
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from mmkp.registry import HOOKS


def nonfinite_loss_terms(losses: Dict[str, object]) -> List[str]:
    """Names of the loss terms holding a NaN or an infinity.

    Args:
        losses (dict[str, Tensor | list[Tensor]]): what a model's ``loss`` returns (any shapes; a list term, e.g.
            one tensor per feature level, is bad when any of its tensors is).

    Returns:
        list[str]: the bad terms' names, in the dict's order (empty when all are finite). One host sync in all.

    Raises:
        TypeError: a term is neither a tensor nor a list of tensors (named).
    """
    names, finite = [], []
    for name, value in losses.items():
        tensors = [value] if isinstance(value, torch.Tensor) else value
        if not isinstance(tensors, (list, tuple)) or not all(isinstance(t, torch.Tensor) for t in tensors):
            raise TypeError(f'FiniteLossHook: loss term {name!r} is a {type(value).__name__}, not a tensor or a '
                            'list of tensors')
        names.append(name)
        finite.append(torch.stack([torch.isfinite(t.detach()).all() for t in tensors]).all() if tensors else
                      torch.ones((), dtype=torch.bool))
    if not names:
        return []
    ok = torch.stack([f.to(finite[0].device) for f in finite]).tolist()
    return [n for n, good in zip(names, ok) if not good]


@HOOKS.register_module()
class FiniteLossHook(Hook):
    """Stop training (or skip the step) when a loss term is NaN or infinite, before the optimizer step.

    mmengine's ``train_step`` sums the loss terms (``parse_losses``) and hands the sum to
    ``optim_wrapper.update_params`` (backward, step); a NaN there reaches every weight and, at the next save, the
    checkpoint. This hook wraps the model's ``parse_losses`` at ``before_train`` and checks every term first:

    - ``action='raise'`` (default): raise ``FloatingPointError`` naming the iteration (1-based, as the log counts it,
      and ``runner.iter``), the epoch and every non-finite term with its value. Nothing is stepped, so the weights
      in memory and in every checkpoint written so far are those of the previous iteration; batch-norm running
      statistics updated by the bad forward are not restored in this mode (the run stops).
    - ``action='skip'``: log a warning naming the same, leave this iteration's ``update_params`` out (no backward,
      no optimizer step), restore the model's buffers (batch-norm statistics) to their values before the
      iteration, count the step (``runner.message_hub`` info ``'nonfinite_loss_skips'``, logged at the end of each
      epoch) and go on. With ``max_skips`` set, the run stops once more steps than that were skipped.

    In a distributed run the check is all-reduced, so every rank stops or skips together. Caveats of ``'skip'``:
    with gradient accumulation (``accumulative_counts > 1``) the gradients accumulated before the bad step are kept
    for the next one; under DDP it is not tested here.

    Args:
        action (str): ``'raise'`` or ``'skip'``. Defaults to ``'raise'``.
        max_skips (int, optional): with ``'skip'``, the most steps skipped in the whole run before it stops with
            the error of ``'raise'``. Defaults to None (no limit).

    Raises:
        ValueError: unknown ``action`` or negative ``max_skips``.
        FloatingPointError: at a non-finite loss (``'raise'``) or past ``max_skips`` (``'skip'``).
    """

    priority = 'VERY_HIGH'

    def __init__(self, action: str = 'raise', max_skips: Optional[int] = None):
        if action not in ('raise', 'skip'):
            raise ValueError(f"FiniteLossHook: action must be 'raise' or 'skip', got {action!r}")
        if max_skips is not None and max_skips < 0:
            raise ValueError(f'FiniteLossHook: max_skips must be >= 0 or None, got {max_skips}')
        self.action = action
        self.max_skips = max_skips
        self.skipped = 0
        self._epoch_skipped = 0
        self._skip_update = False
        self._buffers: Optional[Dict[str, torch.Tensor]] = None

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        parse_losses = model.parse_losses
        hook = self

        def checked_parse_losses(losses):
            bad = nonfinite_loss_terms(losses)
            flag = torch.tensor(float(bool(bad)), device=_device_of(losses))
            all_reduce(flag)  # every rank decides alike (a no-op without a process group)
            loss, log_vars = parse_losses(losses)
            if flag.item() > 0:
                hook._handle(runner, bad, losses)
            return loss, log_vars

        model.parse_losses = checked_parse_losses
        if self.action == 'skip':
            update_params = runner.optim_wrapper.update_params

            def guarded_update_params(*args, **kwargs):
                if hook._skip_update:
                    hook._skip_update = False
                    return None
                return update_params(*args, **kwargs)

            runner.optim_wrapper.update_params = guarded_update_params

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self.action == 'skip':
            model = runner.model.module if is_model_wrapper(runner.model) else runner.model
            self._buffers = {name: buf.detach().clone() for name, buf in model.named_buffers()}

    def _handle(self, runner, bad: List[str], losses) -> None:
        """Raise, or mark this iteration's update to be left out and restore the buffers."""
        values = ', '.join(f'{name}={_describe(losses[name])}' for name in bad) or 'on another rank'
        where = (f'iteration {runner.iter + 1} (runner.iter == {runner.iter}, epoch {runner.epoch + 1}): '
                 f'non-finite loss term(s) {values}')
        if self.action == 'raise' or (self.max_skips is not None and self.skipped >= self.max_skips):
            limit = '' if self.action == 'raise' else f' after {self.skipped} skipped steps (max_skips)'
            raise FloatingPointError(f'FiniteLossHook: {where}{limit}; training stopped before the optimizer step, '
                                     'so no NaN reached the weights or a checkpoint')
        self.skipped += 1
        self._epoch_skipped += 1
        self._skip_update = True
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if self._buffers is not None:
            for name, buf in model.named_buffers():
                if name in self._buffers:
                    buf.copy_(self._buffers[name])
        runner.message_hub.update_info('nonfinite_loss_skips', self.skipped)
        print_log(f'FiniteLossHook: {where}; step skipped (no optimizer step, buffers restored), '
                  f'{self.skipped} skipped so far', logger='current', level=logging.WARNING)

    def after_train_epoch(self, runner) -> None:
        if self.action == 'skip':
            print_log(f'FiniteLossHook: epoch {runner.epoch + 1}: {self._epoch_skipped} step(s) skipped for a '
                      f'non-finite loss ({self.skipped} in the run)', logger='current',
                      level=logging.WARNING if self._epoch_skipped else logging.INFO)
            self._epoch_skipped = 0


def _device_of(losses) -> torch.device:
    for value in losses.values():
        tensors = [value] if isinstance(value, torch.Tensor) else list(value)
        if tensors:
            return tensors[0].device
    return torch.device('cpu')


def _describe(value) -> str:
    """A term's value for the message: the scalar, or the count of non-finite entries of a larger term."""
    tensors = [value] if isinstance(value, torch.Tensor) else list(value)
    if len(tensors) == 1 and tensors[0].numel() == 1:
        return str(tensors[0].item())
    flat = torch.cat([t.detach().reshape(-1).float() for t in tensors])
    return f'<{int((~torch.isfinite(flat)).sum())} of {flat.numel()} values non-finite>'


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    A reader sees either the old content or the new one, never a truncated file (``os.replace`` is atomic on POSIX
    and Windows within one file system).
    """
    tmp = osp.join(osp.dirname(path) or '.', f'.{osp.basename(path)}.tmp-{os.getpid()}')
    with open(tmp, 'w') as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint_atomically(runner, out_dir: str, filename: str, **kwargs) -> None:
    """``Runner.save_checkpoint(out_dir, filename, **kwargs)``, but through ``.<filename>.tmp-<pid>`` and a rename.

    The temporary file lives in ``out_dir`` (same file system, so ``os.replace`` is atomic): a crash during the
    write leaves at most that temporary file; ``<out_dir>/<filename>`` is either absent, the previous complete file
    or the new complete one. On an exception the temporary file is removed and the exception re-raised. Local paths
    only (see :class:`AtomicCheckpointHook`). Calls the class's method, so an instance-level patch is bypassed.
    """
    tmp_name = f'.{filename}.tmp-{os.getpid()}'
    tmp, final = osp.join(out_dir, tmp_name), osp.join(out_dir, filename)
    try:
        type(runner).save_checkpoint(runner, out_dir, tmp_name, **kwargs)
        if is_main_process():  # Runner.save_checkpoint writes on the main process only
            with open(tmp, 'rb') as f:
                os.fsync(f.fileno())
            os.replace(tmp, final)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` that never leaves a checkpoint or ``last_checkpoint`` half-written.

    Differences from the parent (same arguments, same file names), for local ``out_dir`` s:

    1. each checkpoint is written to ``.<name>.tmp-<pid>`` in ``out_dir`` and renamed (``os.replace``) when
       complete (:func:`save_checkpoint_atomically`), the best checkpoints (``save_best``) too;
    2. ``<work_dir>/last_checkpoint`` (what ``resume=True`` / ``--resume`` without a path reads) is rewritten the same
       way, after the checkpoint it names is complete;
    3. with ``max_keep_ckpts``, the checkpoint that falls out of the kept window is deleted only after the new one
       is complete (the parent deletes it first, so a crash during the save left no complete checkpoint).

    A process killed during a save therefore leaves the previous checkpoint loadable and ``last_checkpoint``
    naming it. For other storage backends (``backend_args`` with a remote ``out_dir``) it behaves as the parent.
    Use: ``default_hooks=dict(checkpoint=dict(type='AtomicCheckpointHook', interval=1, max_keep_ckpts=1))``.
    """

    def _save_checkpoint_with_step(self, runner, step, meta):
        if not isinstance(self.file_backend, LocalBackend):
            return super()._save_checkpoint_with_step(runner, step, meta)
        stale = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                stale.append(self.file_backend.join_path(self.out_dir,
                                                         self.filename_tmpl.format(self.keep_ckpt_ids.popleft())))
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        save_checkpoint_atomically(
            runner,
            self.out_dir,
            filename,
            file_client_args=self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
        if not is_main_process():
            return
        atomic_write_text(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        for path in stale:
            if path == self.last_ckpt:
                continue
            if osp.isfile(path):
                os.remove(path)
            elif osp.isdir(path):
                shutil.rmtree(path)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        if not isinstance(self.file_backend, LocalBackend):
            return super()._save_best_checkpoint(runner, metrics)
        # the parent calls runner.save_checkpoint for the best file: route that call through the atomic save for the
        # duration of this method only (an instance attribute, removed afterwards)
        runner.save_checkpoint = lambda out_dir, filename, *args, **kwargs: save_checkpoint_atomically(
            runner, out_dir, filename, **dict(zip(('file_client_args', 'save_optimizer', 'save_param_scheduler',
                                                   'meta', 'by_epoch'), args)), **kwargs)
        try:
            super()._save_best_checkpoint(runner, metrics)
        finally:
            del runner.save_checkpoint


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Save the random generators' states in every checkpoint and restore them on ``--resume``, so that a run
    interrupted after a checkpoint and resumed from it continues exactly as the uninterrupted run.

    mmengine's resume restores the model, the optimizer, the schedulers and the message hub, and re-seeds only when
    the configured seed differs from the checkpoint's; the generators themselves restart from the seed. The data
    pipeline (mmdet's random crops, flips and photometric transforms draw from Python's ``random`` and numpy's
    global generator in the loading process when ``num_workers=0``; workers are re-seeded by mmengine's
    ``worker_init_fn`` from the seed alone, the same every epoch) then draws other numbers after a resume than the
    uninterrupted run did, and the weights differ from the first resumed iteration on.

    ``before_save_checkpoint`` writes ``checkpoint['meta']['rng_state']``: Python ``random.getstate()``, numpy
    ``np.random.get_state()``, ``torch.get_rng_state()`` and, when CUDA is available, ``torch.cuda.get_rng_state_all()``
    (all loadable with ``weights_only=True``: tuples, ints, arrays, uint8 tensors). On resume (``runner._resume``;
    not for ``load_from``, which starts a new run) ``after_load_checkpoint`` keeps them and ``before_train``, after
    mmengine's own re-seeding, restores them. A checkpoint without the entry (written without this hook) resumes as
    mmengine does, with a warning.

    Bit-exact continuation also needs deterministic kernels (``randomness=dict(seed=..., deterministic=True)``) and a
    resume at a checkpoint boundary (epoch or iteration where the checkpoint was written), which ``--resume`` is.
    """

    priority = 'VERY_LOW'

    def __init__(self) -> None:
        self._pending: Optional[dict] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = dict(python=random.getstate(), numpy=np.random.get_state(), torch=torch.get_rng_state())
        if torch.cuda.is_available():
            state['cuda'] = torch.cuda.get_rng_state_all()
        checkpoint.setdefault('meta', {})['rng_state'] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not getattr(runner, '_resume', False):
            return
        state = checkpoint.get('meta', {}).get('rng_state')
        if state is None:
            print_log('RandomStateHook: the resumed checkpoint holds no random-generator states (written without '
                      'this hook): the data pipeline will draw other numbers than the interrupted run',
                      logger='current', level=logging.WARNING)
        self._pending = state

    def before_train(self, runner) -> None:
        state, self._pending = self._pending, None
        if state is None:
            return
        random.setstate(_as_python_state(state['python']))
        np.random.set_state(state['numpy'])
        torch.set_rng_state(state['torch'])
        if 'cuda' in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state['cuda'])
        print_log('RandomStateHook: random generators restored from the resumed checkpoint', logger='current')


def _as_python_state(state) -> tuple:
    """``random.setstate`` needs tuples; a checkpoint may hand back lists (other serialisers)."""
    version, internal, gauss = state
    return version, tuple(internal), gauss


@HOOKS.register_module()
class SkippedImagesHook(Hook):
    """Log, at the end of every training epoch, how many unreadable images ``skip_bad_images`` skipped in it.

    Calls :meth:`mmkp.datasets.CheckedCocoDataset.report_skipped_images` of the training dataset (through dataset
    wrappers: ``dataset`` / ``datasets`` attributes), whose count is shared by the dataloader workers: one warning
    ``<ann_file>: N unreadable image(s) skipped in epoch E (all dataloader workers; T in total)`` when N > 0, nothing
    otherwise. Datasets of other types, or without ``skip_bad_images``, are left alone. On in mmkp's runtime
    (``configs/_base_/runtime/default_runtime.py``).
    """

    priority = 'LOW'

    @staticmethod
    def _datasets(dataset) -> List[object]:
        found, todo = [], [dataset]
        while todo:
            ds = todo.pop()
            if hasattr(ds, 'report_skipped_images'):
                found.append(ds)
            if getattr(ds, 'dataset', None) is not None:
                todo.append(ds.dataset)
            todo.extend(getattr(ds, 'datasets', None) or [])
        return found

    def after_train_epoch(self, runner) -> None:
        for ds in self._datasets(runner.train_dataloader.dataset):
            ds.report_skipped_images(epoch=runner.epoch)
