# Schedule of the quick BCCD configs, which train from scratch on a 2-core CPU in minutes: Adam with gradient
# clipping, a linear warm-up over the first iterations, one lr step (/ 10) near the end, a log line every 10
# iterations, evaluation and one kept checkpoint at the end of training.
# The values below are fixed when this file is read: a config that changes max_epochs sets train_cfg, the
# MultiStepLR of param_scheduler and default_hooks.checkpoint again. It builds on the runtime (mmengine refuses a key,
# here default_hooks, that two sibling bases both define).
_base_ = '../runtime/default_runtime.py'

max_epochs = 12
optim_wrapper = dict(
    type='OptimWrapper', optimizer=dict(type='Adam', lr=2e-3), clip_grad=dict(max_norm=35, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=max_epochs, milestones=[10], gamma=0.1)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    # written to a temporary file, then renamed: a run killed during a save keeps its last complete checkpoint
    checkpoint=dict(type='AtomicCheckpointHook', interval=max_epochs, max_keep_ckpts=1))
