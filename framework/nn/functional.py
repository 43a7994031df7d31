"""ember.nn.functional (import as F): the functional form of every layer, loss and activation.

    import ember.nn.functional as F
    x = F.relu(F.conv2d(x, w, b, stride=1, padding=1))
    loss = F.cross_entropy(logits, target)

Each function lives next to its module (linear.py, conv.py, ...); this namespace gathers them.
"""
from ..ops_movement import pad  # noqa: F401
from .activation import (celu, elu, gelu, glu, hardshrink, hardsigmoid, hardswish, hardtanh, leaky_relu,  # noqa: F401
                         log_softmax, logsigmoid, mish, prelu, relu, relu6, relu_, selu, sigmoid, silu, softmax,
                         softmin, softplus, softshrink, softsign, tanh, tanhshrink, threshold)
from .conv import (conv1d, conv2d, conv3d, conv_transpose1d, conv_transpose2d, conv_transpose3d, fold,  # noqa: F401
                   unfold)
from .distance import cosine_similarity, normalize, pairwise_distance  # noqa: F401
from .dropout import alpha_dropout, dropout, dropout1d, dropout2d, dropout3d  # noqa: F401
from .linear import bilinear, linear  # noqa: F401
from .loss import (binary_cross_entropy, binary_cross_entropy_with_logits, cosine_embedding_loss,  # noqa: F401
                   cross_entropy, gaussian_nll_loss, hinge_embedding_loss, huber_loss, kl_div, l1_loss,
                   margin_ranking_loss, mse_loss, multilabel_soft_margin_loss, nll_loss, poisson_nll_loss,
                   smooth_l1_loss, soft_margin_loss, triplet_margin_loss)
from .normalization import batch_norm, group_norm, instance_norm, layer_norm, rms_norm  # noqa: F401
from .pooling import (adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_avg_pool3d, adaptive_max_pool1d,  # noqa: F401
                      adaptive_max_pool2d, adaptive_max_pool3d, avg_pool1d, avg_pool2d, avg_pool3d, max_pool1d,
                      max_pool2d, max_pool3d)
from .sparse import embedding, one_hot  # noqa: F401
from .upsampling import interpolate, pixel_shuffle, pixel_unshuffle, upsample  # noqa: F401
# ---- other helpers' functions append below this line ----
from .attention import multi_head_attention_forward, scaled_dot_product_attention  # noqa: F401,E402  (helper F)
