import numpy as np, torch
from sklearn.utils.estimator_checks import parametrize_with_checks
from sklearn.utils._param_validation import StrOptions
from skasync.neural_network._base import BaseTorchClassifier, make_linear, make_optimizer

class TinyMLP(BaseTorchClassifier):
    _parameter_constraints = {**BaseTorchClassifier._parameter_constraints}
    def __init__(self, batch_size="auto", learning_rate_init=0.01, alpha=1e-4, max_iter=50, tol=1e-4,
                 shuffle=True, early_stopping=False, validation_fraction=0.1, n_iter_no_change=10,
                 target_score=None, max_time=None, device="cpu", torch_num_threads=None,
                 random_state=None, verbose=0, warm_start=False):
        for k, v in locals().items():
            if k != "self": setattr(self, k, v)
    def _init_model(self, n_features, n_classes, generator):
        self.module_ = torch.nn.Sequential(make_linear(n_features, 16, generator), torch.nn.ReLU(), make_linear(16, n_classes, generator))
        self.optimizer_ = make_optimizer(self.module_.parameters(), "adam", self.learning_rate_init)
    def _fit_epoch(self, X, y, *, batches, context):
        total = 0.0
        for idx in batches:
            loss = torch.nn.functional.cross_entropy(self.module_(X[idx]), y[idx])
            self.optimizer_.zero_grad(); loss.backward(); self.optimizer_.step()
            total += float(loss) * len(idx)
        return {"loss": total / X.shape[0]}
    def _forward_logits(self, X):
        return self.module_(X)
    def _torch_modules(self):
        return {"module_": self.module_} if hasattr(self, "module_") else {}

@parametrize_with_checks([TinyMLP(random_state=0), TinyMLP(random_state=0, early_stopping=True)])
def test_checks(estimator, check):
    check(estimator)
