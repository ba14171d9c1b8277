"""clipdeploy.reparam — fold train-time branches into inference blocks, verified block by block.

    from clipdeploy.reparam import reparameterize
    fused, report = reparameterize(m)        # m from clipdeploy.models.load_model
    print(report.table())
"""
from .api import FUSED_MARKER, ReparamReport, fused_state_dict, measure_latency, reparameterize
from .core import (FoldError, batchnorm_modules, fold_module_tree, not_folded, to_inference_form,
                   train_time_modules)

__all__ = ["reparameterize", "ReparamReport", "FoldError", "to_inference_form", "fused_state_dict",
           "batchnorm_modules", "train_time_modules", "not_folded", "fold_module_tree",
           "measure_latency", "FUSED_MARKER"]
