# mmkp's runtime: mmdet's (hooks, logging, visualiser, environment, default_scope='mmdet') plus the import that
# registers mmkp's modules in mmdet's registries, so that mmdet's tools, DetInferencer and mim resolve mmkp types by
# plain name.
_base_ = 'mmdet::_base_/default_runtime.py'
custom_imports = dict(imports=['mmkp'], allow_failed_imports=False)
# A training step whose loss (any term) is NaN / inf stops the run with an error naming the iteration and the term,
# before the optimizer writes NaN weights (mmkp/engine/hooks.py; `action='skip'` skips such steps instead).
# RandomStateHook: the random generators' states go into every checkpoint and come back on --resume, so that a
# resumed run continues as the uninterrupted one (tests/test_reliability/test_resume_bit_exact.py).
custom_hooks = [dict(type='FiniteLossHook'), dict(type='RandomStateHook'), dict(type='SkippedImagesHook')]
