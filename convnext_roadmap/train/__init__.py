"""One run trained with PyTorch Lightning.

Modules: run (the Trainer of one run and its record), module (the LightningModule),
callbacks, checkpoints (atomic, resumable), csv_log (the CSV log that survives resumption),
trackers (TensorBoard, MLflow, W&B), precision, ranks, weights (trained and pretrained),
evaluate (a finished run's weights on its validation set).
"""
