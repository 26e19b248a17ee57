"""Where the datasets live (ARCHITECTURE.md section 6)."""
import os
import os.path as osp

DATA_ENV = 'MMKP_DATA'


def get_data_root(set_env: bool = False) -> str:
    """Return the folder that holds the datasets (``bccd/``, ``coco128/``, ``coco/``...).

    Order: the ``MMKP_DATA`` environment variable; else ``../shared/data`` when it exists (these machines); else
    ``data`` (mmdet's convention). Configs read the same variable through ``{{$MMKP_DATA:data}}``.

    Args:
        set_env (bool): also export the answer as ``MMKP_DATA`` so that configs parsed later in this process (and
            its children) use it. Defaults to False.

    Returns:
        str: the data folder, without a trailing slash.
    """
    root = os.environ.get(DATA_ENV)
    if not root:
        root = '../shared/data' if osp.isdir('../shared/data') else 'data'
        if set_env:
            # absolute, so that children started from another folder (mim, dist runs) see the same data
            root = osp.abspath(root)
            os.environ[DATA_ENV] = root
    return root.rstrip('/')
