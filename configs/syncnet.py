"""The lip-sync expert (SyncNet) that LSE-C / LSE-D are measured with, trained on the demo's corpus.

    python -m thflax.training.syncnet_stage --config configs/syncnet.py --workdir runs/syncnet
    python export.py --workdir runs/syncnet --out runs/syncnet_export        (a parameters-only bundle)

The corpus and crops of configs/demo.py (`synthetic_talking_heads/people`, 128x128; the held-out identity
is in `test` only); the expert's own settings are `config.syncnet` of configs/default.py: the public
SyncNet's layout, narrower, on a 48x64 mouth region (thflax/models/syncnet.py). `demo.py` trains the same
expert into its workdir (runs/demo/syncnet) with this config's settings; `reproduce.py` trains one per
corpus into <workdir>/syncnet. Another corpus: `--config.data.name=synthetic_talking_heads/small`.
"""

from configs import demo


def get_config():
    c = demo.get_config()
    c.stage = "syncnet"
    return c
