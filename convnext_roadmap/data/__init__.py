"""The data sets a study trains on.

Modules: registry (each data set's facts and loader: the one place to ask), in_memory
(Fashion-MNIST, CIFAR, synthetic: uint8 tensors augmented a batch at a time), image_folder
(ImageNet-style folders through torchvision), loading (the data module of a run), seeding
(the seeds every random draw derives from).
"""
