"""semiseg: semi-supervised semantic segmentation (DSSN, CSL, SemiRES and the baselines) on one engine."""
from semiseg.version import __version__  # noqa: F401


def load(ckpt: str, device: str = "cpu", teacher=None):
    """Load a checkpoint for inference: its task's predictor, with ``.predict(image)`` (and, for a referring
    model, ``.predict(image, text=...)``)."""
    from semiseg.inference import load as load_predictor

    return load_predictor(ckpt, device=device, teacher=teacher)
