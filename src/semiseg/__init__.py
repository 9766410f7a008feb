"""semiseg: semi-supervised semantic segmentation (DSSN, CSL, SemiRES and the baselines) on one engine."""
from semiseg.version import __version__  # noqa: F401


def load(ckpt: str, device: str = "cpu"):
    """Load a checkpoint for inference: returns a :class:`semiseg.inference.Predictor` with ``.predict(image)``."""
    from semiseg.inference import Predictor

    return Predictor.from_checkpoint(ckpt, device=device)
