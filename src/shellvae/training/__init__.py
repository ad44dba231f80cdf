"""Training: the one loop (``loop``) every model and method goes through, the batches it draws
(``batches``), compilation and mixed precision (``acceleration``), per-epoch checkpoints
(``checkpoint``) and the registered training methods (``methods``)."""
